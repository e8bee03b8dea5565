#include "keystore/rotation/rotation_thread.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

namespace dkimrotor::keystore {

RotationThread::RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                               std::function<void(LogLevel, const std::string&)> log)
    : engine_(engine), poll_(poll), log_(std::move(log)),
      thread_([this] { Run(); }) {}

RotationThread::~RotationThread() {
  {
    util::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
}

void RotationThread::WakeUp() {
  {
    util::MutexLock lock(&mu_);
    wake_ = true;
  }
  cv_.SignalAll();
}

uint64_t RotationThread::steps() const {
  util::MutexLock lock(&mu_);
  return steps_;
}

void RotationThread::Run() {
  // Key generation (an RSA-4096 key costs about a second of CPU), hooks and DNS checks take
  // only CPU that signing leaves idle: a busy milter's latency must not move. Linux applies
  // the policy to this thread alone; hooks it starts inherit it.
  sched_param param{};
  if (::sched_setscheduler(0, SCHED_IDLE, &param) != 0 && log_)
    log_(LogLevel::kWarning, std::string("rotation thread keeps normal priority: ") + std::strerror(errno));
  while (true) {
    {
      util::MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (auto st = engine_->Step(); !st && log_)
      log_(LogLevel::kError, "rotation step failed, keys unchanged, signing goes on: " + st.error().message);
    util::MutexLock lock(&mu_);
    ++steps_;
    const auto deadline = std::chrono::steady_clock::now() + poll_;
    while (!wake_ && !stop_) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= std::chrono::milliseconds::zero()) break;
      cv_.WaitFor(&mu_, left);
    }
    wake_ = false;
  }
}

}  // namespace dkimrotor::keystore
