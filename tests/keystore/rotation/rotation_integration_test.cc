// The rotation engine with its real surroundings: key files and state in a temporary keystore,
// contrib/hooks/nsupdate publishing into a real Knot on loopback, DNS checked with c-ares.
// Only the clock is moved by the test, so days of schedule take seconds.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "keystore/keystore_world.h"
#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "keystore/publish/hook_runner.h"
#include "signer/header_selector.h"
#include "signer/message_signer.h"
#include "signer/verifier.h"
#include "tests/keystore/knot_server.h"

namespace dkimrotor::keystore {
namespace {

using std::chrono::milliseconds;
using std::chrono::minutes;
using testing::KnotServer;

class RotationIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed (apt-get install knot knot-dnsutils)";
    KnotServer::Options options;
    options.zones = {"example.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    UseKnot(std::move(*knot));
  }

  void UseKnot(std::unique_ptr<KnotServer> knot) {
    knot_ = std::move(knot);
    dir_ = knot_->dir() + "/keystore";
    // The hook reads its server from the environment the daemon passes on.
    ::setenv("DKIMROTOR_NS_SERVER", knot_->listen().c_str(), 1);
    ::setenv("DKIMROTOR_NS_PORT", std::to_string(knot_->port()).c_str(), 1);
    ::setenv("DKIMROTOR_NS_TSIG", knot_->tsig_key_file().c_str(), 1);
    ::setenv("DKIMROTOR_NS_CONFIG", (knot_->dir() + "/none.env").c_str(), 1);
    ::setenv("DKIMROTOR_NS_TTL", "60", 1);
  }

  StreamPolicy Policy() const {
    StreamPolicy p;
    p.domain = "example.test";
    p.stream = "mta1";
    p.algorithm = signer::Algorithm::kRsaSha256;
    p.bits = 1024;  // quick to generate; the size does not matter to the schedule
    p.active_keys = 1;
    p.prepublish = prepublish_;
    p.key_lifetime = std::chrono::hours(2);
    p.grace = std::chrono::hours(1);
    p.selector_format = signer::SelectorFormat::Parse("{stream}-{yyyymmdd}-{alg}{bits}").value();
    return p;
  }

  std::unique_ptr<KeystoreWorld> World(const std::string& hook) {
    KeystoreWorldOptions o;
    o.directory = dir_;
    o.hooks["example.test"] = HookConfig{hook, milliseconds(10000)};
    o.dns.resolvers = {knot_->server_address()};
    o.dns.check_authoritative = true;
    o.dns.authoritative_port = knot_->port();
    o.dns.timeout = milliseconds(500);
    o.log = [this](LogLevel level, const std::string& m) {
      if (level >= LogLevel::kWarning) log_.push_back(m);
    };
    o.audit = [this](const KeyInfo& k, KeyState, KeyState to) { audit_.push_back(k.selector + " " + std::string(KeyStateName(to))); };
    o.clock = [this] { return now_; };
    return std::make_unique<KeystoreWorld>(o);
  }

  std::unique_ptr<RotationEngine> Engine(RotationWorld* world) {
    RotationOptions o;
    o.streams = {Policy()};
    o.min_propagation = minutes(10);
    o.retry_min = retry_min_;
    auto state = LoadState(dir_);
    EXPECT_TRUE(state.has_value()) << state.error().message;
    auto engine = std::make_unique<RotationEngine>(o, state ? *state : std::vector<KeyInfo>{}, world, &holder_);
    EXPECT_TRUE(engine->Start().has_value());
    return engine;
  }

