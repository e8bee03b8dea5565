// The rotation engine in simulated time: years of schedule in well under a second, with the
// M3AAWG invariants checked at every step, and crashes, failing hooks, wrong and slow DNS.
#include "keystore/rotation/rotation_engine.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "keystore/rotation/admin_commands.h"
#include "keystore/rotation/rotation_thread.h"
#include "keystore/storage/state_store.h"

namespace dkimrotor::keystore {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;
constexpr seconds kDay{86400};

// The world as the engine sees it, all in memory: a clock the test moves, key files in a map,
// the state file as the JSON text last saved, a DNS zone where published records appear after
// a propagation delay, and a record of every transition for the invariants.
class FakeWorld : public RotationWorld {
 public:
  TimePoint now = FromUnix(1'800'000'000);
  bool can_publish = true;
  seconds propagation{minutes(30)};
  int publish_failures_left = 0;    // the hook fails this many more times
  bool dns_down = false;            // every query times out
  bool disk_full = false;           // SaveState fails
  bool crash_before_destroy = false;  // DestroyKey does nothing: the process died before it
  std::string publish_wrong_key_for;  // the hook publishes a different key for this selector
  std::string saved_state;          // the state file's content
  int saves = 0;
  std::map<std::string, std::shared_ptr<const signer::PrivateKey>> key_files;
  struct Record {
    std::string value;
    TimePoint visible_from;
  };
  std::map<std::string, Record> dns;  // by "selector._domainkey.domain"
  struct Audited {
    KeyInfo key;
    KeyState from, to;
    TimePoint at;
  };
  std::vector<Audited> audit;
  std::vector<std::string> warnings, errors;
  std::atomic<int> create_key_policy{-1};  // the scheduling policy CreateKey last ran under

  static std::string Name(const KeyInfo& k) { return k.selector + "._domainkey." + k.domain; }

  TimePoint Now() override { return now; }
  util::Result<std::shared_ptr<const signer::PrivateKey>> CreateKey(const KeyInfo& k) override {
    create_key_policy = ::sched_getscheduler(0);
    ASSIGN_OR_RETURN(auto key, signer::PrivateKey::Generate(signer::Algorithm::kEd25519Sha256, 0));
    key_files[Name(k)] = key;
    return key;
  }
  util::Result<std::shared_ptr<const signer::PrivateKey>> LoadKey(const KeyInfo& k) override {
    auto it = key_files.find(Name(k));
    if (it == key_files.end()) return util::Err(util::ErrorCode::kNotFound, "no key file");
    return it->second;
  }
  util::Status DestroyKey(const KeyInfo& k) override {
    if (crash_before_destroy) return util::Ok();
    key_files.erase(Name(k));
    return util::Ok();
  }
  util::Status SaveState(const std::vector<KeyInfo>& keys) override {
    if (disk_full) return util::Err(util::ErrorCode::kIo, "No space left on device");
    saved_state = StateToJson(keys);
    ++saves;
    return util::Ok();
  }
  KeyFileSweep SweepKeyFiles(const std::vector<KeyInfo>& keys) override {
    KeyFileSweep sweep;
    std::set<std::string> known;
    for (const auto& k : keys) {
      known.insert(Name(k));
      if (k.state == KeyState::kRevoked && key_files.erase(Name(k))) sweep.destroyed_revoked.push_back(Name(k));
    }
    for (const auto& [name, key] : key_files)
      if (!known.count(name)) sweep.orphans.push_back(name);
    return sweep;
  }
  bool CanPublish(const std::string&) override { return can_publish; }
  util::Status Publish(const KeyInfo& k, bool revoke, const std::string& value) override {
    if (publish_failures_left > 0) {
      --publish_failures_left;
      return util::Err(util::ErrorCode::kIo, "hook exited with status 1");
    }
    std::string v = value;
    if (!revoke && k.selector == publish_wrong_key_for) v = "v=DKIM1; k=ed25519; p=AAAA";
    SetRecord(Name(k), v);
    return util::Ok();
  }
  // Publishing the value already there changes nothing that resolvers see.
  void SetRecord(const std::string& name, const std::string& value) {
    auto it = dns.find(name);
    if (it != dns.end() && it->second.value == value) return;
    dns[name] = Record{value, now + propagation};
  }
  DnsObservation CheckDns(const KeyInfo& k, bool expect_revoked, std::string* detail) override {
    if (dns_down) {
      *detail = "timed out";
      return DnsObservation::kTemporaryFailure;
    }
    auto it = dns.find(Name(k));
    if (it == dns.end() || it->second.visible_from > now) return DnsObservation::kMissing;
    if (it->second.value == RevokedRecordValue()) return DnsObservation::kRevoked;
    (void)expect_revoked;
    return it->second.value == KeyRecordValue(k) ? DnsObservation::kMatches : DnsObservation::kWrong;
  }
  void Audit(const KeyInfo& k, KeyState from, KeyState to) override {
    audit.push_back({k, from, to, now});
  }
  void Log(LogLevel level, const std::string& message) override {
    if (level == LogLevel::kWarning) warnings.push_back(message);
    if (level == LogLevel::kError) errors.push_back(message);
  }
};

// Runs `n` engine steps an hour apart.
void StepHourly(RotationEngine& engine, FakeWorld& world, int n) {
  for (int i = 0; i < n; ++i, world.now += hours(1)) ASSERT_TRUE(engine.Step().has_value()) << "step " << i;
}

StreamPolicy Policy(int active_keys) {
  StreamPolicy p;
  p.domain = "example.com";
  p.stream = "mta1";
  p.algorithm = signer::Algorithm::kEd25519Sha256;
  p.active_keys = active_keys;
  p.key_lifetime = 120 * kDay;
  p.prepublish = 1;
  p.grace = 14 * kDay;
  return p;
}

RotationOptions Options(int active_keys) {
  RotationOptions o;
  o.streams = {Policy(active_keys)};
  o.min_propagation = hours(1);
  return o;
}

int CountIn(const std::vector<KeyInfo>& keys, KeyState s) {
  int n = 0;
  for (const auto& k : keys) n += k.state == s ? 1 : 0;
  return n;
}

// Checks the invariants after a step; `prop` is min_propagation.
void CheckInvariants(const FakeWorld& world, const std::vector<KeyInfo>& keys, int active_keys,
                     const SnapshotHolder& holder, seconds prop, seconds grace) {
  const int active = CountIn(keys, KeyState::kActive);
  ASSERT_LE(active, active_keys);
  if (CountIn(keys, KeyState::kReady) > 0) {
    ASSERT_GE(active, 1) << "a verified key exists but none signs";
  }
  std::set<std::string> selectors;
  for (const auto& k : keys) {
    ASSERT_TRUE(selectors.insert(k.selector).second) << "selector reused: " << k.selector;
    if (k.state == KeyState::kActive) {
      auto it = world.dns.find(FakeWorld::Name(k));
      ASSERT_NE(it, world.dns.end()) << k.selector << " signs but is not in DNS";
      ASSERT_EQ(it->second.value, KeyRecordValue(k)) << k.selector << " signs but DNS serves another key";
      ASSERT_LE(it->second.visible_from + prop, k.activated.value()) << k.selector << " activated before propagation";
    }
    if (k.state == KeyState::kRevoked) {
      ASSERT_FALSE(world.key_files.count(FakeWorld::Name(k))) << "revoked key not destroyed";
      if (!k.emergency) {
        ASSERT_GE(*k.revoked - *k.retired, grace) << k.selector << " revoked before grace";
      }
    }
  }
  auto snap = holder.Load();
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(static_cast<int>(snap->Pick("example.com").size()), active > 0 ? 1 : 0);
}

class RotationScheduleTest : public ::testing::TestWithParam<std::tuple<int, bool>> {};

// Two years, polled hourly, for 1, 2 and 3 active keys; the crash variant rebuilds the engine
// from the last saved state file before every step, as a kill -9 and restart would.
TEST_P(RotationScheduleTest, TwoYearsKeepEveryInvariant) {
  const auto [active_keys, crash_every_step] = GetParam();
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(active_keys);
  auto engine = std::make_unique<RotationEngine>(options, std::vector<KeyInfo>{}, &world, &holder);
  ASSERT_TRUE(engine->Start().has_value());
  const TimePoint start = world.now;
  for (TimePoint end = start + 730 * kDay; world.now < end; world.now += hours(1)) {
    if (crash_every_step && world.saves > 0) {
      auto reloaded = StateFromJson(world.saved_state, "state.json");
      ASSERT_TRUE(reloaded.has_value()) << reloaded.error().message;
      engine = std::make_unique<RotationEngine>(options, *reloaded, &world, &holder);
      ASSERT_TRUE(engine->Start().has_value());
    }
    ASSERT_TRUE(engine->Step().has_value());
    ASSERT_NO_FATAL_FAILURE(CheckInvariants(world, engine->Keys(), active_keys, holder,
                                            options.min_propagation, Policy(1).grace));
    if (world.now - start > 2 * kDay) {
      ASSERT_EQ(CountIn(engine->Keys(), KeyState::kActive), active_keys) << "not fully staffed";
    }
  }
  // Each key signs for key_lifetime once the schedule is steady: about 730/120 replacements per
  // active slot, plus the first fill.
  int activations = 0;
  for (const auto& a : world.audit) activations += a.to == KeyState::kActive ? 1 : 0;
  const int steps = static_cast<int>(730 / (120.0 / active_keys));
  EXPECT_GE(activations, active_keys + steps - 1);
  EXPECT_LE(activations, active_keys + steps + 1);
  EXPECT_GT(CountIn(engine->Keys(), KeyState::kRevoked), 0);
  EXPECT_TRUE(world.errors.empty()) << world.errors.front();
}

INSTANTIATE_TEST_SUITE_P(ActiveKeysAndCrashes, RotationScheduleTest,
                         ::testing::Combine(::testing::Values(1, 2, 3), ::testing::Bool()));

std::vector<std::string> SelectorsAfterFirstStep(RotationOptions options) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(std::move(options), {}, &world, &holder);
  EXPECT_TRUE(engine.Start().has_value());
  EXPECT_TRUE(engine.Step().has_value());
  std::vector<std::string> out;
  for (const auto& k : engine.Keys()) out.push_back(k.selector);
  return out;
}

// CNAME delegation (issue 12): keys take turns in a fixed set of slots for two years. A slot's
// record only ever changes from a key to its revocation once the key's grace is over, and from
// a revocation to a new key once grace has passed again; selectors stay unique in the state.
void RunDelegatedYears(int slots, FakeWorld& world, std::vector<KeyInfo>& final_keys, int& generated) {
  SnapshotHolder holder;
  auto options = Options(2);
  StreamPolicy& p = options.streams[0];
  for (int i = 1; i <= slots; ++i) p.slots.push_back("k" + std::to_string(i));
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  std::map<std::string, TimePoint> revoked_at, retired_at;  // by slot, from the audit
  const TimePoint start = world.now;
  size_t audited = 0;
  for (TimePoint end = start + 730 * kDay; world.now < end; world.now += hours(1)) {
    std::map<std::string, std::string> before;
    for (const auto& [name, record] : world.dns) before[name] = record.value;
    ASSERT_TRUE(engine.Step().has_value());
    for (const auto& [name, record] : world.dns) {
      auto old = before.find(name);
      if (old == before.end() || old->second == record.value) continue;
      const std::string slot = name.substr(0, name.find('.'));
      if (record.value == RevokedRecordValue()) {
        ASSERT_TRUE(retired_at.count(slot)) << name;
        ASSERT_GE(world.now - retired_at[slot], p.grace) << name << " revoked within its key's grace";
      } else {
        ASSERT_EQ(old->second, RevokedRecordValue()) << name << ": a key replaced without its revocation";
        ASSERT_TRUE(revoked_at.count(slot)) << name;
        ASSERT_GE(world.now - revoked_at[slot], p.grace) << name << " took a new key within grace of the revocation";
      }
    }
    for (; audited < world.audit.size(); ++audited) {
      const auto& a = world.audit[audited];
      if (a.to == KeyState::kRetiring) retired_at[a.key.selector] = a.at;
      if (a.to == KeyState::kRevoked) revoked_at[a.key.selector] = a.at;
      if (a.from == KeyState::kPending && a.to == KeyState::kReady) ++generated;
    }
    const auto keys = engine.Keys();
    ASSERT_NO_FATAL_FAILURE(CheckInvariants(world, keys, 2, holder, options.min_propagation, p.grace));
    for (const auto& k : keys)
      ASSERT_NE(std::find(p.slots.begin(), p.slots.end(), k.selector), p.slots.end()) << k.selector;
    if (world.now - start > 2 * kDay) {
      ASSERT_EQ(CountIn(keys, KeyState::kActive), 2) << "not fully staffed";
    }
  }
  final_keys = engine.Keys();
}

TEST(RotationEngine, DelegatedKeysTakeTurnsInTheirSlotsForYears) {
  FakeWorld world;
  std::vector<KeyInfo> keys;
  int generated = 0;
  ASSERT_NO_FATAL_FAILURE(RunDelegatedYears(4, world, keys, generated));
  EXPECT_GE(generated, 14) << "two years of 60-day rotations through 4 slots";
  EXPECT_LE(keys.size(), 4u);
  EXPECT_TRUE(world.errors.empty()) << world.errors.front();
  for (const auto& w : world.warnings) EXPECT_EQ(w.find("no free slot"), std::string::npos) << w;
}

TEST(RotationEngine, TooFewSlotsWaitForARevocationAndSayWhy) {
  // 3 slots for 2 active keys and a spare: after each rotation the spare's slot is free only
  // grace after the revocation; the engine waits (and says so) but never reuses one early.
  FakeWorld world;
  std::vector<KeyInfo> keys;
  int generated = 0;
  ASSERT_NO_FATAL_FAILURE(RunDelegatedYears(3, world, keys, generated));
  EXPECT_GE(generated, 10);
  bool said = false;
  for (const auto& w : world.warnings) said |= w.find("no free slot for a new key of example.com") != std::string::npos;
  EXPECT_TRUE(said);
}

TEST(RotationEngine, NamesKeysWithTheSelectorFormat) {
  // FakeWorld starts at 2027-01-15T08:00:00Z; 2 active keys and 1 spare make three keys.
  auto options = Options(2);
  options.streams[0].stream = "MTA1";
  EXPECT_EQ(SelectorsAfterFirstStep(options),
            (std::vector<std::string>{"mta1-20270115-ed25519", "mta1-20270115-ed25519-2",
                                      "mta1-20270115-ed25519-3"}));
  options.streams[0].selector_format = signer::SelectorFormat::Parse("k{yyyymm}.{n}").value();
  EXPECT_EQ(SelectorsAfterFirstStep(options),
            (std::vector<std::string>{"k202701.1", "k202701.2", "k202701.3"}));
  options.streams[0].algorithm = signer::Algorithm::kRsaSha256;
  options.streams[0].bits = 1024;
  options.streams[0].selector_format =
      signer::SelectorFormat::Parse("{alg}{bits}-{yyyymmdd}").value();
  EXPECT_EQ(SelectorsAfterFirstStep(options),
            (std::vector<std::string>{"rsa1024-20270115", "rsa1024-20270115-2",
                                      "rsa1024-20270115-3"}));
}

TEST(RotationEngine, KeyWithWrongDnsRecordNeverSigns) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_TRUE(engine.Step().has_value());  // generates and publishes the first key
  world.publish_wrong_key_for = engine.Keys().at(0).selector;
  world.dns.clear();
  // Republishing is not forced; DNS is set to a wrong key by "someone else".
  world.SetRecord(FakeWorld::Name(engine.Keys().at(0)), "v=DKIM1; k=ed25519; p=AAAA");
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 24 * 30));
  EXPECT_EQ(engine.Keys().at(0).state, KeyState::kPending);
  EXPECT_TRUE(holder.Load()->Pick("example.com").empty());
}

