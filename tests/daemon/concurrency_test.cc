// The daemon's threads at once, in one process, for ThreadSanitizer (scripts/test builds this
// test with -DDKIMROTOR_TSAN=ON) as much as for its own checks: signing threads run messages
// through SigningService sessions while the rotation thread steps and swaps snapshots, an admin
// thread posts rotations and emergency revocations (as the control channel does, through
// RotationRunner::Execute), and a reload thread does what Daemon::Reload does on SIGHUP
// (RotationRunner::Reconfigure, then SigningService::SwapSettings). Real keystore files, the
// nsupdate hook and a real Knot. Every message must be signed and every signature must verify.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <thread>

#include "daemon/rotation_runner.h"
#include "keystore/rotation/admin_commands.h"
#include "session/session.h"
#include "session/signing_service.h"
#include "signer/public_key.h"
#include "signer/verifier.h"
#include "tests/keystore/knot_server.h"
#include "util/mutex.h"

namespace dkimrotor::daemon {
namespace {

using keystore::testing::KnotServer;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kSigners = 4;
// Runs until every kind of change has happened a few times (at least kMinRun), at most kMaxRun.
constexpr auto kMinRun = seconds(5);
constexpr auto kMaxRun = seconds(100);

const std::string kBody = "Hello,\r\n\r\nthis is  a test.  \r\n\r\n";

class ConcurrencyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {"example.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    // The hook reads its server from the environment the daemon passes on (set before any
    // thread starts).
    for (const auto& [k, v] : knot_->NsupdateHookEnv())
      if (k.starts_with("DKIMROTOR_")) ::setenv(k.c_str(), v.c_str(), 1);
    log_ = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    log_->set_level(spdlog::level::warn);
  }

  RotationRunnerOptions Options(int generation) const {
    RotationRunnerOptions o;
    for (auto [alg, bits] : {std::pair{signer::Algorithm::kEd25519Sha256, 256},
                             std::pair{signer::Algorithm::kRsaSha256, 1024}}) {
      keystore::StreamPolicy p;
      p.domain = "example.test";
      p.stream = "mta1";
      p.algorithm = alg;
      p.bits = bits;
      p.active_keys = 1 + generation % 2;  // reloads change something the engine uses
      p.prepublish = 1;
      p.key_lifetime = std::chrono::hours(24 * 30);
      p.grace = std::chrono::hours(24 * 7);
      p.selector_format = signer::SelectorFormat::Parse("{stream}-{n}-{alg}{bits}").value();
      o.rotation.streams.push_back(p);
    }
    o.rotation.min_propagation = seconds(0);
    o.rotation.retry_min = seconds(1);
    o.rotation.poll = seconds(1);
    o.poll = milliseconds(200);
    o.world.directory = knot_->dir() + "/keystore";
    o.world.hooks["example.test"] =
        keystore::HookConfig{std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate", milliseconds(30000)};
    o.world.dns.resolvers = {knot_->server_address()};
    o.world.dns.check_authoritative = true;
    o.world.dns.authoritative_port = knot_->port();
    o.world.dns.timeout = milliseconds(1000);
    return o;
  }

  static std::shared_ptr<const session::Settings> Settings(int generation) {
    auto s = std::make_shared<session::Settings>();
    s->policy = session::SigningPolicy::Create({util::Cidr::Parse("127.0.0.0/8").value()}, true).value();
    s->domains = {{"example.test", generation % 2 == 1}};
    s->signature_lifetime = 3600 + generation;
    return s;
  }

  // The public key of a selector the engine made: from the runner's committed keys, cached.
  util::Result<std::shared_ptr<const signer::PublicKey>> PublicKey(std::string_view selector,
                                                                  signer::Algorithm algorithm) {
    {
      util::MutexLock lock(&mu_);
      if (auto it = public_keys_.find(selector); it != public_keys_.end()) return it->second;
    }
    for (const auto& k : runner_->Keys()) {
      if (k.selector != selector) continue;
      ASSIGN_OR_RETURN(auto key, signer::PublicKey::FromDkim(algorithm, k.public_key));
      util::MutexLock lock(&mu_);
      public_keys_[k.selector] = key;
      return key;
    }
    return util::Err(util::ErrorCode::kNotFound, "no key " + std::string(selector) + " in the keystore");
  }

  // One message through a session, as the milter runs it; true when it was signed and every
  // signature verifies.
  bool SignOne(int thread, int n, std::string* why) {
    sockaddr_in client{};
    client.sin_family = AF_INET;
    client.sin_addr.s_addr = htonl(0x7f000001);
    auto start = service_->Begin({reinterpret_cast<const sockaddr*>(&client), ""});
    if (!start.session) return *why = "refused at Begin: " + start.verdict.reason, false;
    const std::vector<std::pair<std::string, std::string>> headers = {
        {"From", " Alice <alice@example.test>"},
        {"To", " bob@example.net"},
        {"Subject", " message " + std::to_string(n) + " of thread " + std::to_string(thread)},
        {"Message-ID", " <" + std::to_string(thread) + "." + std::to_string(n) + "@example.test>"}};
    for (const auto& [name, value] : headers) start.session->AddHeader(name, value);
    if (auto refused = start.session->EndOfHeaders()) return *why = "refused: " + refused->reason, false;
    start.session->AddBody(kBody.substr(0, 7));
    start.session->AddBody(kBody.substr(7));
    auto verdict = start.session->Finish([](const std::vector<std::string>&) { return util::Ok(); });
    if (verdict.outcome != session::Outcome::kSigned) return *why = "not signed: " + verdict.reason, false;

    signer::MessageVerifier verifier([this](std::string_view, std::string_view selector, signer::Algorithm a) {
      return PublicKey(selector, a);
    });
    for (const auto& sig : verdict.signatures)
      verifier.AddHeader({sig.substr(0, sig.find(':')), sig.substr(sig.find(':') + 1)});
    for (const auto& [name, value] : headers) verifier.AddHeader({name, value});
    verifier.EndOfHeaders();
    verifier.AddBody(kBody);
    auto verdicts = verifier.Finish();
    if (verdicts.size() != verdict.signatures.size()) return *why = "signatures lost", false;
    for (const auto& v : verdicts)
      if (!v.status) return *why = v.selector + ": " + v.status.error().message, false;
    return true;
  }

  std::unique_ptr<KnotServer> knot_;
  std::shared_ptr<spdlog::logger> log_;
  keystore::SnapshotHolder holder_;
  std::unique_ptr<RotationRunner> runner_;
  std::unique_ptr<session::SigningService> service_;
  util::Mutex mu_;
  std::map<std::string, std::shared_ptr<const signer::PublicKey>, std::less<>> public_keys_ GUARDED_BY(mu_);
};

TEST_F(ConcurrencyTest, SigningWhileRotatingRevokingAndReloadingSignsAndVerifiesEveryMessage) {
  auto runner = RotationRunner::Start(Options(0), {}, &holder_, log_);
  ASSERT_TRUE(runner.has_value()) << runner.error().message;
  runner_ = std::move(*runner);
  service_ = std::make_unique<session::SigningService>(&holder_, Settings(0), log_, nullptr);

  // The first keys: generated, published through the hook, verified in Knot.
  const auto ready_by = std::chrono::steady_clock::now() + seconds(60);
  while (holder_.Load() == nullptr || holder_.Load()->Pick("example.test").size() < 2) {
    ASSERT_LT(std::chrono::steady_clock::now(), ready_by) << "no active keys after 60 s";
    std::this_thread::sleep_for(milliseconds(100));
  }

  std::atomic<bool> stop{false};
  std::atomic<int> signed_ok{0}, failed{0};
  util::Mutex failures_mu;
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int t = 0; t < kSigners; ++t)
    threads.emplace_back([&, t] {
      for (int n = 0; !stop.load(); ++n) {
        std::string why;
        // The rotation thread and the hooks it spawns run at SCHED_IDLE: signers that leave no
        // idle CPU would starve them (by design, signing comes first), above all under TSan on
        // 2 cores, and the test would see no rotation at all.
        std::this_thread::sleep_for(milliseconds(25));
        if (SignOne(t, n, &why)) {
          signed_ok.fetch_add(1);
        } else {
          failed.fetch_add(1);
          util::MutexLock lock(&failures_mu);
          if (failures.size() < 10) failures.push_back(why);
        }
      }
    });

