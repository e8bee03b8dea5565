// Test fixture: a real Knot DNS server (knotd) on 127.0.0.1 and a free port, run as the current
// user from a temporary directory with its own configuration, zone files, database, control
// socket and a TSIG key allowed to update every zone. Tests use it as the zone's authoritative
// server and as the checker's resolver (Knot does not recurse, so the checker follows CNAMEs
// between zones itself, as it must with any authoritative server).
// Owns the knotd process and the directory: the destructor stops the server and removes both.
// Not thread-safe: one test thread drives it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/server_address.h"

namespace dkimrotor::keystore::testing {

// The first executable called `name` in $PATH, /usr/sbin, /usr/local/sbin or /sbin; empty
// when there is none.
std::string FindProgram(std::string_view name);

struct ProcessResult {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string output;  // stdout and stderr together
};

// Runs `argv` without a shell, with `env` as its whole environment and `input` on stdin, and
// waits for it.
util::Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                       const std::map<std::string, std::string>& env,
                                       std::string_view input = {});

// The whole content of a file; empty when it cannot be read.
std::string ReadText(const std::string& path);

// Starts `argv` without a shell, with `env` as its whole environment, stdout and stderr into
// `log` (created or truncated); does not wait. Returns the child's pid.
util::Result<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                 const std::map<std::string, std::string>& env, const std::string& log);

// Runs `body` in a forked child inside a new network namespace that has only `lo`, up, and
// IPv6 turned off: an IPv4-only host. Returns the child's exit status (body's return value);
// fails when no namespace can be made (not root), for the test to skip. The child ends with
// _exit, so objects the test made before the fork are not destroyed twice.
util::Result<int> RunInIpv4OnlyNamespace(const std::function<int()>& body);

class KnotServer {
 public:
  // True when knotd and knsupdate are installed (tests GTEST_SKIP otherwise).
  static bool Available();

  struct Options {
    // Each zone gets SOA, NS ns1.ZONE (ns2.ZONE...) and an A record per name server, and
    // an AAAA record for those name_servers_ipv6 gives one.
    std::vector<std::string> zones;
    // Configured with files that do not parse, so Knot answers SERVFAIL for them.
    std::vector<std::string> broken_zones;
    std::string listen = "127.0.0.1";                       // a loopback address
    uint16_t port = 0;                                      // 0: a free one
    std::vector<std::string> name_servers = {"127.0.0.1"};  // ns1's address, ns2's...
    std::vector<std::string> name_servers_ipv6;             // an AAAA for ns1, ns2... ("": none)
  };

  // Starts knotd; returns once every good zone answers (NXDOMAIN for a probe name, asked with
  // the DnsChecker).
  static util::Result<std::unique_ptr<KnotServer>> Start(Options options);
  ~KnotServer();

  KnotServer(const KnotServer&) = delete;
  KnotServer& operator=(const KnotServer&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  util::ServerAddress server_address() const;  // address(), parsed
  const std::string& listen() const { return options_.listen; }
  const std::string& dir() const { return dir_; }
  const std::string& tsig_algorithm() const { return tsig_algorithm_; }
  const std::string& tsig_name() const { return tsig_name_; }
  const std::string& tsig_secret() const { return tsig_secret_; }
  // A file holding "hmac-sha256:NAME:SECRET" (mode 0600), as knsupdate -k reads it.
  const std::string& tsig_key_file() const { return tsig_key_file_; }

  // Sends one dynamic update (knsupdate, TSIG-signed) to `zone`: each line is an nsupdate
  // command such as "update add a.example.test. 300 TXT \"x\"".
  util::Status Update(std::string_view zone, const std::vector<std::string>& commands);

  // Replaces every TXT record at `name` (absolute, no trailing dot) with one record made of
  // `value` split into 255-byte strings; SetTxtRecords makes one record per value.
  util::Status SetTxt(std::string_view zone, std::string_view name, std::string_view value);
  util::Status SetTxtRecords(std::string_view zone, std::string_view name,
                             const std::vector<std::string>& values);
  util::Status SetCname(std::string_view zone, std::string_view name, std::string_view target);
  util::Status RemoveName(std::string_view zone, std::string_view name);

  // SIGSTOP/SIGCONT knotd: while paused every query times out.
  void Pause();
  void Resume();

  // The knotd log, for failure messages.
  std::string Log() const;

  // The environment contrib/hooks/nsupdate needs to publish into this server (TSIG-signed), with
  // a PATH that finds knsupdate: what a test gives `dkimrotor run`, `rotate` and the hooks.
  std::map<std::string, std::string> NsupdateHookEnv() const;

 private:
  KnotServer() = default;
  util::Status Launch();
  util::Status WaitUntilServing();
  void Stop();

  Options options_;
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
  std::string tsig_algorithm_ = "hmac-sha256";
  std::string tsig_name_ = "dkimrotor-test";
  std::string tsig_secret_;
  std::string tsig_key_file_;
};

}  // namespace dkimrotor::keystore::testing
