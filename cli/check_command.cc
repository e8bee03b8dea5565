// `dkimrotor check`: what a DKIM validator would say about every key that signs or is about to,
// plus the configuration's departures from practice, each finding with its severity, the
// domain and selector it is about, and what to do. Only reads the state (the daemon may run).
// Exit 1 when any finding is an error; warnings alone exit 0.
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "conf/practices.h"
#include "keystore/dns/dns_checker.h"
#include "keystore/keystore_world.h"
#include "keystore/publish/hook_runner.h"
#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "signer/algorithm.h"

namespace dkimrotor::cli {
namespace {

using keystore::DnsVerdict;
using keystore::KeyInfo;
using keystore::KeyState;

enum class Severity { kError, kWarning };

struct Finding {
  Severity severity = Severity::kError;
  std::string domain;    // empty for a finding about the whole configuration
  std::string selector;  // empty for a finding about a whole domain
  std::string state;     // the key's state, when there is a key
  std::string what;
  std::string fix;
};

// The keystore's messages end in the fix after their last `separator` (house style: "the
// problem: the fix"); this takes them apart for the JSON output.
std::pair<std::string, std::string> SplitAdvice(const std::string& text, std::string_view separator) {
  size_t at = text.rfind(separator);
  if (at == std::string::npos) return {text, ""};
  return {text.substr(0, at), text.substr(at + separator.size())};
}

class Report {
 public:
  void Add(Finding f) { findings_.push_back(std::move(f)); }
  void Add(Severity s, const KeyInfo& k, std::string what, std::string fix) {
    Add({s, k.domain, k.selector, std::string(keystore::KeyStateName(k.state)), std::move(what), std::move(fix)});
  }
  void Ok(const KeyInfo& k, const std::string& what) {
    oks_.push_back(k.selector + "._domainkey." + k.domain + " (" + std::string(keystore::KeyStateName(k.state)) +
                   ") " + what);
  }

  void Ok(std::string what) { oks_.push_back(std::move(what)); }

  int errors() const { return Count(Severity::kError); }
  int warnings() const { return Count(Severity::kWarning); }

  void PrintText() const {
    for (const auto& f : findings_) {
      std::string where;
      if (!f.selector.empty())
        where = f.selector + "._domainkey." + f.domain + (f.state.empty() ? "" : " (" + f.state + ")") + ": ";
      else if (!f.domain.empty())
        where = f.domain + ": ";
      std::printf("%s: %s%s%s%s\n", f.severity == Severity::kError ? "error" : "warning", where.c_str(),
                  f.what.c_str(), f.fix.empty() ? "" : ": ", f.fix.c_str());
    }
    for (const auto& ok : oks_) std::printf("ok: %s\n", ok.c_str());
    std::printf("%d error(s), %d warning(s)\n", errors(), warnings());
  }

  void PrintJson() const {
    nlohmann::json root;
    root["findings"] = nlohmann::json::array();
    auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); };
    for (const auto& f : findings_) {
      nlohmann::json j;
      j["severity"] = f.severity == Severity::kError ? "error" : "warning";
      j["domain"] = or_null(f.domain);
      j["selector"] = or_null(f.selector);
      j["state"] = or_null(f.state);
      j["what"] = f.what;
      j["fix"] = f.fix;
      root["findings"].push_back(std::move(j));
    }
    root["errors"] = errors();
    root["warnings"] = warnings();
    std::cout << root.dump(2) << "\n";
  }

 private:
  int Count(Severity s) const {
    int n = 0;
    for (const auto& f : findings_) n += f.severity == s;
    return n;
  }

  std::vector<Finding> findings_;
  std::vector<std::string> oks_;
};

struct CheckContext {
  std::string config_path;
  conf::Config config;
  keystore::RotationOptions rotation;
  std::vector<KeyInfo> keys;
  keystore::TimePoint now;
};

bool HasHook(const CheckContext& c, const std::string& domain) {
  for (const auto& d : c.config.domains)
    if (d.domain == domain) return !d.publish_hook.empty();
  return false;
}

const keystore::StreamPolicy* PolicyFor(const CheckContext& c, const KeyInfo& k) {
  for (const auto& p : c.rotation.streams)
    if (p.domain == k.domain && p.algorithm == k.algorithm) return &p;
  return nullptr;
}

std::string DnsCommand(const CheckContext& c, const std::string& domain) {
  return "dkimrotor dns -c " + c.config_path + " --domain " + domain;
}

