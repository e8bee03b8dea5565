// `dkimrotor keys | dns | check | rotate`: the keystore seen and steered from the command line.
// keys, dns and check only read the state, so they work while the daemon runs; rotate and
// keys import take the keystore's lock, as the daemon's rotation engine does.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "conf/practices.h"
#include "keystore/dns/dns_checker.h"
#include "keystore/dns/key_record.h"
#include "keystore/keystore_world.h"
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

const keystore::StreamPolicy* PolicyFor(const Loaded& l, const KeyInfo& k) {
  for (const auto& p : l.rotation.streams)
    if (p.domain == k.domain && p.algorithm == k.algorithm) return &p;
  return nullptr;
}

bool HasHook(const conf::Config& c, const std::string& domain) {
  for (const auto& d : c.domains)
    if (d.domain == domain) return !d.publish_hook.empty();
  return false;
}

keystore::TimePoint Now() {
  return std::chrono::time_point_cast<std::chrono::seconds>(keystore::Clock::now());
}

constexpr const char* kKeysUsage =
    "usage: dkimrotor keys -c FILE [--json]\n"
    "       dkimrotor keys import -c FILE --domain D --selector S --key FILE.pem\n"
    "Lists every key: state, since when, and what happens next. 'import' adds an existing key;\n"
    "it enters as pending and goes through the same DNS check as a generated one.\n";

int ImportKey(const Args& args) {
  auto loaded = Load(args);
  if (!loaded) return Fail("keys import", loaded.error().message);
  auto domain = args.Get("--domain");
  auto selector = args.Get("--selector");
  auto file = args.Get("--key");
  if (!domain || !selector || !file) return Usage("keys import", "--domain, --selector and --key are required", kKeysUsage);
  const auto& config = loaded->config;
  bool configured = false;
  for (const auto& d : config.domains) configured |= d.domain == *domain;
  if (!configured) return Fail("keys import", "domain " + *domain + " is not in the configuration");
  if (auto st = signer::ValidateDnsName(*selector, "selector"); !st) return Fail("keys import", st.error().message);
  auto lock = keystore::KeystoreLock::Acquire(config.keystore.directory);
  if (!lock) return Fail("keys import", lock.error().message);
  auto keys = keystore::LoadState(config.keystore.directory);  // again, under the lock
  if (!keys) return Fail("keys import", keys.error().message);
  for (const auto& k : *keys)
    if (k.domain == *domain && k.selector == *selector)
      return Fail("keys import", "selector " + *selector + " of " + *domain +
                                     " exists already (state " + std::string(keystore::KeyStateName(k.state)) +
                                     "): selectors are never reused");
  auto pem = util::ReadSecretFile(*file);
  if (!pem) return Fail("keys import", pem.error().message);
  auto key = signer::PrivateKey::FromPem(*pem);
  if (!key) return Fail("keys import", "key file " + *file + ": " + key.error().message);
  const signer::Algorithm algorithm = (*key)->algorithm();
  bool stream = false;
  for (const auto& p : loaded->rotation.streams) stream |= p.domain == *domain && p.algorithm == algorithm;
  if (!stream)
    return Fail("keys import", *domain + " does not sign with " + std::string(signer::AlgorithmName(algorithm)) +
                                   " (its algorithms setting)");
  KeyInfo k;
  k.domain = *domain;
  k.selector = *selector;
  k.algorithm = algorithm;
  k.bits = (*key)->bits();
  k.state = KeyState::kPending;
  k.created = k.state_since = Now();
  k.public_key = (*key)->dkim_public_key();
  const std::string dir = config.keystore.directory;
  ::mkdir((dir + "/keys").c_str(), 0700);
  auto pem_out = (*key)->ToPem();
  if (!pem_out) return Fail("keys import", pem_out.error().message);
  if (auto st = util::WriteFileAtomically(keystore::KeyPath(dir, k), *pem_out, 0600); !st)
    return Fail("keys import", st.error().message);
  keys->push_back(k);
  if (auto st = keystore::SaveState(dir, *keys); !st) return Fail("keys import", st.error().message);
  std::printf("imported %s._domainkey.%s (%s, %d bits) as pending: it signs once DNS serves it\n",
              k.selector.c_str(), k.domain.c_str(), std::string(signer::AlgorithmName(k.algorithm)).c_str(), k.bits);
  return kExitOk;
}

}  // namespace