TEST(RotationEngine, WithoutHookKeysWaitForTheDnsAdmin) {
  FakeWorld world;
  world.can_publish = false;
  SnapshotHolder holder;
  RotationEngine engine(Options(2), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 48));
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kPending), 3);
  EXPECT_TRUE(world.dns.empty());
  // The admin publishes the records `dkimrotor dns` prints; after propagation they sign.
  for (const auto& k : engine.Keys()) world.SetRecord(FakeWorld::Name(k), KeyRecordValue(k));
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 3));
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kActive), 2);
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kReady), 1);
}

TEST(RotationEngine, LateRotationKeepsSigningAndSaysSo) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  ASSERT_EQ(CountIn(engine.Keys(), KeyState::kActive), 1);
  // From now on no new key gets through DNS: the spare is used, then rotation is late.
  world.dns_down = true;
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 24 * 300));
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kActive), 1);
  EXPECT_EQ(holder.Load()->Pick("example.com").size(), 1u);
  bool late = false;
  for (const auto& w : world.warnings) late |= w.find("is late") != std::string::npos;
  EXPECT_TRUE(late);
}

TEST(RotationEngine, FailingHookIsRetriedWithBackoffWhileSigningGoesOn) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  world.publish_failures_left = 5;
  for (int i = 0; i < 6 * 60; ++i, world.now += minutes(1)) ASSERT_TRUE(engine.Step().has_value());
  // 5 failures at 1, 2, 4, 8, 16 minutes of backoff, then success for both keys.
  int hook_failures = 0;
  for (const auto& w : world.warnings) hook_failures += w.find("hook failed") != std::string::npos;
  EXPECT_EQ(hook_failures, 5);
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kActive), 1);
}

