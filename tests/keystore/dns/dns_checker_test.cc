// Integration tests: DnsChecker against a real Knot DNS server (tests/keystore/knot_server.h)
// that plays both the zones' authoritative server and the checker's resolver, updated the way a
// DNS admin or dkimrotor's hook would (knsupdate, contrib/hooks/nsupdate).
#include "keystore/dns/dns_checker.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "keystore/dns/internal/ares_response.h"
#include "signer/private_key.h"
#include "tests/keystore/knot_server.h"

namespace dkimrotor::keystore {
namespace {

using signer::Algorithm;
using std::chrono::milliseconds;
using testing::KnotServer;

util::ServerAddress Resolver(const std::string& text) {
  return util::ServerAddress::Parse(text, 53).value();
}

const std::string& RsaP(int which) {
  static const std::string keys[2] = {
      [] {
        auto key = signer::PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
        return key ? (*key)->dkim_public_key() : std::string();
      }(),
      [] {
        auto key = signer::PrivateKey::Generate(Algorithm::kRsaSha256, 1024);
        return key ? (*key)->dkim_public_key() : std::string();
      }(),
  };
  return keys[which];
}

std::string Record(const std::string& p) { return "v=DKIM1; k=rsa; p=" + p; }

std::string HookPath() { return std::string(DKIMROTOR_SOURCE_DIR) + "/contrib/hooks/nsupdate"; }

class DnsCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!KnotServer::Available())
      GTEST_SKIP() << "knotd is not installed (apt-get install knot knot-dnsutils)";
    ASSERT_FALSE(RsaP(0).empty());
    KnotServer::Options options;
    options.zones = {"example.test", "other.test"};
    options.broken_zones = {"broken.test"};
    auto knot = KnotServer::Start(options);
    ASSERT_TRUE(knot.has_value()) << knot.error().message;
    knot_ = std::move(*knot);
  }

  std::unique_ptr<DnsChecker> Checker(bool authoritative = false,
                                      milliseconds timeout = milliseconds(500)) {
    DnsCheckOptions options;
    options.resolvers = {knot_->server_address()};
    options.check_authoritative = authoritative;
    options.authoritative_port = knot_->port();
    options.authoritative_ipv6 = false;
    options.timeout = timeout;
    options.tries = 2;
    auto checker = DnsChecker::Create(options);
    EXPECT_TRUE(checker.has_value()) << checker.error().message;
    return checker ? std::move(*checker) : nullptr;
  }

  std::map<std::string, std::string> HookEnv() const {
    const char* path = std::getenv("PATH");
    return {{"PATH", std::string(path ? path : "") + ":/usr/sbin:/usr/bin:/bin"},
            {"DKIMROTOR_NS_CONFIG", knot_->dir() + "/no-such-config.env"},
            {"DKIMROTOR_NS_SERVER", knot_->listen()},
            {"DKIMROTOR_NS_PORT", std::to_string(knot_->port())},
            {"DKIMROTOR_NS_TSIG", knot_->tsig_key_file()},
            {"DKIMROTOR_NS_TTL", "60"}};
  }

  testing::ProcessResult RunHook(const std::vector<std::string>& args,
                                 const std::map<std::string, std::string>& env) {
    std::vector<std::string> argv{HookPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = testing::RunProcess(argv, env);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : testing::ProcessResult{};
  }

  std::unique_ptr<KnotServer> knot_;
};

TEST_F(DnsCheckerTest, RecordPublishedWithKnsupdateMatches) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(0))));
  auto result = Checker()->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  EXPECT_TRUE(result.as_expected);
  EXPECT_EQ(result.record_name, "sel1._domainkey.example.test");
  // A 2048-bit key's record spans two character-strings; the checker joined them.
  EXPECT_EQ(result.txt, Record(RsaP(0)));
  EXPECT_EQ(result.key_bits, 2048);
  EXPECT_TRUE(result.cnames.empty());
}

