#include "keystore/storage/state_store.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "util/file.h"

namespace dkimrotor::keystore {
namespace {

using nlohmann::json;

void PutTime(json& j, const char* name, const std::optional<TimePoint>& t) {
  if (t) j[name] = ToUnix(*t);
}

std::optional<TimePoint> GetTime(const json& j, const char* name) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return FromUnix(it->get<int64_t>());
}

// Any *.pem under keys/: evidence that this folder has been a keystore before.
int CountKeyFiles(const std::string& directory) {
  std::string keys = directory + "/keys";
  DIR* d = ::opendir(keys.c_str());
  if (d == nullptr) return 0;
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".pem") ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace

std::string StatePath(const std::string& directory) { return directory + "/state.json"; }

std::string KeyPath(const std::string& directory, const KeyInfo& key) {
  return directory + "/keys/" + key.selector + "._domainkey." + key.domain + ".pem";
}

std::string StateToJson(const std::vector<KeyInfo>& keys) {
  json root;
  root["version"] = kStateVersion;
  root["keys"] = json::array();
  for (const auto& k : keys) {
    json j;
    j["domain"] = k.domain;
    j["selector"] = k.selector;
    j["algorithm"] = std::string(signer::AlgorithmName(k.algorithm));
    j["bits"] = k.bits;
    j["state"] = std::string(KeyStateName(k.state));
    j["created"] = ToUnix(k.created);
    j["state_since"] = ToUnix(k.state_since);
    PutTime(j, "published", k.published);
    PutTime(j, "dns_ok_since", k.dns_ok_since);
    PutTime(j, "dns_mismatch_since", k.dns_mismatch_since);
    if (!k.dns_problem.empty()) j["dns_problem"] = k.dns_problem;
    PutTime(j, "activated", k.activated);
    PutTime(j, "retired", k.retired);
    PutTime(j, "revoke_published", k.revoke_published);
    PutTime(j, "revoked", k.revoked);
    if (k.emergency) j["emergency"] = true;
    j["public_key"] = k.public_key;
    root["keys"].push_back(std::move(j));
  }
  return root.dump(2) + "\n";
}

util::Result<std::vector<KeyInfo>> StateFromJson(const std::string& text, const std::string& source) {
  auto fail = [&](const std::string& why) {
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "keystore state " + source + " is unreadable (" + why +
                         "): restore it from a backup; dkimrotor will not start afresh, because "
                         "that would orphan the selectors already published in DNS");
  };
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) return fail("not valid JSON");
  if (root.value("version", 0) != kStateVersion)
    return fail("unknown version " + std::to_string(root.value("version", 0)));
  auto keys_it = root.find("keys");
  if (keys_it == root.end() || !keys_it->is_array()) return fail("no \"keys\" array");
  std::vector<KeyInfo> keys;
  try {
    for (const auto& j : *keys_it) {
      KeyInfo k;
      k.domain = j.at("domain").get<std::string>();
      k.selector = j.at("selector").get<std::string>();
      auto algorithm = signer::ParseAlgorithm(j.at("algorithm").get<std::string>());
      if (!algorithm) return fail("key " + k.selector + "._domainkey." + k.domain + ": " +
                                  algorithm.error().message);
      k.algorithm = *algorithm;
      k.bits = j.at("bits").get<int>();
      auto state = ParseKeyState(j.at("state").get<std::string>());
      if (!state) return fail(state.error().message);
      k.state = *state;
      k.created = FromUnix(j.at("created").get<int64_t>());
      k.state_since = FromUnix(j.at("state_since").get<int64_t>());
      k.published = GetTime(j, "published");
      k.dns_ok_since = GetTime(j, "dns_ok_since");
      // Both are absent from files written before DNS was re-checked: nothing known yet.
      k.dns_mismatch_since = GetTime(j, "dns_mismatch_since");
      k.dns_problem = j.value("dns_problem", std::string());
      k.activated = GetTime(j, "activated");
      k.retired = GetTime(j, "retired");
      k.revoke_published = GetTime(j, "revoke_published");
      k.revoked = GetTime(j, "revoked");
      k.emergency = j.value("emergency", false);
      k.public_key = j.at("public_key").get<std::string>();
      keys.push_back(std::move(k));
    }
  } catch (const json::exception& e) {
    return fail(std::string("a key entry is incomplete: ") + e.what());
  }
  return keys;
}

util::Result<std::vector<KeyInfo>> LoadState(const std::string& directory) {
  const std::string path = StatePath(directory);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT)
      return util::Err(util::ErrorCode::kIo, "cannot read keystore state " + path);
    if (int n = CountKeyFiles(directory); n > 0)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "keystore state " + path + " is missing but " + std::to_string(n) +
                           " key file(s) are in " + directory +
                           "/keys: restore state.json from a backup (starting afresh would "
                           "orphan selectors published in DNS)");
    return std::vector<KeyInfo>{};
  }
  ASSIGN_OR_RETURN(std::string text, util::ReadFile(path));
  return StateFromJson(text, path);
}

KeyFileSweep SweepKeyFiles(const std::string& directory, const std::vector<KeyInfo>& keys) {
  KeyFileSweep sweep;
  std::set<std::string> known;
  for (const auto& k : keys) {
    const std::string path = KeyPath(directory, k);
    known.insert(path);
    if (k.state != KeyState::kRevoked) continue;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;  // destroyed as it should have been
    if (auto done = util::DestroyFile(path); done) sweep.destroyed_revoked.push_back(path);
    else sweep.errors.push_back(done.error().message);
  }
  const std::string folder = directory + "/keys";
  DIR* d = ::opendir(folder.c_str());
  if (d == nullptr) {
    if (errno != ENOENT) sweep.errors.push_back("cannot list " + folder + ": " + std::strerror(errno));
    return sweep;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  for (const auto& name : names) {
    const std::string path = folder + "/" + name;
    // util::WriteFileAtomically writes NAME.tmp (or NAME.tmp.XXXXXX) beside NAME: a leftover
    // holds a private key no state entry will ever name.
    if (name.find(".pem.tmp") != std::string::npos) {
      if (auto done = util::DestroyFile(path); done) sweep.destroyed_partial.push_back(path);
      else sweep.errors.push_back(done.error().message);
      continue;
    }
    if (name.size() > 4 && name.substr(name.size() - 4) == ".pem" && !known.count(path))
      sweep.orphans.push_back(path);
  }
  return sweep;
}

util::Status SaveState(const std::string& directory, const std::vector<KeyInfo>& keys) {
  return util::WriteFileAtomically(StatePath(directory), StateToJson(keys), 0600);
}

}  // namespace dkimrotor::keystore
