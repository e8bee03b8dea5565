// The immutable set of keys the hot path signs with: for each configured domain, the active
// keys of each algorithm, loaded. Published by the rotation engine with an atomic swap; a
// message keeps the snapshot it loaded when it began, however many swaps happen meanwhile.
// Thread-safety: immutable after Build(), except the per-domain round-robin counters, which
// are atomics: Pick() is safe from any number of threads without locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "signer/signing_key.h"

namespace dkimrotor::keystore {

class SigningSnapshot {
 public:
  using KeyList = std::vector<std::shared_ptr<const signer::SigningKey>>;

  // `keys[domain][i]` lists the active keys of one algorithm of that domain.
  SigningSnapshot(std::map<std::string, std::vector<KeyList>, std::less<>> keys, uint64_t generation);

  // One key per algorithm the domain signs with, round-robin among that algorithm's active
  // keys. Empty when the domain is not configured or has no active key.
  KeyList Pick(std::string_view domain) const;

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
  uint64_t generation_;
};

// The atomic slot the engine publishes into and signing threads read from.
class SnapshotHolder {
 public:
  std::shared_ptr<const SigningSnapshot> Load() const { return current_.load(std::memory_order_acquire); }
  void Store(std::shared_ptr<const SigningSnapshot> s) { current_.store(std::move(s), std::memory_order_release); }

 private:
  std::atomic<std::shared_ptr<const SigningSnapshot>> current_;
};

}  // namespace dkimrotor::keystore
