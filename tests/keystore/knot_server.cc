#include "tests/keystore/knot_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <openssl/rand.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "keystore/dns/dns_checker.h"
#include "keystore/dns/key_record.h"
#include "util/base64.h"
#include "util/file.h"

namespace dkimrotor::keystore::testing {
namespace {

using util::ErrorCode;
namespace fs = std::filesystem;

util::Unexpected Fail(std::string message) {
  return util::Err(ErrorCode::kInternal, std::move(message));
}

util::Status WriteText(const std::string& path, std::string_view text, mode_t mode = 0644) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return Fail("cannot write " + path);
  if (chmod(path.c_str(), mode) != 0) return Fail("cannot chmod " + path);
  return util::Ok();
}


// A port that is free for both UDP and TCP on `listen` right now (the kernel picks it).
util::Result<uint16_t> FreePort(const std::string& listen) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, listen.c_str(), &addr.sin_addr) != 1)
      return Fail("'" + listen + "' is not an IPv4 address");
    socklen_t len = sizeof(addr);
    if (udp < 0 || bind(udp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        getsockname(udp, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      if (udp >= 0) close(udp);
      return Fail("cannot bind a UDP socket on " + listen);
    }
    int tcp = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = tcp >= 0 && bind(tcp, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    uint16_t port = ntohs(addr.sin_port);
    if (tcp >= 0) close(tcp);
    close(udp);
    if (ok && port != 53) return port;
  }
  return Fail("found no free port on " + listen);
}

std::string Quoted(std::string_view value) {
  std::string out;
  for (const auto& s : SplitTxtStrings(value)) out += (out.empty() ? "\"" : " \"") + s + "\"";
  return out;
}

}  // namespace

std::string FindProgram(std::string_view name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream s(path);
    for (std::string dir; std::getline(s, dir, ':');)
      if (!dir.empty()) dirs.push_back(dir);
  }
  for (const char* d : {"/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"}) dirs.emplace_back(d);
  for (const auto& dir : dirs) {
    std::string candidate = dir + "/" + std::string(name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

util::Result<int> RunInIpv4OnlyNamespace(const std::function<int()>& body) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) return util::Err(util::ErrorCode::kIo, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(77);
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &ifr) != 0) ::_exit(78);
    ifr.ifr_flags |= IFF_UP;
    if (::ioctl(s, SIOCSIFFLAGS, &ifr) != 0) ::_exit(78);
    ::close(s);
    // Without this lo still has ::1, but no IPv6 route leads anywhere else either.
    std::ofstream("/proc/sys/net/ipv6/conf/all/disable_ipv6") << "1\n";
    const int rc = body();
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(rc);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status)) return util::Err(util::ErrorCode::kInternal, "the namespace's child died");
  if (WEXITSTATUS(status) == 77)
    return util::Err(util::ErrorCode::kInvalidArgument, "cannot create a network namespace (needs root)");
  if (WEXITSTATUS(status) == 78)
    return util::Err(util::ErrorCode::kInvalidArgument, "cannot bring lo up in a new network namespace");
  return WEXITSTATUS(status);
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

// argv and envp for posix_spawn; they point into the strings they were made from.
std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

