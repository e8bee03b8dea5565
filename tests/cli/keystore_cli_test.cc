// `dkimrotor keys | dns | check | rotate | keys import` as processes, against a keystore whose
// keys are published by contrib/hooks/nsupdate into a real Knot on loopback.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "keystore/key_info.h"
#include "signer/private_key.h"
#include "tests/keystore/knot_server.h"

namespace dkimrotor::cli {
namespace {

using keystore::testing::KnotServer;
using keystore::testing::ProcessResult;
using keystore::testing::RunProcess;

class KeystoreCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {"example.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    config_ = knot_->dir() + "/dkimrotor.conf";
    WriteConfig("0s");
  }

  void WriteConfig(const std::string& min_propagation, const std::string& hook = "") {
    std::ofstream(config_) << "keystore: { directory = \"" << knot_->dir() << "/keystore\"; };\n"
                           << "dns: { resolvers = [\"" << knot_->address() << "\"]; check_authoritative = true;\n"
                           << "       authoritative_port = " << knot_->port() << ";\n"
                           << "       min_propagation = \"" << min_propagation << "\"; timeout = \"2s\"; };\n"
                           << "domains = ( { domain = \"example.test\"; stream = \"mta1\";\n"
                           << "  algorithms = [\"rsa-sha256\", \"ed25519-sha256\"]; bits = 1024;\n"
                           << "  active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\";\n"
                           << "  publish_hook = \"" << (hook.empty() ? std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate" : hook)
                           << "\"; } );\n";
  }

  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), DKIMROTOR_BINARY);
    auto r = RunProcess(args, knot_->NsupdateHookEnv());
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : ProcessResult{};
  }

  nlohmann::json KeysJson() {
    auto r = Run({"keys", "-c", config_, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, false);
  }

  std::unique_ptr<KnotServer> knot_;
  std::string config_;
};

