// The control channel against the real daemon: `dkimrotor run` as a process with a real
// keystore, real Knot and the real contrib/hooks/nsupdate hook; the real CLI as the client;
// signatures checked by dkimpy and Mail::DKIM. Covers ordinary and emergency rotation and
// keys import while a thread keeps sending messages, hostile input on control.sock, the
// last-key refusal and --force, two emergencies at once, a daemon stopping mid-command, and
// `status`. The load test prints the emergency timings quoted in README.md ("Operations").
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"

namespace dkimrotor::control {
namespace {

using keystore::KeyState;
using keystore::testing::KnotServer;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;
using milter::testing::Header;
using milter::testing::MilterClient;
using milter::testing::Modification;
using Clock = std::chrono::steady_clock;

const std::vector<Header> kHeaders = {{"From", " Alice <alice@example.test>"},
                                      {"To", " bob@example.net"},
                                      {"Subject", " control test"},
                                      {"Message-ID", " <1@example.test>"}};
const std::string kBody = "Hello,\r\n\r\nthe keys move while we write.\r\n";

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Every s= of a signed message, in order.
std::vector<std::string> Selectors(const std::string& message) {
  std::vector<std::string> out;
  static const std::regex kSelector(R"re(DKIM-Signature:[\s\S]*?[;\s]s=([A-Za-z0-9._-]+))re");
  for (std::sregex_iterator it(message.begin(), message.end(), kSelector), end; it != end; ++it)
    out.push_back((*it)[1]);
  return out;
}

// What a raw peer gets back on the control socket: the whole answer, or what went wrong.
struct RawReply {
  int connect_errno = 0;
  std::string data;
};

RawReply RawExchange(const std::string& path, const std::string& request, bool shut_write,
                     std::chrono::milliseconds timeout = std::chrono::milliseconds(15000)) {
  RawReply reply;
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    reply.connect_errno = errno;
    ::close(fd);
    return reply;
  }
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (shut_write) ::shutdown(fd, SHUT_WR);
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    reply.data.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

nlohmann::json Json(const std::string& text) { return nlohmann::json::parse(text, nullptr, false); }

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {"example.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    dir_ = knot_->dir();
    auto port = milter::testing::FreeTcpPort();
    ASSERT_TRUE(port.has_value()) << port.error().message;
    socket_ = "inet:" + std::to_string(*port) + "@127.0.0.1";
    config_ = dir_ + "/dkimrotor.conf";
    keystore_ = dir_ + "/keystore";
    control_ = keystore_ + "/control.sock";
    WriteConfig("0s");
    env_ = knot_->NsupdateHookEnv();
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void WriteConfig(const std::string& min_propagation) {
    std::ofstream out(config_);
    out << "milter: { socket = \"" << socket_ << "\"; stop_timeout = \"20s\"; };\n"
        << "signing: { internal_hosts = [\"127.0.0.1/32\", \"::1/128\"]; };\n"
        << "keystore: { directory = \"" << keystore_ << "\"; };\n"
        << "dns: { resolvers = [\"" << knot_->address() << "\"]; authoritative_port = " << knot_->port() << "; min_propagation = \"" << min_propagation
        << "\"; poll = \"1s\"; timeout = \"2s\"; };\n"
        << "log: { level = \"info\"; };\n"
        << "domains = ( { domain = \"example.test\"; stream = \"mta1\"; algorithms = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
        << "  bits = 1024; active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\";\n"
        << "  publish_hook = \"" << DKIMROTOR_SOURCE_DIR << "/contrib/hooks/nsupdate\"; } );\n";
  }

  // Each algorithm with an active key and a ready spare, made by the direct `rotate`.
  void PrepareKeystore() {
    auto r = Cli({"rotate", "-c", config_, "--domain", "example.test"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  keystore::testing::ProcessResult Cli(std::vector<std::string> args) {
    args.insert(args.begin(), DKIMROTOR_BINARY);
    auto r = RunProcess(args, env_);
    EXPECT_TRUE(r.has_value());
    return r ? *r : keystore::testing::ProcessResult{};
  }

  void StartDaemon() {
    std::vector<std::string> env_strings;
    for (const auto& [k, v] : env_) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char* argv[] = {DKIMROTOR_BINARY, "run", "-c", config_.c_str(), nullptr};
    ASSERT_EQ(posix_spawn(&pid_, DKIMROTOR_BINARY, &actions, nullptr, const_cast<char**>(argv), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_TRUE(WaitFor([&] { return Cli({"status", "-c", config_}).exit_code == 0; }, std::chrono::seconds(20)))
        << "the daemon's control channel does not answer: " << ReadText(log());
  }

  std::string log() const { return dir_ + "/daemon.log"; }

  bool WaitFor(const std::function<bool()>& done, std::chrono::seconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
      if (Clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return true;
  }

  // The keys as the daemon holds them (keys --json through the control channel).
  std::vector<nlohmann::json> DaemonKeys() {
    auto r = Cli({"keys", "-c", config_, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    auto j = Json(r.output);
    if (j.is_discarded()) return {};
    std::vector<nlohmann::json> keys;
    for (const auto& k : j["domains"][0]["keys"]) keys.push_back(k);
    return keys;
  }

  std::string SelectorIn(const std::string& state, const std::string& algorithm) {
    for (const auto& k : DaemonKeys())
      if (k["state"] == state && k["algorithm"] == algorithm) return k["selector"];
    return "";
  }

  // The TXT record Knot serves for a selector, strings joined.
  std::string Served(const std::string& selector) {
    auto r = RunProcess({"/usr/bin/kdig", "@127.0.0.1", "-p", std::to_string(knot_->port()), "+short", "TXT",
                         selector + "._domainkey.example.test"},
                        {{"PATH", "/usr/bin:/bin"}});
    if (!r) return "";
    std::string joined;
    static const std::regex kString(R"re("((?:[^"\\]|\\.)*)")re");
    for (std::sregex_iterator it(r->output.begin(), r->output.end(), kString), end; it != end; ++it)
      joined += (*it)[1];
    return joined;
  }

  std::unique_ptr<KnotServer> knot_;
  std::string dir_, socket_, config_, keystore_, control_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
};

// One message sent by the load thread: when its transaction began and ended, and what the
// MTA would deliver.
struct Sent {
  Clock::time_point began, ended;
  std::string message;
  bool signed_twice = false;
  std::string error;
};

// Sends messages one after another, a new milter connection each, until stopped.
class Load {
 public:
  explicit Load(std::string socket) : socket_(std::move(socket)), thread_([this] { Run(); }) {}
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<Sent> sent() {
    std::lock_guard lock(mu_);
    return sent_;
  }

 private:
  void Run() {
    while (!stop_) {
      Sent s;
      s.began = Clock::now();
      MilterClient::Options o;
      o.socket = socket_;
      auto client = MilterClient::Connect(o);
      if (!client) {
        s.error = client.error().message;
      } else if (auto r = client->SendMessage("127.0.0.1", "", kHeaders, kBody); !r) {
        s.error = r.error().message;
      } else {
        s.signed_twice = r->Find(Modification::Kind::kInsertHeader).size() == 2;
        s.message = client->ApplyModifications(kHeaders, kBody, *r);
      }
      s.ended = Clock::now();
      {
        std::lock_guard lock(mu_);
        sent_.push_back(std::move(s));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
  }

  const std::string socket_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<Sent> sent_;
  std::thread thread_;  // last
};

// Ordinary rotation, emergency revocation and import while messages keep coming: every message
// is signed twice and verifies (dkimpy and Mail::DKIM, against the records published when it
// was signed); none begun after the emergency command returned carries the revoked selector;
// DNS serves the empty p= soon after. Prints the emergency timings.
TEST_F(ControlTest, RotateEmergencyAndImportUnderLoadEveryMessageSignedAndVerified) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  Load load(socket_);
  std::this_thread::sleep_for(std::chrono::seconds(1));

  // An ordinary rotation: the ready spares take over, new ones are generated and verified.
  const std::string old_rsa = SelectorIn("active", "rsa-sha256");
  auto rotated = Cli({"rotate", "-c", config_, "--domain", "example.test"});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output << ReadText(log());
  EXPECT_NE(rotated.output.find(old_rsa + "._domainkey.example.test: active -> retiring"), std::string::npos)
      << rotated.output;
  ASSERT_TRUE(WaitFor([&] { return !SelectorIn("ready", "rsa-sha256").empty() && !SelectorIn("ready", "ed25519-sha256").empty(); },
                      std::chrono::seconds(60)))
      << ReadText(log());

  // The emergency: the active RSA key leaked.
  const std::string leaked = SelectorIn("active", "rsa-sha256");
  const std::string spare = SelectorIn("ready", "rsa-sha256");
  ASSERT_FALSE(leaked.empty());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto command_sent = Clock::now();
  auto emergency = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", leaked});
  const auto command_returned = Clock::now();
  ASSERT_EQ(emergency.exit_code, 0) << emergency.output << ReadText(log());
  EXPECT_NE(emergency.output.find("replaced by " + spare), std::string::npos) << emergency.output;
  Clock::time_point revoked_in_dns{};
  ASSERT_TRUE(WaitFor(
      [&] {
        if (Served(leaked) != "v=DKIM1; p=") return false;
        revoked_in_dns = Clock::now();
        return true;
      },
      std::chrono::seconds(30)))
      << "Knot still serves " << Served(leaked) << "\n" << ReadText(log());
  EXPECT_EQ(SelectorIn("active", "rsa-sha256"), spare);

  // An import: an ed25519 key made outside, sent by the CLI, written by the daemon.
  const std::string pem_file = dir_ + "/imported.pem";
  auto made = RunProcess({"/usr/bin/openssl", "genpkey", "-algorithm", "ed25519", "-out", pem_file}, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(made.has_value() && made->exit_code == 0);
  ASSERT_EQ(::chmod(pem_file.c_str(), 0600), 0);
  auto imported = Cli({"keys", "import", "-c", config_, "--domain", "example.test", "--selector", "imported1", "--key", pem_file});
  ASSERT_EQ(imported.exit_code, 0) << imported.output << ReadText(log());
  EXPECT_NE(imported.output.find("into the running daemon"), std::string::npos) << imported.output;
  ASSERT_TRUE(WaitFor([&] { return Served("imported1").find("k=ed25519") != std::string::npos; }, std::chrono::seconds(30)))
      << ReadText(log());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  load.Stop();

  // No private key reaches the log or a command's output (docs/SECURITY.md): not the key sent
  // over the control channel, not a key the daemon generated.
  std::vector<std::string> secrets;
  auto collect = [&](const std::string& path) {
    std::istringstream pem(ReadText(path));
    for (std::string line; std::getline(pem, line);)
      if (line.size() >= 32 && line.find("-----") == std::string::npos) secrets.push_back(line.substr(line.size() - 32));
  };
  collect(pem_file);
  size_t key_files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(keystore_))
    if (e.path().extension() == ".pem") {
      collect(e.path().string());
      ++key_files;
    }
  ASSERT_GE(key_files, 3u);
  const std::string seen = ReadText(log()) + rotated.output + emergency.output + imported.output;
  for (const auto& secret : secrets)
    EXPECT_EQ(seen.find(secret), std::string::npos) << "a line of a private key in the log or a command's output";

  // Every message, and the records published when it was signed.
  auto keys = keystore::LoadState(keystore_);
  ASSERT_TRUE(keys.has_value()) << keys.error().message;
  const std::string keys_file = dir_ + "/published-keys";
  {
    std::ofstream out(keys_file);
    for (const auto& k : *keys) out << k.selector << "._domainkey." << k.domain << " " << keystore::KeyRecordValue(k) << "\n";
  }
  std::filesystem::create_directories(dir_ + "/messages");
  std::vector<std::string> files;
  Clock::time_point last_leaked_signature{};
  const auto sent = load.sent();
  ASSERT_GT(sent.size(), 50u);
  for (size_t i = 0; i < sent.size(); ++i) {
    const Sent& s = sent[i];
    ASSERT_TRUE(s.error.empty()) << "message " << i << ": " << s.error;
    ASSERT_TRUE(s.signed_twice) << "message " << i << " not signed twice: " << s.message;
    const auto selectors = Selectors(s.message);
    ASSERT_EQ(selectors.size(), 2u) << s.message;
    for (const auto& selector : selectors) {
      if (selector != leaked) continue;
      EXPECT_LT(s.began, command_returned) << "message " << i << " began "
                                           << Ms(s.began - command_returned) << " ms after the emergency returned, signed by " << leaked;
      last_leaked_signature = std::max(last_leaked_signature, s.ended);
    }
    files.push_back(dir_ + "/messages/" + std::to_string(i) + ".eml");
    std::ofstream(files.back()) << s.message;
  }
  std::vector<std::string> dkimpy = {"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/control/verify_offline.py",
                                     keys_file, "2"};
  dkimpy.insert(dkimpy.end(), files.begin(), files.end());
  auto py = RunProcess(dkimpy, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(py.has_value());
  EXPECT_EQ(py->exit_code, 0) << py->output;

  std::vector<std::string> perl = {"/usr/bin/perl", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_mail_dkim.pl",
                                   "--keys-file", keys_file};
  perl.insert(perl.end(), files.begin(), files.end());
  auto pl = RunProcess(perl, {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(pl.has_value());
  ASSERT_EQ(pl->exit_code, 0) << pl->output;
  // FILE INDEX DOMAIN SELECTOR ALGORITHM RESULT DETAIL; this Mail::DKIM may not know ed25519.
  size_t rsa_pass = 0, rsa_other = 0;
  std::istringstream lines(pl->output);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, '\t');) f.push_back(x);
    if (f.size() < 6 || f[4] != "rsa-sha256") continue;
    (f[5] == "pass" ? rsa_pass : rsa_other) += 1;
    EXPECT_EQ(f[5], "pass") << line;
  }
  EXPECT_EQ(rsa_pass, files.size()) << pl->output.substr(0, 4000);
  EXPECT_EQ(rsa_other, 0u);

  // Against the live DNS too: a message signed now verifies with both.
  MilterClient::Options o;
  o.socket = socket_;
  auto client = MilterClient::Connect(o);
  ASSERT_TRUE(client.has_value());
  auto now = client->SendMessage("127.0.0.1", "", kHeaders, kBody);
  ASSERT_TRUE(now.has_value());
  const std::string live = dir_ + "/live.eml";
  std::ofstream(live) << client->ApplyModifications(kHeaders, kBody, *now);
  auto live_py = RunProcess({"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_with_dns.py", live,
                             std::to_string(knot_->port()), "2"},
                            {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(live_py.has_value());
  EXPECT_EQ(live_py->exit_code, 0) << live_py->output;
  auto live_pl = RunProcess({"/usr/bin/perl", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_mail_dkim.pl", "--dns",
                             "127.0.0.1:" + std::to_string(knot_->port()), live},
                            {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(live_pl.has_value());
  EXPECT_NE(live_pl->output.find("rsa-sha256\tpass"), std::string::npos) << live_pl->output;

  // Who asked is on record.
  const std::string daemon_log = ReadText(log());
  EXPECT_NE(daemon_log.find("emergency: " + leaked + "._domainkey.example.test no longer signs (replaced by " + spare +
                            "), asked by root (uid 0, pid "),
            std::string::npos)
      << daemon_log;

  std::printf("emergency timings (%zu messages under load, a message every ~15 ms):\n"
              "  command sent -> answered:                     %7.1f ms\n"
              "  command sent -> last signature with %s: %7.1f ms%s\n"
              "  command sent -> Knot serves v=DKIM1; p=:       %7.1f ms\n",
              sent.size(), Ms(command_returned - command_sent), leaked.c_str(),
              last_leaked_signature == Clock::time_point{} ? 0.0 : Ms(last_leaked_signature - command_sent),
              last_leaked_signature < command_sent ? " (before the command: none after it)" : "",
              Ms(revoked_in_dns - command_sent));
}

// Nothing a peer sends makes the daemon crash or hang: every bad request gets an error answer,
// a silent peer is cut off after the read timeout while others are served, a peer with
// another uid is refused (by the socket's mode, and by SO_PEERCRED behind it).
TEST_F(ControlTest, HostileInputGetsErrorAnswersAndTheDaemonGoesOn) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  struct stat st {};
  ASSERT_EQ(::stat(control_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());

  auto expect_error = [&](const RawReply& r, const std::string& fragment) {
    auto j = Json(r.data);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << r.data;
    EXPECT_EQ(j["ok"], false) << r.data;
    EXPECT_NE(j["error"].get<std::string>().find(fragment), std::string::npos) << r.data;
  };
  expect_error(RawExchange(control_, std::string("\x00\xff\x13garbage\n\x7f", 13), true), "not valid JSON");
  expect_error(RawExchange(control_, R"({"command": "stat)", true), "not valid JSON");
  expect_error(RawExchange(control_, R"({"command": "status"})" + std::string(70 * 1024, ' '), true), "more than 65536 bytes");
  expect_error(RawExchange(control_, std::string(5000, '[') + std::string(5000, ']'), true), "nested too deeply");
  expect_error(RawExchange(control_, R"({"command": "status", "evil": 1})", true), "unknown field");
  expect_error(RawExchange(control_, R"({"command": "format-disk"})", true), "unknown command");
  expect_error(RawExchange(control_, R"({"command": "emergency", "domain": "example.test"})", true), "\"selector\"");
  expect_error(RawExchange(control_, R"({"command": "import", "domain": "example.test", "selector": "x", "pem": "junk"})", true),
               "the key sent");

  // A peer that connects and says nothing is cut off; meanwhile others are served.
  std::thread silent([&] {
    const auto began = Clock::now();
    auto r = RawExchange(control_, "", false, std::chrono::milliseconds(20000));
    EXPECT_LT(Ms(Clock::now() - began), 10000.0);
    expect_error(r, "no complete request within");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(Cli({"status", "-c", config_}).exit_code, 0);
  silent.join();

  // Another uid: the socket's mode keeps it out; with the mode opened up, SO_PEERCRED does.
  passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  auto as_nobody = [&]() -> std::string {
    int pipe_fds[2];
    EXPECT_EQ(::pipe(pipe_fds), 0);
    pid_t child = ::fork();
    if (child == 0) {
      ::close(pipe_fds[0]);
      std::string out;
      if (::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) {
        out = "setuid failed";
      } else {
        RawReply r = RawExchange(control_, R"({"command": "status"})", true, std::chrono::milliseconds(5000));
        out = r.connect_errno ? "connect: " + std::string(std::strerror(r.connect_errno)) : r.data;
      }
      if (::write(pipe_fds[1], out.data(), out.size()) < 0) _exit(2);
      _exit(0);
    }
    ::close(pipe_fds[1]);
    std::string out;
    char buffer[4096];
    for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) out.append(buffer, static_cast<size_t>(n));
    ::close(pipe_fds[0]);
    ::waitpid(child, nullptr, 0);
    return out;
  };
  // The directories may already shut nobody out; open the path so the socket's mode decides.
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  ASSERT_EQ(::chmod(keystore_.c_str(), 0711), 0);
  EXPECT_EQ(as_nobody(), "connect: Permission denied");
  ASSERT_EQ(::chmod(control_.c_str(), 0666), 0);
  const std::string refused = as_nobody();
  EXPECT_NE(refused.find("permission denied"), std::string::npos) << refused;
  EXPECT_EQ(refused.find("\"pid\""), std::string::npos) << refused;
  ASSERT_TRUE(WaitFor([&] { return ReadText(log()).find("control: refused nobody (uid " + std::to_string(nobody->pw_uid)) != std::string::npos; },
                      std::chrono::seconds(5)))
      << ReadText(log());
  ASSERT_EQ(::chmod(control_.c_str(), 0600), 0);

  // Unknown domain and selector: clear errors, nothing changes.
  auto unknown_domain = Cli({"rotate", "-c", config_, "--emergency", "--domain", "nowhere.test", "--selector", "x"});
  EXPECT_EQ(unknown_domain.exit_code, 1);
  EXPECT_NE(unknown_domain.output.find("domain nowhere.test is not configured"), std::string::npos) << unknown_domain.output;
  auto unknown_selector = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", "nope"});
  EXPECT_EQ(unknown_selector.exit_code, 1);
  EXPECT_NE(unknown_selector.output.find("no key nope._domainkey.example.test; example.test's keys: "), std::string::npos)
      << unknown_selector.output;
  auto unknown_rotate = Cli({"rotate", "-c", config_, "--domain", "nowhere.test"});
  EXPECT_EQ(unknown_rotate.exit_code, 1);
  EXPECT_NE(unknown_rotate.output.find("nowhere.test is not configured"), std::string::npos) << unknown_rotate.output;

  // Still serving.
  auto status = Cli({"status", "-c", config_, "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  EXPECT_EQ(Json(status.output)["pid"], pid_);
}

// With spares that cannot become ready (min_propagation 1h), an emergency on the last active
// key is refused, and --force goes through; two emergencies at once are both answered.
TEST_F(ControlTest, LastKeyNeedsForceAndTwoEmergenciesAtOnceAreSerialized) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  WriteConfig("1h");
  ASSERT_NO_FATAL_FAILURE(StartDaemon());

  const std::string first = SelectorIn("active", "rsa-sha256");
  const std::string spare = SelectorIn("ready", "rsa-sha256");
  auto replaced = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", first});
  ASSERT_EQ(replaced.exit_code, 0) << replaced.output << ReadText(log());
  EXPECT_NE(replaced.output.find("replaced by " + spare), std::string::npos) << replaced.output;
  ASSERT_EQ(SelectorIn("active", "rsa-sha256"), spare);

  auto refused = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", spare});
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("refused: " + spare + "._domainkey.example.test is example.test's last active rsa-sha256 key"),
            std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_EQ(SelectorIn("active", "rsa-sha256"), spare);

  auto forced = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", spare, "--force"});
  ASSERT_EQ(forced.exit_code, 0) << forced.output << ReadText(log());
  EXPECT_NE(forced.output.find("no ready key replaced it"), std::string::npos) << forced.output;
  EXPECT_EQ(SelectorIn("active", "rsa-sha256"), "");
  auto status = Cli({"status", "-c", config_});
  EXPECT_EQ(status.exit_code, 0);
  EXPECT_NE(status.output.find("problem: no active rsa-sha256 key"), std::string::npos) << status.output;

  // Two at once, on ed25519's active key and its spare: both answered, one after the other.
  const std::string ed_active = SelectorIn("active", "ed25519-sha256");
  const std::string ed_ready = SelectorIn("ready", "ed25519-sha256");
  ASSERT_FALSE(ed_active.empty());
  ASSERT_FALSE(ed_ready.empty());
  keystore::testing::ProcessResult a, b;
  std::thread ta([&] { a = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", ed_active, "--force"}); });
  std::thread tb([&] { b = Cli({"rotate", "-c", config_, "--emergency", "--domain", "example.test", "--selector", ed_ready, "--force"}); });
  ta.join();
  tb.join();
  EXPECT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(b.exit_code, 0) << b.output;
  for (const auto& k : DaemonKeys()) {
    if (k["selector"] == ed_active || k["selector"] == ed_ready) {
      EXPECT_TRUE(k["state"] == "retiring" || k["state"] == "revoked") << k.dump();
    }
  }
  ASSERT_TRUE(WaitFor([&] { return Served(ed_active) == "v=DKIM1; p=" && Served(ed_ready) == "v=DKIM1; p="; },
                      std::chrono::seconds(30)))
      << ReadText(log());
  EXPECT_EQ(Count(ReadText(log()), "control: emergency revocation of "), 5u);  // with the refused one
}

// SIGTERM while a command waits for the rotation thread (busy in a slow publish hook, for an
// earlier rotate): the waiting client gets a clear error once the step in flight ends, not a
// hang; the command in flight is answered; the daemon exits 0 and removes control.sock.
TEST_F(ControlTest, DaemonStoppingMidCommandGivesTheClientAClearError) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  // From now on the hook takes its time: a publication holds the rotation thread.
  const std::string hook = dir_ + "/slow-hook";
  std::ofstream(hook) << "#!/bin/sh\ntouch '" << dir_ << "/hook-held'\nsleep 4\nexec '" << DKIMROTOR_SOURCE_DIR
                      << "/contrib/hooks/nsupdate' \"$@\"\n";
  ASSERT_EQ(::chmod(hook.c_str(), 0755), 0);
  std::string text = ReadText(config_);
  const std::string real_hook = std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate";
  text.replace(text.find(real_hook), real_hook.size(), hook);
  std::ofstream(config_) << text;
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  // A rotation makes new keys, whose publication holds the thread.
  keystore::testing::ProcessResult in_flight, waiting;
  std::thread first([&] { in_flight = Cli({"rotate", "-c", config_, "--domain", "example.test"}); });
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ + "/hook-held"); }, std::chrono::seconds(20)));
  const auto began = Clock::now();
  std::thread second([&] { waiting = Cli({"rotate", "-c", config_, "--domain", "example.test"}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  second.join();
  first.join();
  EXPECT_LT(Ms(Clock::now() - began), 40000.0);
  EXPECT_EQ(in_flight.exit_code, 0) << in_flight.output;
  EXPECT_EQ(waiting.exit_code, 1) << waiting.output;
  EXPECT_NE(waiting.output.find("stop"), std::string::npos) << waiting.output;
  EXPECT_NE(waiting.output.find("nothing was done"), std::string::npos) << waiting.output;
  int status = 0;
  ASSERT_TRUE(WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, std::chrono::seconds(40))) << ReadText(log());
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadText(log());
  EXPECT_FALSE(std::filesystem::exists(control_)) << "control.sock left behind";
  EXPECT_EQ(Cli({"status", "-c", config_}).exit_code, 3);
}

// `status`: 3 without a daemon, 0 with its fields when one runs.
TEST_F(ControlTest, StatusSaysWhetherTheDaemonRunsAndWhatItDid) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  auto down = Cli({"status", "-c", config_});
  EXPECT_EQ(down.exit_code, 3) << down.output;
  EXPECT_NE(down.output.find("not running"), std::string::npos) << down.output;
  auto down_json = Cli({"status", "-c", config_, "--json"});
  EXPECT_EQ(down_json.exit_code, 3);
  EXPECT_EQ(Json(down_json.output)["running"], false) << down_json.output;

  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  MilterClient::Options o;
  o.socket = socket_;
  auto client = MilterClient::Connect(o);
  ASSERT_TRUE(client.has_value());
  ASSERT_TRUE(client->SendMessage("127.0.0.1", "", kHeaders, kBody).has_value());
  auto up = Cli({"status", "-c", config_, "--json"});
  ASSERT_EQ(up.exit_code, 0) << up.output;
  auto j = Json(up.output);
  ASSERT_FALSE(j.is_discarded()) << up.output;
  EXPECT_EQ(j["running"], true);
  EXPECT_EQ(j["pid"], pid_);
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_GE(j["uptime_seconds"].get<int64_t>(), 0);
  EXPECT_EQ(j["messages"]["signed"], 1);
  EXPECT_EQ(j["messages"]["unsigned"], 0);
  EXPECT_EQ(j["messages"]["tempfailed"], 0);
  EXPECT_EQ(j["messages"]["rejected"], 0);
  ASSERT_EQ(j["domains"].size(), 1u);
  EXPECT_EQ(j["domains"][0]["domain"], "example.test");
  EXPECT_EQ(j["domains"][0]["active_keys"], 2);
  EXPECT_TRUE(j["domains"][0]["problems"].empty()) << j.dump(1);
  EXPECT_TRUE(j["domains"][0]["next_step"].is_string()) << j.dump(1);
  auto text = Cli({"status", "-c", config_});
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.output.find("running, pid " + std::to_string(pid_)), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("messages: 1 signed, 0 unsigned, 0 tempfailed, 0 rejected"), std::string::npos) << text.output;
  // keys goes to the daemon too, and shows what it holds.
  auto keys = Cli({"keys", "-c", config_});
  EXPECT_EQ(keys.exit_code, 0) << keys.output;
  EXPECT_EQ(Count(keys.output, " active "), 2u) << keys.output;
}

}  // namespace
}  // namespace dkimrotor::control
