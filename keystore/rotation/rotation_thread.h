// The background thread that runs the rotation engine every `poll`, or at once when woken
// (SIGHUP, a CLI request). Stops promptly when destroyed. Signing never waits on it: it only
// publishes snapshots. It runs at SCHED_IDLE, so key generation only takes idle CPU.
// Destruction waits for a step in flight (a slow hook, a DNS check) to finish: once the
// destructor returns, the engine is no longer used and its Keys() are final.
// Commands (an admin's rotate, emergency revocation or import, from the daemon's control
// channel) run on this thread too, between steps, since the engine is single-threaded; a step
// follows each batch at once (an emergency's revocation reaches the hook without waiting a poll).
// Thread-safety: WakeUp(), Post() and steps() may be called from any thread; construction and
// destruction from one. A RotationCommand may outlive the thread it was posted to.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "keystore/rotation/rotation_engine.h"
#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace dkimrotor::keystore {

// One piece of work for the engine, run on the rotation thread, and its outcome. Whoever posts
// it waits for it with Wait(); the thread runs it, or cancels it when it stops first.
// Thread-safety: every method may be called from any thread.
class RotationCommand {
 public:
  explicit RotationCommand(std::function<util::Status(RotationEngine&)> work) : work_(std::move(work)) {}

  // The command's outcome. If it has not begun after `timeout` it never will (an error says
  // so); once begun, waits for its end, so whatever `work` refers to may go once this returns.
  util::Status Wait(std::chrono::milliseconds timeout) EXCLUDES(mu_);

 private:
  friend class RotationThread;
  enum class State { kQueued, kRunning, kDone };
  void Run(RotationEngine& engine) EXCLUDES(mu_);
  void Cancel(const std::string& why) EXCLUDES(mu_);

  const std::function<util::Status(RotationEngine&)> work_;
  util::Mutex mu_;
  util::CondVar cv_;
  State state_ GUARDED_BY(mu_) = State::kQueued;
  util::Status result_ GUARDED_BY(mu_) = util::Ok();
};

class RotationThread {
 public:
  RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                 std::function<void(LogLevel, const std::string&)> log);
  ~RotationThread();  // requests stop and joins, after the step in flight
  RotationThread(const RotationThread&) = delete;
  RotationThread& operator=(const RotationThread&) = delete;

  void WakeUp() EXCLUDES(mu_);
  // Queues `command` to run before the next step, and wakes the thread. A command still
  // queued when the thread stops is cancelled (its Wait() says the rotation thread stopped).
  void Post(std::shared_ptr<RotationCommand> command) EXCLUDES(mu_);
  // Steps completed so far (for tests and status).
  uint64_t steps() const EXCLUDES(mu_);

 private:
  void Run() EXCLUDES(mu_);
  // Runs the queued commands; true if there were any.
  bool RunCommands() EXCLUDES(mu_);

  RotationEngine* const engine_;
  const std::chrono::milliseconds poll_;
  const std::function<void(LogLevel, const std::string&)> log_;
  mutable util::Mutex mu_;
  util::CondVar cv_;
  bool wake_ GUARDED_BY(mu_) = false;
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t steps_ GUARDED_BY(mu_) = 0;
  std::deque<std::shared_ptr<RotationCommand>> commands_ GUARDED_BY(mu_);
  std::thread thread_;  // last: started after every member it uses
};

}  // namespace dkimrotor::keystore