void AddPracticeFindings(const CheckContext& c, Report& report) {
  for (const auto& w : conf::CheckPractices(c.config)) {
    Finding f;
    f.severity = Severity::kWarning;
    std::string text = w;
    if (text.rfind("domain ", 0) == 0) {  // "domain example.com: setting = value ..."
      size_t colon = text.find(": ");
      f.domain = text.substr(7, colon - 7);
      text = text.substr(colon + 2);
    }
    std::tie(f.what, f.fix) = SplitAdvice(text, "; ");
    report.Add(std::move(f));
  }
}

// Whether DNS should serve this key now: every key past pending, and a pending key once it has
// been handed to the hook or, without a hook, to the admin (`dkimrotor dns`).
bool RecordShouldBeUp(const CheckContext& c, const KeyInfo& k) {
  if (k.state != KeyState::kPending) return true;
  return k.published.has_value() || k.dns_ok_since.has_value() || !HasHook(c, k.domain);
}

// A pending key does not sign yet and the engine waits for DNS before it does: its problems
// are warnings. Every other key is served to verifiers now or is about to be.
Severity DnsSeverity(const KeyInfo& k) {
  return k.state == KeyState::kPending ? Severity::kWarning : Severity::kError;
}

const conf::Delegation* DelegationOf(const CheckContext& c, const std::string& domain) {
  for (const auto& d : c.config.domains)
    if (d.domain == domain && d.delegation) return &*d.delegation;
  return nullptr;
}

void CheckKeyDns(const CheckContext& c, keystore::DnsChecker& checker, const KeyInfo& k, Report& report) {
  const bool revoked = k.state == KeyState::kRevoked;
  // A key is checked as receivers see it (a delegated domain's through its CNAME, which
  // CheckDelegations verifies), but a revocation where it is made: in the delegation zone.
  const conf::Delegation* delegation = DelegationOf(c, k.domain);
  auto r = checker.Check(revoked && delegation ? delegation->zone : k.domain, k.selector, k.algorithm,
                         revoked ? "" : k.public_key);
  for (const auto& w : r.warnings) {
    auto [what, fix] = SplitAdvice(w, ": ");
    report.Add(Severity::kWarning, k, what, fix);
  }
  if (r.as_expected) {
    report.Ok(k, revoked ? "revoked in DNS" : "served by DNS");
    return;
  }
  const Severity severity = DnsSeverity(k);
  switch (r.verdict) {
    case DnsVerdict::kMissing:
      report.Add(severity, k, "the key record is missing from DNS: " + r.detail,
                 HasHook(c, k.domain) && !revoked
                     ? "check the publish hook's log, or publish the record `" + DnsCommand(c, k.domain) + "` prints"
                     : "publish the record `" + DnsCommand(c, k.domain) + "` prints");
      return;
    case DnsVerdict::kTemporaryFailure: {
      // The checker's own advice says the same as the fix below, less precisely.
      std::string detail = r.detail;
      if (size_t at = detail.find(" (a temporary failure"); at != std::string::npos) detail.erase(at);
      report.Add(severity, k,
                 "DNS unreachable, a temporary failure and not a missing record: " + detail,
                 "make sure the resolvers in dns.resolvers and the zone's name servers answer, then run check again");
      return;
    }
    case DnsVerdict::kInconsistent:
      report.Add(severity, k, r.detail,
                 "wait for the zone to reach every name server, or fix the one that lags, then run check again");
      return;
    default: {
      // The key record's own verdict: its detail is "problem: fix".
      auto [what, fix] = SplitAdvice(r.detail, ": ");
      report.Add(severity, k, "DNS " + std::string(keystore::DnsVerdictName(r.verdict)) + ": " + what, fix);
      return;
    }
  }
}

