#include "keystore/storage/state_store.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "util/file.h"

namespace dkimrotor::keystore {
namespace {

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkimrotor-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static KeyInfo SampleKey() {
    KeyInfo k;
    k.domain = "example.com";
    k.selector = "mta1-20261122-rsa2048";
    k.algorithm = signer::Algorithm::kRsaSha256;
    k.bits = 2048;
    k.state = KeyState::kRetiring;
    k.created = FromUnix(1'800'000'000);
    k.state_since = FromUnix(1'800'100'000);
    k.published = FromUnix(1'800'000'010);
    k.dns_ok_since = FromUnix(1'800'000'600);
    k.dns_mismatch_since = FromUnix(1'800'100'060);
    k.dns_problem = "missing: mta1-20261122-rsa2048._domainkey.example.com has no TXT record";
    k.activated = FromUnix(1'800'007'200);
    k.retired = FromUnix(1'800'100'000);
    k.emergency = true;
    k.public_key = "MIIBIjANBg";
    return k;
  }

  std::string dir_;
};

TEST_F(StateStoreTest, RoundTripsEveryField) {
  ASSERT_TRUE(SaveState(dir_, {SampleKey()}).has_value());
  auto loaded = LoadState(dir_);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ(StateToJson(*loaded), StateToJson({SampleKey()}));
  EXPECT_FALSE(loaded->at(0).revoked.has_value());
  // Nothing but the state itself: no temporary file (a fresh name each time) left behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path(), StatePath(dir_));
    ++files;
  }
  EXPECT_EQ(files, 1u);
  EXPECT_EQ(std::filesystem::status(StatePath(dir_)).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST_F(StateStoreTest, ReadsFilesWrittenBeforeDnsWasRechecked) {
  KeyInfo old = SampleKey();
  old.dns_mismatch_since.reset();
  old.dns_problem.clear();
  const std::string json = StateToJson({old});
  ASSERT_EQ(json.find("dns_mismatch_since"), std::string::npos) << json;
  ASSERT_EQ(json.find("dns_problem"), std::string::npos) << json;
  auto loaded = StateFromJson(json, "state.json");
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  EXPECT_FALSE(loaded->at(0).dns_mismatch_since.has_value());
  EXPECT_TRUE(loaded->at(0).dns_problem.empty());
}

TEST_F(StateStoreTest, AlgorithmsAreStoredByTheirDkimNames) {
  KeyInfo rsa = SampleKey();
  KeyInfo ed = SampleKey();
  ed.selector = "mta1-20261122-ed25519";
  ed.algorithm = signer::Algorithm::kEd25519Sha256;
  ed.bits = 256;
  const std::string json = StateToJson({rsa, ed});
  EXPECT_NE(json.find("\"algorithm\": \"rsa-sha256\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"algorithm\": \"ed25519-sha256\""), std::string::npos) << json;
  auto loaded = StateFromJson(json, "test");
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  ASSERT_EQ(loaded->size(), 2u);
  EXPECT_EQ(loaded->at(0).algorithm, signer::Algorithm::kRsaSha256);
  EXPECT_EQ(loaded->at(1).algorithm, signer::Algorithm::kEd25519Sha256);
}

TEST_F(StateStoreTest, UnknownAlgorithmIsALoadError) {
  std::string json = StateToJson({SampleKey()});
  json.replace(json.find("rsa-sha256"), 10, "rsa-sha1");
  auto loaded = StateFromJson(json, "state.json");
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().message.find("key mta1-20261122-rsa2048._domainkey.example.com: "
                                        "algorithm rsa-sha1 is obsolete"),
            std::string::npos)
      << loaded.error().message;
  EXPECT_NE(loaded.error().message.find("restore it from a backup"), std::string::npos);
}

TEST_F(StateStoreTest, MissingStateInAnEmptyFolderIsAnEmptyKeystore) {
  auto loaded = LoadState(dir_);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_TRUE(loaded->empty());
}

TEST_F(StateStoreTest, MissingStateBesideKeyFilesIsRefused) {
  std::filesystem::create_directory(dir_ + "/keys");
  std::ofstream(dir_ + "/keys/s1._domainkey.example.com.pem") << "x";
  auto loaded = LoadState(dir_);
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().message.find("restore state.json"), std::string::npos) << loaded.error().message;
}

TEST_F(StateStoreTest, CorruptStateIsRefusedNotRepaired) {
  for (const char* text : {"{not json", "{\"version\": 99, \"keys\": []}", "{\"version\": 1}",
                           "{\"version\": 1, \"keys\": [{\"domain\": \"a\"}]}",
                           "{\"version\": 1, \"keys\": [{\"domain\": \"a\", \"selector\": \"s\", "
                           "\"algorithm\": \"rsa-sha256\", \"bits\": 2048, \"state\": \"bogus\", "
                           "\"created\": 1, \"state_since\": 1, \"public_key\": \"\"}]}"}) {
    std::ofstream(StatePath(dir_)) << text;
    auto loaded = LoadState(dir_);
    ASSERT_FALSE(loaded.has_value()) << text;
    EXPECT_NE(loaded.error().message.find("restore it from a backup"), std::string::npos)
        << loaded.error().message;
    EXPECT_TRUE(std::filesystem::exists(StatePath(dir_))) << "the evidence must stay";
  }
}

// One valid entry with `field` replaced by `value` (raw JSON), or removed when value is empty.
std::string StateWith(const std::string& field, const std::string& value) {
  nlohmann::json root = nlohmann::json::parse(StateToJson({[] {
    KeyInfo k;
    k.domain = "example.com";
    k.selector = "mta1-20261122-rsa2048";
    k.bits = 2048;
    k.state = KeyState::kActive;
    k.created = FromUnix(1'800'000'000);
    k.state_since = FromUnix(1'800'000'000);
    k.activated = FromUnix(1'800'000'000);
    k.public_key = "MIIB";
    return k;
  }()}));
  nlohmann::json* target = field == "version" ? &root : &root["keys"][0];
  if (value.empty()) target->erase(field);
  else (*target)[field] = nlohmann::json::parse(value);
  return root.dump();
}

// Every wrongly typed field is an error naming the file and the field, never an exception:
// `dkimrotor keys` used to die of "terminate called" on "version": "1".
TEST_F(StateStoreTest, WrongTypesNameTheFileAndTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"version", "\"1\""},       {"version", "1.0"},         {"version", "null"},
      {"version", "[1]"},         {"domain", "7"},            {"selector", "{}"},
      {"algorithm", "true"},      {"bits", "\"2048\""},       {"bits", "2048.5"},
      {"bits", "1e300"},          {"bits", "-1"},             {"bits", "99999999999"},
      {"state", "1"},             {"created", "\"yesterday\""}, {"created", "1e300"},
      {"created", "-5"},          {"state_since", "18446744073709551615"},
      {"activated", "\"now\""},   {"published", "[]"},        {"revoked", "1.5"},
      {"dns_problem", "42"},      {"emergency", "\"yes\""},   {"emergency", "1"},
      {"public_key", "null"},     {"public_key", "[\"MIIB\"]"},
  };
  for (const auto& [field, value] : cases) {
    std::ofstream(StatePath(dir_), std::ios::trunc) << StateWith(field, value);
    auto loaded = LoadState(dir_);
    ASSERT_FALSE(loaded.has_value()) << field << " = " << value;
    const std::string& m = loaded.error().message;
    EXPECT_NE(m.find(StatePath(dir_)), std::string::npos) << m;
    EXPECT_NE(m.find("\"" + field + "\""), std::string::npos) << field << " = " << value << ": " << m;
  }
  // The untouched entry loads: the cases above fail for their field, not for the fixture.
  std::ofstream(StatePath(dir_), std::ios::trunc) << StateWith("dns_problem", "\"x\"");
  ASSERT_TRUE(LoadState(dir_).has_value());
}

TEST_F(StateStoreTest, NonObjectEntriesAreErrors) {
  for (const char* text : {"[]", "{\"version\": 1, \"keys\": [1]}",
                           "{\"version\": 1, \"keys\": [null]}", "{\"version\": 1, \"keys\": {}}"}) {
    auto loaded = StateFromJson(text, "s.json");
    ASSERT_FALSE(loaded.has_value()) << text;
    EXPECT_NE(loaded.error().message.find("s.json"), std::string::npos) << loaded.error().message;
  }
}

// Selectors and domains name key files and DNS records: a path in them would point key
// destruction (and the hooks) at files outside the keystore.
TEST_F(StateStoreTest, SelectorsAndDomainsMustBeDnsNames) {
  for (const char* selector : {"../../x", "a/b", "..", "", "x..y", "a b", "s\n", ".hidden"}) {
    std::ofstream(StatePath(dir_), std::ios::trunc)
        << StateWith("selector", nlohmann::json(selector).dump());
    auto loaded = LoadState(dir_);
    ASSERT_FALSE(loaded.has_value()) << selector;
    EXPECT_NE(loaded.error().message.find("\"selector\""), std::string::npos) << loaded.error().message;
  }
  for (const char* domain : {"../../etc", "example.com/..", "/etc", "a..b"}) {
    std::ofstream(StatePath(dir_), std::ios::trunc)
        << StateWith("domain", nlohmann::json(domain).dump());
    auto loaded = LoadState(dir_);
    ASSERT_FALSE(loaded.has_value()) << domain;
    EXPECT_NE(loaded.error().message.find("\"domain\""), std::string::npos) << loaded.error().message;
  }
}

TEST_F(StateStoreTest, LaterErrorsNameTheKeyRecord) {
  auto loaded = StateFromJson(StateWith("bits", "\"x\""), "s.json");
  ASSERT_FALSE(loaded.has_value());
  EXPECT_NE(loaded.error().message.find("key mta1-20261122-rsa2048._domainkey.example.com: field \"bits\""),
            std::string::npos)
      << loaded.error().message;
}

TEST_F(StateStoreTest, KeyPathNamesTheRecord) {
  EXPECT_EQ(KeyPath("/var/lib/dkimrotor", SampleKey()),
            "/var/lib/dkimrotor/keys/mta1-20261122-rsa2048._domainkey.example.com.pem");
}

// The files a crash can leave in keys/: a revoked key's private key and a half-written key
// are destroyed; a key file no entry names stays, reported; live keys are not touched.
TEST_F(StateStoreTest, SweepDestroysWhatACrashLeftAndReportsOrphans) {
  KeyInfo revoked = SampleKey();
  revoked.state = KeyState::kRevoked;
  KeyInfo active = SampleKey();
  active.selector = "mta1-20261123-rsa2048";
  active.state = KeyState::kActive;
  KeyInfo gone = SampleKey();  // revoked and destroyed as it should be
  gone.selector = "mta1-20261001-rsa2048";
  gone.state = KeyState::kRevoked;
  std::filesystem::create_directory(dir_ + "/keys");
  for (const auto& path : {KeyPath(dir_, revoked), KeyPath(dir_, active), dir_ + "/keys/stray._domainkey.example.com.pem",
                           KeyPath(dir_, active) + ".tmp", KeyPath(dir_, active) + ".tmp.Ab12Cd"})
    ASSERT_TRUE(util::WriteFileAtomically(path, "-----BEGIN PRIVATE KEY-----\n", 0600).has_value());

  KeyFileSweep sweep = SweepKeyFiles(dir_, {revoked, active, gone});
  EXPECT_TRUE(sweep.errors.empty()) << sweep.errors.front();
  EXPECT_EQ(sweep.destroyed_revoked, std::vector<std::string>{KeyPath(dir_, revoked)});
  EXPECT_EQ(sweep.destroyed_partial.size(), 2u);
  EXPECT_EQ(sweep.orphans, std::vector<std::string>{dir_ + "/keys/stray._domainkey.example.com.pem"});
  EXPECT_FALSE(std::filesystem::exists(KeyPath(dir_, revoked)));
  EXPECT_FALSE(std::filesystem::exists(KeyPath(dir_, active) + ".tmp"));
  EXPECT_TRUE(std::filesystem::exists(KeyPath(dir_, active)));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/keys/stray._domainkey.example.com.pem"));

  sweep = SweepKeyFiles(dir_, {revoked, active, gone});  // nothing left to do
  EXPECT_TRUE(sweep.destroyed_revoked.empty());
  EXPECT_TRUE(sweep.destroyed_partial.empty());
  EXPECT_EQ(sweep.orphans.size(), 1u);
}

TEST(Rfc3339, FormatsUtc) { EXPECT_EQ(Rfc3339(FromUnix(1'795'392'350)), "2026-11-23T00:05:50Z"); }

}  // namespace
}  // namespace dkimrotor::keystore
