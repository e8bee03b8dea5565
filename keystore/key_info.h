// One key's record in the keystore: identity, life-cycle state and the time of each transition.
// Plain value; safe to share read-only between threads. The algorithm is typed: it is spelled
// only where it leaves the process (state file, output, k= in DNS), by signer::AlgorithmName
// or KeyTypeName.
//
// States (a key only ever moves forward along this list, or from active/ready/pending straight to
// revoked in an emergency, or from ready back to pending when DNS stops serving it):
//   pending  - generated, DNS not yet seen serving exactly this key for min_propagation
//   ready    - DNS verified; a spare, waiting for its rotation step
//   active   - signing
//   retiring - no longer signing, still published for `grace`
//   revoked  - "v=DKIM1; p=" published and verified; the private key is destroyed
// A selector is never reused, not even after revocation. DNS is watched for every key that
// should be in it: a ready key whose record goes wrong goes back to pending, and an active
// key whose record stays wrong for min_propagation retires when another verified key can
// sign (see RotationEngine).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "signer/algorithm.h"
#include "util/result.h"

namespace dkimrotor::keystore {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<Clock, std::chrono::seconds>;

enum class KeyState { kPending, kReady, kActive, kRetiring, kRevoked };

std::string_view KeyStateName(KeyState s);
util::Result<KeyState> ParseKeyState(std::string_view name);

struct KeyInfo {
  std::string domain;
  std::string selector;
  signer::Algorithm algorithm = signer::Algorithm::kRsaSha256;
  int bits = 0;
  KeyState state = KeyState::kPending;
  TimePoint created{};
  TimePoint state_since{};                 // when it entered `state`
  std::optional<TimePoint> published;      // the publish hook succeeded
  std::optional<TimePoint> dns_ok_since;   // DNS has served exactly this key since then
  // DNS has served another value or none since then (timeouts and SERVFAIL do not count, nor
  // end it); cleared when DNS serves the expected record again. Kept for every key that
  // should be in DNS, so a restart does not forget how long a mismatch has lasted.
  std::optional<TimePoint> dns_mismatch_since;
  std::string dns_problem;                 // the last check's finding when it was not the record
                                           // expected ("missing: ..."); empty once it is
  std::optional<TimePoint> activated;
  std::optional<TimePoint> retired;
  std::optional<TimePoint> revoke_published;  // the revoke hook succeeded
  std::optional<TimePoint> revoked;
  bool emergency = false;                  // taken out of service by `rotate --emergency`
  std::string public_key;                  // the p= value, base64
};

// Seconds since the epoch <-> TimePoint, and RFC 3339 ("2026-11-22T23:45:50Z") for people.
TimePoint FromUnix(int64_t seconds);
int64_t ToUnix(TimePoint t);
std::string Rfc3339(TimePoint t);

}  // namespace dkimrotor::keystore
