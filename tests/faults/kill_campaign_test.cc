// The kill -9 campaign: `dkimrotor run` against a private Knot, rotating in seconds, is
// SIGKILLed at random moments (during its start-up and the first key generation, and at a
// random delay after an ordinary or emergency `rotate`, which sets off generation,
// publication, activation, retirement and revocation at once). After every kill the keystore
// is checked from outside while nothing runs (DaemonLab::CheckKeystore: state.json loads, no
// record in Knot without its state entry, every live key has its 0600 private key holding
// the state's public key), the daemon restarts, and what a crash may leave (a revoked key's
// private key, a half-written key file) must be gone once it serves; every few kills and at
// the end a message signed through the milter must verify with dkimpy.
// DKIMROTOR_FAULT_KILLS (default 100) and DKIMROTOR_FAULT_SEED (default: random, printed) set
// the campaign; scripts/fault-campaign runs a longer one.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "keystore/storage/state_store.h"
#include "tests/faults/daemon_lab.h"
#include "util/file.h"

namespace dkimrotor::faults {
namespace {

using keystore::KeyState;
using keystore::testing::KnotServer;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

struct Figures {
  int runs = 0;             // daemon starts
  int kills = 0;            // SIGKILLs of the daemon (faults injected)
  int kills_at_startup = 0;
  int kills_after_rotate = 0;
  int kills_after_emergency = 0;
  int kills_after_transition = 0;  // within 30 ms of a transition being saved
  int inconsistencies = 0;
  int leftovers_swept = 0;  // revoked or half-written private keys destroyed at start-up
  int verified = 0;         // messages signed and verified by dkimpy
  double start_seconds = 0; // spent waiting for restarted daemons to serve
  double check_seconds = 0; // checking the keystore from outside
  double sign_seconds = 0;  // signing and verifying
  double kill_seconds = 0;  // from SIGKILL to the daemon and its CLI reaped
};

class KillCampaign : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    DaemonLab::Options options;
    // A SIGKILL loses nothing the kernel has accepted, fsynced or not, so the keystore may
    // live in memory: on a loaded CI disk each fsync costs tens of milliseconds, and the
    // campaign would kill the daemon mostly while it waits for one.
    char tmpl[] = "/dev/shm/dkimrotor-campaign-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) {
      shm_ = tmpl;
      options.keystore = shm_ + "/keystore";
    }
    auto lab = DaemonLab::Create(options);
    ASSERT_TRUE(lab.has_value()) << lab.error().message;
    lab_ = std::move(*lab);
  }

  void TearDown() override {
    lab_.reset();
    if (!shm_.empty()) std::filesystem::remove_all(shm_);
  }

  void Report(const std::string& when, const std::vector<std::string>& problems) {
    for (const auto& p : problems) ADD_FAILURE() << "after kill " << f_.kills << " (" << when << "): " << p;
    f_.inconsistencies += static_cast<int>(problems.size());
  }

  // Signs one message and has dkimpy verify it; the daemon signs with one key per algorithm
  // once its keys are active again (after an emergency, a new key must be verified first).
  void ExpectSignsVerifiably() {
    int added = 0;
    std::string message;
    const bool signed_by_all = WaitFor(
        [&] {
          auto r = lab_->SignOne("kill campaign " + std::to_string(f_.kills));
          if (!r) return false;
          message = r->first;
          added = r->second;
          return added == 2;
        },
        std::chrono::seconds(20));
    if (!signed_by_all) {
      ++f_.inconsistencies;
      ADD_FAILURE() << "after kill " << f_.kills << " the daemon signs with " << added
                    << " key(s), not 2: " << lab_->LogTail();
      return;
    }
    if (std::string why = lab_->VerifyFailure(message, added); !why.empty()) {
      ++f_.inconsistencies;
      ADD_FAILURE() << "after kill " << f_.kills << " dkimpy rejects the signature: " << why;
      return;
    }
    ++f_.verified;
  }

  std::string ActiveSelector() {
    auto keys = keystore::LoadState(lab_->keystore());
    if (!keys) return "";
    std::vector<std::string> active;
    for (const auto& k : *keys)
      if (k.state == KeyState::kActive) active.push_back(k.selector);
    return active.empty() ? "" : active[rng_() % active.size()];
  }

  std::string shm_;
  std::unique_ptr<DaemonLab> lab_;
  Figures f_;
  std::mt19937 rng_;
};

