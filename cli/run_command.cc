// `dkimrotor run -c FILE`: the daemon. The main thread only waits for signals (SIGHUP reload,
// SIGTERM/SIGINT stop); libmilter serves on its own threads; the rotation engine runs on one
// more. libmilter's own signal thread treats SIGHUP as "stop": the kernel hands a process
// signal to the main thread whenever the main thread is waiting for it, so the main thread
// waits at all times and leaves reloads to a worker.
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation_engine.h"
#include "keystore/rotation_thread.h"
#include "keystore/state_store.h"
#include "milter/milter.h"
#include "session/signing_service.h"

namespace dkimrotor::cli {
namespace {

constexpr const char* kRunUsage =
    "usage: dkimrotor run -c FILE\n"
    "Runs the signing milter and the key rotation engine in the foreground.\n"
    "SIGHUP reloads the configuration (a broken one is refused and the old one kept);\n"
    "SIGTERM lets the messages in flight finish (new ones get a 4xx), then exits 0.\n";

// systemd's notify protocol (Type=notify): does nothing unless systemd set $NOTIFY_SOCKET.
void Notify(const char* state) { sd_notify(0, state); }

spdlog::level::level_enum Level(conf::LogLevel l) {
  switch (l) {
    case conf::LogLevel::kTrace: return spdlog::level::trace;
    case conf::LogLevel::kDebug: return spdlog::level::debug;
    case conf::LogLevel::kInfo: return spdlog::level::info;
    case conf::LogLevel::kWarn: return spdlog::level::warn;
    case conf::LogLevel::kError: return spdlog::level::err;
    case conf::LogLevel::kCritical: return spdlog::level::critical;
    case conf::LogLevel::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> MakeLogger(const conf::Config& config) {
  std::shared_ptr<spdlog::logger> log;
  if (config.log.target == conf::LogTarget::kSyslog) {
    log = std::make_shared<spdlog::logger>(
        "dkimrotor", std::make_shared<spdlog::sinks::syslog_sink_mt>("dkimrotor", LOG_PID, LOG_MAIL, false));
  } else {
    log = std::make_shared<spdlog::logger>("dkimrotor", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  log->set_level(Level(config.log.level));
  log->flush_on(spdlog::level::info);
  return log;
}

// The audit log of signed messages is written off the hot path, by spdlog's async thread.
util::Result<std::shared_ptr<spdlog::logger>> MakeAudit(const conf::Config& config,
                                                        std::shared_ptr<spdlog::logger> log) {
  if (config.log.audit.empty()) return log;
  try {
    spdlog::init_thread_pool(8192, 1);
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(config.log.audit);
    auto audit = std::make_shared<spdlog::async_logger>("audit", sink, spdlog::thread_pool(),
                                                        spdlog::async_overflow_policy::block);
    audit->set_pattern("%Y-%m-%dT%H:%M:%S%z %v");
    audit->flush_on(spdlog::level::info);
    return std::shared_ptr<spdlog::logger>(std::move(audit));
  } catch (const spdlog::spdlog_ex& e) {
    return util::Err(util::ErrorCode::kIo, "audit log " + config.log.audit + ": " + e.what());
  }
}


// A unix socket gets milter.group, so the MTA (e.g. the postfix group) can connect to it.
util::Status ChownSocket(const conf::Config& config) {
  const std::string& socket = config.milter.socket;
  if (config.milter.group.empty()) return util::Ok();
  std::string path;
  for (const char* prefix : {"unix:", "local:"})
    if (socket.rfind(prefix, 0) == 0) path = socket.substr(std::strlen(prefix));
  if (path.empty()) return util::Ok();
  const group* gr = ::getgrnam(config.milter.group.c_str());
  if (!gr) return util::Err(util::ErrorCode::kInvalidArgument, "milter.group " + config.milter.group + " does not exist");
  if (::chown(path.c_str(), static_cast<uid_t>(-1), gr->gr_gid) != 0)
    return util::Err(util::ErrorCode::kIo, "cannot give " + path + " to group " + config.milter.group + ": " +
                                               std::strerror(errno));
  return util::Ok();
}

util::Status DropPrivileges(const conf::Config& config) {
  if (config.milter.user.empty()) return util::Ok();
  if (::geteuid() != 0) return util::Ok();  // not root: nothing to drop
  const passwd* pw = ::getpwnam(config.milter.user.c_str());
  if (!pw) return util::Err(util::ErrorCode::kInvalidArgument, "milter.user " + config.milter.user + " does not exist");
  gid_t gid = pw->pw_gid;
  if (!config.milter.group.empty()) {
    const group* gr = ::getgrnam(config.milter.group.c_str());
    if (!gr) return util::Err(util::ErrorCode::kInvalidArgument, "milter.group " + config.milter.group + " does not exist");
    gid = gr->gr_gid;
  }
  if (::initgroups(pw->pw_name, gid) != 0 || ::setgid(gid) != 0 || ::setuid(pw->pw_uid) != 0)
    return util::Err(util::ErrorCode::kIo, std::string("cannot drop privileges: ") + std::strerror(errno));
  return util::Ok();
}


class Daemon {
 public:
  Daemon(std::string config_path, conf::Config config, std::shared_ptr<spdlog::logger> log)
      : config_path_(std::move(config_path)), config_(std::move(config)), log_(std::move(log)) {}

  int Main() {
    auto audit = MakeAudit(config_, log_);
    if (!audit) return Fail(audit.error().message);
    auto settings = SessionSettingsFrom(config_);
    if (!settings) return Fail(settings.error().message);
    service_ = std::make_unique<session::SigningService>(&snapshots_, *settings, log_, *audit);
    milter::MilterOptions options;
    options.socket = config_.milter.socket;
    options.socket_mode = config_.milter.socket_mode;
    options.service = service_.get();
    options.log = log_;
    auto m = milter::Milter::Create(options);
    if (!m) return Fail(m.error().message);
    milter_ = std::move(*m);
    if (auto st = milter_->Listen(); !st) return Fail(st.error().message);
    if (auto st = ChownSocket(config_); !st) return Fail(st.error().message);
    if (auto st = DropPrivileges(config_); !st) return Fail(st.error().message);

    auto lock = keystore::KeystoreLock::Acquire(config_.keystore.directory);
    if (!lock) return Fail(lock.error().message);
    lock_ = std::move(*lock);
    auto keys = keystore::LoadState(config_.keystore.directory);
    if (!keys) return Fail(keys.error().message);
    if (auto st = StartEngine(config_, std::move(*keys)); !st) return Fail(st.error().message);

    const pthread_t main_thread = ::pthread_self();
    std::thread server([this, main_thread] {
      if (auto st = milter_->Run(); !st) log_->error("{}", st.error().message);
      // If libmilter stopped by itself, wake the main thread: a signal to that thread only.
      // A process-wide SIGTERM could reach libmilter's signal thread, which would abort the
      // connections still finishing their messages.
      if (!milter_->stop_requested()) ::pthread_kill(main_thread, SIGTERM);
    });
    log_->info("dkimrotor listening on {} for {} domain(s)", config_.milter.socket, config_.domains.size());
    Notify("READY=1");

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        std::thread([this] { Reload(); }).detach();
        continue;
      }
      break;
    }
    Notify("STOPPING=1");
    // libmilter's smfi_stop() ends every connection at its next command (its worker pool
    // stops), so the messages in flight are finished first, while new ones get a 4xx.
    service_->RefuseNewMessages();
    log_->info("stopping: new messages get a 4xx; waiting up to {} s for {} message(s) in flight",
               config_.milter.stop_timeout.count(), service_->messages_in_flight());
    if (int left = service_->WaitForMessagesInFlight(config_.milter.stop_timeout); left > 0)
      log_->warn("stopping with {} message(s) still in flight after milter.stop_timeout; the MTA "
                 "applies its milter_default_action to them", left);
    milter_->Stop();  // libmilter notices within its 5 s listener poll
    server.join();
    std::lock_guard lock_reload(reload_mu_);
    thread_.reset();
    log_->info("stopped after signing {} message(s)", service_->counters().signed_messages.load());
    spdlog::shutdown();
    return kExitOk;
  }

 private:
  int Fail(const std::string& message) {
    log_->critical("{}", message);
    return kExitFailure;
  }

  util::Status StartEngine(const conf::Config& config, std::vector<keystore::KeyInfo> keys) {
    ASSIGN_OR_RETURN(auto rotation, RotationOptionsFrom(config));
    auto world_options = WorldOptionsFrom(config);
    auto log = log_;
    world_options.log = [log](keystore::LogLevel level, const std::string& m) {
      switch (level) {
        case keystore::LogLevel::kDebug: log->debug("{}", m); break;
        case keystore::LogLevel::kInfo: log->info("{}", m); break;
        case keystore::LogLevel::kWarning: log->warn("{}", m); break;
        case keystore::LogLevel::kError: log->error("{}", m); break;
      }
    };
    world_options.audit = [log](const keystore::KeyInfo& k, keystore::KeyState from, keystore::KeyState to) {
      log->info("key {}._domainkey.{}: {} -> {}", k.selector, k.domain, keystore::KeyStateName(from),
                keystore::KeyStateName(to));
    };
    thread_.reset();  // the old engine's thread stops before its engine goes
    world_ = std::make_unique<keystore::KeystoreWorld>(world_options);
    engine_ = std::make_unique<keystore::RotationEngine>(rotation, std::move(keys), world_.get(), &snapshots_);
    RETURN_IF_ERROR(engine_->Start());
    thread_ = std::make_unique<keystore::RotationThread>(
        engine_.get(), std::chrono::duration_cast<std::chrono::milliseconds>(config.dns.poll), world_options.log);
    return util::Ok();
  }

  // Builds everything from the new file first; only a complete, valid configuration replaces
  // the old one. Messages in flight keep the settings and keys they began with.
  void Reload() {
    std::lock_guard lock(reload_mu_);
    Notify("RELOADING=1");
    auto config = conf::LoadConfig(config_path_);
    if (!config) {
      log_->error("reload refused, still serving with the previous configuration: {}", config.error().message);
      Notify("READY=1");
      return;
    }
    auto settings = SessionSettingsFrom(*config);
    auto rotation = RotationOptionsFrom(*config);
    if (!settings || !rotation) {
      log_->error("reload refused: {}", (!settings ? settings.error() : rotation.error()).message);
      Notify("READY=1");
      return;
    }
    if (config->milter.socket != config_.milter.socket || config->keystore.directory != config_.keystore.directory)
      log_->warn("reload: milter.socket and keystore.directory only change on restart");
    config->milter.socket = config_.milter.socket;
    config->keystore.directory = config_.keystore.directory;
    if (auto st = StartEngine(*config, engine_->Keys()); !st) {
      log_->error("reload: restarting the rotation engine failed, keeping the old keys: {}", st.error().message);
    }
    service_->SwapSettings(*settings);
    config_ = std::move(*config);
    log_->info("configuration reloaded: {} domain(s)", config_.domains.size());
    Notify("READY=1");
  }

  std::string config_path_;
  conf::Config config_;
  std::shared_ptr<spdlog::logger> log_;
  keystore::SnapshotHolder snapshots_;
  std::unique_ptr<session::SigningService> service_;
  std::unique_ptr<milter::Milter> milter_;
  std::unique_ptr<keystore::KeystoreLock> lock_;
  std::unique_ptr<keystore::KeystoreWorld> world_;
  std::unique_ptr<keystore::RotationEngine> engine_;
  std::unique_ptr<keystore::RotationThread> thread_;
  std::mutex reload_mu_;
};

}  // namespace

int RunDaemon(std::span<char*> argv) {
  Args args(argv, {"--config"}, {"--help"});
  if (!args.ok()) {
    std::fprintf(stderr, "dkimrotor run: %s\n\n%s", args.error().c_str(), kRunUsage);
    return kExitUsage;
  }
  if (args.Has("--help")) {
    std::fputs(kRunUsage, stdout);
    return kExitOk;
  }
  auto path = args.Get("--config");
  if (!path) {
    std::fprintf(stderr, "dkimrotor run: -c FILE is required\n\n%s", kRunUsage);
    return kExitUsage;
  }
  // Before any thread exists, so every thread inherits the mask (see the file comment).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto config = conf::LoadConfig(*path);
  if (!config) {
    std::fprintf(stderr, "dkimrotor run: %s\n", config.error().message.c_str());
    return kExitFailure;
  }
  auto log = MakeLogger(*config);
  Daemon daemon(*path, std::move(*config), log);
  return daemon.Main();
}

}  // namespace dkimrotor::cli