int RunKeys(std::span<char*> argv) {
  Args args(argv, {"--config", "--domain", "--selector", "--key"}, {"--json", "--help"});
  if (!args.ok()) return Usage("keys", args.error(), kKeysUsage);
  if (args.Has("--help")) {
    std::fputs(kKeysUsage, stdout);
    return kExitOk;
  }
  if (!args.positional().empty() && args.positional()[0] == "import") return ImportKey(args);
  if (!args.positional().empty()) return Usage("keys", "unknown argument " + args.positional()[0], kKeysUsage);
  auto loaded = Load(args);
  if (!loaded) return Fail("keys", loaded.error().message);
  const auto now = Now();
  std::map<std::string, std::vector<const KeyInfo*>> by_domain;
  for (const auto& d : loaded->config.domains) by_domain[d.domain];
  for (const auto& k : loaded->keys) by_domain[k.domain].push_back(&k);

  if (args.Has("--json")) {
    nlohmann::json root;
    root["domains"] = nlohmann::json::array();
    for (const auto& [domain, keys] : by_domain) {
      nlohmann::json d;
      d["domain"] = domain;
      d["keys"] = nlohmann::json::array();
      for (const KeyInfo* k : keys) {
        nlohmann::json j;
        j["selector"] = k->selector;
        j["algorithm"] = std::string(signer::AlgorithmName(k->algorithm));
        j["bits"] = k->bits;
        j["state"] = std::string(keystore::KeyStateName(k->state));
        j["created"] = keystore::Rfc3339(k->created);
        j["since"] = keystore::Rfc3339(k->state_since);
        // What the engine last saw in DNS when it was not the expected record.
        j["dns_problem"] = k->dns_problem.empty() ? nlohmann::json() : nlohmann::json(k->dns_problem);
        j["dns_mismatch_since"] = k->dns_mismatch_since
                                      ? nlohmann::json(keystore::Rfc3339(*k->dns_mismatch_since))
                                      : nlohmann::json();
        if (const auto* p = PolicyFor(*loaded, *k)) {
          auto next = keystore::NextStepOf(*k, loaded->keys, *p, loaded->rotation.min_propagation,
                                           HasHook(loaded->config, k->domain), now);
          j["next_step"] = next.what;
          j["next_step_at"] = next.when ? nlohmann::json(keystore::Rfc3339(*next.when)) : nlohmann::json();
          j["rotation_late"] = next.late;
        }
        d["keys"].push_back(std::move(j));
      }
      root["domains"].push_back(std::move(d));
    }
    std::cout << root.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-16s %-34s %-20s %-9s %-21s %s\n", "DOMAIN", "SELECTOR", "ALGORITHM", "STATE", "SINCE", "NEXT");
  for (const auto& [domain, keys] : by_domain) {
    if (keys.empty()) std::printf("%-16s (no keys yet)\n", domain.c_str());
    for (const KeyInfo* k : keys) {
      std::string next = "-";
      if (const auto* p = PolicyFor(*loaded, *k)) {
        auto n = keystore::NextStepOf(*k, loaded->keys, *p, loaded->rotation.min_propagation,
                                      HasHook(loaded->config, k->domain), now);
        next = n.what + (n.when ? " at " + keystore::Rfc3339(*n.when) : "") + (n.late ? " [LATE]" : "");
      } else if (k->state != KeyState::kRevoked) {
        next = "not in the configuration any more";
      }
      std::string alg = std::string(signer::AlgorithmName(k->algorithm)) + "/" + std::to_string(k->bits);
      std::printf("%-16s %-34s %-20s %-9s %-21s %s\n", k->domain.c_str(), k->selector.c_str(), alg.c_str(),
                  std::string(keystore::KeyStateName(k->state)).c_str(),
                  keystore::Rfc3339(k->state_since).c_str(), next.c_str());
    }
  }
  return kExitOk;
}

int RunDns(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor dns -c FILE [--domain D]\n"
      "Prints the DNS records for every key that is published or about to be, as zone-file lines\n"
      "(TXT strings of at most 255 characters), including the empty-key records of revoked keys.\n";
  Args args(argv, {"--config", "--domain"}, {"--help"});
  if (!args.ok()) return Usage("dns", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto loaded = Load(args);
  if (!loaded) return Fail("dns", loaded.error().message);
  auto only = args.Get("--domain");
  for (const auto& k : loaded->keys) {
    if (only && k.domain != *only) continue;
    const bool revoked = k.state == KeyState::kRevoked;
    const std::string value = revoked ? keystore::RevokedRecordValue() : keystore::KeyRecordValue(k);
    std::printf("; %s %s since %s\n", std::string(signer::AlgorithmName(k.algorithm)).c_str(), std::string(keystore::KeyStateName(k.state)).c_str(),
                keystore::Rfc3339(k.state_since).c_str());
    std::printf("%s._domainkey.%s. 3600 IN TXT (", k.selector.c_str(), k.domain.c_str());
    for (const auto& part : keystore::SplitTxtStrings(value)) std::printf(" \"%s\"", part.c_str());
    std::printf(" )\n");
  }
  return kExitOk;
}

int RunCheck(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor check -c FILE\n"
      "Checks the configuration against the M3AAWG practices, the key files and their modes, and\n"
      "asks DNS for every ready, active, retiring and revoked key. Exits 1 on any error.\n";
  Args args(argv, {"--config"}, {"--help"});
  if (!args.ok()) return Usage("check", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto loaded = Load(args);
  if (!loaded) return Fail("check", loaded.error().message);
  int errors = 0, warnings = 0;
  for (const auto& w : conf::CheckPractices(loaded->config)) {
    std::printf("warning: %s\n", w.c_str());
    ++warnings;
  }
  auto checker = keystore::DnsChecker::Create(DnsOptionsFrom(loaded->config));
  if (!checker) return Fail("check", checker.error().message);
  const auto now = Now();
  const std::string dir = loaded->config.keystore.directory;
  for (const auto& k : loaded->keys) {
    const std::string name = k.selector + "._domainkey." + k.domain;
    if (k.state != KeyState::kRevoked) {
      auto pem = util::ReadSecretFile(keystore::KeyPath(dir, k));
      if (!pem) {
        std::printf("error: %s: %s\n", name.c_str(), pem.error().message.c_str());
        ++errors;
      }
    }
    if (const auto* p = PolicyFor(*loaded, k)) {
      auto next = keystore::NextStepOf(k, loaded->keys, *p, loaded->rotation.min_propagation,
                                       HasHook(loaded->config, k.domain), now);
      if (next.late) {
        std::printf("warning: %s: rotation is late (due %s) and no key is ready\n", name.c_str(),
                    next.when ? keystore::Rfc3339(*next.when).c_str() : "?");
        ++warnings;
      }
    }
    if (k.state == KeyState::kPending) continue;
    auto r = (*checker)->Check(k.domain, k.selector, k.algorithm,
                               k.state == KeyState::kRevoked ? "" : k.public_key);
    for (const auto& w : r.warnings) {
      std::printf("warning: %s: %s\n", name.c_str(), w.c_str());
      ++warnings;
    }
    if (r.as_expected) {
      std::printf("ok: %s (%s) %s\n", name.c_str(), std::string(keystore::KeyStateName(k.state)).c_str(),
                  k.state == KeyState::kRevoked ? "revoked in DNS" : "served by DNS");
    } else {
      std::printf("error: %s (%s): DNS %s: %s\n", name.c_str(), std::string(keystore::KeyStateName(k.state)).c_str(),
                  std::string(keystore::DnsVerdictName(r.verdict)).c_str(), r.detail.c_str());
      ++errors;
    }
  }
  std::printf("%d error(s), %d warning(s)\n", errors, warnings);
  return errors ? kExitFailure : kExitOk;
}

int RunRotate(std::span<char*> argv) {
  static constexpr const char* kUsage =
      "usage: dkimrotor rotate -c FILE --domain D\n"
      "       dkimrotor rotate -c FILE --domain D --emergency --selector S\n"
      "Performs one ordinary rotation step now; with --emergency takes S out of signing at once\n"
      "and revokes it without grace. Takes the keystore's lock: stop the daemon first.\n";
  Args args(argv, {"--config", "--domain", "--selector"}, {"--emergency", "--help"});
  if (!args.ok()) return Usage("rotate", args.error(), kUsage);
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  auto domain = args.Get("--domain");
  if (!domain) return Usage("rotate", "--domain is required", kUsage);
  if (args.Has("--emergency") != args.Get("--selector").has_value())
    return Usage("rotate", "--emergency and --selector go together", kUsage);
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
  keystore::RotationEngine engine(loaded->rotation, std::move(*keys), &world, &holder);
  if (auto st = engine.Start(); !st) return Fail("rotate", st.error().message);
  util::Status st = args.Has("--emergency") ? engine.EmergencyRevoke(*domain, *args.Get("--selector"))
                                            : engine.Rotate(*domain);
  if (!st) return Fail("rotate", st.error().message);
  if (auto step = engine.Step(); !step) return Fail("rotate", step.error().message);  // revoke now
  return kExitOk;
}

}  // namespace dkimrotor::cli
