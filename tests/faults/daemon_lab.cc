#include "tests/faults/daemon_lab.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "keystore/storage/state_store.h"
#include "signer/private_key.h"

namespace dkimrotor::faults {

using keystore::KeyInfo;
using keystore::KeyState;
using keystore::testing::KnotServer;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;
using milter::testing::Header;
using milter::testing::MilterClient;
using milter::testing::Modification;

namespace {

util::Error Fail(const std::string& why) { return util::Error{util::ErrorCode::kInternal, why}; }

// A free TCP port below Linux's ephemeral range (32768-60999): the daemon is killed and
// restarted on the same port again and again, and while it is down an outgoing connection of
// any process on the machine may be given an ephemeral port, which the restart could then not
// bind (FreeTcpPort's ports are ephemeral ones).
util::Result<uint16_t> FixedRangePort() {
  std::random_device seed;
  std::mt19937 rng(seed());
  std::uniform_int_distribution<int> pick(20000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const uint16_t port = static_cast<uint16_t>(pick(rng));
    const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) break;
    int one = 1;
    ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool free = ::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(s);
    if (free) return port;
  }
  return Fail("found no free TCP port in 20000-32000 on 127.0.0.1");
}

}  // namespace

const char* Binary() {
  const char* other = std::getenv("DKIMROTOR_BINARY_UNDER_TEST");
  return other && *other ? other : DKIMROTOR_BINARY;
}

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

util::Result<std::unique_ptr<DaemonLab>> DaemonLab::Create(Options options) {
  std::unique_ptr<DaemonLab> lab(new DaemonLab);
  lab->options_ = std::move(options);
  KnotServer::Options knot_options;
  knot_options.zones = {"example.test"};
  knot_options.name_servers_ipv6 = lab->options_.name_servers_ipv6;
  ASSIGN_OR_RETURN(lab->knot_, KnotServer::Start(knot_options));
  ASSIGN_OR_RETURN(uint16_t port, FixedRangePort());
  lab->socket_ = "inet:" + std::to_string(port) + "@" + lab->options_.listen_host;
  lab->config_ = lab->dir() + "/dkimrotor.conf";
  lab->keystore_ = lab->options_.keystore.empty() ? lab->dir() + "/keystore" : lab->options_.keystore;
  lab->env_ = lab->knot_->NsupdateHookEnv();
  std::string algorithms;
  for (const auto& a : lab->options_.algorithms) algorithms += (algorithms.empty() ? "\"" : ", \"") + a + "\"";
  std::ofstream out(lab->config_);
  out << "milter: { socket = \"" << lab->socket_ << "\"; stop_timeout = \"20s\"; };\n"
      << "signing: { internal_hosts = [\"127.0.0.1/32\", \"::1/128\"]; };\n"
      << "keystore: { directory = \"" << lab->keystore_ << "\"; };\n"
      << "dns: { resolvers = [\"" << lab->knot_->address() << "\"]; authoritative_port = " << lab->knot_->port()
      << "; min_propagation = \"0s\"; poll = \"1s\"; timeout = \"2s\"; };\n"
      << "log: { level = \"" << lab->options_.log_level << "\"; };\n"
      << "domains = ( { domain = \"example.test\"; stream = \"mta1\"; algorithms = [" << algorithms << "];\n"
      << "  bits = 1024; active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"0s\";\n"
      << "  publish_hook = \"" << DKIMROTOR_SOURCE_DIR << "/contrib/hooks/nsupdate\"; } );\n";
  if (!out) return Fail("cannot write " + lab->config_);
  return lab;
}

DaemonLab::~DaemonLab() { KillDaemon(); }