TEST_F(DnsCheckerTest, HookPublishesAndRevokes) {
  auto published = RunHook({"publish", "example.test", "hook1", Record(RsaP(0))}, HookEnv());
  ASSERT_EQ(published.exit_code, 0) << published.output;
  EXPECT_EQ(published.output, "");
  auto checker = Checker();
  auto result = checker->Check("example.test", "hook1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;

  // The same value again is nothing to do; another key over it is refused (issue 12: it may
  // be another server's), and the record stays as it was.
  published = RunHook({"publish", "example.test", "hook1", Record(RsaP(0))}, HookEnv());
  ASSERT_EQ(published.exit_code, 0) << published.output;
  published = RunHook({"publish", "example.test", "hook1", Record(RsaP(1))}, HookEnv());
  EXPECT_EQ(published.exit_code, 1) << published.output;
  EXPECT_NE(published.output.find("another key is at hook1._domainkey.example.test"), std::string::npos)
      << published.output;
  result = checker->Check("example.test", "hook1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;

  // A revocation replaces the record while it holds this key (DKIMROTOR_KEY_VALUE).
  auto env = HookEnv();
  env["DKIMROTOR_KEY_VALUE"] = Record(RsaP(0));
  auto revoked = RunHook({"revoke", "example.test", "hook1", "v=DKIM1; p="}, env);
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  result = checker->Check("example.test", "hook1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kRevoked) << result.detail;
  EXPECT_FALSE(result.as_expected);
  result = checker->Check("example.test", "hook1", Algorithm::kRsaSha256, "");
  EXPECT_EQ(result.verdict, DnsVerdict::kRevoked) << result.detail;
  EXPECT_TRUE(result.as_expected);

  // Over a revocation a new key is written (a delegated slot's next key), replacing the RRset
  // instead of adding a second record.
  published = RunHook({"publish", "example.test", "hook1", Record(RsaP(1))}, HookEnv());
  ASSERT_EQ(published.exit_code, 0) << published.output;
  result = checker->Check("example.test", "hook1", Algorithm::kRsaSha256, RsaP(1));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
}

TEST_F(DnsCheckerTest, HookReadsConfigFileAndAcceptsKnotKeyFile) {
  // A Knot key file (keymgr -t output) and settings from the config file, not the environment.
  std::string key_file = knot_->dir() + "/knot-key.conf";
  std::string config = knot_->dir() + "/nsupdate.env";
  ASSERT_TRUE(
      testing::RunProcess({"/bin/sh", "-c",
                           "printf 'key:\\n  - id: %s\\n    algorithm: %s\\n    secret: %s\\n' "
                           "\"$0\" \"$1\" \"$2\" > \"$3\" && "
                           "printf '# test\\nDKIMROTOR_NS_SERVER=%s\\nDKIMROTOR_NS_PORT=\"%s\"\\n"
                           "DKIMROTOR_NS_TSIG=%s\\n' \"$4\" \"$5\" \"$3\" > \"$6\"",
                           knot_->tsig_name(), knot_->tsig_algorithm(), knot_->tsig_secret(),
                           key_file, knot_->listen(), std::to_string(knot_->port()), config},
                          {})
          .has_value());
  auto env = HookEnv();
  env.erase("DKIMROTOR_NS_SERVER");
  env.erase("DKIMROTOR_NS_PORT");
  env.erase("DKIMROTOR_NS_TSIG");
  env["DKIMROTOR_NS_CONFIG"] = config;
  auto published = RunHook({"publish", "example.test", "hook2", Record(RsaP(1))}, env);
  ASSERT_EQ(published.exit_code, 0) << published.output;
  auto result = Checker()->Check("example.test", "hook2", Algorithm::kRsaSha256, RsaP(1));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
}

TEST_F(DnsCheckerTest, HookWorksWithBindNsupdate) {
  std::string nsupdate = testing::FindProgram("nsupdate");
  if (nsupdate.empty()) GTEST_SKIP() << "BIND nsupdate is not installed (bind9-dnsutils)";
  auto env = HookEnv();
  env["DKIMROTOR_NS_CLIENT"] = nsupdate;  // the hook rewrites the key file in BIND's format
  auto published = RunHook({"publish", "example.test", "bind1", Record(RsaP(0))}, env);
  ASSERT_EQ(published.exit_code, 0) << published.output;
  auto result = Checker()->Check("example.test", "bind1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
}

TEST_F(DnsCheckerTest, HookFailsWithOneLineReason) {
  auto env = HookEnv();
  std::string bad_key = knot_->dir() + "/bad.key";
  ASSERT_TRUE(
      testing::RunProcess(
          {"/bin/sh", "-c",
           "echo hmac-sha256:dkimrotor-test:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= > \"$0\"",
           bad_key},
          {})
          .has_value());
  env["DKIMROTOR_NS_TSIG"] = bad_key;
  auto r = RunHook({"publish", "example.test", "sel", Record(RsaP(1))}, env);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_NE(r.output.find("failed"), std::string::npos) << r.output;
}

TEST_F(DnsCheckerTest, HookRejectsUntrustedArguments) {
  auto env = HookEnv();
  const std::vector<std::vector<std::string>> bad = {
      {"publish", "example.test", "sel"},                                  // too few
      {"delete", "example.test", "sel", "v=DKIM1; p=abc"},                 // unknown action
      {"publish", "example.test", "sel;rm", "v=DKIM1; p=abc"},             // selector
      {"publish", "example.test\nsend", "sel", "v=DKIM1; p=abc"},          // domain
      {"publish", "example..test", "sel", "v=DKIM1; p=abc"},               // empty label
      {"publish", "example.test", "sel", "v=DKIM1; p=\"abc"},              // quote
      {"publish", "example.test", "sel", "v=DKIM1; p=a\\bc"},              // backslash
      {"publish", "example.test", "sel", "v=DKIM1; p=abc\nupdate add x"},  // newline
      {"revoke", "example.test", "sel", "v=DKIM1; p=abc"},                 // revoke with a key
  };
  for (const auto& args : bad) {
    auto r = RunHook(args, env);
    EXPECT_EQ(r.exit_code, 2) << args[0] << " " << (args.size() > 2 ? args[2] : "") << ": "
                              << r.output;
    EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  }
  env["DKIMROTOR_NS_ZONE"] = "other.test";  // the record is not inside it
  auto r = RunHook({"publish", "example.test", "sel", "v=DKIM1; p=abc"}, env);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("DKIMROTOR_NS_ZONE"), std::string::npos) << r.output;
}

TEST_F(DnsCheckerTest, AnotherKeyIsWrongKey) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(1))));
  auto result = Checker()->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kWrongKey) << result.detail;
  EXPECT_FALSE(result.as_expected);
}

