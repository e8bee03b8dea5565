// A Prometheus-style histogram with fixed bucket bounds, kept in relaxed atomics: Observe()
// takes no lock, so the signing hot path can time itself. A reader may see an observation in
// the count but not yet in its bucket (or the other way) for an instant; every number only
// ever grows, which is all a Prometheus counter promises.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>

namespace dkimrotor::util {

class Histogram {
 public:
  // Upper bounds in seconds, from 50 µs (an ed25519 signature) to 1 s (a starved machine).
  static constexpr std::array<double, 14> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                                     0.0025,  0.005,  0.01,    0.025,  0.05,
                                                     0.1,     0.25,   0.5,     1.0};

  void Observe(double seconds) {
    const size_t i = static_cast<size_t>(
        std::lower_bound(kBounds.begin(), kBounds.end(), seconds) - kBounds.begin());
    buckets_[i].fetch_add(1, std::memory_order_relaxed);  // i == kBounds.size(): above all
    count_.fetch_add(1, std::memory_order_relaxed);
    const auto ns = static_cast<uint64_t>(std::max(seconds, 0.0) * 1e9);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }

  struct Reading {
    std::array<uint64_t, kBounds.size() + 1> buckets{};  // per bucket, not cumulative; last: +Inf
    uint64_t count = 0;
    double sum = 0;  // seconds
  };
  Reading Read() const {
    Reading r;
    for (size_t i = 0; i < buckets_.size(); ++i) r.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    r.count = count_.load(std::memory_order_relaxed);
    r.sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return r;
  }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace dkimrotor::util
