// `dkimrotor run` as a process, for what the daemon module does with signals: a reload that
// comes while a rotation step is in flight (a publish hook that takes seconds), two SIGHUPs in
// a row, and a SIGHUP during the SIGTERM drain. Real keystore, real Knot, real hooks
// (contrib/hooks/nsupdate behind a wrapper that records and holds its first call), signatures
// verified by dkimpy; no mocks.
// DKIMROTOR_BINARY_UNDER_TEST in the environment runs another dkimrotor binary (e.g. one built
// from an older commit) against the same tests.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "signer/private_key.h"
#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"
#include "util/file.h"

namespace dkimrotor::daemon {
namespace {

using keystore::testing::KnotServer;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;
using milter::testing::Header;
using milter::testing::MilterClient;
using milter::testing::Modification;
using milter::testing::Reply;

const std::vector<Header> kHeaders = {{"From", " Alice <alice@example.test>"},
                                      {"To", " bob@example.net"},
                                      {"Subject", " daemon test"},
                                      {"Message-ID", " <1@example.test>"}};
const std::string kBody = "Hello,\r\n\r\nthis is  a test.\r\n";
constexpr int kHookHoldSeconds = 4;

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

const char* Binary() {
  const char* other = std::getenv("DKIMROTOR_BINARY_UNDER_TEST");
  return other && *other ? other : DKIMROTOR_BINARY;
}

class DaemonTest : public ::testing::Test {
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
    // The hook records every call (action, selector, value), and holds the first one for a
    // while after touching hook-held: the test knows a rotation step is then in flight.
    hook_ = dir_ + "/slow-hook";
    std::ofstream(hook_) << "#!/bin/sh\n"
                         << "printf '%s %s %s\\n' \"$1\" \"$3\" \"$4\" >> '" << dir_ << "/hook.log'\n"
                         << "if [ ! -e '" << dir_ << "/hook-held' ]; then\n"
                         << "  touch '" << dir_ << "/hook-held'\n"
                         << "  sleep " << kHookHoldSeconds << "\n"
                         << "fi\n"
                         << "exec '" << DKIMROTOR_SOURCE_DIR << "/contrib/hooks/nsupdate' \"$@\"\n";
    ASSERT_EQ(::chmod(hook_.c_str(), 0755), 0);
    WriteConfig();
    env_ = knot_->NsupdateHookEnv();
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  void WriteConfig() {
    std::ofstream out(config_);
    // stop_timeout is long: no test here waits for it to expire, and a drain that must outlast
    // a reload on a loaded 2-core machine (SighupDuringTheSigtermDrainReloadsThenStops) once
    // ran out of 20 s and cut the message in flight off.
    out << "milter: { socket = \"" << socket_ << "\"; stop_timeout = \"90s\"; };\n"
        << "signing: { internal_hosts = [\"127.0.0.1/32\", \"::1/128\"]; };\n"
        << "keystore: { directory = \"" << keystore_ << "\"; };\n"
        << "dns: { resolvers = [\"" << knot_->address() << "\"]; authoritative_port = " << knot_->port() << "; min_propagation = \"0s\"; poll = \"1s\"; timeout = \"2s\"; };\n"
        << "log: { level = \"info\"; };\n"
        << "domains = ( { domain = \"example.test\"; stream = \"mta1\"; algorithms = [\"rsa-sha256\", \"ed25519-sha256\"];\n"
        << "  bits = 1024; active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\";\n"
        << "  publish_hook = \"" << hook_ << "\"; } );\n";
  }