// A hook that fails (another server's key in the record, a provider refusing the
// credentials) leaves the key pending and says why where admins look: the key's own report
// (`dkimrotor keys`), not only the log. The reason is saved once per failure, not at every
// pass of the backoff.
TEST(RotationEngine, AFailingHookSaysWhyInTheKeysReport) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  world.publish_failures_left = 1'000'000;
  ASSERT_TRUE(engine.Step().has_value());
  const int saves = world.saves;
  for (int i = 0; i < 30; ++i, world.now += seconds(1)) ASSERT_TRUE(engine.Step().has_value());
  EXPECT_EQ(world.saves, saves) << "the state was saved during the backoff, with nothing new";
  const auto keys = engine.Keys();
  for (const auto& k : keys) {
    EXPECT_EQ(k.state, KeyState::kPending);
    EXPECT_EQ(k.dns_problem.rfind("publish hook failed (attempt 1, next try at ", 0), 0u) << k.dns_problem;
    EXPECT_NE(k.dns_problem.find("hook exited with status 1"), std::string::npos) << k.dns_problem;
    auto next = NextStepOf(k, keys, options.streams[0], options.min_propagation, true, world.now);
    EXPECT_EQ(next.what, "publishing through the hook (" + k.dns_problem + ")");
  }
  world.now += minutes(2);
  ASSERT_TRUE(engine.Step().has_value());
  EXPECT_NE(engine.Keys().at(0).dns_problem.find("attempt 2"), std::string::npos);
  world.publish_failures_left = 0;
  world.now += hours(1);
  StepHourly(engine, world, 3);
  EXPECT_EQ(CountIn(engine.Keys(), KeyState::kActive), 1);
  for (const auto& k : engine.Keys()) EXPECT_EQ(k.dns_problem, "") << k.selector;
}

