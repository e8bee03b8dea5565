// Writes the dkimrotor configuration (libconfig syntax, what conf::LoadConfig reads) for a
// MigrationPlan: the carried-over settings, the keystore, and one domains entry per signing
// domain with its imported selectors in a comment. No publish_hook: OpenDKIM's records are
// already in DNS, and the new keys dkimrotor makes wait for whoever publishes records today.
// The dns section is written as one block, always, so it can be edited as a whole.
// Pure text; stateless, safe from any thread.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "migrate/opendkim_migration.h"
#include "signer/algorithm.h"

namespace dkimrotor::migrate {

struct RenderOptions {
  std::string keystore_directory;  // absolute
  std::string stream;              // names this server in new selectors ({stream})
  // Each domain's algorithms, from the keys to import, repeats allowed; a domain not listed (all
  // its keys failed) signs rsa-sha256 with new keys.
  std::map<std::string, std::vector<signer::Algorithm>> algorithms;
};

std::string RenderConfig(const MigrationPlan& plan, const RenderOptions& options);

// A libconfig string ("a\"b") and a list of them (["a", "b"]), as RenderConfig writes them.
std::string LibconfigString(const std::string& s);
std::string LibconfigList(const std::vector<std::string>& items);

}  // namespace dkimrotor::migrate
