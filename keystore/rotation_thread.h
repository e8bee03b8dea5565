// The background thread that runs the rotation engine every `poll`, or at once when woken
// (SIGHUP, a CLI request). Stops promptly when destroyed. Signing never waits on it: it only
// publishes snapshots. It runs at SCHED_IDLE, so key generation only takes idle CPU.
// Thread-safety: WakeUp() may be called from any thread; construction and destruction from one.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "keystore/rotation_engine.h"

namespace dkimrotor::keystore {

class RotationThread {
 public:
  RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                 std::function<void(LogLevel, const std::string&)> log);
  ~RotationThread();  // requests stop and joins
  RotationThread(const RotationThread&) = delete;
  RotationThread& operator=(const RotationThread&) = delete;

  void WakeUp();
  // Steps completed so far (for tests and status).
  uint64_t steps() const;

 private:
  void Run(std::stop_token stop);

  RotationEngine* engine_;
  std::chrono::milliseconds poll_;
  std::function<void(LogLevel, const std::string&)> log_;
  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  bool wake_ = false;     // GUARDED_BY(mu_)
  uint64_t steps_ = 0;    // GUARDED_BY(mu_)
  std::jthread thread_;   // last: started after every member it uses
};

}  // namespace dkimrotor::keystore