  // The TXT record DNS serves for a key, as a verifier would fetch it.
  std::string Served(const std::string& selector) {
    auto r = testing::RunProcess({testing::FindProgram("kdig"), "@" + knot_->listen(), "-p",
                                  std::to_string(knot_->port()), "+short", "TXT",
                                  selector + "._domainkey.example.test"},
                                 {{"PATH", "/usr/bin:/bin"}});
    EXPECT_TRUE(r.has_value());
    std::string out;
    for (char c : r ? r->output : "")
      if (c != '"' && c != '\n') out += c;
    // kdig prints the strings of one record separated by a space: join them back.
    std::string joined;
    for (size_t i = 0; i < out.size(); ++i)
      if (!(out[i] == ' ' && i > 0 && out[i - 1] != ';')) joined += out[i];
    return joined;
  }

  void Run(RotationEngine& engine, int steps, minutes each = minutes(5)) {
    for (int i = 0; i < steps; ++i, now_ += each) ASSERT_TRUE(engine.Step().has_value());
  }

  static int Count(const std::vector<KeyInfo>& keys, KeyState s) {
    int n = 0;
    for (const auto& k : keys) n += k.state == s ? 1 : 0;
    return n;
  }

  // Signs a message with the current snapshot and verifies it with the key DNS serves.
  void ExpectSignsVerifiably() {
    auto keys = holder_.Load()->Pick("example.test");
    ASSERT_EQ(keys.size(), 1u);
    signer::HeaderSelector selector(signer::HeaderPolicy::Default());
    signer::MessageSigner signer(keys, &selector, {.timestamp = 1, .lifetime = std::nullopt});
    signer.AddHeader("From", " a@example.test");
    ASSERT_TRUE(signer.EndOfHeaders().has_value());
    signer.AddBody("hello\r\n");
    auto sigs = signer.Finish();
    ASSERT_TRUE(sigs.has_value());
    const std::string record = Served(keys[0]->selector());
    signer::MessageVerifier verifier([&](std::string_view, std::string_view, signer::Algorithm a)
                                         -> util::Result<std::shared_ptr<const signer::PublicKey>> {
      auto p = record.find("p=");
      return signer::PublicKey::FromDkim(a, p == std::string::npos ? "" : record.substr(p + 2));
    });
    const std::string& field = sigs->at(0);
    verifier.AddHeader({"DKIM-Signature", field.substr(field.find(':') + 1)});
    verifier.AddHeader({"From", " a@example.test"});
    verifier.EndOfHeaders();
    verifier.AddBody("hello\r\n");
    auto verdicts = verifier.Finish();
    ASSERT_EQ(verdicts.size(), 1u);
    EXPECT_TRUE(verdicts[0].status.has_value()) << verdicts[0].status.error().message;
  }

  // A hook script that runs contrib/hooks/nsupdate with `value` instead of the key's record,
  // or with the key's own record when `value` is empty.
  std::string WriteHook(const std::string& name, const std::string& value) {
    const std::string hook = knot_->dir() + "/" + name;
    const std::string tmp = hook + ".tmp";
    std::ofstream(tmp) << "#!/bin/sh\nexec " << DKIMROTOR_SOURCE_DIR
                       << "/contrib/hooks/nsupdate \"$1\" \"$2\" \"$3\" "
                       << (value.empty() ? std::string("\"$4\"") : "'" + value + "'") << "\n";
    ::chmod(tmp.c_str(), 0700);
    std::filesystem::rename(tmp, hook);  // never half-written when the engine runs it
    return hook;
  }

  std::string SelectorIn(const std::vector<KeyInfo>& keys, KeyState s) {
    for (const auto& k : keys)
      if (k.state == s) return k.selector;
    return "";
  }

  int Logged(const std::string& part) const {
    int n = 0;
    for (const auto& m : log_) n += m.find(part) != std::string::npos ? 1 : 0;
    return n;
  }