util::Status DaemonLab::StartDaemon(bool wait) {
  if (pid_ > 0) return Fail("the daemon runs already");
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env_) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log().c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  const char* argv[] = {Binary(), "run", "-c", config_.c_str(), nullptr};
  const int rc = posix_spawn(&pid_, Binary(), &actions, nullptr, const_cast<char**>(argv), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    pid_ = -1;
    return Fail(std::string("cannot run ") + Binary());
  }
  if (!wait) return util::Ok();
  MilterClient::Options o;
  o.socket = socket_;
  o.timeout = std::chrono::milliseconds(20000);
  const bool up = WaitFor([&] { return MilterClient::Connect(o).has_value() || !DaemonAlive(); },
                          std::chrono::seconds(20));
  if (!up || !DaemonAlive()) {
    std::string how = "still running";
    if (pid_ <= 0 && WIFEXITED(last_status_)) how = "exited with status " + std::to_string(WEXITSTATUS(last_status_));
    if (pid_ <= 0 && WIFSIGNALED(last_status_)) how = "killed by signal " + std::to_string(WTERMSIG(last_status_));
    // Who holds the milter port, when the daemon could not listen on it.
    const std::string port = socket_.substr(socket_.find(':') + 1, socket_.find('@') - socket_.find(':') - 1);
    auto ss = RunProcess({"/usr/bin/ss", "-tanpo", "( sport = :" + port + " )"}, {{"PATH", "/usr/bin:/bin"}});
    return Fail("the daemon does not accept connections (" + how + "): " + LogTail() + "\nss: " +
                (ss ? ss->output : ss.error().message));
  }
  return util::Ok();
}

bool DaemonLab::DaemonAlive() {
  if (pid_ <= 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    last_status_ = status;
    return false;
  }
  return true;
}

void DaemonLab::KillDaemon() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

util::Result<int> DaemonLab::StopDaemon(std::chrono::seconds timeout) {
  if (pid_ <= 0) return Fail("no daemon runs");
  ::kill(pid_, SIGTERM);
  return WaitExit(timeout);
}

util::Result<int> DaemonLab::WaitExit(std::chrono::seconds timeout) {
  if (pid_ <= 0) return Fail("no daemon runs");
  int status = 0;
  const pid_t pid = pid_;
  if (!WaitFor([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, timeout))
    return Fail("the daemon did not exit: " + LogTail());
  pid_ = -1;
  return status;
}

util::Result<keystore::testing::ProcessResult> DaemonLab::Cli(std::vector<std::string> args) {
  args.insert(args.begin(), Binary());
  args.push_back("-c");
  args.push_back(config_);
  return RunProcess(args, env_);
}

util::Result<pid_t> DaemonLab::SpawnCli(std::vector<std::string> args) {
  args.insert(args.begin(), Binary());
  args.push_back("-c");
  args.push_back(config_);
  return keystore::testing::SpawnProcess(args, env_, dir() + "/cli.log");
}

std::string DaemonLab::LogTail(size_t bytes) const {
  std::string text = ReadText(log());
  return text.size() > bytes ? "..." + text.substr(text.size() - bytes) : text;
}

util::Result<std::map<std::string, std::string>> DaemonLab::ServedRecords() {
  auto r = RunProcess({"/usr/sbin/knotc", "-s", dir() + "/run/knot.sock", "zone-read", "example.test"},
                      {{"PATH", "/usr/bin:/bin:/usr/sbin"}});
  if (!r) return r.error();
  if (r->exit_code != 0) return Fail("knotc zone-read failed: " + r->output);
  // Lines look like: [example.test.] SEL._domainkey.example.test. 60 TXT "v=DKIM1; ..." "..."
  std::map<std::string, std::string> records;
  std::istringstream lines(r->output);
  for (std::string line; std::getline(lines, line);) {
    const size_t owner = line.find("] ");
    const size_t dk = line.find("._domainkey.example.test.");
    if (owner == std::string::npos || dk == std::string::npos || line.find(" TXT ") == std::string::npos) continue;
    const std::string selector = line.substr(owner + 2, dk - owner - 2);
    std::string value;
    for (size_t q = line.find('"', line.find(" TXT ")); q != std::string::npos;) {
      const size_t end = line.find('"', q + 1);
      if (end == std::string::npos) break;
      value += line.substr(q + 1, end - q - 1);
      q = line.find('"', end + 1);
    }
    records[selector] = value;
  }
  return records;
}

std::vector<std::string> DaemonLab::CheckKeystore(std::vector<std::string>* leftovers) {
  std::vector<std::string> problems;
  // DNS before the state: a record is published only after its key's entry is saved, so an
  // entry for every record read here must be in the state read next, even if a CLI still ran.
  auto served = ServedRecords();
  if (!served) problems.push_back(served.error().message);
  auto keys = keystore::LoadState(keystore_);
  if (!keys) {
    problems.push_back("state.json does not load: " + keys.error().message);
    return problems;
  }
  std::set<std::string> selectors;
  for (const KeyInfo& k : *keys) {
    selectors.insert(k.selector);
    const std::string path = keystore::KeyPath(keystore_, k);
    struct stat st {};
    const bool present = ::lstat(path.c_str(), &st) == 0;
    if (k.state == KeyState::kRevoked && present) leftovers->push_back(path);
    if (k.state == KeyState::kRevoked) continue;
    if (!present) {
      // Only an active or ready key must be able to sign; a pending or retiring one without its
      // file would still be a loss (it was made here and not revoked).
      problems.push_back(std::string(keystore::KeyStateName(k.state)) + " key " + k.selector + " has no key file");
      continue;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0600) {
      problems.push_back("key file " + path + " is not a regular file of mode 0600");
      continue;
    }
    auto key = signer::PrivateKey::FromPem(ReadText(path));
    if (!key) problems.push_back("key file " + path + " does not parse: " + key.error().message);
    else if ((*key)->dkim_public_key() != k.public_key)
      problems.push_back("key file " + path + " does not hold the public key of the state");
  }
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(keystore_ + "/keys", ec))
    if (e.path().filename().string().find(".tmp") != std::string::npos) leftovers->push_back(e.path().string());
  if (!served) return problems;
  for (const auto& [selector, value] : *served) {
    if (!selectors.count(selector)) {
      problems.push_back("DNS publishes selector " + selector + " (" + value + ") that state.json does not know");
      continue;
    }
    for (const KeyInfo& k : *keys)
      if (k.selector == selector && value != "v=DKIM1; p=" && value.find("p=" + k.public_key) == std::string::npos)
        problems.push_back("DNS serves for " + selector + " a key other than the state's");
  }
  return problems;
}