TEST(RotationEngine, DnsTimeoutsKeepKeysPendingWithoutLosingProgress) {
  FakeWorld world;
  world.propagation = seconds(0);
  SnapshotHolder holder;
  auto options = Options(1);
  options.min_propagation = hours(2);
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_TRUE(engine.Step().has_value());  // published, seen right: dns_ok_since set
  ASSERT_TRUE(engine.Keys().at(0).dns_ok_since.has_value());
  world.dns_down = true;
  world.now += hours(3);
  ASSERT_TRUE(engine.Step().has_value());
  EXPECT_EQ(engine.Keys().at(0).state, KeyState::kPending);
  EXPECT_TRUE(engine.Keys().at(0).dns_ok_since.has_value());  // a timeout is not a mismatch
  world.dns_down = false;
  ASSERT_TRUE(engine.Step().has_value());
  EXPECT_EQ(engine.Keys().at(0).state, KeyState::kActive);
}

TEST(RotationEngine, FullDiskChangesNothing) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const auto before = engine.Keys();
  const auto snapshot = holder.Load();
  world.disk_full = true;
  world.now += 130 * kDay;  // a rotation is due
  auto st = engine.Step();
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("No space"), std::string::npos);
  EXPECT_EQ(StateToJson(engine.Keys()), StateToJson(before));
  EXPECT_EQ(holder.Load(), snapshot);  // still signing with the same keys
  world.disk_full = false;
  ASSERT_TRUE(engine.Step().has_value());
  EXPECT_NE(StateToJson(engine.Keys()), StateToJson(before));
}

