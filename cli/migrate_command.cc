// `dkimrotor migrate --from-opendkim FILE --output NEW.conf`: an OpenDKIM installation turned
// into a dkimrotor configuration and keystore. migrate/ reads OpenDKIM's files and writes the
// new configuration's text; here the text is checked with the real loader before it is
// written, and every key enters the keystore through keys import's own path
// (keystore::PrepareImport, under the keystore's lock), as pending: it signs once DNS serves it.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wiring.h"
#include "conf/loader.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/admin_commands.h"
#include "keystore/storage/state_store.h"
#include "migrate/config_writer.h"
#include "migrate/key_file_check.h"
#include "migrate/opendkim_migration.h"
#include "util/file.h"

namespace dkimrotor::cli {
namespace {

constexpr const char* kUsage =
    "usage: dkimrotor migrate --from-opendkim /etc/opendkim.conf --output NEW.conf\n"
    "                         [--keystore DIR] [--stream NAME] [--force]\n"
    "Reads OpenDKIM's configuration with its KeyTable, SigningTable and InternalHosts, writes an\n"
    "equivalent dkimrotor configuration to NEW.conf (refused if it exists, unless --force), and\n"
    "imports every key OpenDKIM signs with, under its selector, into the keystore (DIR, default\n"
    "/var/lib/dkimrotor; written into NEW.conf) as pending: each signs once DNS serves its record,\n"
    "which it already does. Changes no DNS record. Prints one line for everything that could not\n"
    "be carried over. A key file its group or others can read is imported and reported; a missing\n"
    "or unreadable one is reported and skipped. --stream names this server in the selectors of\n"
    "the keys dkimrotor makes later (default: the host name).\n"
    "Exit status: 0 the configuration was written (warnings allowed), 1 an error, 2 bad usage.\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "dkimrotor migrate: %s\n", message.c_str());
  return kExitFailure;
}

// The host's short name as a stream name (letters, digits, '-'), or "mta1".
std::string DefaultStream() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "mta1";
  std::string s;
  for (const char* p = host; *p && *p != '.'; ++p)
    s += std::isalnum(static_cast<unsigned char>(*p)) ? static_cast<char>(std::tolower(*p)) : '-';
  while (!s.empty() && s.front() == '-') s.erase(0, 1);
  while (!s.empty() && s.back() == '-') s.pop_back();
  if (s.size() > 20) s.resize(20);
  return s.empty() ? "mta1" : s;
}

// The loader's verdict on one snippet of configuration: empty when it loads, else the reason
// (the loader's message without its "FILE:LINE: " prefix).
std::string LoaderRefuses(const std::string& snippet) {
  auto c = conf::ParseConfig(snippet, "-");
  if (c) return "";
  std::string why = c.error().message;
  if (size_t colon = why.find(": "); why.rfind("-:", 0) == 0 && colon != std::string::npos) why.erase(0, colon + 2);
  return why;
}

// Drops from the plan each value the loader refuses, with a note naming it, so that one odd
// value (OpenDKIM's "inet:8891@localhost" is fine, "localhost" as a signing domain is not)
// costs that value, not the migration.
void DropWhatDoesNotLoad(migrate::MigrationPlan& plan, const std::string& stream) {
  auto check = [&](auto& field, const std::string& snippet, const std::string& what) {
    if (!field) return;
    if (std::string why = LoaderRefuses(snippet); !why.empty()) {
      plan.notes.push_back(what + ": not carried over: " + why);
      field.reset();
    }
  };
  if (plan.socket) check(plan.socket, "milter: { socket = " + migrate::LibconfigString(*plan.socket) + "; };", "Socket " + *plan.socket);
  if (plan.user) check(plan.user, "milter: { user = " + migrate::LibconfigString(*plan.user) + "; };", "UserID " + *plan.user);
  if (plan.group) check(plan.group, "milter: { group = " + migrate::LibconfigString(*plan.group) + "; };", "UserID group " + *plan.group);
  if (plan.headers) check(plan.headers, "signing: { headers = " + migrate::LibconfigList(*plan.headers) + "; };", "SignHeaders");
  if (plan.oversign) check(plan.oversign, "signing: { oversign = " + migrate::LibconfigList(*plan.oversign) + "; };", "OversignHeaders");
  if (plan.resolvers) check(plan.resolvers, "dns: { resolvers = " + migrate::LibconfigList(*plan.resolvers) + "; };", "Nameservers");
  std::vector<migrate::DomainPlan> kept;
  for (auto& d : plan.domains) {
    const std::string why = LoaderRefuses("domains = ({ domain = " + migrate::LibconfigString(d.domain) + "; stream = " + migrate::LibconfigString(stream) + "; });");
    if (why.empty()) {
      kept.push_back(std::move(d));
      continue;
    }
    std::string selectors;
    for (const auto& k : d.keys) selectors += (selectors.empty() ? "" : ", ") + k.selector;
    plan.notes.push_back("signing domain " + d.domain + ": not carried over, its keys (" +
                         (selectors.empty() ? "none" : selectors) + ") not imported: " + why);
  }
  plan.domains = std::move(kept);
}

}  // namespace

