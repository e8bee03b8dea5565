#include "keystore/keystore_world.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cctype>
#include <cstring>

#include "keystore/publish/hook_runner.h"
#include "keystore/storage/state_store.h"
#include "util/file.h"

namespace dkimrotor::keystore {
namespace {

util::Status EnsureFolder(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0 || errno == EEXIST) return util::Ok();
  return util::Err(util::ErrorCode::kIo, "cannot create folder " + path + ": " + std::strerror(errno));
}

std::string_view ObservationName(DnsObservation seen) {
  switch (seen) {
    case DnsObservation::kMatches: return "matches";
    case DnsObservation::kRevoked: return "revoked";
    case DnsObservation::kMissing: return "missing";
    case DnsObservation::kWrong: return "wrong";
    case DnsObservation::kTemporaryFailure: return "temporary_failure";
  }
  return "temporary_failure";
}

}  // namespace

std::string RecordName(const KeyInfo& key, const std::string& zone) {
  return key.selector + "._domainkey." + (zone.empty() ? key.domain : zone);
}

KeystoreWorld::KeystoreWorld(KeystoreWorldOptions options) : options_(std::move(options)) {}

TimePoint KeystoreWorld::Now() {
  if (options_.clock) return options_.clock();
  return std::chrono::time_point_cast<std::chrono::seconds>(Clock::now());
}

util::Result<std::shared_ptr<const signer::PrivateKey>> KeystoreWorld::CreateKey(const KeyInfo& key) {
  ASSIGN_OR_RETURN(auto generated, signer::PrivateKey::Generate(key.algorithm, key.bits));
  ASSIGN_OR_RETURN(std::string pem, generated->ToPem());
  RETURN_IF_ERROR(EnsureFolder(options_.directory));
  RETURN_IF_ERROR(EnsureFolder(options_.directory + "/keys"));
  RETURN_IF_ERROR(util::WriteFileAtomically(KeyPath(options_.directory, key), pem, 0600));
  return generated;
}

util::Result<std::shared_ptr<const signer::PrivateKey>> KeystoreWorld::LoadKey(const KeyInfo& key) {
  const std::string path = KeyPath(options_.directory, key);
  ASSIGN_OR_RETURN(std::string pem, util::ReadSecretFile(path));
  auto loaded = signer::PrivateKey::FromPem(pem);
  if (!loaded) return util::Err(loaded.error().code, "key file " + path + ": " + loaded.error().message);
  if ((*loaded)->dkim_public_key() != key.public_key)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "key file " + path + " does not hold the key the state records for " +
                         key.selector + " (was it replaced by hand?)");
  return loaded;
}

util::Status KeystoreWorld::DestroyKey(const KeyInfo& key) {
  return util::DestroyFile(KeyPath(options_.directory, key));
}

util::Status KeystoreWorld::SaveState(const std::vector<KeyInfo>& keys) {
  RETURN_IF_ERROR(EnsureFolder(options_.directory));
  return keystore::SaveState(options_.directory, keys);
}

KeyFileSweep KeystoreWorld::SweepKeyFiles(const std::vector<KeyInfo>& keys) {
  return keystore::SweepKeyFiles(options_.directory, keys);
}

bool KeystoreWorld::CanPublish(const std::string& domain) { return options_.hooks.count(domain) != 0; }

util::Status KeystoreWorld::Publish(const KeyInfo& key, bool revoke, const std::string& txt_value) {
  auto it = options_.hooks.find(key.domain);
  if (it == options_.hooks.end())
    return util::Err(util::ErrorCode::kNotFound, "no publish hook for " + key.domain);
  const char* action = revoke ? "revoke" : "publish";
  // The owner name to write (which differs from SELECTOR._domainkey.DOMAIN for a delegated
  // domain), and the key's own value, which a hook that guards against clobbering another
  // server's record needs to revoke only what is still this key (contrib/hooks/nsupdate).
  auto zone = options_.delegations.find(key.domain);
  const std::string delegated = zone == options_.delegations.end() ? "" : zone->second;
  std::vector<std::string> env = {"DKIMROTOR_RECORD_NAME=" + RecordName(key, delegated),
                                  "DKIMROTOR_KEY_VALUE=" + KeyRecordValue(key)};
  if (!delegated.empty()) env.push_back("DKIMROTOR_RECORD_ZONE=" + delegated);
  util::Status st = RunHookChecked({it->second.path, action, key.domain, key.selector, txt_value},
                                   it->second.timeout, env);
  if (options_.counters) options_.counters->hook_runs.Add({key.domain, action, st ? "ok" : "error"});
  return st;
}

