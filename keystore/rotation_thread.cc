#include "keystore/rotation_thread.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

namespace dkimrotor::keystore {

RotationThread::RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                               std::function<void(LogLevel, const std::string&)> log)
    : engine_(engine), poll_(poll), log_(std::move(log)),
      thread_([this](std::stop_token stop) { Run(stop); }) {}

RotationThread::~RotationThread() {
  thread_.request_stop();
  cv_.notify_all();
}

void RotationThread::WakeUp() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

uint64_t RotationThread::steps() const {
  std::lock_guard lock(mu_);
  return steps_;
}

void RotationThread::Run(std::stop_token stop) {
  // Key generation (an RSA-4096 key costs about a second of CPU), hooks and DNS checks take
  // only CPU that signing leaves idle: a busy milter's latency must not move. Linux applies
  // the policy to this thread alone; hooks it starts inherit it.
  sched_param param{};
  if (::sched_setscheduler(0, SCHED_IDLE, &param) != 0 && log_)
    log_(LogLevel::kWarning, std::string("rotation thread keeps normal priority: ") + std::strerror(errno));
  while (!stop.stop_requested()) {
    if (auto st = engine_->Step(); !st && log_)
      log_(LogLevel::kError, "rotation step failed, keys unchanged, signing goes on: " + st.error().message);
    std::unique_lock lock(mu_);
    ++steps_;
    cv_.wait_for(lock, stop, poll_, [this] { return wake_; });
    wake_ = false;
  }
}

}  // namespace dkimrotor::keystore