int RunMigrate(std::span<char*> argv) {
  Args args(argv, {"--from-opendkim", "--output", "--keystore", "--stream"}, {"--force", "--help"});
  auto usage = [](const std::string& m) {
    std::fprintf(stderr, "dkimrotor migrate: %s\n\n%s", m.c_str(), kUsage);
    return kExitUsage;
  };
  if (!args.ok()) return usage(args.error());
  if (args.Has("--help")) {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (!args.positional().empty()) return usage("unknown argument " + args.positional()[0]);
  auto from = args.Get("--from-opendkim");
  auto output = args.Get("--output");
  if (!from || !output) return usage("--from-opendkim and --output are required");
  const std::string keystore_dir = args.Get("--keystore").value_or("/var/lib/dkimrotor");
  if (keystore_dir.empty() || keystore_dir[0] != '/') return usage("--keystore takes an absolute path");

  struct stat st {};
  if (!args.Has("--force") && ::lstat(output->c_str(), &st) == 0)
    return Fail(*output + " exists: not overwritten; choose another --output or add --force");

  auto plan = migrate::PlanMigration(*from);
  if (!plan) return Fail(plan.error().message);
  const std::string stream = args.Get("--stream").value_or(DefaultStream());
  if (std::string why = LoaderRefuses("domains = ({ domain = \"example.com\"; stream = " + migrate::LibconfigString(stream) + "; });");
      !why.empty())
    return usage("--stream " + stream + ": " + why);
  DropWhatDoesNotLoad(*plan, stream);
  if (plan->domains.empty())
    plan->notes.push_back(*from + " names no domain dkimrotor can sign: domains = () is written; add them to " +
                          *output);

  // Open every key first: the configuration's algorithms come from the keys that import.
  struct Ready {
    std::string domain;
    migrate::KeyToImport key;
    migrate::KeyFileCheck check;
  };
  std::vector<Ready> ready;
  std::vector<std::string> notes = plan->notes;
  migrate::RenderOptions render;
  render.keystore_directory = keystore_dir;
  render.stream = stream;
  for (const auto& d : plan->domains) {
    auto& algorithms = render.algorithms[d.domain];
    for (const auto& k : d.keys) {
      auto check = migrate::CheckKeyFile(k.key_file);
      if (!check) {
        notes.push_back(k.selector + "._domainkey." + d.domain + " (" + k.key_name + "): not imported: " +
                        check.error().message);
        continue;
      }
      if (!check->exposure.empty()) notes.push_back(k.selector + "._domainkey." + d.domain + ": " + check->exposure);
      algorithms.push_back(check->algorithm);  // RenderConfig lists each once
      ready.push_back(Ready{d.domain, k, std::move(*check)});
    }
    if (algorithms.empty())
      notes.push_back(d.domain + ": no OpenDKIM key could be imported: it signs once dkimrotor's own new key is "
                                 "published (dkimrotor dns -c " + *output + ")");
  }

  const std::string text = migrate::RenderConfig(*plan, render);
  auto config = conf::ParseConfig(text, *output);
  if (!config)
    return Fail("the configuration made from " + *from + " does not load, so nothing was written:\n" +
                config.error().message);
  auto rotation = RotationOptionsFrom(*config);
  if (!rotation) return Fail(rotation.error().message);
  if (auto w = util::WriteFileAtomically(*output, text, 0644); !w) return Fail(w.error().message);
  std::printf("wrote %s (%zu domain(s))\n", output->c_str(), config->domains.size());

  int failed = 0;
  if (!ready.empty()) {
    auto lock = keystore::KeystoreLock::Acquire(keystore_dir);
    if (!lock) return Fail(lock.error().message + "; the configuration is written, import the keys again with "
                                                   "dkimrotor migrate --force once it is free");
    auto keys = keystore::LoadState(keystore_dir);
    if (!keys) return Fail(keys.error().message);
    ::mkdir((keystore_dir + "/keys").c_str(), 0700);
    for (const Ready& r : ready) {
      const std::string name = r.key.selector + "._domainkey." + r.domain;
      auto imported = keystore::PrepareImport(*rotation, *keys, r.domain, r.key.selector, r.check.pem,
                                              "key file " + r.key.key_file, Now());
      if (!imported) {
        notes.push_back(name + ": not imported: " + imported.error().message);
        continue;
      }
      const keystore::KeyInfo& k = imported->info;
      if (auto w = util::WriteFileAtomically(keystore::KeyPath(keystore_dir, k), imported->pem, 0600); !w) {
        std::fprintf(stderr, "dkimrotor migrate: %s: %s\n", name.c_str(), w.error().message.c_str());
        ++failed;
        continue;
      }
      keys->push_back(k);
      // Saved after each key, as keys import does: a key file never outlives its state entry.
      if (auto s = keystore::SaveState(keystore_dir, *keys); !s) return Fail(s.error().message);
      std::printf("imported %s (%s, %d bits) as pending: it signs once DNS serves it\n", name.c_str(),
                  std::string(signer::AlgorithmName(k.algorithm)).c_str(), k.bits);
    }
  }
  for (const std::string& n : notes) std::printf("warning: %s\n", n.c_str());
  return failed == 0 ? kExitOk : kExitFailure;
}

}  // namespace dkimrotor::cli