TEST(RotationEngine, EmergencyReplacesTheKeyAndRevokesWithoutGrace) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  std::string compromised;
  for (const auto& k : engine.Keys())
    if (k.state == KeyState::kActive) compromised = k.selector;
  ASSERT_TRUE(engine.EmergencyRevoke("example.com", compromised).has_value());
  auto picked = holder.Load()->Pick("example.com");
  ASSERT_EQ(picked.size(), 1u);
  EXPECT_NE(picked[0]->selector(), compromised);
  world.now += hours(1);
  ASSERT_TRUE(engine.Step().has_value());  // revoke published at once, no grace
  world.now += hours(1);
  ASSERT_TRUE(engine.Step().has_value());  // and seen in DNS
  for (const auto& k : engine.Keys())
    if (k.selector == compromised) {
      EXPECT_EQ(k.state, KeyState::kRevoked);
    }
  EXPECT_FALSE(world.key_files.count(compromised + "._domainkey.example.com"));
}

TEST(RotationEngine, EmergencyOnTheLastKeyLeavesTheDomainUnsigned) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string only = engine.Keys().at(0).selector;
  ASSERT_TRUE(engine.EmergencyRevoke("example.com", only).has_value());
  EXPECT_TRUE(holder.Load()->Pick("example.com").empty());
  EXPECT_TRUE(holder.Load()->HasDomain("example.com"));
  ASSERT_FALSE(world.errors.empty());
  EXPECT_NE(world.errors.back().find("unsigned"), std::string::npos);
}

TEST(RotationEngine, ManualRotateStepsNow) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string before = holder.Load()->Pick("example.com").at(0)->selector();
  ASSERT_TRUE(engine.Rotate("example.com").has_value());
  EXPECT_NE(holder.Load()->Pick("example.com").at(0)->selector(), before);
  EXPECT_FALSE(engine.Rotate("unknown.example").has_value());
}

const KeyInfo* Keyed(const std::vector<KeyInfo>& keys, const std::string& selector) {
  for (const auto& k : keys)
    if (k.selector == selector) return &k;
  return nullptr;
}

std::string SelectorIn(const std::vector<KeyInfo>& keys, KeyState s) {
  for (const auto& k : keys)
    if (k.state == s) return k.selector;
  return "";
}

int CountContaining(const std::vector<std::string>& lines, const std::string& part) {
  int n = 0;
  for (const auto& l : lines) n += l.find(part) != std::string::npos ? 1 : 0;
  return n;
}

TEST(RotationEngine, WrongRecordFromTheHookIsRepublishedWithBackoffUntilRight) {
  FakeWorld world;
  world.propagation = seconds(0);
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  options.retry_min = minutes(10);
  options.retry_max = hours(1);
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_TRUE(engine.Step().has_value());  // generated; the hook "succeeds" with a wrong value
  const KeyInfo first = engine.Keys().at(0);
  world.publish_wrong_key_for = first.selector;
  world.dns.clear();
  world.now += minutes(1);
  ASSERT_TRUE(engine.Step().has_value());  // the first publish happened before: nothing served
  world.SetRecord(FakeWorld::Name(first), "v=DKIM1; k=ed25519; p=AAAA");
  // Every minute for 2 hours: republished after 10, 20, 40 minutes (doubling, capped at 1 h)
  // of mismatch since the last publish; never ready meanwhile.
  for (int i = 0; i < 120; ++i, world.now += minutes(1)) ASSERT_TRUE(engine.Step().has_value());
  const int republishes = CountContaining(world.warnings, "ran the publish hook again");
  EXPECT_GE(republishes, 3);
  EXPECT_LE(republishes, 5);
  EXPECT_EQ(engine.Keys().at(0).state, KeyState::kPending);
  ASSERT_TRUE(engine.Keys().at(0).dns_mismatch_since.has_value());
  EXPECT_NE(engine.Keys().at(0).dns_problem.find("wrong"), std::string::npos);
  // The hook is fixed: the next republish puts the right record there, and after
  // min_propagation the key signs. Nobody had to republish by hand.
  world.publish_wrong_key_for.clear();
  for (int i = 0; i < 180; ++i, world.now += minutes(1)) ASSERT_TRUE(engine.Step().has_value());
  EXPECT_EQ(engine.Keys().at(0).state, KeyState::kActive);
  EXPECT_FALSE(engine.Keys().at(0).dns_mismatch_since.has_value());
  EXPECT_TRUE(engine.Keys().at(0).dns_problem.empty());
  EXPECT_EQ(holder.Load()->Pick("example.com").size(), 1u);
}