DnsObservation KeystoreWorld::CheckDns(const KeyInfo& key, bool expect_revoked, std::string* detail) {
  const DnsObservation seen = Observe(key, expect_revoked, detail);
  if (options_.counters) options_.counters->dns_checks.Add({key.domain, std::string(ObservationName(seen))});
  return seen;
}

DnsObservation KeystoreWorld::Observe(const KeyInfo& key, bool expect_revoked, std::string* detail) {
  if (!dns_) {
    auto checker = DnsChecker::Create(options_.dns);
    if (!checker) {
      *detail = checker.error().message;
      return DnsObservation::kTemporaryFailure;
    }
    dns_ = std::move(*checker);
  }
  auto zone = options_.delegations.find(key.domain);
  if (zone != options_.delegations.end()) return ObserveDelegated(key, zone->second, expect_revoked, detail);
  DnsCheckResult r = dns_->Check(key.domain, key.selector, key.algorithm, expect_revoked ? "" : key.public_key);
  *detail = r.detail;
  return FromResult(r);
}

DnsObservation KeystoreWorld::FromResult(const DnsCheckResult& r) {
  switch (r.verdict) {
    case DnsVerdict::kMatches: return r.as_expected ? DnsObservation::kMatches : DnsObservation::kWrong;
    case DnsVerdict::kRevoked: return DnsObservation::kRevoked;
    case DnsVerdict::kMissing: return DnsObservation::kMissing;
    case DnsVerdict::kTemporaryFailure: return DnsObservation::kTemporaryFailure;
    case DnsVerdict::kInconsistent: return DnsObservation::kWrong;  // not everywhere yet
    case DnsVerdict::kWrongKey:
    case DnsVerdict::kMalformed:
    case DnsVerdict::kKeyTooShort: return DnsObservation::kWrong;
  }
  return DnsObservation::kTemporaryFailure;
}

DnsObservation KeystoreWorld::ObserveDelegated(const KeyInfo& key, const std::string& zone,
                                               bool expect_revoked, std::string* detail) {
  const std::string expected_p = expect_revoked ? "" : key.public_key;
  // At the zone first: what the hook wrote.
  DnsCheckResult at_zone = dns_->Check(zone, key.selector, key.algorithm, expected_p);
  if (!at_zone.as_expected) {
    *detail = "at " + RecordName(key, zone) + ": " + at_zone.detail;
    return FromResult(at_zone);
  }
  // A revocation is complete once the zone serves it: the domain's CNAME may be gone already
  // (a customer who left), and must not keep a revoked key's private key alive.
  if (expect_revoked) return DnsObservation::kRevoked;
  // Then as receivers see it: the domain's name must be a CNAME to the zone's record.
  const std::string at_domain = key.selector + "._domainkey." + key.domain;
  const std::string target = RecordName(key, zone);
  const std::string fix = ": the domain's owner must create " + at_domain + ". CNAME " + target +
                          ". (`dkimrotor dns --domain " + key.domain + "` prints every CNAME)";
  DnsCheckResult through = dns_->Check(key.domain, key.selector, key.algorithm, expected_p);
  if (through.verdict == DnsVerdict::kTemporaryFailure) {
    *detail = "at " + at_domain + ": " + through.detail;
    return DnsObservation::kTemporaryFailure;
  }
  auto same = [](std::string a, std::string b) {
    for (auto* s : {&a, &b}) {
      if (!s->empty() && s->back() == '.') s->pop_back();
      for (char& c : *s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return a == b;
  };
  if (through.cnames.empty()) {
    *detail = "CNAME " + at_domain + " is missing (" +
              (through.verdict == DnsVerdict::kMissing ? std::string("no such record")
                                                       : "a record of its own: " + through.detail) + ")" + fix;
    return through.verdict == DnsVerdict::kMissing ? DnsObservation::kMissing : DnsObservation::kWrong;
  }
  if (!same(through.cnames.front(), target)) {
    *detail = "CNAME " + at_domain + " points to " + through.cnames.front() + ", not to " + target + fix;
    return DnsObservation::kWrong;
  }
  *detail = through.as_expected ? "" : "through CNAME " + at_domain + ": " + through.detail;
  return FromResult(through);
}

// Every transition is appended to audit.log in the keystore folder, whoever made it (daemon or
// CLI): "TIME DOMAIN SELECTOR FROM -> TO", so ops can tell which key was live when.
void KeystoreWorld::Audit(const KeyInfo& key, KeyState from, KeyState to) {
  const std::string line = Rfc3339(Now()) + " " + key.domain + " " + key.selector + " " +
                           std::string(KeyStateName(from)) + " -> " + std::string(KeyStateName(to)) +
                           (key.emergency ? " (emergency)" : "") + "\n";
  const std::string path = options_.directory + "/audit.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    Log(LogLevel::kError, "cannot append to " + path + ": " + std::strerror(errno));
  }
  if (fd >= 0) ::close(fd);
  if (options_.audit) options_.audit(key, from, to);
}

void KeystoreWorld::Log(LogLevel level, const std::string& message) {
  if (options_.log) options_.log(level, message);
}

namespace {

void CheckFolder(const std::string& path, uid_t uid, KeystorePermissions& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) out.errors.push_back("cannot inspect keystore folder " + path + ": " + std::strerror(errno));
    return;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.errors.push_back("keystore folder " + path + " is not a folder");
    return;
  }
  if (st.st_uid != uid && st.st_uid != 0)
    out.errors.push_back("keystore folder " + path + " is owned by uid " + std::to_string(st.st_uid) +
                         ", neither the daemon's user (uid " + std::to_string(uid) +
                         ") nor root, who could swap its keys: chown " + std::to_string(uid) + " " + path);
  if ((st.st_mode & 022) != 0)
    out.errors.push_back("keystore folder " + path + " is writable by group or others (mode " +
                         util::ModeText(st.st_mode) + "), who could swap its keys and state: chmod 0700 " + path);
}

}  // namespace

