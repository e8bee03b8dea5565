// What `dkimrotor keys --json`, `keys --history` and `dkimrotor status` say about keys, built in
// one place for both the direct path (the state file, in cli/) and the daemon (its engine's
// keys): every key with its state and next step (keystore::NextStepOf), per domain what comes
// next and what is late or failing, and every selector's life so far.
// Stateless functions; thread-safe.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "keystore/key_info.h"
#include "keystore/rotation/rotation_engine.h"

namespace dkimrotor::control {

struct KeyReportInput {
  const std::vector<keystore::KeyInfo>* keys = nullptr;
  const keystore::RotationOptions* rotation = nullptr;
  std::vector<std::string> domains;                 // the configured ones, listed even without keys
  std::function<bool(const std::string&)> has_hook;  // by domain
  keystore::TimePoint now{};
};

// {"domains": [{"domain", "keys": [{"selector", "algorithm", "bits", "state", "created",
// "since", "next_step", "next_step_at", "rotation_late"}]}]}; a key no stream owns any more has
// no next_step.
nlohmann::json KeysReport(const KeyReportInput& in);

// Per domain: {"domain", "active_keys", "next_step", "next_step_at", "problems": [...]}, where
// problems name keys that are late, revoked in an emergency and still in DNS, or a stream that
// has no active key (its mail goes out without that signature).
nlohmann::json DomainSummaries(const KeyReportInput& in);

// Every selector the keys hold, revoked ones included (a selector is never forgotten), per
// domain (the configured `domains` listed even without keys), oldest first by creation:
// {"domains": [{"domain", "keys": [{"selector", "algorithm", "bits", "created", "activated",
// "retired", "revoked", "emergency", "state"}]}]}, where a transition not yet made is null.
// The record M3AAWG's key rotation practices (section 6) ask signers to keep.
nlohmann::json KeyHistory(const std::vector<keystore::KeyInfo>& keys, const std::vector<std::string>& domains);

}  // namespace dkimrotor::control
