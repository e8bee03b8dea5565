// `dkimrotor check` as a process, against keys published by contrib/hooks/nsupdate into a real
// Knot on loopback; each test then puts a broken record (or state) in place and expects the
// finding a DKIM validator would report, naming the domain and the selector, and the exit status.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "signer/private_key.h"
#include "tests/keystore/knot_server.h"
#include "util/base64.h"
#include "util/openssl_ptr.h"

namespace dkimrotor::cli {
namespace {

using keystore::testing::KnotServer;
using keystore::testing::ProcessResult;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;

constexpr char kDomain[] = "example.test";
constexpr char kBrokenDomain[] = "broken.test";

// An RSA key below what signer::PrivateKey makes, as a p= value.
std::string ShortRsaP(int bits) {
  util::EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits)));
  EXPECT_NE(pkey, nullptr);
  if (!pkey) return "";
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  EXPECT_GT(len, 0);
  std::string out = util::Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

class CheckCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
    KnotServer::Options options;
    options.zones = {kDomain};
    options.broken_zones = {kBrokenDomain};  // Knot answers SERVFAIL for it
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
    config_ = knot_->dir() + "/dkimrotor.conf";
    WriteConfig(2048);
  }

  // One RSA stream, one active key and one spare: no practice is departed from at 2048 bits.
  void WriteConfig(int bits) {
    std::ofstream(config_) << "keystore: { directory = \"" << knot_->dir() << "/keystore\"; };\n"
                           << "dns: { resolvers = [\"" << knot_->address() << "\"]; authoritative_port = " << knot_->port() << "; check_authoritative = true;\n"
                           << "       min_propagation = \"0s\"; timeout = \"2s\"; };\n"
                           << "domains = ( { domain = \"" << kDomain << "\"; stream = \"mta1\";\n"
                           << "  algorithms = [\"rsa-sha256\"]; bits = " << bits << ";\n"
                           << "  active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\";\n"
                           << "  publish_hook = \"" << DKIMROTOR_SOURCE_DIR << "/contrib/hooks/nsupdate\"; }"
                           << extra_domains_ << " );\n";
  }

  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), DKIMROTOR_BINARY);
    auto r = RunProcess(args, knot_->NsupdateHookEnv());
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : ProcessResult{};
  }

  ProcessResult Check() { return Run({"check", "-c", config_}); }

  // Generates, publishes and activates the first keys; remembers the active key.
  void Rotate() {
    auto r = Run({"rotate", "-c", config_, "--domain", kDomain});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const auto state = State();  // kept alive: the loop must not walk a destroyed temporary
    for (const auto& k : state["keys"])
      if (k["state"] == "active") {
        active_ = k["selector"];
        active_p_ = k["public_key"];
      }
    ASSERT_FALSE(active_.empty()) << state.dump(1);
  }

  std::string StatePath() const { return knot_->dir() + "/keystore/state.json"; }
  nlohmann::json State() const {
    std::ifstream in(StatePath());
    return nlohmann::json::parse(in, nullptr, false);
  }
  void WriteState(const nlohmann::json& state) const { std::ofstream(StatePath()) << state.dump(1); }

  std::string RecordName(const std::string& selector) const { return selector + "._domainkey." + kDomain; }

  void SetActiveRecord(const std::string& value) {
    ASSERT_TRUE(knot_->SetTxt(kDomain, RecordName(active_), value).has_value());
  }

  // The text line of the finding of `severity` about the active key; empty when there is none.
  std::string FindingLine(const std::string& output, const std::string& severity, const std::string& selector) {
    const std::string prefix = severity + ": " + RecordName(selector) + " (";
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(prefix, 0) == 0) return line;
    return "";
  }

  // The JSON findings about `selector` (all of them when empty).
  nlohmann::json JsonFindings(const std::string& selector) {
    auto r = Run({"check", "-c", config_, "--json"});
    auto root = nlohmann::json::parse(r.output, nullptr, false);
    EXPECT_FALSE(root.is_discarded()) << r.output;
    nlohmann::json out = nlohmann::json::array();
    if (root.is_discarded()) return out;
    EXPECT_EQ(r.exit_code, root["errors"].get<int>() > 0 ? 1 : 0) << r.output;
    for (const auto& f : root["findings"])
      if (selector.empty() || f["selector"] == selector) out.push_back(f);
    return out;
  }

  std::unique_ptr<KnotServer> knot_;
  std::string config_;
  std::string active_;
  std::string active_p_;
  std::string extra_domains_;  // more entries of the domains list, each starting with ", "
};

TEST_F(CheckCliTest, CleanKeystoreHasNoFindings) {
  Rotate();
  auto r = Check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("0 error(s), 0 warning(s)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ok: " + RecordName(active_) + " (active) served by DNS"), std::string::npos) << r.output;
  auto json = Run({"check", "-c", config_, "--json"});
  EXPECT_EQ(json.exit_code, 0) << json.output;
  auto root = nlohmann::json::parse(json.output, nullptr, false);
  ASSERT_FALSE(root.is_discarded()) << json.output;
  EXPECT_TRUE(root["findings"].empty()) << json.output;
  EXPECT_EQ(root["errors"], 0);
  EXPECT_EQ(root["warnings"], 0);
}