KeystorePermissions CheckKeystorePermissions(const std::string& directory, uid_t uid) {
  KeystorePermissions out;
  CheckFolder(directory, uid, out);
  const std::string keys = directory + "/keys";
  CheckFolder(keys, uid, out);
  DIR* dir = ::opendir(keys.c_str());
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    const std::string path = keys + "/" + e->d_name;
    struct stat st {};
    if (e->d_name[0] == '.' || ::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if ((st.st_mode & 077) != 0)
      out.warnings.push_back("key file " + path + " is accessible by group or others (mode " + util::ModeText(st.st_mode) +
                             "): chmod 0600 " + path + ", and replace the key if others may have read it");
  }
  ::closedir(dir);
  return out;
}

util::Status KeystoreLock::CheckFree(const std::string& directory) {
  const std::string path = directory + "/lock";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return util::Ok();  // no lock file yet: nobody holds it
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    ::close(fd);  // releases it: Acquire() takes it for good later
    return util::Ok();
  }
  char pid[32] = {};
  ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
  ::close(fd);
  std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "another process";
  while (!holder.empty() && holder.back() == '\n') holder.pop_back();
  return util::Err(util::ErrorCode::kInvalidArgument,
                   "the keystore " + directory + " is in use by dkimrotor (pid " + holder +
                       "): one process at a time runs its rotation engine");
}

util::Result<std::unique_ptr<KeystoreLock>> KeystoreLock::Acquire(const std::string& directory) {
  RETURN_IF_ERROR(EnsureFolder(directory));
  const std::string path = directory + "/lock";
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return util::Err(util::ErrorCode::kIo, "cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    std::string holder = n > 0 ? std::string(pid, static_cast<size_t>(n)) : "another process";
    while (!holder.empty() && (holder.back() == '\n')) holder.pop_back();
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "the keystore " + directory + " is in use by dkimrotor (pid " + holder +
                         "): one process at a time runs its rotation engine");
  }
  std::string me = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // The pid is only a courtesy for the error above; the lock itself is held.
  }
  return std::unique_ptr<KeystoreLock>(new KeystoreLock(fd));
}

KeystoreLock::~KeystoreLock() { ::close(fd_); }

}  // namespace dkimrotor::keystore
