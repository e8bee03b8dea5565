#include "keystore/storage/state_store.h"

#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "signer/signing_key.h"
#include "util/file.h"

namespace dkimrotor::keystore {
namespace {

using nlohmann::json;

void PutTime(json& j, const char* name, const std::optional<TimePoint>& t) {
  if (t) j[name] = ToUnix(*t);
}

const char* JsonTypeName(const json& j) {
  // nlohmann's type_name() says "number" for all three; the error names the file's own words.
  return j.is_number_float() ? "a fractional number" : j.type_name();
}

// Reads one key entry with every field's type checked, so that a hand-edited or damaged file
// gives an error naming the field instead of a json::exception escaping to std::terminate.
class EntryReader {
 public:
  EntryReader(const json& entry, std::string where) : entry_(entry), where_(std::move(where)) {}

  const std::string& error() const { return error_; }
  bool ok() const { return error_.empty(); }

  std::string String(const char* name, bool required) {
    const json* v = Find(name, required);
    if (v == nullptr) return {};
    if (!v->is_string()) {
      Wrong(name, "a string", *v);
      return {};
    }
    return v->get<std::string>();
  }

  // A whole number in [min, max]; JSON has no integer type of its own, so 2048.0 is refused
  // too rather than silently truncated.
  std::optional<int64_t> Integer(const char* name, bool required, int64_t min, int64_t max) {
    const json* v = Find(name, required);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) {
      Wrong(name, "a whole number", *v);
      return std::nullopt;
    }
    int64_t n = 0;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(max)) return OutOfRange(name, std::to_string(u), min, max);
      n = static_cast<int64_t>(u);
    } else {
      n = v->get<int64_t>();
    }
    if (n < min || n > max) return OutOfRange(name, std::to_string(n), min, max);
    return n;
  }

  // Seconds since the epoch, up to the end of year 9999 (what RFC 3339 output can spell).
  std::optional<TimePoint> Time(const char* name, bool required) {
    auto n = Integer(name, required, 0, kLastTime);
    if (!n) return std::nullopt;
    return FromUnix(*n);
  }

  bool Bool(const char* name) {
    const json* v = Find(name, /*required=*/false);
    if (v == nullptr) return false;
    if (!v->is_boolean()) {
      Wrong(name, "true or false", *v);
      return false;
    }
    return v->get<bool>();
  }

  // Later errors name the key by its record once its selector and domain are known good.
  void NameKey(const std::string& name) { where_ = "key " + name; }

  void Fail(const std::string& why) {
    if (error_.empty()) error_ = where_ + ": " + why;
  }

 private:
  static constexpr int64_t kLastTime = 253402300799;  // 9999-12-31T23:59:59Z

  const json* Find(const char* name, bool required) {
    auto it = entry_.find(name);
    if (it == entry_.end() || it->is_null()) {
      if (required) Fail("field \"" + std::string(name) + "\" is missing");
      return nullptr;
    }
    return &*it;
  }
  void Wrong(const char* name, const char* expected, const json& v) {
    Fail("field \"" + std::string(name) + "\" must be " + expected + ", not " + JsonTypeName(v));
  }
  std::nullopt_t OutOfRange(const char* name, const std::string& value, int64_t min, int64_t max) {
    Fail("field \"" + std::string(name) + "\" is " + value + ", outside " + std::to_string(min) +
         ".." + std::to_string(max));
    return std::nullopt;
  }

  const json& entry_;
  std::string where_;
  std::string error_;
};

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
  auto version_it = root.find("version");
  if (version_it == root.end()) return fail("field \"version\" is missing");
  if (!version_it->is_number_integer())
    return fail(std::string("field \"version\" must be a whole number, not ") +
                JsonTypeName(*version_it));
  if (version_it->get<int64_t>() != kStateVersion)
    return fail("unknown version " + version_it->dump() + "; this dkimrotor reads version " +
                std::to_string(kStateVersion));
  auto keys_it = root.find("keys");
  if (keys_it == root.end() || !keys_it->is_array()) return fail("no \"keys\" array");
  std::vector<KeyInfo> keys;
  keys.reserve(keys_it->size());
  for (size_t i = 0; i < keys_it->size(); ++i) {
    const json& j = (*keys_it)[i];
    const std::string where = "key #" + std::to_string(i + 1);
    if (!j.is_object()) return fail(where + " must be an object, not " + JsonTypeName(j));
    EntryReader r(j, where);
    KeyInfo k;
    k.domain = r.String("domain", true);
    k.selector = r.String("selector", true);
    // The selector and domain name the key file (KeyPath) and the DNS record the hooks change:
    // "../x" or "a/b" here would point key destruction and publication somewhere else.
    if (r.ok()) {
      if (auto st = signer::ValidateDnsName(k.domain, "field \"domain\""); !st)
        r.Fail(st.error().message);
      else if (auto st2 = signer::ValidateDnsName(k.selector, "field \"selector\""); !st2)
        r.Fail(st2.error().message);
      else
        r.NameKey(k.selector + "._domainkey." + k.domain);
    }
    const std::string algorithm_name = r.String("algorithm", true);
    if (r.ok()) {
      auto algorithm = signer::ParseAlgorithm(algorithm_name);
      if (!algorithm) r.Fail(algorithm.error().message);
      else k.algorithm = *algorithm;
    }
    k.bits = static_cast<int>(r.Integer("bits", true, 0, 65536).value_or(0));
    const std::string state_name = r.String("state", true);
    if (r.ok()) {
      auto state = ParseKeyState(state_name);
      if (!state) r.Fail(state.error().message);
      else k.state = *state;
    }
    k.created = r.Time("created", true).value_or(TimePoint{});
    k.state_since = r.Time("state_since", true).value_or(TimePoint{});
    k.published = r.Time("published", false);
    k.dns_ok_since = r.Time("dns_ok_since", false);
    // Both are absent from files written before DNS was re-checked: nothing known yet.
    k.dns_mismatch_since = r.Time("dns_mismatch_since", false);
    k.dns_problem = r.String("dns_problem", false);
    k.activated = r.Time("activated", false);
    k.retired = r.Time("retired", false);
    k.revoke_published = r.Time("revoke_published", false);
    k.revoked = r.Time("revoked", false);
    k.emergency = r.Bool("emergency");
    k.public_key = r.String("public_key", true);
    if (!r.ok()) return fail(r.error());
    keys.push_back(std::move(k));
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