TEST_F(KillCampaign, KeystoreStaysConsistentThroughRepeatedKill9) {
  const int target = EnvInt("DKIMROTOR_FAULT_KILLS", 100);
  const unsigned seed = static_cast<unsigned>(EnvInt("DKIMROTOR_FAULT_SEED", static_cast<int>(std::random_device{}() & 0x7fffffff)));
  rng_.seed(seed);
  std::printf("fault campaign: %d kills, seed %u (DKIMROTOR_FAULT_SEED=%u repeats it)\n", target, seed, seed);
  std::fflush(stdout);
  const int verify_every = EnvInt("DKIMROTOR_FAULT_VERIFY_EVERY", 20);
  const auto started = std::chrono::steady_clock::now();
  // Most kills land within the first steps of a rotation; some let it run on to its
  // revocation, so every phase is hit.
  std::uniform_int_distribution<int> startup_delay_ms(0, 250), short_delay_ms(0, 250), long_delay_ms(250, 700),
      tiny_delay_ms(0, 30), choice(0, 9);
  const std::string audit = lab_->keystore() + "/audit.log";

  std::vector<std::string> leftovers;
  // The first kill always hits the first start, while the empty keystore gets its keys.
  bool kill_at_startup = true;
  while (f_.kills < target) {
    pid_t cli = -1;
    if (kill_at_startup) {
      ASSERT_TRUE(lab_->StartDaemon(/*wait=*/false).has_value());
      ++f_.runs;
      std::this_thread::sleep_for(std::chrono::milliseconds(startup_delay_ms(rng_)));
      ++f_.kills_at_startup;
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      auto up = lab_->StartDaemon(/*wait=*/true);
      f_.start_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++f_.runs;
      ASSERT_TRUE(up.has_value()) << "after kill " << f_.kills << ": " << up.error().message;
      // Serving means the start-up sweep is done: whatever the last crash left must be gone.
      auto unswept = DaemonLab::Unswept(leftovers);
      f_.leftovers_swept += static_cast<int>(leftovers.size() - unswept.size());
      Report("start-up sweep", unswept);
      if (f_.kills % verify_every == 0) {
        const auto t1 = std::chrono::steady_clock::now();
        ExpectSignsVerifiably();
        f_.sign_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
      }
      const std::string active = ActiveSelector();
      std::vector<std::string> rotate = {"rotate", "--domain", "example.test"};
      if (choice(rng_) < 2 && !active.empty()) {
        rotate.insert(rotate.end(), {"--emergency", "--selector", active, "--force"});
        ++f_.kills_after_emergency;
      } else {
        ++f_.kills_after_rotate;
      }
      auto spawned = lab_->SpawnCli(rotate);
      ASSERT_TRUE(spawned.has_value()) << spawned.error().message;
      cli = *spawned;
      const int timing = choice(rng_);
      if (timing < 3) {
        // Right after the next transition is saved (audit.log is appended after the state):
        // where a revocation is committed and its key not yet destroyed.
        const size_t seen = Count(keystore::testing::ReadText(audit), "\n");
        WaitFor([&] { return Count(keystore::testing::ReadText(audit), "\n") > seen; }, std::chrono::milliseconds(1200));
        std::this_thread::sleep_for(std::chrono::milliseconds(tiny_delay_ms(rng_)));
        ++f_.kills_after_transition;
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(timing < 8 ? short_delay_ms(rng_) : long_delay_ms(rng_)));
      }
    }
    const bool was_alive = lab_->DaemonAlive();
    const auto t3 = std::chrono::steady_clock::now();
    lab_->KillDaemon();
    ++f_.kills;
    if (cli > 0) {
      // Without the daemon `rotate` would take the lock and work directly: it dies too.
      ::kill(cli, SIGKILL);
      ::waitpid(cli, nullptr, 0);
    }
    f_.kill_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count();
    if (!was_alive) {
      ++f_.inconsistencies;
      ADD_FAILURE() << "the daemon had died by itself before kill " << f_.kills << ": " << lab_->LogTail();
    }
    leftovers.clear();
    const auto t2 = std::chrono::steady_clock::now();
    Report("keystore check", lab_->CheckKeystore(&leftovers));
    f_.check_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t2).count();
    kill_at_startup = choice(rng_) < 2;
  }
  ASSERT_TRUE(lab_->StartDaemon(/*wait=*/true).has_value());
  ++f_.runs;
  auto unswept = DaemonLab::Unswept(leftovers);
  f_.leftovers_swept += static_cast<int>(leftovers.size() - unswept.size());
  Report("final start-up sweep", unswept);
  ExpectSignsVerifiably();
  // Undisturbed, the keystore that went through the kills still rotates to the end: a full
  // rotation, whose retired keys are revoked and destroyed.
  auto revoked_count = [&] {
    auto now = keystore::LoadState(lab_->keystore());
    int n = 0;
    if (now)
      for (const auto& k : *now) n += k.state == KeyState::kRevoked;
    return n;
  };
  const int revoked_before = revoked_count();
  ASSERT_TRUE(WaitFor([&] { return lab_->Cli({"rotate", "--domain", "example.test"})->exit_code == 0 &&
                                   WaitFor([&] { return revoked_count() > revoked_before; }, std::chrono::seconds(5)); },
                      std::chrono::seconds(30)))
      << "the keystore no longer rotates after the kills: " << lab_->LogTail();
  ExpectSignsVerifiably();
  auto stopped = lab_->StopDaemon();
  ASSERT_TRUE(stopped.has_value()) << stopped.error().message;
  EXPECT_TRUE(WIFEXITED(*stopped) && WEXITSTATUS(*stopped) == 0) << lab_->LogTail();
  leftovers.clear();
  Report("final keystore check", lab_->CheckKeystore(&leftovers));

  auto keys = keystore::LoadState(lab_->keystore());
  int revoked = 0;
  if (keys)
    for (const auto& k : *keys) revoked += k.state == KeyState::kRevoked;
  const std::string transitions = keystore::testing::ReadText(audit);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "fault campaign (seed %u): runs %d, faults injected %d (SIGKILL: %d during start-up, %d after rotate, "
      "%d after emergency rotate; %d of them within 30 ms of a saved transition), inconsistencies found %d; "
      "leftover private keys destroyed at start-up %d; keys made %zu, transitions saved: %zu to ready, %zu to active, "
      "%zu to retiring, %zu to revoked; signatures verified by dkimpy %d; %.1f s (restarts %.1f s, checks %.1f s, signing %.1f s, kills %.1f s)\n",
      seed, f_.runs, f_.kills, f_.kills_at_startup, f_.kills_after_rotate, f_.kills_after_emergency,
      f_.kills_after_transition, f_.inconsistencies, f_.leftovers_swept, keys ? keys->size() : 0,
      Count(transitions, "-> ready"), Count(transitions, "-> active"), Count(transitions, "-> retiring"),
      Count(transitions, "-> revoked"), f_.verified, seconds, f_.start_seconds, f_.check_seconds, f_.sign_seconds, f_.kill_seconds);
  RecordProperty("faults_injected", f_.kills);
  RecordProperty("inconsistencies", f_.inconsistencies);
  EXPECT_EQ(f_.inconsistencies, 0);
}

}  // namespace
}  // namespace dkimrotor::faults

