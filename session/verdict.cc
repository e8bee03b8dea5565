#include "session/verdict.h"

namespace dkimrotor::session {

std::string_view OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kSigned: return "signed";
    case Outcome::kUnsigned: return "unsigned";
    case Outcome::kTempfail: return "tempfail";
    case Outcome::kReject: return "reject";
  }
  return "unknown";
}

std::string_view RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kNone: return "none";
    case Refusal::kNotInternal: return "not-internal";
    case Refusal::kStopping: return "stopping";
    case Refusal::kBadMessage: return "bad-message";
    case Refusal::kError: return "error";
  }
  return "unknown";
}

}  // namespace dkimrotor::session