  // A keystore whose keys are already active and ready, made by `rotate` (the hook does not
  // hold: the daemon's steps have nothing to publish).
  void PrepareKeystore() {
    std::ofstream(dir_ + "/hook-held") << "";
    auto r = RunProcess({Binary(), "rotate", "-c", config_, "--domain", "example.test"}, env_);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(r->exit_code, 0) << r->output;
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
    const char* argv[] = {Binary(), "run", "-c", config_.c_str(), nullptr};
    ASSERT_EQ(posix_spawn(&pid_, Binary(), &actions, nullptr, const_cast<char**>(argv), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
    for (int i = 0; i < 200; ++i) {
      if (auto c = Client(); c) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "the daemon does not accept connections: " << ReadText(log());
  }

  std::string log() const { return dir_ + "/daemon.log"; }

  util::Result<MilterClient> Client() {
    MilterClient::Options o;
    o.socket = socket_;
    o.timeout = std::chrono::milliseconds(20000);
    return MilterClient::Connect(o);
  }

  bool WaitFor(const std::function<bool()>& done, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return true;
  }

  bool WaitForLog(const std::string& line, size_t times, std::chrono::seconds timeout) {
    return WaitFor([&] { return Count(ReadText(log()), line) >= times; }, timeout);
  }

  // Each algorithm has its active key and its ready spare, as the daemon's steps leave it.
  bool KeystoreSettled() {
    auto keys = keystore::LoadState(keystore_);
    if (!keys) return false;
    int active = 0, ready = 0;
    for (const auto& k : *keys) {
      active += k.state == keystore::KeyState::kActive;
      ready += k.state == keystore::KeyState::kReady;
    }
    return keys->size() == 4 && active == 2 && ready == 2;
  }

  void ExpectSignsAndDnsVerifies() {
    auto client = Client();
    ASSERT_TRUE(client.has_value()) << client.error().message;
    auto result = client->SendMessage("127.0.0.1", "", kHeaders, kBody);
    ASSERT_TRUE(result.has_value()) << result.error().message;
    ASSERT_EQ(result->Find(Modification::Kind::kInsertHeader).size(), 2u) << ReadText(log());
    ExpectVerifies(client->ApplyModifications(kHeaders, kBody, *result), 2);
  }

  void ExpectVerifies(const std::string& message, int signatures) {
    const std::string file = dir_ + "/signed.eml";
    std::ofstream(file) << message;
    auto r = RunProcess({"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_with_dns.py",
                         file, std::to_string(knot_->port()), std::to_string(signatures)},
                        {{"PATH", "/usr/bin:/bin"}});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->exit_code, 0) << r->output << "\n" << message;
  }

  void ExpectExitsZeroOnSigterm() {
    ASSERT_EQ(::kill(pid_, SIGTERM), 0);
    int status = 0;
    const bool exited = WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, std::chrono::seconds(40));
    ASSERT_TRUE(exited) << "the daemon did not exit on SIGTERM: " << ReadText(log());
    pid_ = -1;
    ASSERT_TRUE(WIFEXITED(status)) << ReadText(log());
    EXPECT_EQ(WEXITSTATUS(status), 0) << ReadText(log());
  }

  std::unique_ptr<KnotServer> knot_;
  std::string dir_, socket_, config_, keystore_, hook_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
};

// The daemon starts on an empty keystore; its first step generates keys and publishes the
// first through the hook, which holds. A SIGHUP then must not lose what that step commits:
// every key is published once, moves through each transition once, and the state, the key
// files and DNS agree, exactly as if the reload had come after the step.
TEST_F(DaemonTest, ReloadDuringASlowRotationStepLosesNoTransition) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ + "/hook-held"); }, std::chrono::seconds(30)))
      << "the publish hook never ran: " << ReadText(log());
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  ASSERT_TRUE(WaitForLog("configuration reloaded", 1, std::chrono::seconds(30))) << ReadText(log());
  ASSERT_TRUE(WaitFor([&] { return KeystoreSettled(); }, std::chrono::seconds(60)))
      << ReadText(keystore::StatePath(keystore_)) << "\n" << ReadText(log());
  std::this_thread::sleep_for(std::chrono::seconds(2));  // two more steps: nothing may change
  ASSERT_NO_FATAL_FAILURE(ExpectSignsAndDnsVerifies());
  ASSERT_NO_FATAL_FAILURE(ExpectExitsZeroOnSigterm());

  auto keys = keystore::LoadState(keystore_);
  ASSERT_TRUE(keys.has_value()) << keys.error().message;
  const std::string daemon_log = ReadText(log());
  const std::string hook_log = ReadText(dir_ + "/hook.log");
  std::set<std::string> files_in_state;
  for (const auto& k : *keys) {
    SCOPED_TRACE(k.selector);
    // Published once, with the key the state records; each transition happened once.
    EXPECT_TRUE(k.published.has_value());
    EXPECT_EQ(Count(hook_log, "publish " + k.selector + " "), 1u) << hook_log;
    EXPECT_EQ(Count(hook_log, "publish " + k.selector + " " + keystore::KeyRecordValue(k) + "\n"), 1u) << hook_log;
    const std::string id = "key " + k.selector + "._domainkey." + k.domain + ": ";
    EXPECT_EQ(Count(daemon_log, id + "pending -> ready"), 1u) << daemon_log;
    EXPECT_EQ(Count(daemon_log, id + "ready -> active"), k.state == keystore::KeyState::kActive ? 1u : 0u)
        << daemon_log;
    // Its key file holds the key the state records.
    const std::string path = keystore::KeyPath(keystore_, k);
    files_in_state.insert(std::filesystem::path(path).filename());
    auto pem = util::ReadSecretFile(path);
    ASSERT_TRUE(pem.has_value()) << pem.error().message;
    auto key = signer::PrivateKey::FromPem(*pem);
    ASSERT_TRUE(key.has_value()) << key.error().message;
    EXPECT_EQ((*key)->dkim_public_key(), k.public_key);
  }
  // No key file without a state entry.
  std::set<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(keystore_ + "/keys"))
    files.insert(e.path().filename());
  EXPECT_EQ(files, files_in_state);
  EXPECT_EQ(Count(daemon_log, "generated "), keys->size()) << daemon_log;
}

