// A family of monotonic counters told apart by label values (e.g. domain, selector,
// algorithm), for the metrics endpoint. A counter, once made, lives as long as the family: its
// count survives whatever snapshot or engine last used it, so a scrape never sees it go back.
// Get() hands out the counter itself; whoever holds it adds with a relaxed atomic and no lock
// (the signing hot path). Add() is for the cold paths (hooks, DNS checks) that look it up each
// time. Owned by the daemon, which outlives every user.
// Thread-safety: every method may be called from any thread; Get(), Add() and Read() take the
// mutex, adding through a counter from Get() takes nothing.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace dkimrotor::util {

class CounterFamily {
 public:
  using Labels = std::vector<std::string>;  // values, in the order of the series' label names
  using Counter = std::atomic<uint64_t>;

  std::shared_ptr<Counter> Get(const Labels& labels) EXCLUDES(mu_) {
    util::MutexLock lock(&mu_);
    auto& slot = counters_[labels];
    if (!slot) slot = std::make_shared<Counter>(0);
    return slot;
  }
  void Add(const Labels& labels, uint64_t n = 1) EXCLUDES(mu_) {
    Get(labels)->fetch_add(n, std::memory_order_relaxed);
  }
  // Every counter made so far with its count, ordered by labels.
  std::vector<std::pair<Labels, uint64_t>> Read() const EXCLUDES(mu_) {
    util::MutexLock lock(&mu_);
    std::vector<std::pair<Labels, uint64_t>> out;
    out.reserve(counters_.size());
    for (const auto& [labels, counter] : counters_)
      out.emplace_back(labels, counter->load(std::memory_order_relaxed));
    return out;
  }

 private:
  mutable util::Mutex mu_;
  std::map<Labels, std::shared_ptr<Counter>> counters_ GUARDED_BY(mu_);
};

}  // namespace dkimrotor::util
