// The immutable set of keys the hot path signs with: for each configured domain, the active
// keys of each algorithm, loaded. Published by the rotation engine with an atomic swap; a
// message keeps the snapshot it loaded when it began, however many swaps happen meanwhile.
// Each key carries its signature counter (from the holder's CounterFamily, so counts outlive
// the snapshot), found by CountSignature() without a lock.
// Thread-safety: immutable after Build(), except the per-domain round-robin counters and the
// signature counters, which are atomics: Pick() and CountSignature() are safe from any number
// of threads without locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/counter_family.h"

#include "util/mutex.h"
#include "util/thread_annotations.h"

#include "signer/signing_key.h"

namespace dkimrotor::keystore {

class SigningSnapshot {
 public:
  using KeyList = std::vector<std::shared_ptr<const signer::SigningKey>>;

  // `keys[domain][i]` lists the active keys of one algorithm of that domain.
  // `signatures` (may be null: nothing is counted) gets one counter per key, labelled domain,
  // selector, algorithm.
  SigningSnapshot(std::map<std::string, std::vector<KeyList>, std::less<>> keys, uint64_t generation,
                  util::CounterFamily* signatures = nullptr);

  // One key per algorithm the domain signs with, round-robin among that algorithm's active
  // keys. Empty when the domain is not configured or has no active key.
  KeyList Pick(std::string_view domain) const;

  // Counts one signature made with `key`, one of this snapshot's keys (others are ignored).
  // Lock-free: a relaxed increment of the key's counter.
  void CountSignature(const signer::SigningKey& key) const {
    auto it = counters_.find(&key);
    if (it != counters_.end()) it->second->fetch_add(1, std::memory_order_relaxed);
  }

  bool HasDomain(std::string_view domain) const { return domains_.count(domain) != 0; }
  // The domains the snapshot knows, for matching a From domain (exact or as a subdomain).
  std::vector<std::string> Domains() const;
  uint64_t generation() const { return generation_; }

 private:
  struct DomainKeys {
    std::vector<KeyList> by_algorithm;
    mutable std::atomic<uint64_t> next{0};
  };
  std::map<std::string, std::unique_ptr<DomainKeys>, std::less<>> domains_;
  std::unordered_map<const signer::SigningKey*, std::shared_ptr<util::CounterFamily::Counter>> counters_;
  uint64_t generation_;
};

// The atomic slot the engine publishes into and signing threads read from. It also remembers
// the snapshots it replaced while a message still holds one, so an emergency revocation can
// wait until no message can sign with the revoked key any more.
// Thread-safety: Load() is lock-free (the hot path); Store() and ReplacedInUse() take a mutex.
class SnapshotHolder {
 public:
  std::shared_ptr<const SigningSnapshot> Load() const { return current_.load(std::memory_order_acquire); }
  void Store(std::shared_ptr<const SigningSnapshot> s) EXCLUDES(mu_) {
    auto old = current_.exchange(std::move(s), std::memory_order_acq_rel);
    util::MutexLock lock(&mu_);
    std::erase_if(replaced_, [](const auto& w) { return w.expired(); });
    if (old) replaced_.push_back(old);
  }
  // The signature counters every snapshot stored here should count into; they outlive them.
  util::CounterFamily& signature_counters() { return signature_counters_; }
  const util::CounterFamily& signature_counters() const { return signature_counters_; }

  // Snapshots replaced by Store() that something (a message in flight) still holds.
  size_t ReplacedInUse() const EXCLUDES(mu_) {
    util::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& w : replaced_) n += w.expired() ? 0 : 1;
    return n;
  }

 private:
  std::atomic<std::shared_ptr<const SigningSnapshot>> current_;
  util::CounterFamily signature_counters_;
  mutable util::Mutex mu_;
  std::vector<std::weak_ptr<const SigningSnapshot>> replaced_ GUARDED_BY(mu_);
};

}  // namespace dkimrotor::keystore
