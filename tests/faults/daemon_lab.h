// Test fixture for the fault tests: a private Knot serving example.test, a keystore folder and
// a configuration whose rotation runs in seconds (min_propagation 0, grace 0, poll 1 s, the
// contrib nsupdate hook), and `dkimrotor run` as a process that a test may SIGKILL, starve of
// disk, or signal at will. Helpers check the keystore from outside (state.json, key files,
// the records Knot serves) and sign a message through the milter for dkimpy to verify.
// Owns Knot (and its directory, which holds everything else) and the daemon it started: the
// destructor SIGKILLs the daemon and stops Knot. Not thread-safe: one test thread drives it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keystore/key_info.h"
#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"
#include "util/result.h"

namespace dkimrotor::faults {

const char* Binary();  // DKIMROTOR_BINARY_UNDER_TEST or the dkimrotor just built
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout);
size_t Count(const std::string& text, const std::string& needle);

class DaemonLab {
 public:
  struct Options {
    std::string keystore;  // empty: DIR/keystore
    std::string listen_host = "127.0.0.1";
    std::vector<std::string> algorithms = {"rsa-sha256", "ed25519-sha256"};
    std::string log_level = "info";
    std::vector<std::string> name_servers_ipv6;  // AAAA records for Knot's name servers
  };
  // Starts Knot and writes the configuration; the daemon is not started.
  static util::Result<std::unique_ptr<DaemonLab>> Create(Options options);
  ~DaemonLab();
  DaemonLab(const DaemonLab&) = delete;
  DaemonLab& operator=(const DaemonLab&) = delete;

  // Spawns `dkimrotor run` (log appended to log()); with `wait`, returns once the milter
  // accepts connections, or an error with the log's tail if it does not within 20 s.
  util::Status StartDaemon(bool wait = true);
  // SIGKILL and reap: a crash at whatever the daemon is doing.
  void KillDaemon();
  // SIGTERM, then waits up to `timeout`; returns the wait status (or an error if it hangs).
  util::Result<int> StopDaemon(std::chrono::seconds timeout = std::chrono::seconds(40));
  // Waits for the daemon to exit by itself and reaps it; returns the wait status.
  util::Result<int> WaitExit(std::chrono::seconds timeout);
  pid_t pid() const { return pid_; }
  bool DaemonAlive();

  // Runs a dkimrotor subcommand (`rotate`, `keys`...) with -c config appended, and waits.
  util::Result<keystore::testing::ProcessResult> Cli(std::vector<std::string> args);
  // The same without waiting: returns its pid (output into DIR/cli.log).
  util::Result<pid_t> SpawnCli(std::vector<std::string> args);

  // Checks the keystore from outside, while no daemon runs, against every promise of the
  // crash-consistency model, and returns each violation as a line (empty: consistent).
  // Files a crash may leave for the next start-up to destroy (a revoked key's private key, a
  // half-written key file) are not violations: they go to `leftovers`, for Unswept().
  std::vector<std::string> CheckKeystore(std::vector<std::string>* leftovers);
  // The `leftovers` still on disk: after a start-up, each is a violation.
  static std::vector<std::string> Unswept(const std::vector<std::string>& leftovers);
  // The _domainkey TXT records Knot serves, by selector (read with knotc zone-read).
  util::Result<std::map<std::string, std::string>> ServedRecords();

  // Sends one message through the milter; returns the signed message text and how many
  // DKIM-Signature fields were added.
  util::Result<std::pair<std::string, int>> SignOne(const std::string& subject = "fault test");
  // dkimpy verifies `message` against Knot, expecting `signatures` signatures; "" when it does.
  std::string VerifyFailure(const std::string& message, int signatures);
  // The number of algorithms with an active key in state.json: the signatures a message gets.
  int ActiveAlgorithms();

  const std::string& dir() const { return knot_->dir(); }
  const std::string& keystore() const { return keystore_; }
  const std::string& config() const { return config_; }
  const std::string& socket() const { return socket_; }
  std::string log() const { return dir() + "/daemon.log"; }
  std::string LogTail(size_t bytes = 4000) const;
  keystore::testing::KnotServer& knot() { return *knot_; }
  const std::map<std::string, std::string>& env() const { return env_; }

 private:
  DaemonLab() = default;

  Options options_;
  std::unique_ptr<keystore::testing::KnotServer> knot_;
  std::string keystore_, config_, socket_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
  int last_status_ = 0;  // wait status of the last daemon reaped by DaemonAlive()
};

}  // namespace dkimrotor::faults