TEST_F(KeystoreCliTest, RotateDrivesKeysToActiveAndTheOtherCommandsShowIt) {
  // No keys yet: keys lists the domain, check has nothing to fail on.
  auto empty = KeysJson();
  ASSERT_EQ(empty["domains"].size(), 1u);
  EXPECT_TRUE(empty["domains"][0]["keys"].empty());
  // The first rotate finds no keys: it generates, publishes and (min_propagation 0) activates.
  auto r = Run({"rotate", "-c", config_, "--domain", "example.test"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto keys = KeysJson();
  ASSERT_EQ(keys["domains"][0]["keys"].size(), 4u) << keys.dump(2);  // 1 active + 1 spare, x2 algorithms
  int active = 0;
  for (const auto& k : keys["domains"][0]["keys"]) {
    active += k["state"] == "active";
    EXPECT_FALSE(k["created"].get<std::string>().empty());
    struct stat st {};
    const std::string pem = knot_->dir() + "/keystore/keys/" + k["selector"].get<std::string>() + "._domainkey.example.test.pem";
    ASSERT_EQ(::stat(pem.c_str(), &st), 0) << pem;
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_GE(active, 2) << keys.dump(2);

  auto check = Run({"check", "-c", config_});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("0 error(s)"), std::string::npos) << check.output;

  auto dns = Run({"dns", "-c", config_});
  ASSERT_EQ(dns.exit_code, 0) << dns.output;
  EXPECT_NE(dns.output.find("._domainkey.example.test. 3600 IN TXT ( \"v=DKIM1; k=rsa; p="), std::string::npos) << dns.output;
  for (size_t q = dns.output.find('"'); q != std::string::npos;) {
    size_t end = dns.output.find('"', q + 1);
    ASSERT_NE(end, std::string::npos);
    EXPECT_LE(end - q - 1, 255u) << "a TXT string over 255 characters";
    q = dns.output.find('"', end + 1);
  }

  // The next rotate is an ordinary step: the spare signs, the old key retires, a new spare.
  r = Run({"rotate", "-c", config_, "--domain", "example.test"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::map<std::string, int> states;
  const auto after = KeysJson();  // kept alive: the loop must not walk a destroyed temporary
  for (const auto& k : after["domains"][0]["keys"]) ++states[k["state"].get<std::string>()];
  EXPECT_EQ(states["retiring"], 2);
  EXPECT_EQ(states["active"], 2);
  EXPECT_EQ(states["ready"], 2);

  // Somebody replaces a published key in DNS: check must fail and say which.
  const std::string victim = keys["domains"][0]["keys"][0]["selector"];
  ASSERT_TRUE(knot_->SetTxt("example.test", victim + "._domainkey.example.test", "v=DKIM1; k=rsa; p=").has_value());
  check = Run({"check", "-c", config_});
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find("error: " + victim), std::string::npos) << check.output;

  // The engine notices too, and `keys` says what it saw.
  r = Run({"rotate", "-c", config_, "--domain", "example.test"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto seen = KeysJson();
  bool shown = false;
  for (const auto& k : seen["domains"][0]["keys"]) {
    if (k["selector"] != victim) {
      EXPECT_TRUE(k["dns_problem"].is_null() || k["state"] == "revoked") << k.dump(2);
      continue;
    }
    shown = k["dns_problem"].is_string() && k["dns_mismatch_since"].is_string() &&
            k["dns_problem"].get<std::string>().starts_with("revoked");
    EXPECT_TRUE(shown) << k.dump(2);
  }
  EXPECT_TRUE(shown) << seen.dump(2);
}

// `sign -c` signs as the milter would: the From domain picks the configured domain, whose
// active keys sign, one per algorithm; the signatures verify with the keys in DNS.
TEST_F(KeystoreCliTest, SignWithConfigUsesTheActiveKeysOfTheFromDomain) {
  ASSERT_EQ(Run({"rotate", "-c", config_, "--domain", "example.test"}).exit_code, 0);
  auto r = RunProcess({DKIMROTOR_BINARY, "sign", "-c", config_}, {},
                      "From: Alice <alice@example.test>\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\nHello\r\n");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(r->exit_code, 0) << r->output;
  std::set<std::string> signed_by;
  for (size_t at = r->output.find(" s="); at != std::string::npos; at = r->output.find(" s=", at + 1))
    signed_by.insert(r->output.substr(at + 3, r->output.find(';', at) - at - 3));
  std::set<std::string> active;
  const auto keys = KeysJson();
  for (const auto& k : keys["domains"][0]["keys"])
    if (k["state"] == "active") active.insert(k["selector"].get<std::string>());
  EXPECT_EQ(signed_by, active) << r->output;
  EXPECT_NE(r->output.find("a=rsa-sha256"), std::string::npos);
  EXPECT_NE(r->output.find("a=ed25519-sha256"), std::string::npos);
  // dkimpy verifies both signatures with the records it fetches from Knot (through kdig).
  const std::string signed_file = knot_->dir() + "/signed.eml";
  std::ofstream(signed_file) << r->output;
  auto verified = RunProcess({"/usr/bin/python3", std::string(DKIMROTOR_SOURCE_DIR) + "/tests/interop/verify_with_dns.py",
                              signed_file, std::to_string(knot_->port()), "2"},
                             {{"PATH", "/usr/bin:/bin"}});
  ASSERT_TRUE(verified.has_value());
  EXPECT_EQ(verified->exit_code, 0) << verified->output;

  r = RunProcess({DKIMROTOR_BINARY, "sign", "-c", config_}, {}, "From: eve@other.example\r\n\r\nHello\r\n");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_NE(r->output.find("other.example is not configured"), std::string::npos) << r->output;
}

TEST_F(KeystoreCliTest, EmergencyRevokesAtOnce) {
  ASSERT_EQ(Run({"rotate", "-c", config_, "--domain", "example.test"}).exit_code, 0);
  std::string selector;
  const auto before = KeysJson();
  for (const auto& k : before["domains"][0]["keys"])
    if (k["state"] == "active" && k["algorithm"] == "rsa-sha256") selector = k["selector"];
  ASSERT_FALSE(selector.empty()) << KeysJson().dump(1);
  auto r = Run({"rotate", "-c", config_, "--domain", "example.test", "--emergency", "--selector", selector});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto after = KeysJson();
  int rsa_active = 0;
  for (const auto& k : after["domains"][0]["keys"]) {
    if (k["selector"] == selector) {
      EXPECT_EQ(k["state"], "revoked");
    } else if (k["algorithm"] == "rsa-sha256" && k["state"] == "active") {
      ++rsa_active;  // the spare took over at once
    }
  }
  EXPECT_EQ(rsa_active, 1) << after.dump(1);
  EXPECT_FALSE(std::filesystem::exists(knot_->dir() + "/keystore/keys/" + selector + "._domainkey.example.test.pem"));
}

std::string NowRfc3339() {
  return keystore::Rfc3339(std::chrono::time_point_cast<std::chrono::seconds>(keystore::Clock::now()));
}

// keys --history: every selector ever held, revoked ones too, with the time of each
// transition (RFC 3339 strings of one width, so they compare as text).
TEST_F(KeystoreCliTest, HistoryListsEverySelectorWithItsTransitions) {
  const std::string t0 = NowRfc3339();
  ASSERT_EQ(Run({"rotate", "-c", config_, "--domain", "example.test"}).exit_code, 0);
  const std::string t1 = NowRfc3339();
  ASSERT_EQ(Run({"rotate", "-c", config_, "--domain", "example.test"}).exit_code, 0);
  std::string victim;
  const auto before = KeysJson();
  for (const auto& k : before["domains"][0]["keys"])
    if (k["state"] == "active" && k["algorithm"] == "rsa-sha256") victim = k["selector"];
  ASSERT_FALSE(victim.empty()) << before.dump(1);
  const std::string t2 = NowRfc3339();
  ASSERT_EQ(Run({"rotate", "-c", config_, "--domain", "example.test", "--emergency", "--selector", victim}).exit_code, 0);
  const std::string t3 = NowRfc3339();

  auto r = Run({"keys", "-c", config_, "--history", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto history = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_TRUE(history.is_object()) << r.output;
  ASSERT_EQ(history["domains"].size(), 1u) << history.dump(1);
  EXPECT_EQ(history["domains"][0]["domain"], "example.test");
  const auto& keys = history["domains"][0]["keys"];

  // The same selectors as `keys` (which lists revoked ones too), each once.
  std::set<std::string> listed, held;
  for (const auto& k : keys) EXPECT_TRUE(listed.insert(k["selector"].get<std::string>()).second) << k.dump();
  const auto now = KeysJson();
  for (const auto& k : now["domains"][0]["keys"]) held.insert(k["selector"].get<std::string>());
  EXPECT_EQ(listed, held);
  EXPECT_GE(listed.size(), 7u) << history.dump(1);  // 2 rotated out, 2 active, spares, the victim

  const std::set<std::string> shape = {"selector", "algorithm", "bits",    "created",  "activated",
                                       "retired",  "revoked",   "emergency", "state"};
  std::string previous_created;
  std::map<std::string, int> states;
  for (const auto& k : keys) {
    std::set<std::string> fields;
    for (const auto& [name, value] : k.items()) fields.insert(name);
    EXPECT_EQ(fields, shape) << k.dump();
    EXPECT_TRUE(k["bits"].is_number_integer()) << k.dump();
    EXPECT_TRUE(k["emergency"].is_boolean()) << k.dump();
    for (const char* t : {"activated", "retired", "revoked"}) EXPECT_TRUE(k[t].is_null() || k[t].is_string()) << k.dump();
    const std::string created = k["created"];
    EXPECT_GE(created, previous_created) << "not sorted by creation: " << history.dump(1);
    previous_created = created;
    EXPECT_GE(created, t0);
    const std::string state = k["state"];
    ++states[state];
    if (k["selector"] == victim) {
      EXPECT_EQ(state, "revoked");
      EXPECT_TRUE(k["emergency"].get<bool>());
      EXPECT_LE(k["activated"].get<std::string>(), t2);
      EXPECT_GE(k["retired"].get<std::string>(), t2);
      EXPECT_LE(k["retired"].get<std::string>(), t3);
      EXPECT_GE(k["revoked"].get<std::string>(), k["retired"].get<std::string>());
      EXPECT_LE(k["revoked"].get<std::string>(), t3);
      continue;
    }
    EXPECT_FALSE(k["emergency"].get<bool>()) << k.dump();
    EXPECT_TRUE(k["revoked"].is_null()) << k.dump();  // the grace is 7 days
    if (state == "retiring") {
      // Activated by the first rotate, retired by the second.
      EXPECT_LE(k["activated"].get<std::string>(), t1) << k.dump();
      EXPECT_GE(k["retired"].get<std::string>(), t1) << k.dump();
      EXPECT_LE(k["retired"].get<std::string>(), t2) << k.dump();
    } else if (state == "active") {
      EXPECT_TRUE(k["retired"].is_null()) << k.dump();
      EXPECT_GE(k["activated"].get<std::string>(), t1) << k.dump();
    } else {
      EXPECT_TRUE(k["activated"].is_null()) << k.dump();
      EXPECT_TRUE(k["retired"].is_null()) << k.dump();
    }
  }
  EXPECT_EQ(states["revoked"], 1) << history.dump(1);
  EXPECT_EQ(states["retiring"], 2) << history.dump(1);
  EXPECT_EQ(states["active"], 2) << history.dump(1);

  // The table: one line per selector, the emergency marked.
  r = Run({"keys", "-c", config_, "--history"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ACTIVATED"), std::string::npos) << r.output;
  for (const auto& selector : listed) EXPECT_NE(r.output.find(selector), std::string::npos) << r.output;
  const size_t line = r.output.find(victim);
  ASSERT_NE(line, std::string::npos);
  const std::string victim_line = r.output.substr(line, r.output.find('\n', line) - line);
  EXPECT_NE(victim_line.find("revoked"), std::string::npos) << victim_line;
  EXPECT_TRUE(victim_line.ends_with(" yes")) << victim_line;
}

TEST_F(KeystoreCliTest, ImportedKeyEntersPendingAndSelectorsAreNeverReused) {
  auto key = signer::PrivateKey::Generate(signer::Algorithm::kEd25519Sha256, 0);
  ASSERT_TRUE(key.has_value());
  const std::string pem = knot_->dir() + "/imported.pem";
  std::ofstream(pem) << (*key)->ToPem().value();
  ::chmod(pem.c_str(), 0644);
  auto r = Run({"keys", "import", "-c", config_, "--domain", "example.test", "--selector", "legacy", "--key", pem});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("chmod 0600"), std::string::npos) << r.output;
  ::chmod(pem.c_str(), 0600);
  r = Run({"keys", "import", "-c", config_, "--domain", "example.test", "--selector", "legacy", "--key", pem});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto imported = KeysJson();
  const auto& keys = imported["domains"][0]["keys"];
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0]["state"], "pending");
  EXPECT_EQ(keys[0]["algorithm"], "ed25519-sha256");
  r = Run({"keys", "import", "-c", config_, "--domain", "example.test", "--selector", "legacy", "--key", pem});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("never reused"), std::string::npos) << r.output;
}

TEST_F(KeystoreCliTest, BadConfigNamesFileLineAndSetting) {
  std::ofstream(config_) << "keystore: { directory = \"/tmp/x\"; };\ndomains = ( { domain = \"example.test\"; stream = \"a\"; active_keys = 7; } );\n";
  auto r = Run({"keys", "-c", config_});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(config_ + ":2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("active_keys"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace dkimrotor::cli
