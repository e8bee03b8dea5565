// The daemon's threads: main (signals only), libmilter's (MilterFrontend, serving the
// SigningService's sessions), the rotation
// thread (RotationRunner), the reload thread (ReloadWorker) and, once stopping, the stopper.
#include "daemon/daemon.h"

#include <signal.h>
#include <systemd/sd-daemon.h>

#include <chrono>
#include <thread>

#include "daemon/metrics_page.h"
#include "daemon/privileges.h"
#include "daemon/signals.h"
#include "keystore/storage/state_store.h"

namespace dkimrotor::daemon {
namespace {

// systemd's notify protocol (Type=notify): does nothing unless systemd set $NOTIFY_SOCKET.
void Notify(const char* state) { sd_notify(0, state); }

// How long a start waits for the keystore's lock. A predecessor that was just stopped or
// killed (systemd restarting the service, a `rotate` killed with it) can hold it a moment
// after it is gone, until the last descriptor of the lock file is closed; seen under a
// sandboxed kernel in the kill campaign. A second daemon still fails, 5 s later.
constexpr std::chrono::milliseconds kLockPatience{5000};

// Calls `attempt` (a keystore lock check or acquisition) until it succeeds or kLockPatience
// has passed; returns its last result.
template <class Attempt>
auto Patiently(Attempt attempt) {
  const auto deadline = std::chrono::steady_clock::now() + kLockPatience;
  for (;;) {
    auto result = attempt();
    if (result || std::chrono::steady_clock::now() >= deadline) return result;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

RotationRunnerOptions Daemon::RotationOf(const DaemonSettings& s) {
  RotationRunnerOptions o{s.rotation, s.world, s.poll};
  o.world.counters = &world_counters_;
  return o;
}

Daemon::Daemon(DaemonSettings settings, SettingsLoader reload, std::shared_ptr<spdlog::logger> log,
               std::shared_ptr<spdlog::logger> audit)
    : reload_(std::move(reload)), log_(std::move(log)), audit_(std::move(audit)), settings_(std::move(settings)) {}

Daemon::~Daemon() {
  if (stopper_.joinable()) {  // Run() failed after starting it: it stops what was started
    RequestStop();
    stopper_.join();
  }
  metrics_.reset();
  control_.reset();
  reloads_.reset();
  if (frontend_) frontend_->Stop();
  rotation_.reset();
}

void Daemon::RequestStop() {
  util::MutexLock lock(&stop_mu_);
  stop_requested_ = true;
  stop_cv_.SignalAll();
}

DaemonSettings Daemon::Settings() const {
  util::MutexLock lock(&mu_);
  return settings_;
}

util::Status Daemon::Run() {
  const DaemonSettings settings = Settings();
  service_ = std::make_unique<session::SigningService>(&snapshots_, settings.session, log_, audit_);
  // Whatever can refuse the start comes before the socket is touched: a second instance must
  // fail without having removed the live socket of the first (issue 13).
  const std::string& directory = settings.world.directory;
  ASSIGN_OR_RETURN(const uid_t uid, RunAsUid(settings.user));
  const keystore::KeystorePermissions permissions = keystore::CheckKeystorePermissions(directory, uid);
  for (const auto& w : permissions.warnings) log_->warn("{}", w);
  if (!permissions.errors.empty()) return util::Err(util::ErrorCode::kInvalidArgument, permissions.errors.front());
  // As root with milter.user set, the lock file must be made by that user, after the drop.
  const bool lock_now = !WillDropPrivileges(settings.user);
  std::vector<keystore::KeyInfo> keys;
  if (lock_now) {
    ASSIGN_OR_RETURN(lock_, Patiently([&] { return keystore::KeystoreLock::Acquire(directory); }));
    ASSIGN_OR_RETURN(keys, keystore::LoadState(directory));
  } else {
    RETURN_IF_ERROR(Patiently([&] { return keystore::KeystoreLock::CheckFree(directory); }));
  }
  ASSIGN_OR_RETURN(frontend_, MilterFrontend::Create({settings.socket, settings.socket_mode, service_.get(), log_}));
  RETURN_IF_ERROR(frontend_->Listen());
  RETURN_IF_ERROR(GiveSocketToGroup(settings.socket, settings.group));
  RETURN_IF_ERROR(DropPrivileges(settings.user, settings.group));
  if (!lock_now) {
    ASSIGN_OR_RETURN(lock_, Patiently([&] { return keystore::KeystoreLock::Acquire(directory); }));
    ASSIGN_OR_RETURN(keys, keystore::LoadState(directory));
  }
  ASSIGN_OR_RETURN(rotation_, RotationRunner::Start(RotationOf(settings), std::move(keys), &snapshots_, log_));

  StartControl(settings);
  RETURN_IF_ERROR(StartMetrics(settings));

  // Started now, while every daemon signal is still blocked in this thread, so that it inherits
  // the mask (daemon/signals.h); it waits for the main thread's word.
  stopper_ = std::thread([this] {
    {
      util::MutexLock lock(&stop_mu_);
      while (!stop_requested_) stop_cv_.Wait(&stop_mu_);
    }
    Stop();
  });
  // If libmilter stops by itself, the main thread stops the rest.
  frontend_->Start([this] {
    milter_died_.store(true);
    WakeSignalWaiter();
  });
  reloads_ = std::make_unique<ReloadWorker>([this] { Reload(); });
  // Every thread of the daemon exists (libmilter's are started by the front end's): from here
  // on only this thread receives SIGHUP, SIGTERM and SIGINT.
  UnblockDaemonSignalsInThisThread();
  log_->info("dkimrotor listening on {} for {} domain(s)", settings.socket, settings.domains.size());
  Notify("READY=1");

  while (true) {
    const int sig = WaitForDaemonSignal();
    if (sig == SIGHUP) {
      if (!reloads_->Request()) log_->warn("SIGHUP ignored: stopping");
    } else if (sig == SIGTERM || sig == SIGINT || (sig == kWakeUp && milter_died_.load())) {
      RequestStop();
    }
    if (stopped_.load()) break;
  }
  stopper_.join();
  // An error, so the exit status is not 0 and systemd's Restart=on-failure starts a new
  // daemon: with milter_default_action = accept, mail would otherwise leave unsigned.
  if (milter_died_.load())
    return util::Err(util::ErrorCode::kInternal,
                     "libmilter stopped serving " + settings.socket + " on its own (see the error above); "
                     "exiting with an error so that the service manager restarts dkimrotor");
  return util::Ok();
}

// After privileges are dropped, so the socket belongs to the daemon's user. A control channel
// that cannot be opened leaves the daemon signing: admins fall back to stopping it.
void Daemon::StartControl(const DaemonSettings& settings) {
  ControlContext context;
  context.rotation = rotation_.get();
  context.service = service_.get();
  context.snapshots = &snapshots_;
  context.settings = [this] { return Settings(); };
  context.log = log_;
  context.audit = audit_ ? audit_ : log_;
  context.started = std::chrono::system_clock::now();
  control_service_ = std::make_unique<ControlService>(std::move(context));
  control::ServerOptions options;
  options.path = control::SocketPath(settings.world.directory);
  options.handler = [service = control_service_.get()](const control::Request& r, const control::Peer& p) {
    return service->Handle(r, p);
  };
  options.log = log_;
  auto server = control::ControlServer::Start(std::move(options));
  if (!server) {
    log_->error("no control channel, `dkimrotor rotate` and friends need the daemon stopped: {}",
                server.error().message);
    return;
  }
  control_ = std::move(*server);
  log_->info("control channel on {}", control::SocketPath(settings.world.directory));
}

// After privileges are dropped, like the control channel. Unlike it, a metrics endpoint that
// cannot listen stops the start: monitoring that silently is not there is worse than none.
util::Status Daemon::StartMetrics(const DaemonSettings& settings) {
  if (!settings.metrics_listen) return util::Ok();
  MetricsSources sources;
  sources.service = service_.get();
  sources.snapshots = &snapshots_;
  sources.world = &world_counters_;
  sources.keys = [this] { return rotation_->Keys(); };
  sources.settings = [this] { return Settings(); };
  sources.version = DKIMROTOR_VERSION;
  ASSIGN_OR_RETURN(metrics_, MetricsServer::Start(*settings.metrics_listen,
                                                  [sources = std::move(sources)] { return RenderMetrics(sources); }, log_));
  log_->info("metrics on http://{}/metrics", settings.metrics_listen->ToString());
  return util::Ok();
}

// On the stopper thread, while the main thread goes on waiting for signals.
void Daemon::Stop() {
  Notify("STOPPING=1");
  const std::chrono::seconds stop_timeout = Settings().stop_timeout;
  // libmilter's smfi_stop() ends every connection at its next command (its worker pool
  // stops), so the messages in flight are finished first, while new ones get a 4xx.
  service_->RefuseNewMessages();
  log_->info("stopping: new messages get a 4xx; waiting up to {} s for {} message(s) in flight",
             stop_timeout.count(), service_->messages_in_flight());
  if (int left = service_->WaitForMessagesInFlight(stop_timeout); left > 0)
    log_->warn("stopping with {} message(s) still in flight after milter.stop_timeout; the MTA "
               "applies its milter_default_action to them", left);
  if (reloads_) reloads_->Shutdown();  // a SIGHUP already received still reloads, then no more
  frontend_->Stop();     // libmilter notices within its 5 s listener poll
  rotation_->Stop();     // after its step in flight; commands still queued are answered
  if (control_) control_->Stop();  // after the rotation thread: no command waits on it any more
  if (metrics_) metrics_->Stop();  // a scrape in flight finishes first
  log_->info("stopped after signing {} message(s)", service_->counters().signed_messages.load());
  stopped_.store(true);
  WakeSignalWaiter();
}

// On the reload thread: builds everything from the new file first; only complete, valid
// settings replace the old ones. Messages in flight keep the settings and keys they began with.
void Daemon::Reload() {
  Notify("RELOADING=1");
  auto next = reload_();
  if (!next) {
    log_->error("reload refused, still serving with the previous configuration: {}", next.error().message);
    Notify("READY=1");
    return;
  }
  const DaemonSettings current = Settings();
  if (next->socket != current.socket || next->world.directory != current.world.directory)
    log_->warn("reload: milter.socket and keystore.directory only change on restart");
  if (next->metrics_listen != current.metrics_listen)
    log_->warn("reload: metrics.listen only changes on restart");
  next->metrics_listen = current.metrics_listen;
  next->socket = current.socket;
  next->socket_mode = current.socket_mode;
  next->user = current.user;
  next->group = current.group;
  next->world.directory = current.world.directory;
  if (auto st = rotation_->Reconfigure(RotationOf(*next)); !st)
    log_->error("reload: restarting the rotation engine failed, keeping the old keys: {}", st.error().message);
  service_->SwapSettings(next->session);
  const size_t domains = next->domains.size();
  {
    util::MutexLock lock(&mu_);
    settings_ = std::move(*next);
  }
  log_->info("configuration reloaded: {} domain(s)", domains);
  Notify("READY=1");
}

}  // namespace dkimrotor::daemon