TEST_F(CheckCliTest, MissingRecordIsAnError) {
  Rotate();
  ASSERT_TRUE(knot_->RemoveName(kDomain, RecordName(active_)).has_value());
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto line = FindingLine(r.output, "error", active_);
  EXPECT_NE(line.find("the key record is missing from DNS"), std::string::npos) << r.output;
  EXPECT_NE(line.find("dkimrotor dns -c " + config_ + " --domain example.test"), std::string::npos) << line;
  auto findings = JsonFindings(active_);
  ASSERT_EQ(findings.size(), 1u) << findings.dump(1);
  EXPECT_EQ(findings[0]["severity"], "error");
  EXPECT_EQ(findings[0]["domain"], kDomain);
  EXPECT_EQ(findings[0]["state"], "active");
  EXPECT_FALSE(findings[0]["fix"].get<std::string>().empty());
}

TEST_F(CheckCliTest, UnreachableDnsIsATemporaryFailureNotMissing) {
  Rotate();
  knot_->Pause();
  auto r = Check();
  knot_->Resume();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto line = FindingLine(r.output, "error", active_);
  EXPECT_NE(line.find("DNS unreachable"), std::string::npos) << r.output;
  EXPECT_NE(line.find("a temporary failure and not a missing record"), std::string::npos) << line;
  EXPECT_EQ(line.find("missing from DNS"), std::string::npos) << line;
}

TEST_F(CheckCliTest, ServfailIsATemporaryFailureNotMissing) {
  // broken.test's zone does not load: its active key's record gets SERVFAIL.
  extra_domains_ = ", { domain = \"broken.test\"; stream = \"mta1\"; algorithms = [\"rsa-sha256\"]; bits = 2048;\n"
                   "  active_keys = 1; prepublish = 1; key_lifetime = \"30d\"; grace = \"7d\"; }";
  WriteConfig(2048);
  auto key = signer::PrivateKey::Generate(signer::Algorithm::kRsaSha256, 2048);
  ASSERT_TRUE(key.has_value());
  const std::string pem = knot_->dir() + "/legacy.pem";
  std::ofstream(pem) << (*key)->ToPem().value();
  ::chmod(pem.c_str(), 0600);
  auto r = Run({"keys", "import", "-c", config_, "--domain", kBrokenDomain, "--selector", "legacy", "--key", pem});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto state = State();
  for (auto& k : state["keys"]) k["state"] = "active";
  WriteState(state);
  r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::string prefix = "error: legacy._domainkey.broken.test (active): ";
  const size_t at = r.output.find(prefix);
  ASSERT_NE(at, std::string::npos) << r.output;
  const std::string line = r.output.substr(at, r.output.find('\n', at) - at);
  EXPECT_NE(line.find("DNS unreachable, a temporary failure and not a missing record"), std::string::npos) << line;
  EXPECT_NE(line.find("SERVFAIL"), std::string::npos) << line;
  EXPECT_EQ(r.output.find("broken.test: no usable key"), std::string::npos) << r.output;
}

TEST_F(CheckCliTest, MalformedBase64IsAnError) {
  Rotate();
  SetActiveRecord("v=DKIM1; k=rsa; p=" + active_p_.substr(0, 40) + "!!" + active_p_.substr(40));
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(FindingLine(r.output, "error", active_).find("p= is not valid base64"), std::string::npos) << r.output;
}

TEST_F(CheckCliTest, KeyThatDoesNotParseIsAnError) {
  Rotate();
  SetActiveRecord("v=DKIM1; k=rsa; p=" + util::Base64Encode("not a key at all"));
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(FindingLine(r.output, "error", active_).find("p= is not a usable key"), std::string::npos) << r.output;
}

TEST_F(CheckCliTest, A1024BitKeyIsAWarning) {
  WriteConfig(1024);
  Rotate();
  auto r = Check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto line = FindingLine(r.output, "warning", active_);
  EXPECT_NE(line.find("RSA key of 1024 bits"), std::string::npos) << r.output;
  EXPECT_NE(line.find("set bits = 2048 and rotate"), std::string::npos) << line;
  EXPECT_NE(r.output.find("0 error(s)"), std::string::npos) << r.output;
}

TEST_F(CheckCliTest, KeysUnder1024BitsAreErrors) {
  Rotate();
  for (int bits : {512, 768}) {
    SetActiveRecord("v=DKIM1; k=rsa; p=" + ShortRsaP(bits));
    auto r = Check();
    EXPECT_EQ(r.exit_code, 1) << r.output;
    auto line = FindingLine(r.output, "error", active_);
    EXPECT_NE(line.find("RSA key of " + std::to_string(bits) + " bits, below RFC 8301's 1024"), std::string::npos)
        << r.output;
    EXPECT_NE(line.find("rotate to a key of 2048 bits"), std::string::npos) << line;
  }
}