// A SIGHUP while a reload is still running (waiting for the step in flight) makes one more
// reload after it; then the daemon signs as before.
TEST_F(DaemonTest, TwoSighupsInARowAreTwoReloadsOneAfterTheOther) {
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_ + "/hook-held"); }, std::chrono::seconds(30)))
      << "the publish hook never ran: " << ReadText(log());
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the first reload has begun
  ASSERT_EQ(Count(ReadText(log()), "configuration reloaded"), 0u) << "the first reload did not wait for the step";
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  ASSERT_TRUE(WaitForLog("configuration reloaded", 2, std::chrono::seconds(40))) << ReadText(log());
  ASSERT_TRUE(WaitFor([&] { return KeystoreSettled(); }, std::chrono::seconds(60))) << ReadText(log());
  ASSERT_NO_FATAL_FAILURE(ExpectSignsAndDnsVerifies());
  ASSERT_NO_FATAL_FAILURE(ExpectExitsZeroOnSigterm());
  const std::string daemon_log = ReadText(log());
  EXPECT_EQ(Count(daemon_log, "configuration reloaded"), 2u) << daemon_log;
  EXPECT_EQ(Count(daemon_log, "reload refused"), 0u) << daemon_log;
}

// SIGTERM while a message is in flight, then SIGHUP: the reload runs, the message finishes
// signed, and the daemon exits 0.
TEST_F(DaemonTest, SighupDuringTheSigtermDrainReloadsThenStops) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  auto in_flight = Client();
  ASSERT_TRUE(in_flight.has_value());
  ASSERT_TRUE(in_flight->Connect("client", milter::testing::Family::kInet, 4000, "127.0.0.1").has_value());
  ASSERT_TRUE(in_flight->MailFrom({"<alice@example.test>"}).has_value());
  for (const auto& h : kHeaders) ASSERT_TRUE(in_flight->Header(h.name, h.value).has_value());
  ASSERT_TRUE(in_flight->EndOfHeaders().has_value());
  ASSERT_TRUE(in_flight->Body(kBody.substr(0, 10)).has_value());

  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  ASSERT_TRUE(WaitForLog("stopping:", 1, std::chrono::seconds(10))) << ReadText(log());
  ASSERT_EQ(::kill(pid_, SIGHUP), 0);
  ASSERT_TRUE(WaitForLog("configuration reloaded", 1, std::chrono::seconds(60))) << ReadText(log());

  ASSERT_TRUE(in_flight->Body(kBody.substr(10)).has_value());
  auto finished = in_flight->EndOfMessage();
  ASSERT_TRUE(finished.has_value()) << finished.error().message;
  EXPECT_EQ(finished->reply.kind, Reply::Kind::kAccept) << finished->reply.ToString();
  ASSERT_NO_FATAL_FAILURE(ExpectVerifies(in_flight->ApplyModifications(kHeaders, kBody, *finished), 2));

  int status = 0;
  ASSERT_TRUE(WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, std::chrono::seconds(40)))
      << "the daemon did not exit: " << ReadText(log());
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status)) << ReadText(log());
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadText(log());
  const std::string daemon_log = ReadText(log());
  EXPECT_EQ(daemon_log.find("still in flight"), std::string::npos) << daemon_log;
  EXPECT_NE(daemon_log.find("stopped after signing 1 message(s)"), std::string::npos) << daemon_log;
}