TEST_F(DnsCheckerTest, NoRecordIsMissing) {
  auto checker = Checker();
  auto nxdomain = checker->Check("example.test", "nothing", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(nxdomain.verdict, DnsVerdict::kMissing) << nxdomain.detail;
  EXPECT_NE(nxdomain.detail.find("NXDOMAIN"), std::string::npos) << nxdomain.detail;
  // The name exists with another type only: NOERROR without a TXT record.
  ASSERT_TRUE(
      knot_->Update("example.test", {"update add a._domainkey.example.test. 60 A 192.0.2.1"}));
  auto nodata = checker->Check("example.test", "a", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(nodata.verdict, DnsVerdict::kMissing) << nodata.detail;
  EXPECT_NE(nodata.detail.find("no TXT"), std::string::npos) << nodata.detail;
}

TEST_F(DnsCheckerTest, EmptyPIsRevoked) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "old._domainkey.example.test", "v=DKIM1; p="));
  auto result = Checker()->Check("example.test", "old", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kRevoked) << result.detail;
  EXPECT_FALSE(result.as_expected);
}

TEST_F(DnsCheckerTest, SeveralTxtRecordsAreAmbiguous) {
  ASSERT_TRUE(knot_->SetTxtRecords("example.test", "two._domainkey.example.test",
                                   {Record(RsaP(0)), Record(RsaP(1))}));
  auto result = Checker()->Check("example.test", "two", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMalformed) << result.detail;
  EXPECT_NE(result.detail.find("2 TXT records"), std::string::npos) << result.detail;
}

