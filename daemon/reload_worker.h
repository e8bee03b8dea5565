// Runs the daemon's reloads one after the other on a thread of its own, so the main thread
// only dispatches signals. A request during a reload makes one more reload after it (several
// such requests make one: each reload reads the file as it is then). Never detached:
// Shutdown() finishes the reloads already asked for and joins the thread.
// Owns its thread; the reload function must stay callable until Shutdown() returns.
// Thread-safety: Request() from any thread; Shutdown() and destruction from one thread at a
// time.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>

#include "util/mutex.h"
#include "util/thread_annotations.h"

namespace dkimrotor::daemon {

class ReloadWorker {
 public:
  explicit ReloadWorker(std::function<void()> reload);
  ~ReloadWorker();  // Shutdown()
  ReloadWorker(const ReloadWorker&) = delete;
  ReloadWorker& operator=(const ReloadWorker&) = delete;

  // Asks for a reload. False once Shutdown() has begun: the request is dropped.
  bool Request() EXCLUDES(mu_);
  // Runs the reload in progress and a requested one to their end, then joins. Idempotent.
  void Shutdown() EXCLUDES(mu_);
  // Reloads finished so far (for tests and logs).
  uint64_t reloads() const EXCLUDES(mu_);

 private:
  void Run() EXCLUDES(mu_);

  const std::function<void()> reload_;
  mutable util::Mutex mu_;
  util::CondVar cv_;
  bool pending_ GUARDED_BY(mu_) = false;
  bool shutdown_ GUARDED_BY(mu_) = false;
  uint64_t reloads_ GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: started after every member it uses
};

}  // namespace dkimrotor::daemon