TEST_F(CheckCliTest, TestingModeIsAWarning) {
  Rotate();
  SetActiveRecord("v=DKIM1; k=rsa; t=y; p=" + active_p_);
  auto r = Check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto line = FindingLine(r.output, "warning", active_);
  EXPECT_NE(line.find("t=y: testing mode left on"), std::string::npos) << r.output;
  EXPECT_NE(line.find("remove t=y"), std::string::npos) << line;
  EXPECT_NE(r.output.find("0 error(s), 1 warning(s)"), std::string::npos) << r.output;
}

// From outside: a milter socket anyone can reach is a warning of `check` (exit 0), for a TCP
// socket on every interface and for a unix socket everyone may connect to.
TEST_F(CheckCliTest, MilterSocketOthersCanReachIsAWarning) {
  Rotate();
  const std::string base = ReadText(config_);
  for (const auto& [milter, expected] : std::vector<std::pair<std::string, std::string>>{
           {"socket = \"inet:8891@0.0.0.0\";", "milter.socket = \"inet:8891@0.0.0.0\" listens beyond loopback"},
           {"socket = \"inet:8891\";", "(no address: every interface)"},
           {"socket = \"unix:/run/dkimrotor/milter.sock\"; socket_mode = \"0666\";",
            "milter.socket_mode = \"0666\" lets every local user connect"}}) {
    std::ofstream(config_) << base << "milter: { " << milter << " };\n";
    auto r = Check();
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(expected), std::string::npos) << milter << "\n" << r.output;
    EXPECT_NE(r.output.find("0 error(s), 1 warning(s)"), std::string::npos) << r.output;
  }
  std::ofstream(config_) << base << "milter: { socket = \"inet:8891@127.0.0.1\"; };\n";
  auto loopback = Check();
  EXPECT_EQ(loopback.exit_code, 0) << loopback.output;
  EXPECT_NE(loopback.output.find("0 error(s), 0 warning(s)"), std::string::npos) << loopback.output;
}

TEST_F(CheckCliTest, KeyTypeMismatchIsAnError) {
  Rotate();
  SetActiveRecord("v=DKIM1; k=ed25519; p=" + active_p_);
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(FindingLine(r.output, "error", active_).find("k=ed25519 but the key is rsa"), std::string::npos)
      << r.output;
}

TEST_F(CheckCliTest, HashListWithoutSha256IsAnError) {
  Rotate();
  SetActiveRecord("v=DKIM1; k=rsa; h=sha1; p=" + active_p_);
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  auto line = FindingLine(r.output, "error", active_);
  EXPECT_NE(line.find("h=sha1 does not allow sha256"), std::string::npos) << r.output;
  EXPECT_NE(line.find("remove h= or add sha256 to it"), std::string::npos) << line;
}

TEST_F(CheckCliTest, AnotherKeyServedIsAnError) {
  Rotate();
  auto other = signer::PrivateKey::Generate(signer::Algorithm::kRsaSha256, 2048);
  ASSERT_TRUE(other.has_value());
  SetActiveRecord("v=DKIM1; k=rsa; p=" + (*other)->dkim_public_key());
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(FindingLine(r.output, "error", active_).find("p= holds a different key than the one dkimrotor published"),
            std::string::npos)
      << r.output;
}

TEST_F(CheckCliTest, ConfiguredDomainWithoutKeysIsAnError) {
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error: example.test: no usable key: the domain has no active key"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("dkimrotor rotate -c " + config_ + " --domain example.test"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("1 error(s), 0 warning(s)"), std::string::npos) << r.output;
  auto findings = JsonFindings("");
  ASSERT_EQ(findings.size(), 1u) << findings.dump(1);
  EXPECT_EQ(findings[0]["domain"], kDomain);
  EXPECT_TRUE(findings[0]["selector"].is_null());
}

TEST_F(CheckCliTest, ActiveKeyWhoseFileCannotBeLoadedLeavesNoUsableKey) {
  Rotate();
  const std::string pem = knot_->dir() + "/keystore/keys/" + RecordName(active_) + ".pem";
  ASSERT_TRUE(std::filesystem::remove(pem)) << pem;
  auto r = Check();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(FindingLine(r.output, "error", active_).find("its key file cannot be loaded"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("error: " + RecordName(active_) + ": no usable key"), std::string::npos) << r.output;
}

TEST_F(CheckCliTest, LateRotationIsAWarning) {
  Rotate();
  // The active key was activated 40 days ago (key_lifetime 30d) and no spare is ready.
  auto state = State();
  const int64_t long_ago =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() -
      40 * 86400;
  nlohmann::json kept = nlohmann::json::array();
  for (auto k : state["keys"]) {
    if (k["state"] == "ready") continue;
    if (k["state"] == "active") k["activated"] = k["state_since"] = long_ago;
    kept.push_back(k);
  }
  state["keys"] = kept;
  WriteState(state);
  auto r = Check();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto line = FindingLine(r.output, "warning", active_);
  EXPECT_NE(line.find("the rotation is late"), std::string::npos) << r.output;
  EXPECT_NE(line.find("no key is ready"), std::string::npos) << line;
}

}  // namespace
}  // namespace dkimrotor::cli