std::string Lower(std::string s) {
  while (!s.empty() && s.back() == '.') s.pop_back();
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

// Each slot of a delegated domain must be a CNAME to SLOT._domainkey.ZONE at the domain: the
// one change its owner makes, once. A slot that holds a key verifiers see is an error without
// it; an unused slot a warning (the engine keeps the next key there pending until it exists).
void CheckDelegations(const CheckContext& c, keystore::DnsChecker& checker, Report& report) {
  for (const auto& d : c.config.domains) {
    if (!d.delegation) continue;
    for (const auto& slot : d.delegation->slots) {
      const std::string name = slot + "._domainkey." + d.domain;
      const std::string target = slot + "._domainkey." + d.delegation->zone;
      const KeyInfo* holder = nullptr;
      for (const auto& k : c.keys)
        if (k.domain == d.domain && k.selector == slot) holder = &k;
      const bool in_use = holder && holder->state != KeyState::kPending && holder->state != KeyState::kRevoked;
      Finding f;
      f.severity = in_use ? Severity::kError : Severity::kWarning;
      f.domain = d.domain;
      f.selector = slot;
      if (holder) f.state = std::string(keystore::KeyStateName(holder->state));
      f.fix = "the domain's owner creates " + name + ". CNAME " + target + ". (`" + DnsCommand(c, d.domain) +
              "` prints every CNAME)";
      auto r = checker.Check(d.domain, slot, holder ? holder->algorithm : signer::Algorithm::kRsaSha256, "");
      if (r.verdict == DnsVerdict::kTemporaryFailure && r.cnames.empty()) {
        f.severity = Severity::kWarning;
        f.what = "the delegation CNAME could not be checked, a temporary failure: " + r.detail;
        f.fix = "make sure the resolvers in dns.resolvers answer, then run check again";
      } else if (r.cnames.empty()) {
        f.what = "the delegation CNAME is missing: " + name + " is not a CNAME" +
                 (r.verdict == DnsVerdict::kMissing ? " (no such record)" : " (it has a record of its own)");
      } else if (Lower(r.cnames.front()) != Lower(target)) {
        f.what = "the delegation CNAME points elsewhere: " + name + " is a CNAME to " + r.cnames.front() +
                 ", not to " + target;
        f.fix = "the domain's owner changes it to " + name + ". CNAME " + target + ".";
      } else {
        report.Ok(name + " is a CNAME to " + target + " (delegation slot" +
                  (holder ? ", " + std::string(keystore::KeyStateName(holder->state)) + " key" : ", unused") + ")");
        continue;
      }
      report.Add(std::move(f));
    }
  }
}

void CheckLate(const CheckContext& c, const KeyInfo& k, Report& report) {
  const auto* p = PolicyFor(c, k);
  if (!p) return;
  auto next = keystore::NextStepOf(k, c.keys, *p, c.rotation.min_propagation, HasHook(c, k.domain), c.now);
  if (!next.late) return;
  report.Add(Severity::kWarning, k,
             "the rotation is late: it was due " + (next.when ? keystore::Rfc3339(*next.when) : std::string("?")) +
                 " but no key is ready to take over, so the old key goes on signing",
             "see why no key became ready (`dkimrotor keys -c " + c.config_path +
                 "`: a failing publish hook, or a record DNS does not serve) and fix that");
}

// Every configured domain needs an active key whose file loads, or the milter cannot sign its
// mail; each of its algorithms should have one.
void CheckUsableKeys(const CheckContext& c, const std::map<std::string, bool>& loads, Report& report) {
  for (const auto& d : c.config.domains) {
    std::vector<std::string> broken;
    std::map<signer::Algorithm, int> usable;
    for (const auto& k : c.keys) {
      if (k.domain != d.domain || k.state != KeyState::kActive) continue;
      auto it = loads.find(k.selector + "._domainkey." + k.domain);
      if (it != loads.end() && it->second)
        ++usable[k.algorithm];
      else
        broken.push_back(k.selector);
    }
    if (usable.empty()) {
      Finding f;
      f.domain = d.domain;
      // A pending key whose hook fails says why (another server's key in the record, a
      // provider refusing the credentials): that, not "start the daemon", is the fix.
      std::string hook_failure;
      for (const auto& k : c.keys)
        if (k.domain == d.domain && k.state == KeyState::kPending && !k.published &&
            k.dns_problem.rfind("publish hook failed", 0) == 0)
          hook_failure = k.selector + "._domainkey." + k.domain + ": " + k.dns_problem;
      if (broken.empty() && !hook_failure.empty()) {
        f.what = "no usable key: the domain has no active key, so its mail goes out unsigned; "
                 "its keys wait for the publish hook, which fails (" + hook_failure + ")";
        f.fix = "fix what the hook reports (two servers sharing a stream? see `dkimrotor keys -c " +
                c.config_path + "`)";
      } else if (broken.empty()) {
        f.what = "no usable key: the domain has no active key, so its mail goes out unsigned";
        f.fix = "run `dkimrotor rotate -c " + c.config_path + " --domain " + d.domain +
                "` or start the daemon; pending keys activate once DNS serves them (`dkimrotor keys`)";
      } else {
        std::string list;
        for (const auto& s : broken) list += (list.empty() ? "" : ", ") + s;
        f.selector = broken.size() == 1 ? broken.front() : "";
        f.what = "no usable key: the key files of its active keys (selector " + list +
                 ") cannot be loaded, so its mail goes out unsigned";
        f.fix = "restore the key files, or replace each key with `dkimrotor rotate -c " + c.config_path +
                " --domain " + d.domain + " --emergency --selector S`";
      }
      report.Add(std::move(f));
      continue;
    }
    for (signer::Algorithm a : d.algorithms) {
      if (usable.count(a)) continue;
      Finding f;
      f.severity = Severity::kWarning;
      f.domain = d.domain;
      f.what = "no usable " + std::string(signer::AlgorithmName(a)) +
               " key: its mail is signed without this algorithm";
      f.fix = "run `dkimrotor rotate -c " + c.config_path + " --domain " + d.domain +
              "` or see `dkimrotor keys` for the key that should be active";
      report.Add(std::move(f));
    }
  }
}

// The keystore folder and the hooks as the daemon would see them (issue 13): what the daemon
// refuses to start or publish with is an error here too.
void CheckFilePermissions(const CheckContext& c, Report& report) {
  uid_t uid = ::geteuid();
  if (!c.config.milter.user.empty()) {
    const passwd* pw = ::getpwnam(c.config.milter.user.c_str());
    if (!pw) {
      report.Add({Severity::kError, "", "", "", "milter.user " + c.config.milter.user + " does not exist",
                  "create the user, or set milter.user to an existing one"});
      return;
    }
    uid = pw->pw_uid;
  }
  auto split = [](const std::string& text) {
    size_t at = text.rfind(": ");
    return at == std::string::npos ? std::pair<std::string, std::string>{text, ""}
                                   : std::pair<std::string, std::string>{text.substr(0, at), text.substr(at + 2)};
  };
  const auto perms = keystore::CheckKeystorePermissions(c.config.keystore.directory, uid);
  for (const auto& e : perms.errors) {
    auto [what, fix] = split(e);
    report.Add({Severity::kError, "", "", "", what, fix});
  }
  for (const auto& w : perms.warnings) {
    auto [what, fix] = split(w);
    report.Add({Severity::kWarning, "", "", "", what, fix});
  }
  for (const auto& d : c.config.domains) {
    if (d.publish_hook.empty()) continue;
    if (auto st = keystore::CheckHookFile(d.publish_hook); !st) {
      auto [what, fix] = split(st.error().message);
      report.Add({Severity::kError, d.domain, "", "", what + " (its keys stay pending)", fix});
    }
  }
}

constexpr const char* kUsage =
    "usage: dkimrotor check -c FILE [--json]\n"
    "Checks the configuration against the M3AAWG practices and, for every key that signs or is\n"
    "about to, its key file and its DNS record as a DKIM validator would: missing or unreachable,\n"
    "malformed, too short, t=y, k=, h=, another key served; a domain with no usable key; a late\n"
    "rotation. Each finding is an error or a warning; exits 1 on any error.\n";

}  // namespace