TEST(RotationEngine, VanishedRecordOfAnActiveKeyIsRepublishedAndTheKeyGoesOnSigning) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string active = SelectorIn(engine.Keys(), KeyState::kActive);
  world.dns.erase(active + "._domainkey.example.com");
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  EXPECT_EQ(Keyed(engine.Keys(), active)->state, KeyState::kActive);
  EXPECT_FALSE(Keyed(engine.Keys(), active)->dns_mismatch_since.has_value());
  EXPECT_EQ(CountContaining(world.warnings, "ran the publish hook again"), 1);
  EXPECT_TRUE(world.errors.empty()) << world.errors.front();
}

TEST(RotationEngine, ActiveKeyWhoseRecordStaysWrongRetiresWhenASpareCanSign) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.min_propagation = hours(2);
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string broken = SelectorIn(engine.Keys(), KeyState::kActive);
  const std::string spare = SelectorIn(engine.Keys(), KeyState::kReady);
  ASSERT_FALSE(spare.empty());
  // Someone else's key replaces ours and the hook cannot fix it.
  world.dns[broken + "._domainkey.example.com"] = {"v=DKIM1; k=ed25519; p=AAAA", world.now};
  world.publish_failures_left = 1'000'000;
  // A timeout in between is no evidence either way.
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 2));
  world.dns_down = true;
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 3));
  world.dns_down = false;
  EXPECT_EQ(Keyed(engine.Keys(), broken)->state, KeyState::kActive);
  EXPECT_TRUE(world.errors.empty());
  // The third pass that sees it wrong, past min_propagation: the spare takes over.
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 1));
  EXPECT_EQ(Keyed(engine.Keys(), broken)->state, KeyState::kRetiring);
  EXPECT_EQ(Keyed(engine.Keys(), spare)->state, KeyState::kActive);
  EXPECT_EQ(holder.Load()->Pick("example.com").at(0)->selector(), spare);
  EXPECT_EQ(CountContaining(world.errors, broken + "._domainkey.example.com no longer signs"), 1);
  // It stays published for grace and is still being republished.
  world.publish_failures_left = 0;
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 3));
  EXPECT_EQ(world.dns[broken + "._domainkey.example.com"].value, KeyRecordValue(*Keyed(engine.Keys(), broken)));
}

TEST(RotationEngine, ActiveKeyWhoseRecordStaysWrongWithoutSpareSignsAndLogsErrors) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string only = SelectorIn(engine.Keys(), KeyState::kActive);
  world.dns.erase(only + "._domainkey.example.com");
  world.publish_failures_left = 1'000'000;
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 10));
  EXPECT_EQ(Keyed(engine.Keys(), only)->state, KeyState::kActive);
  EXPECT_EQ(holder.Load()->Pick("example.com").size(), 1u);
  // From the third pass on (min_propagation is 1 h), one error per pass.
  EXPECT_EQ(CountContaining(world.errors, "goes on signing"), 8);
}

TEST(RotationEngine, ReadyKeyThatLosesItsRecordWaitsAgainBeforeActivating) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].key_lifetime = 10 * kDay;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const std::string spare = SelectorIn(engine.Keys(), KeyState::kReady);
  const std::string active = SelectorIn(engine.Keys(), KeyState::kActive);
  // Just before the rotation step the spare's record vanishes.
  world.now = *Keyed(engine.Keys(), active)->activated + 10 * kDay;
  world.dns.erase(spare + "._domainkey.example.com");
  ASSERT_TRUE(engine.Step().has_value());
  EXPECT_EQ(Keyed(engine.Keys(), spare)->state, KeyState::kPending);
  EXPECT_EQ(Keyed(engine.Keys(), active)->state, KeyState::kActive);
  EXPECT_EQ(CountContaining(world.warnings, "back to pending"), 1);
  // Republished, seen again for min_propagation, then it takes over.
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 5));
  EXPECT_EQ(Keyed(engine.Keys(), spare)->state, KeyState::kActive);
  EXPECT_EQ(Keyed(engine.Keys(), active)->state, KeyState::kRetiring);
}

