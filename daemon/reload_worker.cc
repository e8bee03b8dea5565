// One thread, woken by a pending flag under mu_: requests coalesce while a reload runs.
#include "daemon/reload_worker.h"

namespace dkimrotor::daemon {

ReloadWorker::ReloadWorker(std::function<void()> reload)
    : reload_(std::move(reload)), thread_([this] { Run(); }) {}

ReloadWorker::~ReloadWorker() { Shutdown(); }

bool ReloadWorker::Request() {
  {
    util::MutexLock lock(&mu_);
    if (shutdown_) return false;
    pending_ = true;
  }
  cv_.SignalAll();
  return true;
}

void ReloadWorker::Shutdown() {
  {
    util::MutexLock lock(&mu_);
    shutdown_ = true;
  }
  cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

uint64_t ReloadWorker::reloads() const {
  util::MutexLock lock(&mu_);
  return reloads_;
}

void ReloadWorker::Run() {
  while (true) {
    {
      util::MutexLock lock(&mu_);
      while (!pending_ && !shutdown_) cv_.Wait(&mu_);
      if (!pending_) return;  // shut down with nothing left to do
      pending_ = false;
    }
    reload_();
    util::MutexLock lock(&mu_);
    ++reloads_;
  }
}

}  // namespace dkimrotor::daemon
