// The end of one message's trip through a signing session: signed (with its signatures) or
// refused (why, and what the front end answers). Protocol-neutral: the milter maps it onto
// SMFIS_* replies, `dkimrotor sign` onto its exit status.
// Plain value; safe to share read-only between threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dkimrotor::session {

// What happens to the message, and the label it is counted under.
enum class Outcome {
  kSigned,    // signatures added, message accepted
  kUnsigned,  // passed on without a signature
  kTempfail,  // the MTA should try again later (4xx)
  kReject,    // refused for good (5xx)
};

// Why a message is not signed.
enum class Refusal {
  kNone,         // it is signed
  kNotInternal,  // from outside and not authenticated: never signed, passed on untouched
  kStopping,     // the signer is shutting down: the MTA retries it later
  kBadMessage,   // no From, several From, a malformed field, a domain not configured
  kError,        // dkimrotor cannot sign it now: no usable key, a signing failure
};

struct Verdict {
  Outcome outcome = Outcome::kUnsigned;
  Refusal refusal = Refusal::kNone;
  std::string reason;                   // for the log; empty when signed
  std::vector<std::string> signatures;  // when signed: "DKIM-Signature: ..." fields, CRLF-folded
  std::string domain;                   // d= of the signatures, when signed
};

std::string_view OutcomeName(Outcome o);   // "signed", "unsigned", "tempfail", "reject"
std::string_view RefusalName(Refusal r);   // "none", "not-internal", "stopping", "bad-message", "error"

}  // namespace dkimrotor::session
