// `dkimrotor run -c FILE`: the daemon. Parses the arguments, blocks the daemon's signals
// before any thread exists, loads the configuration, makes the loggers and hands typed
// settings to daemon::Daemon, which does the rest (daemon/daemon.h: signals, reload, drain).
#include <cstdio>
#include <memory>
#include <string>

#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "conf/practices.h"
#include "daemon/daemon.h"
#include "daemon/signals.h"

namespace dkimrotor::cli {
namespace {

constexpr const char* kRunUsage =
    "usage: dkimrotor run -c FILE\n"
    "Runs the signing milter and the key rotation engine in the foreground.\n"
    "SIGHUP reloads the configuration (a broken one is refused and the old one kept);\n"
    "SIGTERM lets the messages in flight finish (new ones get a 4xx), then exits 0.\n";

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
  // Before any thread exists, so every thread inherits the mask (daemon/signals.h).
  daemon::BlockDaemonSignals();

  auto config = conf::LoadConfig(*path);
  if (!config) {
    std::fprintf(stderr, "dkimrotor run: %s\n", config.error().message.c_str());
    return kExitFailure;
  }
  auto log = MakeLogger(*config);
  auto fail = [&](const std::string& message) {
    log->critical("{}", message);
    return kExitFailure;
  };
  // Once, at start: a reload cannot change the socket.
  for (const std::string& w : conf::MilterSocketWarnings(config->milter)) log->warn("{}", w);
  auto audit = MakeAudit(*config, log);
  if (!audit) return fail(audit.error().message);
  auto settings = DaemonSettingsFrom(*config);
  if (!settings) return fail(settings.error().message);
  // A reload reads the file again; the logger stays the one made at start.
  auto reload = [file = *path]() -> util::Result<daemon::DaemonSettings> {
    ASSIGN_OR_RETURN(auto next, conf::LoadConfig(file));
    return DaemonSettingsFrom(next);
  };
  int status = kExitOk;
  {
    daemon::Daemon d(std::move(*settings), reload, log, *audit);
    if (auto st = d.Run(); !st) status = fail(st.error().message);
  }
  spdlog::shutdown();
  return status;
}

}  // namespace dkimrotor::cli
