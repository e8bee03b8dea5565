// The rotation engine: keeps each domain's keys moving through pending -> ready -> active ->
// retiring -> revoked, following the M3AAWG practice: keys are pre-published and only sign
// once DNS has served exactly them for `min_propagation`; N active keys are replaced one at a
// time every key_lifetime/N; a retired key stays in DNS for `grace`, then is revoked with an
// empty p= and its private key destroyed. Late rotation never stops signing.
// Everything outside its own memory (clock, key files, state file, hooks, DNS, audit log) comes
// in through RotationWorld, so tests run years of schedule in simulated time.
// DNS is trusted once and checked again at every pass: each key that should be in DNS (pending,
// ready, active, retiring, and the revocation of a revoking key) is looked up. When DNS serves
// another value or none after the hook succeeded, the hook runs again, with backoff (the
// mismatch must last retry_min first, doubling up to retry_max). A ready key that no longer
// matches goes back to pending. An active key whose record stays wrong for min_propagation
// over several passes retires when another verified key can sign; otherwise it goes on
// signing and each pass logs an error. Temporary DNS failures change nothing.
// Thread-safety: Step(), Rotate() and EmergencyRevoke() run on one thread (the rotation thread
// or a CLI); Keys() may be called from any thread; snapshots are read through the holder.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keystore/key_info.h"
#include "keystore/signing_snapshot.h"
#include "keystore/storage/state_store.h"
#include "signer/algorithm.h"
#include "signer/canonicalization.h"
#include "signer/private_key.h"
#include "signer/selector_format.h"
#include "util/mutex.h"
#include "util/result.h"
#include "util/thread_annotations.h"

namespace dkimrotor::keystore {

// One domain's keys of one algorithm: a rotation schedule of its own.
struct StreamPolicy {
  std::string domain;
  std::string stream;              // the {stream} of the selector format, e.g. "mta1"
  signer::Algorithm algorithm = signer::Algorithm::kRsaSha256;
  int bits = 2048;                 // RSA only
  int active_keys = 2;             // 1..3, used round-robin
  std::chrono::seconds key_lifetime{120 * 86400};
  int prepublish = 1;              // verified spare keys kept ready
  std::chrono::seconds grace{14 * 86400};
  signer::SelectorFormat selector_format;  // "{stream}-{yyyymmdd}-{alg}{bits}"
  // A delegated domain's slots (conf::Delegation), shared by all its algorithms: selectors are
  // taken from these instead of selector_format. A slot is free when no key of the domain holds
  // it, or the key that held it was revoked at least `grace` ago: a new key then replaces the
  // revoked key's entry, and the slot's record goes from "p=" to the new key.
  std::vector<std::string> slots;
};

struct RotationOptions {
  std::vector<StreamPolicy> streams;
  std::chrono::seconds min_propagation{3600};
  signer::Canonicalization canonicalization;
  std::chrono::seconds retry_min{60};    // backoff for a failing hook, doubling up to retry_max
  std::chrono::seconds retry_max{3600};
  // How often Step() runs; a key pending for max(min_propagation, 1h) + a few polls is late
  // and says why in the log.
  std::chrono::seconds poll{60};
};

enum class DnsObservation { kMatches, kRevoked, kMissing, kWrong, kTemporaryFailure };
enum class LogLevel { kDebug, kInfo, kWarning, kError };

class RotationWorld {
 public:
  virtual ~RotationWorld() = default;
  virtual TimePoint Now() = 0;
  // Generates a key for `key` (domain, selector, algorithm, bits) and stores it (mode 0600).
  virtual util::Result<std::shared_ptr<const signer::PrivateKey>> CreateKey(const KeyInfo& key) = 0;
  virtual util::Result<std::shared_ptr<const signer::PrivateKey>> LoadKey(const KeyInfo& key) = 0;
  virtual util::Status DestroyKey(const KeyInfo& key) = 0;
  // Crash-safe; the engine calls it before a change takes effect anywhere.
  virtual util::Status SaveState(const std::vector<KeyInfo>& keys) = 0;
  // The start-up sweep of the key files (keystore::SweepKeyFiles); only the keystore's lock
  // holder calls it.
  virtual KeyFileSweep SweepKeyFiles(const std::vector<KeyInfo>& keys) = 0;
  // Whether a publish hook is configured for the domain; without one a DNS admin publishes.
  virtual bool CanPublish(const std::string& domain) = 0;
  virtual util::Status Publish(const KeyInfo& key, bool revoke, const std::string& txt_value) = 0;
  virtual DnsObservation CheckDns(const KeyInfo& key, bool expect_revoked, std::string* detail) = 0;
  virtual void Audit(const KeyInfo& key, KeyState from, KeyState to) = 0;
  virtual void Log(LogLevel level, const std::string& message) = 0;
};

// The TXT value that publishes a key, and the one that revokes it.
std::string KeyRecordValue(const KeyInfo& key);
std::string RevokedRecordValue();

class RotationEngine {
 public:
  // `keys` is the loaded state. Fails if an active key's private key cannot be loaded only
  // when no key at all can sign for its domain (logged otherwise).
  RotationEngine(RotationOptions options, std::vector<KeyInfo> keys, RotationWorld* world,
                 SnapshotHolder* snapshots);