std::vector<std::string> EnvStrings(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> Envp(std::vector<std::string>& strings) {
  std::vector<char*> envp;
  for (auto& e : strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  return envp;
}

}  // namespace

util::Result<ProcessResult> RunProcess(const std::vector<std::string>& argv,
                                       const std::map<std::string, std::string>& env,
                                       std::string_view input) {
  char in_path[] = "/tmp/dkimrotor-proc-in-XXXXXX";
  char out_path[] = "/tmp/dkimrotor-proc-out-XXXXXX";
  int in_fd = mkstemp(in_path);
  int out_fd = mkstemp(out_path);
  if (in_fd < 0 || out_fd < 0) return Fail("mkstemp failed");
  if (write(in_fd, input.data(), input.size()) != static_cast<ssize_t>(input.size()))
    return Fail("cannot write the child's input");
  lseek(in_fd, 0, SEEK_SET);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  std::vector<char*> args = Argv(argv);
  std::vector<std::string> env_strings = EnvStrings(env);
  std::vector<char*> envp = Envp(env_strings);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(in_fd);
  close(out_fd);
  ProcessResult result;
  if (rc == 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  }
  result.output = ReadText(out_path);
  unlink(in_path);
  unlink(out_path);
  if (rc != 0) return Fail("cannot run " + argv[0] + ": " + std::strerror(rc));
  return result;
}

util::Result<pid_t> SpawnProcess(const std::vector<std::string>& argv,
                                 const std::map<std::string, std::string>& env, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args = Argv(argv);
  std::vector<std::string> env_strings = EnvStrings(env);
  std::vector<char*> envp = Envp(env_strings);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Fail("cannot run " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

std::map<std::string, std::string> KnotServer::NsupdateHookEnv() const {
  return {{"PATH", "/usr/bin:/bin:/usr/sbin"},
          {"DKIMROTOR_NS_SERVER", listen()},
          {"DKIMROTOR_NS_PORT", std::to_string(port())},
          {"DKIMROTOR_NS_TSIG", tsig_key_file()},
          {"DKIMROTOR_NS_CONFIG", dir() + "/none.env"}};
}

bool KnotServer::Available() {
  return !FindProgram("knotd").empty() && !FindProgram("knsupdate").empty();
}

util::Result<std::unique_ptr<KnotServer>> KnotServer::Start(Options options) {
  if (!Available())
    return Fail("knotd or knsupdate is not installed (apt-get install knot knot-dnsutils)");
  std::unique_ptr<KnotServer> server(new KnotServer());
  server->options_ = std::move(options);
  char tmpl[] = "/tmp/dkimrotor-knot-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("mkdtemp failed");
  server->dir_ = tmpl;
  unsigned char secret[32];
  if (RAND_bytes(secret, sizeof(secret)) != 1) return Fail("RAND_bytes failed");
  server->tsig_secret_ =
      util::Base64Encode(std::string_view(reinterpret_cast<char*>(secret), sizeof(secret)));
  server->tsig_key_file_ = server->dir_ + "/tsig.key";
  RETURN_IF_ERROR(WriteText(
      server->tsig_key_file_,
      server->tsig_algorithm_ + ":" + server->tsig_name_ + ":" + server->tsig_secret_ + "\n",
      0600));
  // Another process may take the port between FreePort() and knotd's bind: try a few.
  util::Status started = Fail("not started");
  for (int attempt = 0; attempt < 3 && !started; ++attempt) {
    started = server->Launch();
    if (started) started = server->WaitUntilServing();
    if (!started) server->Stop();
  }
  if (!started) return util::Unexpected{started.error()};
  return server;
}

util::Status KnotServer::Launch() {
  const auto& zones = options_.zones;
  const auto& broken_zones = options_.broken_zones;
  if (options_.port != 0) {
    port_ = options_.port;
  } else {
    ASSIGN_OR_RETURN(port_, FreePort(options_.listen));
  }
  for (const char* sub : {"/run", "/db", "/zones"}) fs::create_directories(dir_ + sub);
  std::string conf =
      "server:\n"
      "    rundir: \"" +
      dir_ +
      "/run\"\n"
      "    listen: " +
      options_.listen + "@" + std::to_string(port_) +
      "\n"
      "    udp-workers: 1\n"
      "    tcp-workers: 1\n"
      "    background-workers: 1\n"
      "log:\n"
      "  - target: stderr\n"
      "    any: info\n"
      "database:\n"
      "    storage: \"" +
      dir_ +
      "/db\"\n"
      "key:\n"
      "  - id: " +
      tsig_name_ +
      "\n"
      "    algorithm: " +
      tsig_algorithm_ +
      "\n"
      "    secret: " +
      tsig_secret_ +
      "\n"
      "acl:\n"
      "  - id: update\n"
      "    key: " +
      tsig_name_ +
      "\n"
      "    action: update\n"
      "template:\n"
      "  - id: default\n"
      "    storage: \"" +
      dir_ +
      "/zones\"\n"
      "    file: \"%s.zone\"\n"
      "    zonefile-sync: -1\n"
      "    zonefile-load: whole\n"
      "    journal-content: none\n"
      "    acl: update\n"
      "zone:\n";
  for (const auto& z : zones) {
    conf += "  - domain: " + z + "\n";
    std::string text = "$ORIGIN " + z +
                       ".\n$TTL 60\n"
                       "@ SOA ns1." +
                       z + ". hostmaster." + z + ". 1 3600 600 86400 60\n";
    for (size_t i = 0; i < options_.name_servers.size(); ++i) {
      std::string ns = "ns" + std::to_string(i + 1);
      text += "@ NS " + ns + "\n" + ns + " A " + options_.name_servers[i] + "\n";
      if (i < options_.name_servers_ipv6.size() && !options_.name_servers_ipv6[i].empty())
        text += ns + " AAAA " + options_.name_servers_ipv6[i] + "\n";
    }
    RETURN_IF_ERROR(WriteText(dir_ + "/zones/" + z + ".zone", text));
  }
  for (const auto& z : broken_zones) {
    conf += "  - domain: " + z + "\n";
    RETURN_IF_ERROR(WriteText(dir_ + "/zones/" + z + ".zone", "this is not a zone file ((\n"));
  }
  RETURN_IF_ERROR(WriteText(dir_ + "/knot.conf", conf));

  std::string knotd = FindProgram("knotd");
  std::vector<std::string> argv{knotd, "-c", dir_ + "/knot.conf", "-s", dir_ + "/run/knot.sock"};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  int log_fd = open((dir_ + "/knotd.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  int null_fd = open("/dev/null", O_RDONLY);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, null_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  int rc = posix_spawn(&pid_, knotd.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(log_fd);
  close(null_fd);
  if (rc != 0) {
    pid_ = -1;
    return Fail("cannot start " + knotd + ": " + std::strerror(rc));
  }
  return util::Ok();
}

util::Status KnotServer::WaitUntilServing() {
  const auto& zones = options_.zones;
  // A zone is served once a name in it gets NXDOMAIN; before, Knot refuses or does not answer.
  // The checker's short timeout keeps the polling fast (kdig waits whole seconds).
  DnsCheckOptions probe_options;
  probe_options.resolvers = {server_address()};
  probe_options.timeout = std::chrono::milliseconds(100);
  probe_options.tries = 1;
  ASSIGN_OR_RETURN(auto probe, DnsChecker::Create(probe_options));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t ready = 0;
  while (ready < zones.size()) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Fail("knotd exited while starting; its log:\n" + Log());
    }
    if (std::chrono::steady_clock::now() > deadline)
      return Fail("knotd did not serve " + zones[ready] + " within 10 s; its log:\n" + Log());
    auto result = probe->Check(zones[ready], "dkimrotor-probe", signer::Algorithm::kRsaSha256, "");
    if (result.verdict == DnsVerdict::kMissing) {
      ++ready;
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return util::Ok();
}

KnotServer::~KnotServer() {
  Stop();
  std::error_code ignored;
  if (!dir_.empty()) fs::remove_all(dir_, ignored);
}

void KnotServer::Stop() {
  if (pid_ <= 0) return;
  if (paused_) kill(pid_, SIGCONT);
  paused_ = false;
  kill(pid_, SIGTERM);
  // knotd takes a second or two to wind down its workers; nothing it holds outlives the test,
  // so it gets a short grace period and is then killed, which keeps the suite fast.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
}

std::string KnotServer::address() const { return options_.listen + ":" + std::to_string(port_); }

util::ServerAddress KnotServer::server_address() const {
  return util::ServerAddress::Parse(address(), 53).value();
}

std::string KnotServer::Log() const { return ReadText(dir_ + "/knotd.log"); }

// kill() only queues the signal: wait until knotd has really stopped (or continued), or a
// query sent right after Pause() may still be answered.
void KnotServer::Pause() {
  if (pid_ <= 0 || paused_ || kill(pid_, SIGSTOP) != 0) return;
  int status = 0;
  while (waitpid(pid_, &status, WUNTRACED) < 0 && errno == EINTR) {
  }
  paused_ = true;
}

void KnotServer::Resume() {
  if (pid_ <= 0 || !paused_ || kill(pid_, SIGCONT) != 0) return;
  int status = 0;
  while (waitpid(pid_, &status, WCONTINUED) < 0 && errno == EINTR) {
  }
  paused_ = false;
}

util::Status KnotServer::Update(std::string_view zone, const std::vector<std::string>& commands) {
  std::string script = "server " + options_.listen + " " + std::to_string(port_) + "\nzone " +
                       std::string(zone) + ".\n";
  for (const auto& c : commands) script += c + "\n";
  script += "send\nanswer\n";
  ASSIGN_OR_RETURN(
      auto r, RunProcess({FindProgram("knsupdate"), "-t", "5", "-k", tsig_key_file_}, {}, script));
  if (r.exit_code != 0 || r.output.find("status: NOERROR") == std::string::npos)
    return Fail("knsupdate failed (exit " + std::to_string(r.exit_code) + "):\n" + r.output);
  return util::Ok();
}

util::Status KnotServer::SetTxt(std::string_view zone, std::string_view name,
                                std::string_view value) {
  return SetTxtRecords(zone, name, {std::string(value)});
}

util::Status KnotServer::SetTxtRecords(std::string_view zone, std::string_view name,
                                       const std::vector<std::string>& values) {
  std::string owner = std::string(name) + ".";
  std::vector<std::string> commands{"update delete " + owner + " TXT"};
  for (const auto& v : values) commands.push_back("update add " + owner + " 60 TXT " + Quoted(v));
  return Update(zone, commands);
}

util::Status KnotServer::SetCname(std::string_view zone, std::string_view name,
                                  std::string_view target) {
  std::string owner = std::string(name) + ".";
  return Update(zone, {"update delete " + owner,
                       "update add " + owner + " 60 CNAME " + std::string(target) + "."});
}

util::Status KnotServer::RemoveName(std::string_view zone, std::string_view name) {
  return Update(zone, {"update delete " + std::string(name) + "."});
}

}  // namespace dkimrotor::keystore::testing
