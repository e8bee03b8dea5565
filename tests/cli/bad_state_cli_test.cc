// Every command that reads the keystore's state.json, run as a process on a damaged or hostile
// one: a clear message naming the file and the field, exit 1, no signal death, and no file
// outside the keystore touched. No DNS server is needed: the state is refused before any query.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "tests/keystore/knot_server.h"
#include "tests/milter/milter_client.h"

namespace dkimrotor::cli {
namespace {

using keystore::testing::ProcessResult;
using keystore::testing::ReadText;
using keystore::testing::RunProcess;

namespace fs = std::filesystem;

// A valid entry whose one field the case replaces with raw JSON.
std::string State(const std::string& field, const std::string& value) {
  std::map<std::string, std::string> f = {
      {"domain", "\"example.test\""}, {"selector", "\"mta1-20261122-ed25519\""},
      {"algorithm", "\"ed25519-sha256\""}, {"bits", "256"}, {"state", "\"retiring\""},
      {"created", "1800000000"}, {"state_since", "1800000000"}, {"retired", "1800000000"},
      {"public_key", "\"MCowBQYDK2VwAyEA\""}};
  f[field] = value;
  std::string entry;
  for (const auto& [k, v] : f) entry += (entry.empty() ? "" : ", ") + ("\"" + k + "\": " + v);
  const std::string version = field == "version" ? value : "1";
  return "{\"version\": " + version + ", \"keys\": [{" + entry + "}]}\n";
}

class BadStateCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/dkimrotor-badstate-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    keystore_ = root_ + "/keystore";
    fs::create_directories(keystore_ + "/keys");
    fs::permissions(keystore_, fs::perms::owner_all);
    config_ = root_ + "/dkimrotor.conf";
    // An inet socket: `run` binds it before it reads the state, and a unix one would be a file
    // outside the keystore left behind (the hardening work owns that order).
    auto port = milter::testing::FreeTcpPort();
    ASSERT_TRUE(port.has_value()) << port.error().message;
    std::ofstream(config_) << "milter: { socket = \"inet:" << *port << "@127.0.0.1\"; };\n"
                           << "keystore: { directory = \"" << keystore_ << "\"; };\n"
                           << "dns: { resolvers = [\"127.0.0.1:9\"]; timeout = \"1s\"; };\n"
                           << "domains = ( { domain = \"example.test\"; stream = \"mta1\";\n"
                           << "  algorithms = [\"ed25519-sha256\"]; publish_hook = \"/bin/true\"; } );\n";
    // Where "../../x" as a selector would put the key file: it must survive every command.
    victim_ = root_ + "/x._domainkey.example.test.pem";
    std::ofstream(victim_) << "not yours\n";
  }
  void TearDown() override { fs::remove_all(root_); }

  // Every file outside the keystore folder, with its content.
  std::map<std::string, std::string> Outside() {
    std::map<std::string, std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(root_)) {
      const std::string p = e.path().string();
      if (p.starts_with(keystore_)) continue;
      files[p] = e.is_regular_file() ? ReadText(p) : std::string("(") + (e.is_directory() ? "dir" : "other") + ")";
    }
    return files;
  }

  ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), DKIMROTOR_BINARY);
    auto r = RunProcess(args, {{"PATH", "/usr/bin:/bin"}}, "From: a@example.test\r\n\r\nhi\r\n");
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : ProcessResult{};
  }

  std::string root_, keystore_, config_, victim_;
};

TEST_F(BadStateCliTest, EveryCommandNamesTheFileAndFieldAndExitsOne) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"version", "\"1\""},              // was: terminate called ... type_error, SIGABRT
      {"selector", "\"../../x\""},       // was: key destruction pointed outside the keystore
      {"domain", "\"example.test/../..\""},
      {"bits", "\"256\""},
      {"created", "1e300"},
      {"emergency", "\"no\""},
  };
  const std::vector<std::vector<std::string>> commands = {
      {"keys", "-c", config_},
      {"keys", "--history", "-c", config_},
      {"check", "-c", config_},
      {"rotate", "-c", config_, "--domain", "example.test"},
      {"rotate", "-c", config_, "--domain", "example.test", "--emergency", "--selector", "x"},
      {"sign", "-c", config_},
      {"run", "-c", config_},
  };
  for (const auto& [field, value] : cases) {
    std::ofstream(keystore_ + "/state.json", std::ios::trunc) << State(field, value);
    for (const auto& command : commands) {
      const auto before = Outside();
      ProcessResult r = Run(command);
      const std::string what = command[0] + " " + command[1] + " with " + field + " = " + value;
      EXPECT_EQ(r.exit_code, 1) << what << "\n" << r.output;  // -1: killed by a signal
      EXPECT_NE(r.output.find(keystore_ + "/state.json"), std::string::npos) << what << "\n" << r.output;
      EXPECT_NE(r.output.find("\"" + field + "\""), std::string::npos) << what << "\n" << r.output;
      EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << what << "\n" << r.output;
      EXPECT_EQ(Outside(), before) << what;
      EXPECT_EQ(ReadText(victim_), "not yours\n") << what;
    }
    // The damaged file is evidence: nobody rewrote it.
    EXPECT_EQ(ReadText(keystore_ + "/state.json"), State(field, value));
  }
}

}  // namespace
}  // namespace dkimrotor::cli
