// The order in Reconfigure() is the point: stop and join the old thread, then take its keys.
#include "daemon/rotation_runner.h"

#include <utility>

namespace dkimrotor::daemon {

RotationRunner::LogFunction RotationRunner::Logging() const {
  auto log = log_;
  return [log](keystore::LogLevel level, const std::string& m) {
    switch (level) {
      case keystore::LogLevel::kDebug: log->debug("{}", m); break;
      case keystore::LogLevel::kInfo: log->info("{}", m); break;
      case keystore::LogLevel::kWarning: log->warn("{}", m); break;
      case keystore::LogLevel::kError: log->error("{}", m); break;
    }
  };
}

keystore::KeystoreWorldOptions RotationRunner::WithLogging(keystore::KeystoreWorldOptions world) const {
  auto log = log_;
  world.log = Logging();
  world.audit = [log](const keystore::KeyInfo& k, keystore::KeyState from, keystore::KeyState to) {
    log->info("key {}._domainkey.{}: {} -> {}", k.selector, k.domain, keystore::KeyStateName(from),
              keystore::KeyStateName(to));
  };
  return world;
}

std::unique_ptr<keystore::RotationThread> RotationRunner::MakeThread(keystore::RotationEngine* engine,
                                                                     std::chrono::milliseconds poll) const {
  return std::make_unique<keystore::RotationThread>(engine, poll, Logging());
}

util::Result<std::unique_ptr<RotationRunner>> RotationRunner::Start(RotationRunnerOptions options,
                                                                     std::vector<keystore::KeyInfo> keys,
                                                                     keystore::SnapshotHolder* snapshots,
                                                                     std::shared_ptr<spdlog::logger> log) {
  std::unique_ptr<RotationRunner> runner(new RotationRunner(snapshots, std::move(log)));
  util::MutexLock lock(&runner->mu_);
  runner->world_ = std::make_unique<keystore::KeystoreWorld>(runner->WithLogging(std::move(options.world)));
  runner->engine_ = std::make_unique<keystore::RotationEngine>(std::move(options.rotation), std::move(keys),
                                                               runner->world_.get(), snapshots);
  // The daemon holds the keystore's lock from before LoadState: nobody else writes keys/ now.
  runner->engine_->SweepKeyFiles();
  RETURN_IF_ERROR(runner->engine_->Start());
  runner->poll_ = options.poll;
  runner->thread_ = runner->MakeThread(runner->engine_.get(), options.poll);
  return runner;
}

RotationRunner::~RotationRunner() { Stop(); }

util::Status RotationRunner::Reconfigure(RotationRunnerOptions options) {
  util::MutexLock lock(&mu_);
  if (!engine_ || !thread_)
    return util::Err(util::ErrorCode::kInternal, "the rotation engine has stopped");
  // The step in flight commits first; from here on the old engine's keys are final.
  thread_.reset();
  auto world = std::make_unique<keystore::KeystoreWorld>(WithLogging(std::move(options.world)));
  auto engine = std::make_unique<keystore::RotationEngine>(std::move(options.rotation), engine_->Keys(),
                                                           world.get(), snapshots_);
  if (auto st = engine->Start(); !st) {
    thread_ = MakeThread(engine_.get(), poll_);  // the old engine goes on
    return st;
  }
  thread_ = MakeThread(engine.get(), options.poll);
  engine_ = std::move(engine);  // the old engine and then its world go, unused since reset()
  world_ = std::move(world);
  poll_ = options.poll;
  return util::Ok();
}

void RotationRunner::Stop() {
  util::MutexLock lock(&mu_);
  thread_.reset();
}

util::Status RotationRunner::Execute(std::function<util::Status(keystore::RotationEngine&)> work,
                                     std::chrono::milliseconds timeout) {
  auto command = std::make_shared<keystore::RotationCommand>(std::move(work));
  {
    util::MutexLock lock(&mu_);
    if (!thread_) return util::Err(util::ErrorCode::kInternal, "the rotation engine has stopped (the daemon is stopping)");
    thread_->Post(command);
  }
  return command->Wait(timeout);
}

std::vector<keystore::KeyInfo> RotationRunner::Keys() const {
  util::MutexLock lock(&mu_);
  return engine_ ? engine_->Keys() : std::vector<keystore::KeyInfo>{};
}

}  // namespace dkimrotor::daemon