// Issue 13: a second `run` with the same configuration removed the first one's unix socket
// before it found the keystore locked. Now it fails first, naming the lock; one with another
// keystore but the same socket finds the socket live and leaves it alone. Mail through the
// first still signs.
TEST_F(DaemonTest, SecondRunRefusesAndLeavesTheFirstSigning) {
  socket_ = "unix:" + dir_ + "/milter.sock";
  WriteConfig();
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  struct stat before {};
  ASSERT_EQ(::stat((dir_ + "/milter.sock").c_str(), &before), 0);

  auto second = RunProcess({Binary(), "run", "-c", config_}, env_);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->exit_code, 1) << second->output;
  EXPECT_NE(second->output.find("the keystore " + keystore_ + " is in use by dkimrotor (pid " + std::to_string(pid_)),
            std::string::npos) << second->output;

  const std::string other = dir_ + "/other.conf";
  std::string text = ReadText(config_);
  text.replace(text.find(keystore_), keystore_.size(), dir_ + "/keystore2");
  std::ofstream(other) << text;
  auto third = RunProcess({Binary(), "run", "-c", other}, env_);
  ASSERT_TRUE(third.has_value());
  EXPECT_EQ(third->exit_code, 1) << third->output;
  EXPECT_NE(third->output.find("another process listens on milter socket " + dir_ + "/milter.sock"), std::string::npos)
      << third->output;

  struct stat after {};
  ASSERT_EQ(::stat((dir_ + "/milter.sock").c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the live socket was replaced";
  ASSERT_NO_FATAL_FAILURE(ExpectSignsAndDnsVerifies());
  ASSERT_NO_FATAL_FAILURE(ExpectExitsZeroOnSigterm());
}

// A stale socket (its daemon was killed) is replaced; a symbolic link in its place is not
// followed, and the socket gets exactly milter.socket_mode.
TEST_F(DaemonTest, StaleSocketIsReplacedButALinkIsRefused) {
  const std::string path = dir_ + "/milter.sock";
  socket_ = "unix:" + path;
  WriteConfig();
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  const std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "x";
  ASSERT_EQ(::chmod(victim.c_str(), 0600), 0);
  ASSERT_EQ(::symlink(victim.c_str(), path.c_str()), 0);
  auto refused = RunProcess({Binary(), "run", "-c", config_}, env_);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->exit_code, 1) << refused->output;
  EXPECT_NE(refused->output.find("milter socket " + path + " is a symbolic link"), std::string::npos) << refused->output;
  struct stat st {};
  ASSERT_EQ(::stat(victim.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u) << "the link's target was chmodded";

  ASSERT_EQ(::unlink(path.c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ::kill(pid_, SIGKILL);  // leaves its socket behind
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  ASSERT_NO_FATAL_FAILURE(ExpectSignsAndDnsVerifies());
  ASSERT_NO_FATAL_FAILURE(ExpectExitsZeroOnSigterm());
}

// Issue 13: a keystore others can write is refused before anything starts, with the fix;
// `check` reports the same error.
TEST_F(DaemonTest, KeystoreWritableByOthersIsRefused) {
  socket_ = "unix:" + dir_ + "/milter.sock";
  WriteConfig();
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_EQ(::chmod(keystore_.c_str(), 0777), 0);
  auto run = RunProcess({Binary(), "run", "-c", config_}, env_);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->exit_code, 1) << run->output;
  const std::string fix = "chmod 0700 " + keystore_;
  EXPECT_NE(run->output.find("keystore folder " + keystore_ + " is writable by group or others (mode 0777)"),
            std::string::npos) << run->output;
  EXPECT_NE(run->output.find(fix), std::string::npos) << run->output;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/milter.sock")) << "refused after binding its socket";
  auto check = RunProcess({Binary(), "check", "-c", config_}, env_);
  ASSERT_TRUE(check.has_value());
  EXPECT_EQ(check->exit_code, 1) << check->output;
  EXPECT_NE(check->output.find("error: keystore folder " + keystore_ + " is writable by group or others"),
            std::string::npos) << check->output;
  EXPECT_NE(check->output.find(fix), std::string::npos) << check->output;

  ASSERT_EQ(::chmod(keystore_.c_str(), 0700), 0);
  ASSERT_EQ(::chown(keystore_.c_str(), 65534, 65534), 0);
  run = RunProcess({Binary(), "run", "-c", config_}, env_);
  ASSERT_TRUE(run.has_value());
  EXPECT_EQ(run->exit_code, 1) << run->output;
  EXPECT_NE(run->output.find("is owned by uid 65534, neither the daemon's user"), std::string::npos) << run->output;
}

// A key file group or others can read is a warning in `check` naming the file and the mode.
TEST_F(DaemonTest, CheckWarnsAboutAGroupReadableKeyFile) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  std::string key;
  for (const auto& e : std::filesystem::directory_iterator(keystore_ + "/keys")) key = e.path();
  ASSERT_FALSE(key.empty());
  ASSERT_EQ(::chmod(key.c_str(), 0640), 0);
  auto check = RunProcess({Binary(), "check", "-c", config_}, env_);
  ASSERT_TRUE(check.has_value());
  EXPECT_NE(check->output.find("warning: key file " + key + " is accessible by group or others (mode 0640): chmod 0600 " + key),
            std::string::npos) << check->output;
}

// Issue 13: a hook others can write is refused; the key stays pending, the log says why, and
// `check` reports it. The daemon goes on (and stops cleanly).
TEST_F(DaemonTest, HookWritableByOthersIsNotRunAndTheKeyStaysPending) {
  ASSERT_EQ(::chmod(hook_.c_str(), 0777), 0);
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  ASSERT_TRUE(WaitForLog("hook " + hook_ + " is writable by group or others (mode 0777)", 1, std::chrono::seconds(30)))
      << ReadText(log());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/hook.log")) << "the hook ran";
  auto keys = keystore::LoadState(keystore_);
  ASSERT_TRUE(keys.has_value()) << keys.error().message;
  ASSERT_FALSE(keys->empty());
  for (const auto& k : *keys) EXPECT_EQ(k.state, keystore::KeyState::kPending) << k.selector;
  ASSERT_NO_FATAL_FAILURE(ExpectExitsZeroOnSigterm());
  auto check = RunProcess({Binary(), "check", "-c", config_}, env_);
  ASSERT_TRUE(check.has_value());
  EXPECT_EQ(check->exit_code, 1) << check->output;
  EXPECT_NE(check->output.find("error: example.test: hook " + hook_ + " is writable by group or others"), std::string::npos)
      << check->output;
}

// Issue 13: libmilter stopping by itself made the daemon exit 0, so systemd's
// Restart=on-failure did not restart it. libmilter's own signal thread is the one way to stop it
// from outside: SIGTERM to each thread but the main one reaches only that thread's sigwait.
TEST_F(DaemonTest, MilterStoppingOnItsOwnExitsNonZero) {
  ASSERT_NO_FATAL_FAILURE(PrepareKeystore());
  ASSERT_NO_FATAL_FAILURE(StartDaemon());
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task")) {
    const pid_t tid = std::stoi(e.path().filename());
    if (tid != pid_) ::syscall(SYS_tgkill, pid_, tid, SIGTERM);
  }
  int status = 0;
  ASSERT_TRUE(WaitFor([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, std::chrono::seconds(40)))
      << "the daemon did not exit: " << ReadText(log());
  pid_ = -1;
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal: " << ReadText(log());
  EXPECT_EQ(WEXITSTATUS(status), 1) << ReadText(log());
  EXPECT_NE(ReadText(log()).find("libmilter stopped serving " + socket_ + " on its own"), std::string::npos)
      << ReadText(log());
}

// Issue 13: `poll = "15250284453w"` passed `check` and made the rotation thread spin. Both
// `check` and `run` now refuse it, naming file, line, setting and range.
TEST_F(DaemonTest, AbsurdDurationIsRefusedByCheckAndRun) {
  std::string text = ReadText(config_);
  text.replace(text.find("poll = \"1s\""), 11, "poll = \"15250284453w\"");
  std::ofstream(config_) << text;
  const std::string expected = config_ + ":4: dns.poll = \"15250284453w\": \"15250284453w\" is not a duration: it is too "
                               "large: at most 5218w (about 100 years); allowed: 1s to 1d";
  for (const char* command : {"check", "run"}) {
    auto r = RunProcess({Binary(), command, "-c", config_}, env_);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->exit_code, 1) << command << ": " << r->output;
    EXPECT_NE(r->output.find(expected), std::string::npos) << command << ": " << r->output;
  }
}

}  // namespace
}  // namespace dkimrotor::daemon