TEST(RotationEngine, MismatchIsRememberedAcrossRestarts) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  auto engine = std::make_unique<RotationEngine>(options, std::vector<KeyInfo>{}, &world, &holder);
  ASSERT_TRUE(engine->Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(*engine, world, 4));
  const std::string only = SelectorIn(engine->Keys(), KeyState::kActive);
  world.dns.erase(only + "._domainkey.example.com");
  world.publish_failures_left = 1'000'000;
  const TimePoint lost = world.now;
  ASSERT_NO_FATAL_FAILURE(StepHourly(*engine, world, 1));
  auto reloaded = StateFromJson(world.saved_state, "state.json");
  ASSERT_TRUE(reloaded.has_value());
  engine = std::make_unique<RotationEngine>(options, *reloaded, &world, &holder);
  ASSERT_TRUE(engine->Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(*engine, world, 1));
  EXPECT_EQ(Keyed(engine->Keys(), only)->dns_mismatch_since, lost);
  EXPECT_NE(Keyed(engine->Keys(), only)->dns_problem.find("missing"), std::string::npos);
}

// A crash between the commit of a revocation and the destruction of its key: the restarted
// engine's start-up sweep destroys it, and reports (without touching) a file nobody names.
TEST(RotationEngine, StartUpSweepDestroysTheKeyOfARevocationCutShortByACrash) {
  FakeWorld world;
  SnapshotHolder holder;
  auto engine = std::make_unique<RotationEngine>(Options(1), std::vector<KeyInfo>{}, &world, &holder);
  ASSERT_TRUE(engine->Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(*engine, world, 4));
  const std::string compromised = SelectorIn(engine->Keys(), KeyState::kActive);
  ASSERT_TRUE(engine->EmergencyRevoke("example.com", compromised).has_value());
  world.crash_before_destroy = true;
  ASSERT_NO_FATAL_FAILURE(StepHourly(*engine, world, 3));
  ASSERT_EQ(Keyed(engine->Keys(), compromised)->state, KeyState::kRevoked);
  const std::string name = compromised + "._domainkey.example.com";
  ASSERT_TRUE(world.key_files.count(name)) << "the crash should have left the key";
  world.key_files["stray._domainkey.example.com"] = world.key_files[name];

  world.crash_before_destroy = false;
  auto reloaded = StateFromJson(world.saved_state, "state.json");
  ASSERT_TRUE(reloaded.has_value());
  engine = std::make_unique<RotationEngine>(Options(1), *reloaded, &world, &holder);
  world.warnings.clear();
  engine->SweepKeyFiles();
  ASSERT_TRUE(engine->Start().has_value());
  EXPECT_FALSE(world.key_files.count(name));
  EXPECT_TRUE(world.key_files.count("stray._domainkey.example.com"));
  EXPECT_EQ(CountContaining(world.warnings, "destroyed " + name + ": the private key of a revoked key"), 1);
  EXPECT_EQ(CountContaining(world.warnings, "stray._domainkey.example.com belongs to no key"), 1);
  EXPECT_EQ(holder.Load()->Pick("example.com").size(), 1u);  // signing goes on
}

TEST(RotationEngine, KeyPendingTooLongSaysWhyAtMostHourly) {
  FakeWorld world;
  world.can_publish = false;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  for (int i = 0; i < 6 * 60; ++i, world.now += minutes(1)) ASSERT_TRUE(engine.Step().has_value());
  // Expected within max(1 h, min_propagation) + 3 polls; then once an hour.
  const int logged = CountContaining(world.warnings, "longer than expected: DNS: missing");
  EXPECT_GE(logged, 4);
  EXPECT_LE(logged, 5);
  const std::vector<KeyInfo> keys = engine.Keys();  // a copy: a reference into a temporary dangles
  auto next = NextStepOf(keys.at(0), keys, options.streams[0], options.min_propagation, false, world.now);
  EXPECT_NE(next.what.find("last DNS check: missing"), std::string::npos) << next.what;
}

TEST(SigningSnapshot, PicksRoundRobinPerAlgorithm) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(3), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  std::map<std::string, int> uses;
  auto snap = holder.Load();
  for (int i = 0; i < 300; ++i) ++uses[snap->Pick("example.com").at(0)->selector()];
  ASSERT_EQ(uses.size(), 3u);
  for (const auto& [selector, n] : uses) EXPECT_EQ(n, 100) << selector;
  EXPECT_TRUE(snap->Pick("other.example").empty());
}

// The thread steps once at start, again when woken, and stops promptly when destroyed even
// with a poll interval of an hour. Bounded waits on a counter, not timing assertions.
TEST(RotationThread, StepsAtStartOnWakeUpAndStopsPromptly) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  auto wait_for_steps = [](const RotationThread& t, uint64_t n) {
    for (int i = 0; i < 5000 && t.steps() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return t.steps();
  };
  {
    RotationThread thread(&engine, std::chrono::hours(1), nullptr);
    EXPECT_EQ(wait_for_steps(thread, 1), 1u);
    EXPECT_FALSE(engine.Keys().empty());  // the first step generated keys
    // Keys are generated at SCHED_IDLE: only CPU that signing leaves idle.
    EXPECT_EQ(world.create_key_policy.load(), SCHED_IDLE);
    thread.WakeUp();
    EXPECT_EQ(wait_for_steps(thread, 2), 2u);
  }  // joins here; a stuck thread would hang the test, which ctest's timeout reports
}

