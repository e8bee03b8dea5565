// The dkimrotor daemon: binds the milter socket, drops privileges, locks the keystore and runs
// the rotation engine, then serves until SIGTERM/SIGINT. The calling (main) thread only waits
// for signals and hands the work on: SIGHUP to the reload thread (reloads run one after the
// other; a broken configuration is refused and the old one keeps serving), SIGTERM to a
// stopper thread that lets the messages in flight finish, runs the reloads already asked for,
// stops everything, and wakes the main thread (see daemon/signals.h for why only the main
// thread may receive these signals). Once privileges are dropped it opens its control channel (control.sock in the
// keystore, served by control::ControlServer's threads through ControlService), so an admin
// steers the live daemon instead of stopping it, and, when configured, its metrics endpoint
// (MetricsServer, libmicrohttpd's threads). Every thread it starts is joined before
// Run() returns.
// Owns everything it starts; shares the loggers made by its caller.
// Thread-safety: Run() once, on the main thread, after BlockDaemonSignals().
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include <spdlog/logger.h>

#include "control/server.h"
#include "daemon/control_service.h"
#include "daemon/daemon_settings.h"
#include "daemon/metrics_server.h"
#include "daemon/milter_frontend.h"
#include "daemon/reload_worker.h"
#include "daemon/rotation_runner.h"
#include "keystore/keystore_world.h"
#include "keystore/signing_snapshot.h"
#include "session/signing_service.h"
#include "util/mutex.h"
#include "util/result.h"
#include "util/thread_annotations.h"

namespace dkimrotor::daemon {

class Daemon {
 public:
  // `reload` is called on the reload thread for each SIGHUP. `audit` gets one line per signed
  // message and may be `log` itself.
  Daemon(DaemonSettings settings, SettingsLoader reload, std::shared_ptr<spdlog::logger> log,
         std::shared_ptr<spdlog::logger> audit);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Serves until stopped. An error means the daemon could not start (nothing is left
  // running, and a live socket of another instance was not touched) or that libmilter
  // stopped on its own; a stop asked for by a signal is Ok.
  util::Status Run();

 private:
  void StartControl(const DaemonSettings& settings) EXCLUDES(mu_);
  util::Status StartMetrics(const DaemonSettings& settings) EXCLUDES(mu_);
  RotationRunnerOptions RotationOf(const DaemonSettings& settings);
  void Reload() EXCLUDES(mu_);
  void Stop() EXCLUDES(mu_);
  void RequestStop() EXCLUDES(stop_mu_);
  DaemonSettings Settings() const EXCLUDES(mu_);

  const SettingsLoader reload_;
  const std::shared_ptr<spdlog::logger> log_;
  const std::shared_ptr<spdlog::logger> audit_;
  mutable util::Mutex mu_;
  DaemonSettings settings_ GUARDED_BY(mu_);  // the current ones; replaced whole by a reload
  keystore::SnapshotHolder snapshots_;
  // Set up by Run() before the threads that use them start; destroyed after they are joined.
  std::unique_ptr<session::SigningService> service_;  // outlives the front end's sessions
  std::unique_ptr<MilterFrontend> frontend_;
  std::unique_ptr<keystore::KeystoreLock> lock_;
  std::unique_ptr<RotationRunner> rotation_;
  std::unique_ptr<ReloadWorker> reloads_;
  std::unique_ptr<ControlService> control_service_;     // outlives the server that calls it
  std::unique_ptr<control::ControlServer> control_;  // null if its socket could not be opened
  keystore::WorldCounters world_counters_;  // hook runs and DNS checks, across reloads
  std::unique_ptr<MetricsServer> metrics_;  // null when metrics.listen is not set
  util::Mutex stop_mu_;
  util::CondVar stop_cv_;
  bool stop_requested_ GUARDED_BY(stop_mu_) = false;
  std::thread stopper_;  // started by Run(), waits for stop_requested_, then Stop()
  std::atomic<bool> stopped_{false};  // the stopper has finished
  std::atomic<bool> milter_died_{false};  // libmilter stopped without being asked to
};

}  // namespace dkimrotor::daemon
