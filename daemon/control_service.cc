// Every keystore command runs inside a RotationRunner::Execute closure: the checks, the change
// and the report of what changed all see the same keys, with no step in between.
#include "daemon/control_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "control/key_report.h"
#include "keystore/rotation/admin_commands.h"
#include "keystore/storage/state_store.h"
#include "signer/algorithm.h"
#include "util/file.h"

#ifndef DKIMROTOR_VERSION
#define DKIMROTOR_VERSION "unknown"
#endif

namespace dkimrotor::daemon {
namespace {

using keystore::KeyInfo;
using keystore::KeyState;

std::string Who(const control::Peer& peer) {
  return peer.user + " (uid " + std::to_string(peer.uid) + ", pid " + std::to_string(peer.pid) + ")";
}

std::string NameOf(const KeyInfo& k) { return k.selector + "._domainkey." + k.domain; }

keystore::TimePoint Now() { return std::chrono::time_point_cast<std::chrono::seconds>(keystore::Clock::now()); }

// "sel._domainkey.d: active -> retiring" for each key whose state `after` differs from `before`.
nlohmann::json Transitions(const std::vector<KeyInfo>& before, const std::vector<KeyInfo>& after) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& a : after) {
    std::string from = "new";
    for (const auto& b : before)
      if (b.domain == a.domain && b.selector == a.selector) from = std::string(keystore::KeyStateName(b.state));
    const std::string to(keystore::KeyStateName(a.state));
    if (from != to) out.push_back(NameOf(a) + ": " + from + " -> " + to);
  }
  return out;
}

control::KeyReportInput ReportInput(const DaemonSettings& s, const std::vector<KeyInfo>* keys) {
  control::KeyReportInput in;
  in.keys = keys;
  in.rotation = &s.rotation;
  in.domains = s.domains;
  auto hooks = s.world.hooks;
  in.has_hook = [hooks](const std::string& domain) { return hooks.count(domain) > 0; };
  in.now = Now();
  return in;
}

}  // namespace

control::Answer ControlService::Handle(const control::Request& request, const control::Peer& peer) const {
  switch (request.command) {
    case control::Command::kStatus: return Status();
    case control::Command::kKeys: return Keys();
    case control::Command::kRotate: return Rotate(request, peer);
    case control::Command::kEmergency: return Emergency(request, peer);
    case control::Command::kImport: return Import(request, peer);
  }
  return control::Failure("unknown command");
}

control::Answer ControlService::Status() const {
  const DaemonSettings settings = c_.settings();
  const auto keys = c_.rotation->Keys();
  const auto& n = c_.service->counters();
  nlohmann::json r;
  r["pid"] = ::getpid();
  r["version"] = DKIMROTOR_VERSION;
  r["started"] = keystore::Rfc3339(std::chrono::time_point_cast<std::chrono::seconds>(c_.started));
  r["uptime_seconds"] =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - c_.started).count();
  r["stopping"] = c_.service->stopping();
  r["messages"] = {{"signed", n.signed_messages.load(std::memory_order_relaxed)},
                   {"unsigned", n.unsigned_messages.load(std::memory_order_relaxed)},
                   {"tempfailed", n.tempfailed_messages.load(std::memory_order_relaxed)},
                   {"rejected", n.rejected_messages.load(std::memory_order_relaxed)},
                   {"signatures", n.signatures.load(std::memory_order_relaxed)},
                   {"in_flight", c_.service->messages_in_flight()}};
  r["domains"] = control::DomainSummaries(ReportInput(settings, &keys));
  return control::Success(std::move(r));
}

control::Answer ControlService::Keys() const {
  const DaemonSettings settings = c_.settings();
  const auto keys = c_.rotation->Keys();
  return control::Success(control::KeysReport(ReportInput(settings, &keys)));
}

control::Answer ControlService::Rotate(const control::Request& request, const control::Peer& peer) const {
  c_.log->info("control: rotate {} asked by {}", request.domain, Who(peer));
  nlohmann::json transitions;
  auto st = c_.rotation->Execute(
      [&](keystore::RotationEngine& engine) -> util::Status {
        const auto before = engine.Keys();
        RETURN_IF_ERROR(engine.Rotate(request.domain));
        transitions = Transitions(before, engine.Keys());
        return util::Ok();
      },
      c_.command_timeout);
  if (!st) {
    // The admin sees the refusal; the log must say it too (a full disk, a read-only keystore).
    c_.log->error("control: rotate {} failed, keys unchanged, signing goes on: {}", request.domain,
                  st.error().message);
    return control::Failure(st.error().message);
  }
  return control::Success({{"domain", request.domain}, {"transitions", transitions}});
}

