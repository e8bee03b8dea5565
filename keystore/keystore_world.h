// The rotation engine's real surroundings: the system clock, key files (mode 0600) and the
// state file in the keystore folder, publish hooks, and DNS through c-ares.
// Used by the rotation thread only (its DnsChecker's c-ares channel is not thread-safe).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "keystore/dns/dns_checker.h"
#include "keystore/rotation/rotation_engine.h"
#include "util/counter_family.h"

namespace dkimrotor::keystore {

struct HookConfig {
  std::string path;  // absolute; run without a shell
  std::chrono::milliseconds timeout{30000};
};

// What the world counts for the metrics endpoint; owned by the daemon so the counts survive
// the world being replaced on a reload.
struct WorldCounters {
  util::CounterFamily hook_runs;   // domain, action (publish|revoke), result (ok|error)
  util::CounterFamily dns_checks;  // domain, result (matches|revoked|missing|wrong|temporary_failure)
};

struct KeystoreWorldOptions {
  std::string directory;
  std::map<std::string, HookConfig> hooks;  // by domain; a domain without one waits for an admin
  // Delegated domains (conf::Delegation): domain -> the zone their records live in, at
  // SELECTOR._domainkey.ZONE, reached from SELECTOR._domainkey.DOMAIN by a CNAME.
  std::map<std::string, std::string> delegations;
  DnsCheckOptions dns;
  std::function<void(LogLevel, const std::string&)> log;
  std::function<void(const KeyInfo&, KeyState from, KeyState to)> audit;
  // The clock; the system clock when empty. Integration tests pass a clock they move on, so
  // days of schedule run in seconds against real files, hooks and DNS.
  std::function<TimePoint()> clock;
  WorldCounters* counters = nullptr;  // borrowed; null: nothing is counted
};

// Where a key's TXT record lives: SELECTOR._domainkey.DOMAIN, or SELECTOR._domainkey.ZONE for a
// delegated domain (`zone` not empty).
std::string RecordName(const KeyInfo& key, const std::string& zone);

class KeystoreWorld final : public RotationWorld {
 public:
  explicit KeystoreWorld(KeystoreWorldOptions options);

  TimePoint Now() override;
  util::Result<std::shared_ptr<const signer::PrivateKey>> CreateKey(const KeyInfo& key) override;
  util::Result<std::shared_ptr<const signer::PrivateKey>> LoadKey(const KeyInfo& key) override;
  util::Status DestroyKey(const KeyInfo& key) override;
  util::Status SaveState(const std::vector<KeyInfo>& keys) override;
  KeyFileSweep SweepKeyFiles(const std::vector<KeyInfo>& keys) override;
  bool CanPublish(const std::string& domain) override;
  util::Status Publish(const KeyInfo& key, bool revoke, const std::string& txt_value) override;
  DnsObservation CheckDns(const KeyInfo& key, bool expect_revoked, std::string* detail) override;
  void Audit(const KeyInfo& key, KeyState from, KeyState to) override;
  void Log(LogLevel level, const std::string& message) override;

 private:
  DnsObservation Observe(const KeyInfo& key, bool expect_revoked, std::string* detail);
  // A delegated key: its record at the zone, and (unless a revocation is checked) the record
  // as receivers see it, through SELECTOR._domainkey.DOMAIN's CNAME.
  DnsObservation ObserveDelegated(const KeyInfo& key, const std::string& zone, bool expect_revoked,
                                  std::string* detail);
  static DnsObservation FromResult(const DnsCheckResult& r);

  KeystoreWorldOptions options_;
  std::unique_ptr<DnsChecker> dns_;  // made on first use, on the thread that uses it
};

// What is wrong with the keystore folder's ownership and modes for a daemon running as `uid`.
// errors: the folder (or its keys/ folder) belongs to neither `uid` nor root, or group or
// others may write it (they could swap keys or state). warnings: key files group or others may
// read. Each names the path, its mode and the command that fixes it. A folder that does not
// exist yet has no findings (it is created 0700).
struct KeystorePermissions {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
};
KeystorePermissions CheckKeystorePermissions(const std::string& directory, uid_t uid);

// Holds the keystore's lock file (flock): one process at a time runs the rotation engine;
// others may read the state. Released when destroyed.
class KeystoreLock {
 public:
  static util::Result<std::unique_ptr<KeystoreLock>> Acquire(const std::string& directory);
  // The error Acquire() would give if another process holds the lock, without creating
  // anything: for a daemon that must know before it binds its socket but can only take the
  // lock once it runs as its own user (the lock file must be that user's).
  static util::Status CheckFree(const std::string& directory);
  ~KeystoreLock();
  KeystoreLock(const KeystoreLock&) = delete;
  KeystoreLock& operator=(const KeystoreLock&) = delete;

 private:
  explicit KeystoreLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace dkimrotor::keystore
