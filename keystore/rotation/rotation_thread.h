// The background thread that runs the rotation engine every `poll`, or at once when woken
// (SIGHUP, a CLI request). Stops promptly when destroyed. Signing never waits on it: it only
// publishes snapshots. It runs at SCHED_IDLE, so key generation only takes idle CPU.
// Destruction waits for a step in flight (a slow hook, a DNS check) to finish: once the
// destructor returns, the engine is no longer used and its Keys() are final.
// Thread-safety: WakeUp() and steps() may be called from any thread; construction and
// destruction from one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "keystore/rotation/rotation_engine.h"
#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace dkimrotor::keystore {

class RotationThread {
 public:
  RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                 std::function<void(LogLevel, const std::string&)> log);
  ~RotationThread();  // requests stop and joins, after the step in flight
  RotationThread(const RotationThread&) = delete;
  RotationThread& operator=(const RotationThread&) = delete;

  void WakeUp() EXCLUDES(mu_);
  // Steps completed so far (for tests and status).
  uint64_t steps() const EXCLUDES(mu_);

 private:
  void Run() EXCLUDES(mu_);

  RotationEngine* const engine_;
  const std::chrono::milliseconds poll_;
  const std::function<void(LogLevel, const std::string&)> log_;
  mutable util::Mutex mu_;
  util::CondVar cv_;
  bool wake_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t steps_ GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: started after every member it uses
};

}  // namespace dkimrotor::keystore
