// What a reload may change about signing, as one immutable value: who may have mail signed,
// which header fields are signed, which domains sign, how long signatures live, and what a
// front end answers when a message is refused. Built by the wiring from the configuration,
// swapped whole by SigningService::SwapSettings(); a message keeps the settings it began with.
// Immutable once built; safe to share between threads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "session/signing_policy.h"
#include "signer/header_selector.h"

namespace dkimrotor::session {

// What a front end answers when dkimrotor cannot sign a message it should sign (no active key,
// an internal failure).
enum class OnError { kTempfail, kAccept };
// What a front end answers for a message dkimrotor refuses to sign (no From, two From headers,
// a domain it does not sign for, a malformed header field).
enum class OnBadMessage { kAccept, kReject, kTempfail };

struct Settings {
  SigningPolicy policy;
  signer::HeaderSelector headers{signer::HeaderPolicy::Default()};
  struct Domain {
    std::string name;  // lowercase, no trailing dot
    bool subdomains = false;
  };
  std::vector<Domain> domains;
  OnError on_error = OnError::kTempfail;
  OnBadMessage on_bad_message = OnBadMessage::kAccept;
  std::optional<int64_t> signature_lifetime;  // x= = t= + this
  // Past either limit the message is refused (kBadMessage) and its fields are no longer kept.
  size_t max_header_fields = 10000;
  size_t max_header_bytes = 1024 * 1024;

  // The configured domain a From domain signs as: the domain itself, or the longest configured
  // parent that has `subdomains`. Null when none.
  const Domain* Match(std::string_view from_domain) const;
};

}  // namespace dkimrotor::session