std::vector<std::string> DaemonLab::Unswept(const std::vector<std::string>& leftovers) {
  std::vector<std::string> problems;
  for (const auto& path : leftovers) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) problems.push_back(path + " is still on disk after start-up");
  }
  return problems;
}

int DaemonLab::ActiveAlgorithms() {
  auto keys = keystore::LoadState(keystore_);
  if (!keys) return -1;
  std::set<int> algorithms;
  for (const KeyInfo& k : *keys)
    if (k.state == KeyState::kActive) algorithms.insert(static_cast<int>(k.algorithm));
  return static_cast<int>(algorithms.size());
}

util::Result<std::pair<std::string, int>> DaemonLab::SignOne(const std::string& subject) {
  const std::vector<Header> headers = {{"From", " Alice <alice@example.test>"},
                                       {"To", " bob@example.net"},
                                       {"Subject", " " + subject},
                                       {"Message-ID", " <fault@example.test>"}};
  const std::string body = "Hello,\r\n\r\nthis is  a fault test.\r\n";
  MilterClient::Options o;
  o.socket = socket_;
  o.timeout = std::chrono::milliseconds(20000);
  ASSIGN_OR_RETURN(auto client, MilterClient::Connect(o));
  ASSIGN_OR_RETURN(auto result, client.SendMessage("127.0.0.1", "", headers, body));
  const int added = static_cast<int>(result.Find(Modification::Kind::kInsertHeader).size());
  return std::pair(client.ApplyModifications(headers, body, result), added);
}

std::string DaemonLab::VerifyFailure(const std::string& message, int signatures) {
  char name[] = "/tmp/dkimrotor-fault-mail-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) return "cannot make a temporary file";
  ::close(fd);
  std::ofstream(name) << message;
  auto r = RunProcess({"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_with_dns.py",
                       name, std::to_string(knot_->port()), std::to_string(signatures)},
                      {{"PATH", "/usr/bin:/bin"}});
  ::unlink(name);
  if (!r) return r.error().message;
  if (r->exit_code != 0) return r->output + "\n" + message;
  return "";
}

}  // namespace dkimrotor::faults