TEST_F(DnsCheckerTest, FollowsCnameIntoAnotherZone) {
  // Knot does not chase a CNAME out of its zone, so the checker asks for the target itself.
  ASSERT_TRUE(knot_->SetTxt("other.test", "key._domainkey.other.test", Record(RsaP(0))));
  ASSERT_TRUE(knot_->SetCname("example.test", "alias._domainkey.example.test",
                              "key._domainkey.other.test"));
  auto result = Checker()->Check("example.test", "alias", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  EXPECT_EQ(result.cnames, std::vector<std::string>{"key._domainkey.other.test"});

  ASSERT_TRUE(knot_->SetCname("example.test", "dangling._domainkey.example.test",
                              "gone._domainkey.other.test"));
  auto dangling = Checker()->Check("example.test", "dangling", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(dangling.verdict, DnsVerdict::kMissing) << dangling.detail;
}

TEST_F(DnsCheckerTest, CnameLoopIsMalformed) {
  ASSERT_TRUE(
      knot_->SetCname("example.test", "l1._domainkey.example.test", "l2._domainkey.other.test"));
  ASSERT_TRUE(
      knot_->SetCname("other.test", "l2._domainkey.other.test", "l1._domainkey.example.test"));
  auto result = Checker()->Check("example.test", "l1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMalformed) << result.detail;
  EXPECT_NE(result.detail.find("loop"), std::string::npos) << result.detail;
}

TEST_F(DnsCheckerTest, AuthoritativeServersAgree) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(0))));
  auto result = Checker(true)->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  EXPECT_TRUE(result.as_expected);
  ASSERT_EQ(result.authoritative.size(), 1u) << result.detail;
  const auto& a = result.authoritative[0];
  EXPECT_EQ(a.zone, "example.test");
  EXPECT_EQ(a.name_server, "ns1.example.test");
  EXPECT_EQ(a.address, knot_->address());
  EXPECT_EQ(a.verdict, DnsVerdict::kMatches) << a.detail;
  EXPECT_TRUE(a.agrees);
  EXPECT_TRUE(result.Disagreeing().empty());
}