  // Loads active keys and publishes the first snapshot.
  util::Status Start();
  // At start-up, by the keystore's lock holder (never by a reader such as `sign`): destroys
  // what a crash left of private keys that should be gone, and logs each key file no state
  // entry names (left in place: see keystore::SweepKeyFiles). Errors are logged; signing
  // does not depend on them.
  void SweepKeyFiles();
  // One pass over every stream. Errors (a state file that cannot be written) leave the keys
  // as they were in memory and on disk; signing goes on with the current snapshot.
  util::Status Step();
  // `rotate --domain D`: one ordinary rotation step now, for each of D's algorithms.
  util::Status Rotate(const std::string& domain);
  // `rotate --emergency`: takes the selector out of signing at once, revokes it without grace
  // and activates a ready key if there is one; otherwise the domain goes unsigned.
  util::Status EmergencyRevoke(const std::string& domain, const std::string& selector);
  // `keys import` through the daemon: adds `key` (see PrepareImport) as pending; its key file
  // must be in place already. Refuses a selector the domain has used.
  util::Status Import(KeyInfo key);

  std::vector<KeyInfo> Keys() const EXCLUDES(mu_);
  const RotationOptions& options() const { return options_; }

 private:
  struct Retry {
    int failures = 0;
    TimePoint next{};
  };

  util::Status StepStream(const StreamPolicy& p, TimePoint now, bool force_rotation, bool* changed);
  util::Status Generate(const StreamPolicy& p, TimePoint now);
  void Transition(KeyInfo& key, KeyState to, TimePoint now);
  util::Status Commit(std::vector<KeyInfo> next);
  // Runs the hook unless it is backing off after failures; on a failure, notes why in the
  // key's dns_problem, for the caller to save.
  bool PublishWithBackoff(KeyInfo& key, bool revoke, TimePoint now);
  // Records one DNS observation of `key` (not a temporary failure) and says whether it changed
  // what is saved.
  bool NoteDns(KeyInfo& key, DnsObservation seen, const std::string& detail, TimePoint now);
  // Runs the hook again for a key whose record has been wrong long enough; true when it ran.
  bool Republish(KeyInfo& key, bool revoke, TimePoint now);
  // An active key whose record has been wrong on several passes spanning min_propagation.
  bool PersistentlyWrong(const KeyInfo& key, TimePoint now) const;
  void WarnIfPendingTooLong(const KeyInfo& key, TimePoint now);
  std::string NewSelector(const StreamPolicy& p, TimePoint now) const;
  std::string FreeSlot(const StreamPolicy& p, TimePoint now) const;
  void PublishSnapshot();
  // The engine's thread is the only writer of keys_ (under mu_, in Commit), so it reads them
  // without the lock; other threads go through Keys().
  const std::vector<KeyInfo>& keys() const NO_THREAD_SAFETY_ANALYSIS { return keys_; }

  RotationOptions options_;
  RotationWorld* world_;
  SnapshotHolder* snapshots_;
  mutable util::Mutex mu_;
  std::vector<KeyInfo> keys_ GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const signer::PrivateKey>> loaded_;  // by selector
  std::map<std::string, Retry> retries_;                                     // by selector
  std::map<std::string, TimePoint> late_logged_;                             // by stream
  // Republishes since DNS last served the record (its backoff), passes that saw it wrong, and
  // when a long pending was last logged; by domain/selector. Memory only: after a restart a
  // mismatch must be seen on a few passes again before an active key is taken out of signing.
  std::map<std::string, Retry> republished_;
  std::map<std::string, int> wrong_passes_;
  std::map<std::string, TimePoint> pending_logged_;
  struct AuditEntry {
    KeyInfo key;
    KeyState from;
    KeyState to;
  };
  std::vector<AuditEntry> audits_;  // transitions of the change being made, told after Commit
  uint64_t generation_ = 0;
};

}  // namespace dkimrotor::keystore

namespace dkimrotor::keystore {

// What happens next to a key and when, for `dkimrotor keys` and `check`; computed from the
// state alone (no engine needed), so a CLI can answer while the daemon holds the keystore.
struct NextStep {
  std::string what;               // "waiting for DNS", "retires", "revocation", ...
  std::optional<TimePoint> when;  // nullopt when it depends on something outside (DNS, an admin)
  bool late = false;              // a rotation step is overdue (no ready key)
};

NextStep NextStepOf(const KeyInfo& key, const std::vector<KeyInfo>& all, const StreamPolicy& policy,
                    std::chrono::seconds min_propagation, bool has_hook, TimePoint now);

}  // namespace dkimrotor::keystore
