// Runs the rotation engine on its thread (keystore::RotationThread) and replaces engine and
// world on a reload without losing a step: the old thread is stopped and its step in flight
// (a slow publish hook, a DNS check) finishes and commits first; only then are the engine's
// keys taken to build the new engine. If the new engine does not start, the old one resumes.
// Owns the world, the engine and the thread; borrows the SnapshotHolder, which must outlive it.
// Thread-safety: every method may be called from any thread; they run one at a time, except
// that Execute() waits for its command outside the lock.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "keystore/key_info.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/rotation_engine.h"
#include "keystore/rotation/rotation_thread.h"
#include "keystore/signing_snapshot.h"
#include "util/mutex.h"
#include "util/result.h"
#include "util/thread_annotations.h"

namespace dkimrotor::daemon {

struct RotationRunnerOptions {
  keystore::RotationOptions rotation;
  keystore::KeystoreWorldOptions world;  // log and audit are replaced by the runner's logger
  std::chrono::milliseconds poll{60000};
};

class RotationRunner {
 public:
  // Builds the engine from `keys` (the loaded state), publishes its first snapshot and starts
  // its thread.
  static util::Result<std::unique_ptr<RotationRunner>> Start(RotationRunnerOptions options,
                                                             std::vector<keystore::KeyInfo> keys,
                                                             keystore::SnapshotHolder* snapshots,
                                                             std::shared_ptr<spdlog::logger> log);
  ~RotationRunner();  // Stop()
  RotationRunner(const RotationRunner&) = delete;
  RotationRunner& operator=(const RotationRunner&) = delete;

  // Waits for the step in flight, then runs a new engine with `options` from the old engine's
  // keys. On an error the old engine goes on as it was.
  util::Status Reconfigure(RotationRunnerOptions options) EXCLUDES(mu_);
  // Stops the thread after its step in flight. Idempotent; Reconfigure() after it fails.
  void Stop() EXCLUDES(mu_);
  // Runs `work` on the rotation thread (the engine is single-threaded), before its next step,
  // and returns its outcome; a step follows at once. If the thread has not taken it within
  // `timeout`, it never runs and an error says so. Fails at once after Stop(); a command still
  // queued when a reload or Stop() ends the thread fails without running.
  util::Status Execute(std::function<util::Status(keystore::RotationEngine&)> work,
                       std::chrono::milliseconds timeout) EXCLUDES(mu_);
  // The keys as the engine last committed them.
  std::vector<keystore::KeyInfo> Keys() const EXCLUDES(mu_);

 private:
  RotationRunner(keystore::SnapshotHolder* snapshots, std::shared_ptr<spdlog::logger> log)
      : snapshots_(snapshots), log_(std::move(log)) {}
  using LogFunction = std::function<void(keystore::LogLevel, const std::string&)>;

  LogFunction Logging() const;
  keystore::KeystoreWorldOptions WithLogging(keystore::KeystoreWorldOptions world) const;
  std::unique_ptr<keystore::RotationThread> MakeThread(keystore::RotationEngine* engine,
                                                       std::chrono::milliseconds poll) const;

  keystore::SnapshotHolder* const snapshots_;
  const std::shared_ptr<spdlog::logger> log_;
  mutable util::Mutex mu_;
  std::chrono::milliseconds poll_ GUARDED_BY(mu_){60000};
  std::unique_ptr<keystore::KeystoreWorld> world_ GUARDED_BY(mu_);
  std::unique_ptr<keystore::RotationEngine> engine_ GUARDED_BY(mu_);  // uses world_
  std::unique_ptr<keystore::RotationThread> thread_ GUARDED_BY(mu_);  // uses engine_
};

}  // namespace dkimrotor::daemon