control::Answer ControlService::Emergency(const control::Request& request, const control::Peer& peer) const {
  const std::string name = request.selector + "._domainkey." + request.domain;
  c_.log->warn("control: emergency revocation of {}{} asked by {}", name, request.force ? " (--force)" : "", Who(peer));
  nlohmann::json transitions;
  std::string replaced_by;
  bool stream_unsigned = false;
  auto st = c_.rotation->Execute(
      [&](keystore::RotationEngine& engine) -> util::Status {
        const auto before = engine.Keys();
        RETURN_IF_ERROR(keystore::CheckEmergency(engine.options(), before, request.domain, request.selector,
                                                 request.force, &stream_unsigned));
        RETURN_IF_ERROR(engine.EmergencyRevoke(request.domain, request.selector));
        const auto after = engine.Keys();
        transitions = Transitions(before, after);
        for (const auto& a : after)
          for (const auto& b : before)
            if (a.domain == b.domain && a.selector == b.selector && b.state == KeyState::kReady &&
                a.state == KeyState::kActive)
              replaced_by = a.selector;
        return util::Ok();
      },
      c_.command_timeout);
  if (!st) {
    c_.log->error("control: emergency revocation refused for {}: {}", name, st.error().message);
    return control::Failure(st.error().message);
  }
  // The snapshot without the key is current; messages that began with an older one may still
  // sign with it until they end.
  const auto deadline = std::chrono::steady_clock::now() + c_.drain_timeout;
  size_t older = c_.snapshots->ReplacedInUse();
  while (older > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    older = c_.snapshots->ReplacedInUse();
  }
  const std::string how = replaced_by.empty() ? "no ready key replaced it" : "replaced by " + replaced_by;
  c_.audit->warn("emergency: {} no longer signs ({}), asked by {}", name, how, Who(peer));
  if (c_.audit != c_.log) c_.log->warn("emergency: {} no longer signs ({}), asked by {}", name, how, Who(peer));
  nlohmann::json r = {{"revoked", name},
                      {"replaced_by", replaced_by.empty() ? nlohmann::json() : nlohmann::json(replaced_by)},
                      {"stream_unsigned", stream_unsigned},
                      {"transitions", transitions},
                      {"revocation", "v=DKIM1; p= goes to the publish hook now"}};
  if (older > 0)
    r["warning"] = std::to_string(older) + " message(s) that began before the command may still be signed with " +
                   name + " (they did not end within " + std::to_string(c_.drain_timeout.count() / 1000) + " s)";
  return control::Success(std::move(r));
}

control::Answer ControlService::Import(const control::Request& request, const control::Peer& peer) const {
  const std::string name = request.selector + "._domainkey." + request.domain;
  c_.log->info("control: import of {} asked by {}", name, Who(peer));
  const std::string dir = c_.settings().world.directory;
  KeyInfo imported;
  auto st = c_.rotation->Execute(
      [&](keystore::RotationEngine& engine) -> util::Status {
        ASSIGN_OR_RETURN(auto key, keystore::PrepareImport(engine.options(), engine.Keys(), request.domain,
                                                           request.selector, request.pem, "the key sent", Now()));
        ::mkdir((dir + "/keys").c_str(), 0700);
        const std::string path = keystore::KeyPath(dir, key.info);
        RETURN_IF_ERROR(util::WriteFileAtomically(path, key.pem, 0600));
        if (auto added = engine.Import(key.info); !added) {
          ::unlink(path.c_str());
          return added;
        }
        imported = key.info;
        return util::Ok();
      },
      c_.command_timeout);
  if (!st) {
    c_.log->error("control: import of {} failed: {}", name, st.error().message);
    return control::Failure(st.error().message);
  }
  return control::Success({{"imported", name},
                           {"algorithm", std::string(signer::AlgorithmName(imported.algorithm))},
                           {"bits", imported.bits},
                           {"state", "pending"}});
}

}  // namespace dkimrotor::daemon