  // Admin commands, as the control channel runs them: rotate, and now and then an emergency
  // revocation of an active key (refused, harmlessly, when no verified spare is there yet).
  std::atomic<int> rotations{0}, emergencies{0}, reloads{0};
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      auto st = runner_->Execute(
          [&](keystore::RotationEngine& engine) -> util::Status {
            if (i % 3 != 2) return engine.Rotate("example.test");
            for (const auto& k : engine.Keys()) {
              if (k.state != keystore::KeyState::kActive) continue;
              bool leaves_unsigned = false;
              RETURN_IF_ERROR(keystore::CheckEmergency(engine.options(), engine.Keys(), k.domain, k.selector,
                                                       /*force=*/false, &leaves_unsigned));
              return engine.EmergencyRevoke(k.domain, k.selector);
            }
            return util::Ok();
          },
          milliseconds(20000));
      if (st) (i % 3 != 2 ? rotations : emergencies).fetch_add(1);
      std::this_thread::sleep_for(milliseconds(300));
    }
  });
  // Reloads, as Daemon::Reload runs them on SIGHUP.
  threads.emplace_back([&] {
    for (int generation = 1; !stop.load(); ++generation) {
      if (auto st = runner_->Reconfigure(Options(generation)); st) reloads.fetch_add(1);
      else ADD_FAILURE() << "reload: " << st.error().message;
      service_->SwapSettings(Settings(generation));
      std::this_thread::sleep_for(milliseconds(400));
    }
  });

  const auto began = std::chrono::steady_clock::now();
  for (auto elapsed = seconds(0); elapsed < kMaxRun;
       elapsed = std::chrono::duration_cast<seconds>(std::chrono::steady_clock::now() - began)) {
    if (elapsed >= kMinRun && reloads.load() >= 4 && rotations.load() >= 2 && emergencies.load() >= 1) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  stop.store(true);
  for (auto& t : threads) t.join();
  runner_->Stop();

  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(signed_ok.load(), 50);
  EXPECT_GE(rotations.load(), 2);
  EXPECT_GE(emergencies.load(), 1);
  EXPECT_GE(reloads.load(), 4);
  EXPECT_EQ(service_->counters().signed_messages.load(), static_cast<uint64_t>(signed_ok.load()));
  std::printf("signed %d messages with %d rotations, %d emergency revocations and %d reloads\n",
              signed_ok.load(), rotations.load(), emergencies.load(), reloads.load());
}

}  // namespace
}  // namespace dkimrotor::daemon