TEST_F(DnsCheckerTest, AuthoritativeCheckFollowsCnameZones) {
  ASSERT_TRUE(knot_->SetTxt("other.test", "key._domainkey.other.test", Record(RsaP(0))));
  ASSERT_TRUE(knot_->SetCname("example.test", "alias._domainkey.example.test",
                              "key._domainkey.other.test"));
  auto result = Checker(true)->Check("example.test", "alias", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  ASSERT_EQ(result.authoritative.size(), 2u);
  EXPECT_EQ(result.authoritative[0].zone, "example.test");
  EXPECT_EQ(result.authoritative[0].name, "alias._domainkey.example.test");
  EXPECT_EQ(result.authoritative[1].zone, "other.test");
  EXPECT_EQ(result.authoritative[1].name, "key._domainkey.other.test");
  EXPECT_TRUE(result.authoritative[0].agrees && result.authoritative[1].agrees);
}

TEST_F(DnsCheckerTest, AuthoritativeServerThatLagsIsInconsistent) {
  // A second Knot on 127.0.0.2 and the same port is ns2: it never gets the update.
  KnotServer::Options options;
  options.zones = {"lag.test"};
  options.name_servers = {"127.0.0.1", "127.0.0.2"};
  auto primary = KnotServer::Start(options);
  ASSERT_TRUE(primary.has_value()) << primary.error().message;
  options.listen = "127.0.0.2";
  options.port = (*primary)->port();
  auto secondary = KnotServer::Start(options);
  if (!secondary) GTEST_SKIP() << "cannot listen on 127.0.0.2: " << secondary.error().message;
  ASSERT_TRUE((*primary)->SetTxt("lag.test", "sel._domainkey.lag.test", Record(RsaP(0))));

  DnsCheckOptions checker_options;
  checker_options.resolvers = {(*primary)->server_address()};
  checker_options.check_authoritative = true;
  checker_options.authoritative_port = (*primary)->port();
  checker_options.authoritative_ipv6 = false;
  checker_options.timeout = milliseconds(500);
  auto checker = DnsChecker::Create(checker_options);
  ASSERT_TRUE(checker.has_value()) << checker.error().message;
  auto result = (*checker)->Check("lag.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kInconsistent) << result.detail;
  EXPECT_FALSE(result.as_expected);
  ASSERT_EQ(result.authoritative.size(), 2u);
  EXPECT_EQ(result.Disagreeing(),
            std::vector<std::string>{
                "ns2.lag.test (127.0.0.2:" + std::to_string((*primary)->port()) + ")"});
  EXPECT_NE(result.detail.find("ns2.lag.test"), std::string::npos) << result.detail;

  ASSERT_TRUE((*secondary)->SetTxt("lag.test", "sel._domainkey.lag.test", Record(RsaP(0))));
  result = (*checker)->Check("lag.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  EXPECT_TRUE(result.as_expected);
}

TEST_F(DnsCheckerTest, ServerAnsweringOnOneOfItsAddressesIsEnough) {
  // ns1 also has ::1, where Knot does not listen: that address is refused or skipped.
  KnotServer::Options options;
  options.zones = {"two.test"};
  options.name_servers_ipv6 = {"::1"};
  auto knot = KnotServer::Start(options);
  ASSERT_TRUE(knot.has_value()) << knot.error().message;
  ASSERT_TRUE((*knot)->SetTxt("two.test", "sel._domainkey.two.test", Record(RsaP(0))));
  DnsCheckOptions checker_options;
  checker_options.resolvers = {(*knot)->server_address()};
  checker_options.check_authoritative = true;
  checker_options.authoritative_port = (*knot)->port();
  checker_options.timeout = milliseconds(1000);
  auto checker = DnsChecker::Create(checker_options);
  ASSERT_TRUE(checker.has_value()) << checker.error().message;
  auto result = (*checker)->Check("two.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
  EXPECT_TRUE(result.as_expected);
  ASSERT_EQ(result.authoritative.size(), 2u);
  EXPECT_TRUE(result.Disagreeing().empty());
  // An answer that disagrees on the one address still counts.
  ASSERT_TRUE((*knot)->SetTxt("two.test", "sel._domainkey.two.test", Record(RsaP(1))));
  result = (*checker)->Check("two.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_FALSE(result.as_expected);
}

TEST(DnsCheckerNamespace, Ipv4OnlyHostSkipsTheServersIpv6Addresses) {
  if (!KnotServer::Available()) GTEST_SKIP() << "knotd is not installed";
  // The zone's name server has an A and an AAAA record; this host cannot reach IPv6.
  auto rc = testing::RunInIpv4OnlyNamespace([] {
    KnotServer::Options options;
    options.zones = {"example.test"};
    options.name_servers_ipv6 = {"2001:db8::53"};
    auto knot = KnotServer::Start(options);
    EXPECT_TRUE(knot.has_value()) << knot.error().message;
    if (!knot) return 1;
    EXPECT_TRUE((*knot)->SetTxt("example.test", "sel._domainkey.example.test", Record(RsaP(0))));
    DnsCheckOptions checker_options;
    checker_options.resolvers = {(*knot)->server_address()};
    checker_options.check_authoritative = true;
    checker_options.authoritative_port = (*knot)->port();
    checker_options.timeout = milliseconds(1000);
    auto checker = DnsChecker::Create(checker_options);
    EXPECT_TRUE(checker.has_value());
    if (!checker) return 1;
    auto result = (*checker)->Check("example.test", "sel", Algorithm::kRsaSha256, RsaP(0));
    EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
    EXPECT_TRUE(result.as_expected);
    EXPECT_EQ(result.authoritative.size(), 2u);
    bool skipped = false;
    for (const auto& a : result.authoritative)
      if (a.address == "[2001:db8::53]:" + std::to_string((*knot)->port())) {
        skipped = a.unreachable && a.ignored;
        EXPECT_NE(a.detail.find("no IPv6 route"), std::string::npos) << a.detail;
      }
    EXPECT_TRUE(skipped);
    return ::testing::Test::HasFailure() ? 1 : 0;
  });
  if (!rc) GTEST_SKIP() << rc.error().message;
  EXPECT_EQ(*rc, 0) << "see the child's failures above";
}

TEST_F(DnsCheckerTest, StoppedServerIsTemporaryFailureWithinTimeout) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(0))));
  auto checker = Checker(false, milliseconds(500));
  knot_->Pause();
  auto start = std::chrono::steady_clock::now();
  auto result = checker->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  auto elapsed = std::chrono::steady_clock::now() - start;
  knot_->Resume();
  EXPECT_EQ(result.verdict, DnsVerdict::kTemporaryFailure) << result.detail;
  EXPECT_FALSE(result.as_expected);
  EXPECT_GE(elapsed, milliseconds(400));
  EXPECT_LT(elapsed, milliseconds(5000));  // bounded by the timeout, with room for a busy host
  // The same checker works again once the server answers.
  result = checker->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
}

TEST_F(DnsCheckerTest, StoppedServerDuringAuthoritativeCheckIsTemporaryFailure) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(0))));
  // The resolver answers; the authoritative server (same address, another port) does not.
  DnsCheckOptions options;
  options.resolvers = {knot_->server_address()};
  options.check_authoritative = true;
  options.authoritative_port = knot_->port() == 65535 ? 65534 : knot_->port() + 1;
  options.authoritative_ipv6 = false;
  options.timeout = milliseconds(500);
  auto checker = DnsChecker::Create(options);
  ASSERT_TRUE(checker.has_value());
  auto result = (*checker)->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kTemporaryFailure) << result.detail;
  ASSERT_EQ(result.authoritative.size(), 1u);
  EXPECT_FALSE(result.authoritative[0].agrees);
}