namespace dkimrotor::faults {
namespace {

// The start-up sweep from outside, deterministically: the files a crash leaves (a revoked
// key's private key, put back after its revocation; a half-written key) are gone once the
// restarted daemon serves, and a key file no state entry names stays, with a warning.
TEST(StartUpSweep, RestartedDaemonDestroysWhatACrashLeftAndReportsStrangers) {
  if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
  auto created = DaemonLab::Create({});
  ASSERT_TRUE(created.has_value()) << created.error().message;
  DaemonLab& lab = **created;
  ASSERT_TRUE(lab.StartDaemon().has_value());
  ASSERT_TRUE(WaitFor([&] { return lab.ActiveAlgorithms() == 2; }, std::chrono::seconds(30))) << lab.LogTail();
  auto keys = keystore::LoadState(lab.keystore());
  ASSERT_TRUE(keys.has_value());
  keystore::KeyInfo victim;
  for (const auto& k : *keys)
    if (k.state == KeyState::kActive) victim = k;
  const std::string victim_file = keystore::KeyPath(lab.keystore(), victim);
  const std::string pem = keystore::testing::ReadText(victim_file);
  ASSERT_FALSE(pem.empty());
  auto rotate = lab.Cli({"rotate", "--domain", "example.test", "--emergency", "--selector", victim.selector, "--force"});
  ASSERT_TRUE(rotate.has_value());
  ASSERT_EQ(rotate->exit_code, 0) << rotate->output;
  ASSERT_TRUE(WaitFor([&] { return !std::filesystem::exists(victim_file); }, std::chrono::seconds(20)))
      << "the revoked key was not destroyed: " << lab.LogTail();
  lab.KillDaemon();

  // What a crash between the commit of the revocation and the destruction would have left,
  // what one in the middle of writing a new key leaves, and a key file nobody knows.
  const std::string partial = lab.keystore() + "/keys/mta1-x._domainkey.example.test.pem.tmp";
  const std::string stranger = lab.keystore() + "/keys/stranger._domainkey.example.test.pem";
  for (const auto& path : {victim_file, partial, stranger})
    ASSERT_TRUE(util::WriteFileAtomically(path, pem, 0600).has_value());
  ASSERT_TRUE(lab.StartDaemon().has_value());
  EXPECT_FALSE(std::filesystem::exists(victim_file)) << lab.LogTail();
  EXPECT_FALSE(std::filesystem::exists(partial)) << lab.LogTail();
  EXPECT_TRUE(std::filesystem::exists(stranger));
  const std::string log = keystore::testing::ReadText(lab.log());
  EXPECT_NE(log.find("destroyed " + victim_file + ": the private key of a revoked key was still on disk"),
            std::string::npos) << lab.LogTail();
  EXPECT_NE(log.find("key file " + stranger + " belongs to no key of the state; left in place"), std::string::npos)
      << lab.LogTail();
  std::vector<std::string> leftovers;
  for (const auto& p : lab.CheckKeystore(&leftovers)) ADD_FAILURE() << p;
  auto signed_message = lab.SignOne("after the sweep");
  ASSERT_TRUE(signed_message.has_value()) << signed_message.error().message;
  EXPECT_EQ(lab.VerifyFailure(signed_message->first, signed_message->second), "");
}

}  // namespace
}  // namespace dkimrotor::faults
