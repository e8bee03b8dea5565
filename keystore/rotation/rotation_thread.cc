#include "keystore/rotation/rotation_thread.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

namespace dkimrotor::keystore {

RotationThread::RotationThread(RotationEngine* engine, std::chrono::milliseconds poll,
                               std::function<void(LogLevel, const std::string&)> log)
    : engine_(engine), poll_(poll), log_(std::move(log)),
      thread_([this] { Run(); }) {}

util::Status RotationCommand::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  util::MutexLock lock(&mu_);
  while (state_ != State::kDone) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (state_ == State::kQueued && left <= std::chrono::milliseconds::zero()) {
      state_ = State::kDone;  // the thread skips it
      result_ = util::Err(util::ErrorCode::kInternal,
                          "the rotation thread did not take the command within " +
                              std::to_string(timeout.count()) + " ms (a slow step in flight?); nothing was done");
      break;
    }
    if (state_ == State::kQueued) {
      cv_.WaitFor(&mu_, left);
    } else {
      cv_.Wait(&mu_);
    }
  }
  return result_;
}

void RotationCommand::Run(RotationEngine& engine) {
  {
    util::MutexLock lock(&mu_);
    if (state_ != State::kQueued) return;  // its waiter gave up
    state_ = State::kRunning;
  }
  util::Status result = work_(engine);
  util::MutexLock lock(&mu_);
  result_ = std::move(result);
  state_ = State::kDone;
  cv_.SignalAll();
}

void RotationCommand::Cancel(const std::string& why) {
  util::MutexLock lock(&mu_);
  if (state_ != State::kQueued) return;
  result_ = util::Err(util::ErrorCode::kInternal, why);
  state_ = State::kDone;
  cv_.SignalAll();
}

RotationThread::~RotationThread() {
  {
    util::MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.SignalAll();
  thread_.join();
  util::MutexLock lock(&mu_);
  for (auto& c : commands_) c->Cancel("the rotation thread stopped (the daemon is stopping or reloading) before the command ran; nothing was done");
  commands_.clear();
}

void RotationThread::Post(std::shared_ptr<RotationCommand> command) {
  {
    util::MutexLock lock(&mu_);
    if (stop_) {
      command->Cancel("the rotation thread is stopping; nothing was done");
      return;
    }
    commands_.push_back(std::move(command));
    wake_ = true;
  }
  cv_.SignalAll();
}

bool RotationThread::RunCommands() {
  bool ran = false;
  while (true) {
    std::shared_ptr<RotationCommand> command;
    {
      util::MutexLock lock(&mu_);
      if (commands_.empty() || stop_) return ran;
      command = std::move(commands_.front());
      commands_.pop_front();
    }
    command->Run(*engine_);
    ran = true;
  }
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
    RunCommands();
    {
      util::MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (auto st = engine_->Step(); !st && log_)
      log_(LogLevel::kError, "rotation step failed, keys unchanged, signing goes on: " + st.error().message);
    util::MutexLock lock(&mu_);
    ++steps_;
    const auto deadline = std::chrono::steady_clock::now() + poll_;
    while (!wake_ && !stop_ && commands_.empty()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left <= std::chrono::milliseconds::zero()) break;
      cv_.WaitFor(&mu_, left);
    }
    wake_ = false;
  }
}

}  // namespace dkimrotor::keystore