int RunCheck(std::span<char*> argv) {
  Args args(argv, {"--config"}, {"--json", "--help"});
  if (!args.ok()) {
    std::fprintf(stderr, "dkimrotor check: %s\n\n%s", args.error().c_str(), kUsage);
    return kExitUsage;
  }
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "dkimrotor check: %s\n", message.c_str());
    return kExitFailure;
  };
  auto path = args.Get("--config");
  if (!path) return fail("-c FILE is required");
  CheckContext c;
  c.config_path = *path;
  auto config = conf::LoadConfig(*path);
  if (!config) return fail(config.error().message);
  c.config = std::move(*config);
  auto rotation = RotationOptionsFrom(c.config);
  if (!rotation) return fail(rotation.error().message);
  c.rotation = std::move(*rotation);
  auto keys = keystore::LoadState(c.config.keystore.directory);
  if (!keys) return fail(keys.error().message);
  c.keys = std::move(*keys);
  c.now = Now();

  auto checker = keystore::DnsChecker::Create(DnsOptionsFrom(c.config));
  if (!checker) return fail(checker.error().message);
  // The keystore's own loader: it also checks the file against the key the state records.
  keystore::KeystoreWorld world(WorldOptionsFrom(c.config));

  Report report;
  AddPracticeFindings(c, report);
  CheckFilePermissions(c, report);
  std::map<std::string, bool> loads;  // by record name
  for (const auto& k : c.keys) {
    if (k.state != KeyState::kRevoked) {
      auto key = world.LoadKey(k);
      loads[k.selector + "._domainkey." + k.domain] = key.has_value();
      if (!key)
        report.Add(Severity::kError, k, "its key file cannot be loaded (" + key.error().message + ")",
                   k.state == KeyState::kActive || k.state == KeyState::kReady
                       ? "restore the file, or replace the key with `dkimrotor rotate -c " + c.config_path +
                             " --domain " + k.domain + " --emergency --selector " + k.selector + "`"
                       : "restore the file from a backup of the keystore");
    }
    CheckLate(c, k, report);
    if (RecordShouldBeUp(c, k)) CheckKeyDns(c, **checker, k, report);
  }
  CheckUsableKeys(c, loads, report);
  CheckDelegations(c, **checker, report);

  if (args.Has("--json"))
    report.PrintJson();
  else
    report.PrintText();
  return report.errors() ? kExitFailure : kExitOk;
}

}  // namespace dkimrotor::cli