TEST_F(DnsCheckerTest, ServfailAndRefusedAreTemporaryFailures) {
  auto checker = Checker();
  auto servfail = checker->Check("broken.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(servfail.verdict, DnsVerdict::kTemporaryFailure) << servfail.detail;
  EXPECT_NE(servfail.detail.find("SERVFAIL"), std::string::npos) << servfail.detail;
  auto refused = checker->Check("elsewhere.test", "sel", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(refused.verdict, DnsVerdict::kTemporaryFailure) << refused.detail;
  EXPECT_NE(refused.detail.find("REFUSED"), std::string::npos) << refused.detail;
}

TEST_F(DnsCheckerTest, NoServerListeningIsTemporaryFailure) {
  DnsCheckOptions options;
  options.resolvers = {Resolver("127.0.0.1:" +
                                std::to_string(knot_->port() == 65535 ? 65534 : knot_->port() + 1))};
  options.timeout = milliseconds(500);
  auto checker = DnsChecker::Create(options);
  ASSERT_TRUE(checker.has_value());
  auto result = (*checker)->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kTemporaryFailure) << result.detail;
}

TEST_F(DnsCheckerTest, FailsOverToTheNextResolver) {
  ASSERT_TRUE(knot_->SetTxt("example.test", "sel1._domainkey.example.test", Record(RsaP(0))));
  DnsCheckOptions options;
  options.resolvers = {
      Resolver("127.0.0.1:" + std::to_string(knot_->port() == 65535 ? 65534 : knot_->port() + 1)),
      knot_->server_address()};
  options.timeout = milliseconds(1000);
  auto checker = DnsChecker::Create(options);
  ASSERT_TRUE(checker.has_value());
  auto result = (*checker)->Check("example.test", "sel1", Algorithm::kRsaSha256, RsaP(0));
  EXPECT_EQ(result.verdict, DnsVerdict::kMatches) << result.detail;
}

// An answer to "a.example. TXT": a CNAME to b.example (compressed) and a TXT of two strings.
std::string SampleResponse() {
  std::string m("\x12\x34\x85\x00\x00\x01\x00\x02\x00\x00\x00\x00", 12);  // QR AA, 2 answers
  m += std::string("\x01" "a" "\x07" "example" "\x00" "\x00\x10\x00\x01", 15);
  m += std::string("\xc0\x0c" "\x00\x05\x00\x01" "\x00\x00\x00\x3c" "\x00\x04" "\x01" "b"
                   "\xc0\x0e", 16);
  m += std::string("\x01" "b" "\xc0\x0e" "\x00\x10\x00\x01" "\x00\x00\x00\x3c" "\x00\x08"
                   "\x03" "v=D" "\x03" "KIM", 22);
  return m;
}

TEST(DnsResponse, ParsesCnameChainAndTxtStrings) {
  auto response = internal::ParseDnsResponse(SampleResponse());
  ASSERT_TRUE(response.has_value()) << response.error().message;
  EXPECT_TRUE(response->authoritative);
  ASSERT_EQ(response->answers.size(), 2u);
  auto chain = internal::FollowAnswer(*response, "A.Example.", 16);
  EXPECT_EQ(chain.cnames, std::vector<std::string>{"b.example"});
  ASSERT_EQ(chain.records.size(), 1u);
  EXPECT_EQ(chain.records[0]->strings, (std::vector<std::string>{"v=D", "KIM"}));
}

TEST(DnsResponse, RejectsEveryTruncationWithoutCrashing) {
  // Answers come from the network: a cut-off or corrupted message is an error, never a crash.
  std::string full = SampleResponse();
  for (size_t n = 0; n < full.size(); ++n)
    EXPECT_FALSE(internal::ParseDnsResponse(full.substr(0, n)).has_value()) << n;
  for (size_t i = 12; i < full.size(); ++i) {
    std::string corrupt = full;
    corrupt[i] = static_cast<char>(0xff);
    (void)internal::ParseDnsResponse(corrupt);  // may parse or fail; must not read out of bounds
  }
  std::string loop = full.substr(0, 12) + std::string("\xc0\x0c\x00\x10\x00\x01", 6);
  EXPECT_FALSE(internal::ParseDnsResponse(loop).has_value());
}

// Resolver addresses are parsed (and their errors tested) in util::ServerAddress.
TEST(DnsChecker, UsesResolversOfEitherFamily) {
  for (const char* good : {"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353", "[2001:db8::1]"}) {
    DnsCheckOptions options;
    options.resolvers = {Resolver(good)};
    EXPECT_TRUE(DnsChecker::Create(options).has_value()) << good;
  }
}

TEST(DnsChecker, RejectsInvalidNamesWithoutQuerying) {
  DnsCheckOptions options;
  options.resolvers = {Resolver("127.0.0.1:9")};
  auto checker = DnsChecker::Create(options);
  ASSERT_TRUE(checker.has_value());
  for (auto [domain, selector] : {std::pair{"example.test", "a b"}, std::pair{"exa..mple", "s"},
                                  std::pair{"", "s"}, std::pair{"example.test", ""}}) {
    auto result = (*checker)->Check(domain, selector, Algorithm::kRsaSha256, "");
    EXPECT_EQ(result.verdict, DnsVerdict::kMalformed) << domain << " " << selector;
  }
}

}  // namespace
}  // namespace dkimrotor::keystore