  std::unique_ptr<KnotServer> knot_;
  std::string dir_;
  int prepublish_ = 1;
  std::chrono::seconds retry_min_{60};
  TimePoint now_ = FromUnix(1'800'000'000);
  SnapshotHolder holder_;
  std::vector<std::string> log_, audit_;
};

TEST_F(RotationIntegrationTest, KeysGoThroughEveryStateAndDnsShowsEach) {
  auto world = World(std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate");
  auto engine = Engine(world.get());
  Run(*engine, 1);
  auto keys = engine->Keys();
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(Count(keys, KeyState::kPending), 2);
  // Published at once, but not signing before min_propagation has passed.
  EXPECT_EQ(Served(keys[0].selector), KeyRecordValue(keys[0]));
  EXPECT_TRUE(holder_.Load()->Pick("example.test").empty());
  for (const auto& k : keys) {
    struct stat st {};
    ASSERT_EQ(::stat(KeyPath(dir_, k).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << KeyPath(dir_, k);
  }
  Run(*engine, 3);
  keys = engine->Keys();
  EXPECT_EQ(Count(keys, KeyState::kActive), 1);
  EXPECT_EQ(Count(keys, KeyState::kReady), 1);
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably());
  const std::string first = holder_.Load()->Pick("example.test").at(0)->selector();

  // key_lifetime later the spare takes over and the first key retires, still in DNS.
  Run(*engine, 24);
  keys = engine->Keys();
  const KeyInfo* retired = nullptr;
  for (const auto& k : keys)
    if (k.selector == first) retired = &k;
  ASSERT_NE(retired, nullptr);
  EXPECT_EQ(retired->state, KeyState::kRetiring);
  EXPECT_EQ(Served(first), KeyRecordValue(*retired));
  EXPECT_NE(holder_.Load()->Pick("example.test").at(0)->selector(), first);
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably());

  // After grace: revoked with an empty p=, the record kept, the private key destroyed.
  Run(*engine, 14);
  for (const auto& k : engine->Keys())
    if (k.selector == first) {
      EXPECT_EQ(k.state, KeyState::kRevoked);
    }
  EXPECT_EQ(Served(first), "v=DKIM1; p=");
  EXPECT_FALSE(std::filesystem::exists(KeyPath(dir_, *retired)));

  // Every transition is in the audit log, in order.
  std::ifstream audit_file(dir_ + "/audit.log");
  std::string audit_text((std::istreambuf_iterator<char>(audit_file)), std::istreambuf_iterator<char>());
  for (const char* step : {" pending -> ready", " ready -> active", " active -> retiring", " retiring -> revoked"})
    EXPECT_NE(audit_text.find("example.test " + first + step), std::string::npos) << step << "\n" << audit_text;

  // The state on disk says the same, and a restarted engine carries on from it.
  auto reloaded = LoadState(dir_);
  ASSERT_TRUE(reloaded.has_value());
  EXPECT_EQ(StateToJson(*reloaded), StateToJson(engine->Keys()));
  engine.reset();
  engine = Engine(world.get());
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably());
  EXPECT_TRUE(log_.empty()) << log_.front();
}

TEST_F(RotationIntegrationTest, HookPublishingAWrongKeyNeverSigns) {
  // A hook that publishes someone else's (valid) key: DNS never shows ours, so nothing may sign.
  auto other = signer::PrivateKey::Generate(signer::Algorithm::kRsaSha256, 1024);
  ASSERT_TRUE(other.has_value());
  const std::string hook = knot_->dir() + "/wrong-hook";
  std::ofstream(hook) << "#!/bin/sh\nexec " << DKIMROTOR_SOURCE_DIR
                      << "/contrib/hooks/nsupdate \"$1\" \"$2\" \"$3\" "
                      << "'v=DKIM1; k=rsa; p=" << (*other)->dkim_public_key() << "'\n";
  ::chmod(hook.c_str(), 0700);
  auto world = World(hook);
  auto engine = Engine(world.get());
  Run(*engine, 48);
  EXPECT_EQ(Count(engine->Keys(), KeyState::kPending), 2);
  EXPECT_TRUE(holder_.Load()->Pick("example.test").empty());
}

TEST_F(RotationIntegrationTest, FailingHookAndDnsTimeoutsDoNotStopSigning) {
  auto world = World(std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate");
  auto engine = Engine(world.get());
  Run(*engine, 4);
  ASSERT_EQ(Count(engine->Keys(), KeyState::kActive), 1);
  const std::string signing = holder_.Load()->Pick("example.test").at(0)->selector();

  // Restarted with a hook that fails: the next key cannot be published, rotation is late,
  // and the current key goes on signing.
  const std::string hook = knot_->dir() + "/failing-hook";
  std::ofstream(hook) << "#!/bin/sh\necho 'update refused' >&2\nexit 2\n";
  ::chmod(hook.c_str(), 0700);
  auto failing_world = World(hook);
  engine = Engine(failing_world.get());
  Run(*engine, 60);
  EXPECT_EQ(holder_.Load()->Pick("example.test").size(), 1u);
  bool hook_logged = false;
  for (const auto& m : log_) hook_logged |= m.find("update refused") != std::string::npos;
  EXPECT_TRUE(hook_logged);

  // DNS stops answering: still signing; pending keys wait instead of being thought missing.
  knot_->Pause();
  Run(*engine, 3);
  knot_->Resume();
  EXPECT_EQ(holder_.Load()->Pick("example.test").size(), 1u);
  EXPECT_NE(holder_.Load()->Pick("example.test").at(0), nullptr);
  (void)signing;
}

TEST_F(RotationIntegrationTest, HookThatPublishedAWrongValueIsRunAgainOnceFixed) {
  auto other = signer::PrivateKey::Generate(signer::Algorithm::kRsaSha256, 1024);
  ASSERT_TRUE(other.has_value());
  const std::string hook = WriteHook("hook", "v=DKIM1; k=rsa; p=" + (*other)->dkim_public_key());
  auto world = World(hook);
  auto engine = Engine(world.get());
  Run(*engine, 6);
  EXPECT_EQ(Count(engine->Keys(), KeyState::kPending), 2);
  EXPECT_GE(Logged("ran the publish hook again"), 2);
  EXPECT_NE(engine->Keys().at(0).dns_problem.find("wrong"), std::string::npos) << engine->Keys().at(0).dns_problem;
  // The hook is fixed in place. The nsupdate hook never writes over another key (it may be
  // another server's, issue 12), so the fixed hook is refused and says so, and the keys stay
  // pending...
  WriteHook("hook", "");
  Run(*engine, 6);
  EXPECT_EQ(Count(engine->Keys(), KeyState::kPending), 2);
  EXPECT_GE(Logged("another key is at"), 1);
  // ... until an admin removes the wrong records, as the refusal asks: then they recover
  // without anyone publishing by hand.
  for (const auto& k : engine->Keys())
    ASSERT_TRUE(knot_->RemoveName("example.test", k.selector + "._domainkey.example.test").has_value());
  Run(*engine, 24);
  auto keys = engine->Keys();
  EXPECT_EQ(Count(keys, KeyState::kActive), 1);
  EXPECT_EQ(Count(keys, KeyState::kReady), 1);
  for (const auto& k : keys) {
    EXPECT_EQ(Served(k.selector), KeyRecordValue(k));
    EXPECT_FALSE(k.dns_mismatch_since.has_value());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably());
}

TEST_F(RotationIntegrationTest, DeletedRecordTakesTheActiveKeyOutOfSigningWhenASpareCanSign) {
  retry_min_ = std::chrono::minutes(30);  // DNS stays wrong past min_propagation (10 min)
  auto world = World(std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate");
  auto engine = Engine(world.get());
  Run(*engine, 4);
  const std::string broken = SelectorIn(engine->Keys(), KeyState::kActive);
  const std::string spare = SelectorIn(engine->Keys(), KeyState::kReady);
  ASSERT_FALSE(broken.empty());
  ASSERT_FALSE(spare.empty());
  // A DNS server that stops answering is no evidence: nothing changes.
  knot_->Pause();
  Run(*engine, 4);
  knot_->Resume();
  EXPECT_EQ(holder_.Load()->Pick("example.test").at(0)->selector(), broken);
  EXPECT_TRUE(log_.empty()) << log_.front();

  ASSERT_TRUE(knot_->RemoveName("example.test", broken + "._domainkey.example.test").has_value());
  Run(*engine, 2);  // seen missing twice, for 5 minutes: it still signs
  EXPECT_EQ(holder_.Load()->Pick("example.test").at(0)->selector(), broken);
  Run(*engine, 1);  // the third time, 10 minutes after: the spare takes over
  EXPECT_EQ(holder_.Load()->Pick("example.test").at(0)->selector(), spare);
  EXPECT_EQ(Logged(broken + "._domainkey.example.test no longer signs"), 1);
  ASSERT_NO_FATAL_FAILURE(ExpectSignsVerifiably());
  // It is republished (it stays in DNS for grace, for mail already signed with it).
  Run(*engine, 6);
  for (const auto& k : engine->Keys())
    if (k.selector == broken) {
      EXPECT_EQ(k.state, KeyState::kRetiring);
      EXPECT_EQ(Served(broken), KeyRecordValue(k));
    }
  EXPECT_GE(Logged("ran the publish hook again"), 1);
}

TEST_F(RotationIntegrationTest, DeletedRecordWithoutSpareKeepsSigningAndLogsErrors) {
  prepublish_ = 0;
  retry_min_ = std::chrono::hours(1);
  auto world = World(std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate");
  auto engine = Engine(world.get());
  Run(*engine, 4);
  const std::string only = SelectorIn(engine->Keys(), KeyState::kActive);
  ASSERT_FALSE(only.empty());
  ASSERT_TRUE(knot_->RemoveName("example.test", only + "._domainkey.example.test").has_value());
  Run(*engine, 6);
  EXPECT_EQ(holder_.Load()->Pick("example.test").at(0)->selector(), only);
  EXPECT_EQ(Logged("so it goes on signing"), 4);  // every pass from the third on
  // The republish after retry_min heals it; the errors stop.
  Run(*engine, 12);
  EXPECT_EQ(Logged("ran the publish hook again"), 1);
  EXPECT_EQ(Served(only), KeyRecordValue(engine->Keys().at(0)));
  const int errors = Logged("so it goes on signing");
  Run(*engine, 3);
  EXPECT_EQ(Logged("so it goes on signing"), errors);
  EXPECT_FALSE(engine->Keys().at(0).dns_mismatch_since.has_value());
}

TEST_F(RotationIntegrationTest, KeysBecomeReadyOnAnIpv4OnlyHostWhoseNameServersHaveAaaa) {
  auto rc = testing::RunInIpv4OnlyNamespace([this] {
    KnotServer::Options options;
    options.zones = {"example.test"};
    options.name_servers_ipv6 = {"2001:db8::53"};
    auto knot = KnotServer::Start(options);
    EXPECT_TRUE(knot.has_value()) << knot.error().message;
    if (!knot) return 1;
    (void)knot_.release();  // the parent's server: the parent stops it
    UseKnot(std::move(*knot));
    auto world = World(std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate");
    auto engine = Engine(world.get());
    Run(*engine, 4);
    EXPECT_EQ(Count(engine->Keys(), KeyState::kActive), 1);
    EXPECT_EQ(Count(engine->Keys(), KeyState::kReady), 1);
    for (const auto& k : engine->Keys()) EXPECT_TRUE(k.dns_problem.empty()) << k.dns_problem;
    EXPECT_NO_FATAL_FAILURE(ExpectSignsVerifiably());
    engine.reset();
    knot_.reset();
    return ::testing::Test::HasFailure() ? 1 : 0;
  });
  if (!rc) GTEST_SKIP() << rc.error().message;
  EXPECT_EQ(*rc, 0) << "see the child's failures above";
}

}  // namespace
}  // namespace dkimrotor::keystore
