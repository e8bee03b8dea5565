// `dkimrotor keys | dns | check | rotate | status`: the keystore seen and steered from the
// command line. When a daemon answers on the keystore's control.sock, keys, keys import,
// rotate and status go through it (it is the keystore's only writer while it runs, and keys
// shows what it holds); otherwise keys reads the state file, and rotate and keys import take
// the keystore's lock and work on it directly. dns, check and keys --history only read the
// state (the daemon writes it crash-safely, so a reader never sees half of it).
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "conf/practices.h"
#include "control/client.h"
#include "control/key_report.h"
#include "control/protocol.h"
#include "keystore/dns/dns_checker.h"
#include "keystore/dns/key_record.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/admin_commands.h"
#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "signer/algorithm.h"
#include "signer/private_key.h"
#include "signer/signing_key.h"
#include "util/file.h"

namespace dkimrotor::cli {
namespace {

using keystore::KeyInfo;
using keystore::KeyState;

int Fail(const char* command, const std::string& message) {
  std::fprintf(stderr, "dkimrotor %s: %s\n", command, message.c_str());
  return kExitFailure;
}

int Usage(const char* command, const std::string& message, const char* usage) {
  std::fprintf(stderr, "dkimrotor %s: %s\n\n%s", command, message.c_str(), usage);
  return kExitUsage;
}

struct Loaded {
  conf::Config config;
  keystore::RotationOptions rotation;
  std::vector<KeyInfo> keys;
};

util::Result<Loaded> Load(const Args& args) {
  auto path = args.Get("--config");
  if (!path) return util::Err(util::ErrorCode::kInvalidArgument, "-c FILE is required");
  Loaded l;
  ASSIGN_OR_RETURN(l.config, conf::LoadConfig(*path));
  ASSIGN_OR_RETURN(l.rotation, RotationOptionsFrom(l.config));
  ASSIGN_OR_RETURN(l.keys, keystore::LoadState(l.config.keystore.directory));
  return l;
}

bool HasHook(const conf::Config& c, const std::string& domain) {
  for (const auto& d : c.domains)
    if (d.domain == domain) return !d.publish_hook.empty();
  return false;
}

// Long enough for a command that waits for a rotation step in flight (a slow hook).
constexpr std::chrono::seconds kDaemonTimeout{90};

// The running daemon's answer, or nullopt when no daemon answers on the keystore's control
// socket (the caller then works on the keystore itself). An error: a daemon is there but the
// exchange failed.
util::Result<std::optional<control::Answer>> AskDaemon(const conf::Config& config, const control::Request& request) {
  auto answer = control::Call(control::SocketPath(config.keystore.directory), request, kDaemonTimeout);
  if (answer) return std::optional<control::Answer>(std::move(*answer));
  if (answer.error().code == util::ErrorCode::kNotFound) return std::optional<control::Answer>();
  return util::Err(answer.error().code, answer.error().message);
}

control::Request RequestOf(control::Command command) {
  control::Request r;
  r.command = command;
  return r;
}

util::Result<conf::Config> LoadConfigOnly(const Args& args) {
  auto path = args.Get("--config");
  if (!path) return util::Err(util::ErrorCode::kInvalidArgument, "-c FILE is required");
  return conf::LoadConfig(*path);
}

std::string Text(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : std::string(); }

void PrintKeysTable(const nlohmann::json& report) {
  std::printf("%-16s %-34s %-20s %-9s %-21s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "SINCE", "NEXT");
  for (const auto& d : report["domains"]) {
    if (d["keys"].empty()) std::printf("%-16s (no keys yet)\n", Text(d["domain"]).c_str());
    for (const auto& k : d["keys"]) {
      std::string next = "-";
      if (k.contains("next_step")) {
        next = Text(k["next_step"]) + (k["next_step_at"].is_string() ? " at " + Text(k["next_step_at"]) : "") +
               (k["rotation_late"].is_boolean() && k["rotation_late"].get<bool>() ? " [LATE]" : "");
      } else if (Text(k["state"]) != "revoked") {
        next = "not in the configuration any more";
      }
      const std::string alg = Text(k["algorithm"]) + "/" + std::to_string(k["bits"].get<int>());
      std::printf("%-16s %-34s %-20s %-9s %-21s %s\n", Text(d["domain"]).c_str(), Text(k["selector"]).c_str(),
                  alg.c_str(), Text(k["state"]).c_str(), Text(k["since"]).c_str(), next.c_str());
    }
  }
}

void PrintHistoryTable(const nlohmann::json& history) {
  auto time_or_dash = [](const nlohmann::json& t) { return t.is_string() ? t.get<std::string>() : std::string("-"); };
  std::printf("%-16s %-34s %-20s %-9s %-20s %-20s %-20s %-20s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM", "STATE",
              "CREATED", "ACTIVATED", "RETIRED", "REVOKED", "EMERGENCY");
  for (const auto& d : history["domains"]) {
    if (d["keys"].empty()) std::printf("%-16s (no keys yet)\n", Text(d["domain"]).c_str());
    for (const auto& k : d["keys"]) {
      const std::string alg = Text(k["algorithm"]) + "/" + std::to_string(k["bits"].get<int>());
      std::printf("%-16s %-34s %-20s %-9s %-20s %-20s %-20s %-20s %s\n", Text(d["domain"]).c_str(),
                  Text(k["selector"]).c_str(), alg.c_str(), Text(k["state"]).c_str(), Text(k["created"]).c_str(),
                  time_or_dash(k["activated"]).c_str(), time_or_dash(k["retired"]).c_str(),
                  time_or_dash(k["revoked"]).c_str(), k["emergency"].get<bool>() ? "yes" : "no");
    }
  }
}

void PrintTransitions(const nlohmann::json& result) {
  if (result.contains("transitions"))
    for (const auto& t : result["transitions"]) std::printf("%s\n", Text(t).c_str());
}

constexpr const char* kKeysUsage =
    "usage: dkimrotor keys -c FILE [--json]\n"
    "       dkimrotor keys -c FILE --history [--json]\n"
    "       dkimrotor keys import -c FILE --domain D --selector S --key FILE.pem\n"
    "Lists every key: state, since when, and what happens next. 'import' adds an existing key;\n"
    "it enters as pending and goes through the same DNS check as a generated one.\n"
    "With a daemon running, both go through it (the keys it holds; it imports the key itself).\n"
    "--history lists every selector the keystore ever held, revoked ones too, oldest first:\n"
    "when it was created, became active, retired and was revoked, and whether in an emergency.\n"
    "It reads the state file, with or without a daemon.\n";

int ImportKey(const Args& args) {
  auto loaded = Load(args);
  if (!loaded) return Fail("keys import", loaded.error().message);
  auto domain = args.Get("--domain");
  auto selector = args.Get("--selector");
  auto file = args.Get("--key");
  if (!domain || !selector || !file) return Usage("keys import", "--domain, --selector and --key are required", kKeysUsage);
  const auto& config = loaded->config;
  auto pem = util::ReadSecretFile(*file);
  if (!pem) return Fail("keys import", pem.error().message);
  auto daemon = AskDaemon(config, {control::Command::kImport, *domain, *selector, false, *pem});
  if (!daemon) return Fail("keys import", daemon.error().message);
  if (*daemon) {
    const control::Answer& a = **daemon;
    if (!a.ok) return Fail("keys import", "the daemon refused: " + a.error);
    std::printf("imported %s (%s, %d bits) into the running daemon as pending: it signs once DNS serves it\n",
                Text(a.result["imported"]).c_str(), Text(a.result["algorithm"]).c_str(), a.result["bits"].get<int>());
    return kExitOk;
  }
  auto lock = keystore::KeystoreLock::Acquire(config.keystore.directory);
  if (!lock) return Fail("keys import", lock.error().message);
  auto keys = keystore::LoadState(config.keystore.directory);  // again, under the lock
  if (!keys) return Fail("keys import", keys.error().message);
  auto imported = keystore::PrepareImport(loaded->rotation, *keys, *domain, *selector, *pem, "key file " + *file, Now());
  if (!imported) return Fail("keys import", imported.error().message);
  const KeyInfo& k = imported->info;
  const std::string dir = config.keystore.directory;
  ::mkdir((dir + "/keys").c_str(), 0700);
  if (auto st = util::WriteFileAtomically(keystore::KeyPath(dir, k), imported->pem, 0600); !st)
    return Fail("keys import", st.error().message);
  keys->push_back(k);
  if (auto st = keystore::SaveState(dir, *keys); !st) return Fail("keys import", st.error().message);
  std::printf("imported %s._domainkey.%s (%s, %d bits) as pending: it signs once DNS serves it\n",
              k.selector.c_str(), k.domain.c_str(), std::string(signer::AlgorithmName(k.algorithm)).c_str(), k.bits);
  return kExitOk;
}

}  // namespace

int RunKeys(std::span<char*> argv) {
  Args args(argv, {"--config", "--domain", "--selector", "--key"}, {"--json", "--history", "--help"});
  if (!args.ok()) return Usage("keys", args.error(), kKeysUsage);
  if (args.Has("--help")) {
    std::fputs(kKeysUsage, stdout);
    return kExitOk;
  }
  if (!args.positional().empty() && args.positional()[0] == "import") return ImportKey(args);
  if (!args.positional().empty()) return Usage("keys", "unknown argument " + args.positional()[0], kKeysUsage);
  if (args.Has("--history")) {
    // The state file, also with a daemon running: it saves every transition before it takes
    // effect, so the file holds the whole history.
    auto loaded = Load(args);
    if (!loaded) return Fail("keys", loaded.error().message);
    std::vector<std::string> domains;
    for (const auto& d : loaded->config.domains) domains.push_back(d.domain);
    const nlohmann::json history = control::KeyHistory(loaded->keys, domains);
    if (args.Has("--json")) {
      std::cout << history.dump(2) << "\n";
    } else {
      PrintHistoryTable(history);
    }
    return kExitOk;
  }
  auto config = LoadConfigOnly(args);
  if (!config) return Fail("keys", config.error().message);
  nlohmann::json report;
  auto daemon = AskDaemon(*config, RequestOf(control::Command::kKeys));
  if (!daemon) return Fail("keys", daemon.error().message);
  if (*daemon) {
    if (!(*daemon)->ok) return Fail("keys", "the daemon refused: " + (*daemon)->error);
    report = std::move((*daemon)->result);
  } else {
    auto loaded = Load(args);
    if (!loaded) return Fail("keys", loaded.error().message);
    control::KeyReportInput in;
    in.keys = &loaded->keys;
    in.rotation = &loaded->rotation;
    for (const auto& d : loaded->config.domains) in.domains.push_back(d.domain);
    in.has_hook = [&](const std::string& domain) { return HasHook(loaded->config, domain); };
    in.now = Now();
    report = control::KeysReport(in);
  }
  if (args.Has("--json")) {
    std::cout << report.dump(2) << "\n";
    return kExitOk;
  }
  PrintKeysTable(report);
  return kExitOk;
}

int RunDns(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor dns -c FILE [--domain D]\n"
      "Prints the DNS records for every key that is published or about to be, as zone-file lines\n"
      "(TXT strings of at most 255 characters), including the empty-key records of revoked keys.\n"
      "A delegated domain's records are in its delegation zone; its owner creates, once, the CNAMEs\n"
      "printed first (one per slot), which point the domain's selectors there.\n";
  Args args(argv, {"--config", "--domain"}, {"--help"});
  if (!args.ok()) return Usage("dns", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto loaded = Load(args);
  if (!loaded) return Fail("dns", loaded.error().message);
  auto only = args.Get("--domain");
  std::map<std::string, std::string> zones;  // delegated domain -> zone
  for (const auto& d : loaded->config.domains) {
    if (!d.delegation || (only && d.domain != *only)) continue;
    zones[d.domain] = d.delegation->zone;
    std::printf("; %s is delegated: its owner creates these CNAMEs once, in the zone of %s\n",
                d.domain.c_str(), d.domain.c_str());
    for (const auto& slot : d.delegation->slots)
      std::printf("%s._domainkey.%s. 3600 IN CNAME %s._domainkey.%s.\n", slot.c_str(), d.domain.c_str(),
                  slot.c_str(), d.delegation->zone.c_str());
  }
  for (const auto& k : loaded->keys) {
    if (only && k.domain != *only) continue;
    const bool revoked = k.state == KeyState::kRevoked;
    const std::string value = revoked ? keystore::RevokedRecordValue() : keystore::KeyRecordValue(k);
    auto zone = zones.find(k.domain);
    std::printf("; %s %s %s since %s\n", k.domain.c_str(), std::string(signer::AlgorithmName(k.algorithm)).c_str(),
                std::string(keystore::KeyStateName(k.state)).c_str(), keystore::Rfc3339(k.state_since).c_str());
    std::printf("%s. 3600 IN TXT (", keystore::RecordName(k, zone == zones.end() ? "" : zone->second).c_str());
    for (const auto& part : keystore::SplitTxtStrings(value)) std::printf(" \"%s\"", part.c_str());
    std::printf(" )\n");
  }
  return kExitOk;
}

int RunRotate(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor rotate -c FILE --domain D\n"
      "       dkimrotor rotate -c FILE --domain D --emergency --selector S [--force]\n"
      "Performs one ordinary rotation step now; with --emergency takes S out of signing at once\n"
      "(a ready spare takes over) and revokes it without grace (v=DKIM1; p= to the publish hook).\n"
      "Revoking the last active key of an algorithm with no ready spare is refused unless --force:\n"
      "the domain's mail would go out without that signature. With a daemon running the command\n"
      "goes through it, and returns once S signs nothing more; otherwise it takes the keystore's\n"
      "lock and works on the keystore directly.\n";
  Args args(argv, {"--config", "--domain", "--selector"}, {"--emergency", "--force", "--help"});
  if (!args.ok()) return Usage("rotate", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto domain = args.Get("--domain");
  if (!domain) return Usage("rotate", "--domain is required", kUsage);
  if (args.Has("--emergency") != args.Get("--selector").has_value())
    return Usage("rotate", "--emergency and --selector go together", kUsage);
  if (args.Has("--force") && !args.Has("--emergency")) return Usage("rotate", "--force goes with --emergency", kUsage);
  const bool emergency = args.Has("--emergency");
  auto config = LoadConfigOnly(args);
  if (!config) return Fail("rotate", config.error().message);
  control::Request request;
  request.command = emergency ? control::Command::kEmergency : control::Command::kRotate;
  request.domain = *domain;
  request.selector = args.Get("--selector").value_or("");
  request.force = args.Has("--force");
  auto daemon = AskDaemon(*config, request);
  if (!daemon) return Fail("rotate", daemon.error().message);
  if (*daemon) {
    const control::Answer& a = **daemon;
    if (!a.ok) return Fail("rotate", "the daemon refused: " + a.error);
    PrintTransitions(a.result);
    if (emergency) {
      std::printf("emergency: %s signs nothing more (%s); v=DKIM1; p= goes to the publish hook now\n",
                  Text(a.result["revoked"]).c_str(),
                  a.result["replaced_by"].is_string() ? ("replaced by " + Text(a.result["replaced_by"])).c_str()
                                                      : "no ready key replaced it");
      if (a.result.contains("warning")) std::fprintf(stderr, "warning: %s\n", Text(a.result["warning"]).c_str());
    }
    return kExitOk;
  }
  auto loaded = Load(args);
  if (!loaded) return Fail("rotate", loaded.error().message);
  auto lock = keystore::KeystoreLock::Acquire(loaded->config.keystore.directory);
  if (!lock) return Fail("rotate", lock.error().message);
  auto keys = keystore::LoadState(loaded->config.keystore.directory);
  if (!keys) return Fail("rotate", keys.error().message);
  auto world_options = WorldOptionsFrom(loaded->config);
  world_options.log = [](keystore::LogLevel level, const std::string& m) {
    if (level >= keystore::LogLevel::kInfo) std::fprintf(stderr, "%s\n", m.c_str());
  };
  world_options.audit = [](const KeyInfo& k, KeyState from, KeyState to) {
    std::printf("%s._domainkey.%s: %s -> %s\n", k.selector.c_str(), k.domain.c_str(),
                std::string(keystore::KeyStateName(from)).c_str(), std::string(keystore::KeyStateName(to)).c_str());
  };
  keystore::KeystoreWorld world(world_options);
  keystore::SnapshotHolder holder;
  if (emergency) {
    bool leaves_unsigned = false;
    if (auto st = keystore::CheckEmergency(loaded->rotation, *keys, *domain, *args.Get("--selector"),
                                           args.Has("--force"), &leaves_unsigned);
        !st)
      return Fail("rotate", st.error().message);
  }
  keystore::RotationEngine engine(loaded->rotation, std::move(*keys), &world, &holder);
  engine.SweepKeyFiles();  // under the lock, as the daemon does at start-up
  if (auto st = engine.Start(); !st) return Fail("rotate", st.error().message);
  util::Status st = emergency ? engine.EmergencyRevoke(*domain, *args.Get("--selector"))
                                            : engine.Rotate(*domain);
  if (!st) return Fail("rotate", st.error().message);
  if (auto step = engine.Step(); !step) return Fail("rotate", step.error().message);  // revoke now
  return kExitOk;
}

int RunStatus(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor status -c FILE [--json]\n"
      "Asks the running daemon (through control.sock in the keystore) for its pid, uptime,\n"
      "version, message counters and each domain's next step and problems. Exits 0 when the\n"
      "daemon answers, 3 when none runs.\n";
  Args args(argv, {"--config"}, {"--json", "--help"});
  if (!args.ok()) return Usage("status", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto config = LoadConfigOnly(args);
  if (!config) return Fail("status", config.error().message);
  auto daemon = AskDaemon(*config, RequestOf(control::Command::kStatus));
  if (!daemon) return Fail("status", daemon.error().message);
  if (!*daemon) {
    if (args.Has("--json")) {
      std::cout << nlohmann::json{{"running", false}}.dump(2) << "\n";
    } else {
      std::printf("dkimrotor is not running (nothing answers on %s)\n",
                  control::SocketPath(config->keystore.directory).c_str());
    }
    return kExitNotRunning;
  }
  const control::Answer& a = **daemon;
  if (!a.ok) return Fail("status", "the daemon refused: " + a.error);
  nlohmann::json r = a.result;
  if (args.Has("--json")) {
    r["running"] = true;
    std::cout << r.dump(2) << "\n";
    return kExitOk;
  }
  const auto& m = r["messages"];
  std::printf("dkimrotor %s running, pid %lld, up %lld s (since %s)%s\n", Text(r["version"]).c_str(),
              r["pid"].get<long long>(), r["uptime_seconds"].get<long long>(), Text(r["started"]).c_str(),
              r["stopping"].is_boolean() && r["stopping"].get<bool>() ? ", stopping" : "");
  std::printf("messages: %llu signed, %llu unsigned, %llu tempfailed, %llu rejected, %d in flight\n",
              m["signed"].get<unsigned long long>(), m["unsigned"].get<unsigned long long>(),
              m["tempfailed"].get<unsigned long long>(), m["rejected"].get<unsigned long long>(),
              m["in_flight"].get<int>());
  for (const auto& d : r["domains"]) {
    std::printf("%s: %d active key(s); next: %s%s\n", Text(d["domain"]).c_str(), d["active_keys"].get<int>(),
                d["next_step"].is_string() ? Text(d["next_step"]).c_str() : "nothing scheduled",
                d["next_step_at"].is_string() ? (" at " + Text(d["next_step_at"])).c_str() : "");
    for (const auto& p : d["problems"]) std::printf("  problem: %s\n", Text(p).c_str());
  }
  return kExitOk;
}

}  // namespace dkimrotor::cli