// A posted command runs on the rotation thread, and a step follows it at once (the poll here
// is an hour).
TEST(RotationThread, PostedCommandsRunOnTheThreadThenAStep) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  RotationThread thread(&engine, std::chrono::hours(1), nullptr);
  for (int i = 0; i < 5000 && thread.steps() < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(thread.steps(), 1u);
  std::thread::id ran_on;
  auto command = std::make_shared<RotationCommand>([&](RotationEngine& e) -> util::Status {
    ran_on = std::this_thread::get_id();
    EXPECT_EQ(&e, &engine);
    return util::Err(util::ErrorCode::kNotFound, "told back");
  });
  thread.Post(command);
  auto st = command->Wait(std::chrono::seconds(10));
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().message, "told back");
  EXPECT_NE(ran_on, std::this_thread::get_id());
  for (int i = 0; i < 5000 && thread.steps() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(thread.steps(), 2u);
}

// A command still queued when the thread stops never runs; its waiter hears why. One whose
// waiter gave up before it began never runs either.
TEST(RotationThread, CommandsQueuedAtStopOrAbandonedNeverRun) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  auto thread = std::make_unique<RotationThread>(&engine, std::chrono::hours(1), nullptr);
  std::atomic<bool> release{false}, began{false}, second_ran{false}, third_ran{false};
  auto first = std::make_shared<RotationCommand>([&](RotationEngine&) -> util::Status {
    began = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return util::Ok();
  });
  auto second = std::make_shared<RotationCommand>([&](RotationEngine&) -> util::Status {
    second_ran = true;
    return util::Ok();
  });
  auto third = std::make_shared<RotationCommand>([&](RotationEngine&) -> util::Status {
    third_ran = true;
    return util::Ok();
  });
  thread->Post(first);
  for (int i = 0; i < 5000 && !began; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(began);
  thread->Post(third);
  auto abandoned = third->Wait(std::chrono::milliseconds(10));
  ASSERT_FALSE(abandoned.has_value());
  EXPECT_NE(abandoned.error().message.find("nothing was done"), std::string::npos);
  thread->Post(second);
  std::thread stopper([&] { thread.reset(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release = true;
  EXPECT_TRUE(first->Wait(std::chrono::seconds(10)).has_value());
  auto cancelled = second->Wait(std::chrono::seconds(10));
  stopper.join();
  ASSERT_FALSE(cancelled.has_value());
  EXPECT_NE(cancelled.error().message.find("stopped"), std::string::npos);
  EXPECT_FALSE(second_ran);
  EXPECT_FALSE(third_ran);
}

TEST(AdminCommands, EmergencyOnTheLastKeyNeedsForceAndUnknownNamesAreClear) {
  FakeWorld world;
  SnapshotHolder holder;
  auto options = Options(1);
  options.streams[0].prepublish = 0;
  RotationEngine engine(options, {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  const auto keys = engine.Keys();
  const std::string only = keys.at(0).selector;
  bool leaves_unsigned = false;
  auto refused = CheckEmergency(options, keys, "example.com", only, false, &leaves_unsigned);
  ASSERT_FALSE(refused.has_value());
  EXPECT_TRUE(leaves_unsigned);
  EXPECT_NE(refused.error().message.find("--force"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(CheckEmergency(options, keys, "example.com", only, true, &leaves_unsigned).has_value());
  auto unknown = CheckEmergency(options, keys, "example.com", "nope", false, &leaves_unsigned);
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, util::ErrorCode::kNotFound);
  EXPECT_NE(unknown.error().message.find(only + " (active)"), std::string::npos) << unknown.error().message;
  auto domain = CheckEmergency(options, keys, "other.example", only, false, &leaves_unsigned);
  ASSERT_FALSE(domain.has_value());
  EXPECT_EQ(domain.error().message, "domain other.example is not configured");
}

// A replaced snapshot counts as in use while a message holds it.
TEST(SigningSnapshot, HolderKnowsWhichReplacedSnapshotsAreStillHeld) {
  FakeWorld world;
  SnapshotHolder holder;
  RotationEngine engine(Options(1), {}, &world, &holder);
  ASSERT_TRUE(engine.Start().has_value());
  ASSERT_NO_FATAL_FAILURE(StepHourly(engine, world, 4));
  auto held = holder.Load();
  ASSERT_TRUE(engine.Rotate("example.com").has_value());
  EXPECT_EQ(holder.ReplacedInUse(), 1u);
  held.reset();
  EXPECT_EQ(holder.ReplacedInUse(), 0u);
}

}  // namespace
}  // namespace dkimrotor::keystore
