// Reads an OpenDKIM configuration (opendkim.conf(5)) with the tables it names (KeyTable,
// SigningTable, InternalHosts, plain files, refile: patterns and comma-separated lists) and
// decides what a dkimrotor configuration needs: the signing domains and the keys to import,
// the settings that carry over, and one line for each thing that does not.
// Reads files only; imports nothing and writes nothing (cli/ does that through the keystore).
// Returns plain values; stateless, safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace dkimrotor::migrate {

// A key OpenDKIM signs with, to be imported into the keystore under its own selector.
struct KeyToImport {
  std::string selector;
  std::string key_file;  // absolute path
  std::string key_name;  // the KeyTable name ("KeyFile" in single-key mode), for messages
};

// One `domains` entry: the d= domain and the keys that sign for it.
struct DomainPlan {
  std::string domain;  // lowercase, no trailing dot
  bool subdomains = false;
  std::vector<KeyToImport> keys;  // distinct selectors, in the order OpenDKIM's tables list them
};

// Unset optionals: the OpenDKIM file left the setting at its default, and dkimrotor's
// default is used.
struct MigrationPlan {
  std::string source;  // the opendkim.conf path read
  std::vector<DomainPlan> domains;
  std::optional<std::string> socket;
  std::optional<std::vector<std::string>> internal_hosts;  // "ADDRESS/PREFIX" or bare addresses
  std::optional<std::string> canonicalization;             // "header/body", both spelt out
  std::optional<std::vector<std::string>> headers;         // lowercase names
  std::optional<std::vector<std::string>> oversign;
  std::optional<long long> signature_lifetime;  // seconds
  std::optional<std::string> user;
  std::optional<std::string> group;
  std::optional<unsigned> socket_mode;
  std::optional<std::string> on_error;  // "tempfail" or "accept"
  bool syslog = false;
  std::optional<std::vector<std::string>> resolvers;
  std::optional<long long> dns_timeout;  // seconds
  // What did not carry over or changed meaning, one line each, naming the setting or table
  // line. Never holds key material.
  std::vector<std::string> notes;
};

// kIo (naming the path) when opendkim.conf itself cannot be read. Problems with the tables it
// names, with single entries or with key files' paths become notes: the rest still migrates.
// Key files are not opened here (see key_file_check.h).
util::Result<MigrationPlan> PlanMigration(const std::string& opendkim_conf);

}  // namespace dkimrotor::migrate
