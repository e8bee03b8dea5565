#include "conf/practices.h"

#include <gtest/gtest.h>

namespace dkimrotor::conf {
namespace {

using std::chrono::seconds;
constexpr seconds kDay{86400};

Config WithDomain(const DomainConfig& d) {
  Config c;
  c.domains.push_back(d);
  return c;
}

DomainConfig Example() {
  DomainConfig d;
  d.domain = "example.com";
  d.stream = "mta1";
  return d;
}

// The one warning `config` gets; fails unless there is exactly one.
std::string OnlyWarning(const Config& config) {
  std::vector<std::string> w = CheckPractices(config);
  EXPECT_EQ(w.size(), 1u);
  std::string all;
  for (const auto& s : w) all += s + "\n";
  return w.size() == 1 ? w[0] : all;
}

bool StartsWith(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

TEST(CheckPractices, DefaultsFollowPractice) {
  EXPECT_TRUE(CheckPractices(Config{}).empty());
  EXPECT_TRUE(CheckPractices(WithDomain(Example())).empty());
  DomainConfig d = Example();
  d.algorithms = {signer::Algorithm::kRsaSha256, signer::Algorithm::kEd25519Sha256};
  d.key_lifetime = 183 * kDay;
  d.grace = 7 * kDay;
  d.bits = 3072;
  EXPECT_TRUE(CheckPractices(WithDomain(d)).empty());
  d.key_lifetime = 5 * kDay;
  d.grace = 30 * kDay;
  EXPECT_TRUE(CheckPractices(WithDomain(d)).empty());
}

TEST(CheckPractices, KeyLifetimeOverSixMonths) {
  DomainConfig d = Example();
  d.key_lifetime = 200 * kDay;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: key_lifetime = \"200d\" is over six months"))
      << w;
  EXPECT_NE(w.find("M3AAWG"), std::string::npos) << w;
}

TEST(CheckPractices, KeyLifetimeUnderFiveDays) {
  DomainConfig d = Example();
  d.key_lifetime = 4 * kDay;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: key_lifetime = \"4d\" is under 5 days")) << w;
}

TEST(CheckPractices, GraceOutsideSevenToThirtyDays) {
  DomainConfig d = Example();
  d.grace = 6 * kDay;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: grace = \"6d\" is under 7 days")) << w;
  d.grace = 31 * kDay;
  w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: grace = \"31d\" is over 30 days")) << w;
  d.grace = seconds(0);
  w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: grace = \"0s\" is under 7 days")) << w;
}

TEST(CheckPractices, RsaKeySize) {
  DomainConfig d = Example();
  d.bits = 1024;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: bits = 1024: RSA keys under 2048 bits are being "
                            "phased out")) << w;
  d.bits = 4096;
  w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: bits = 4096:")) << w;
  EXPECT_NE(w.find("512-byte DNS UDP limit"), std::string::npos) << w;
}

TEST(CheckPractices, BitsDoNotMatterWithoutRsa) {
  DomainConfig d = Example();
  d.algorithms = {signer::Algorithm::kEd25519Sha256};
  d.bits = 1024;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: algorithms = [\"ed25519-sha256\"]: many receivers "
                            "cannot verify Ed25519")) << w;
}

TEST(CheckPractices, NoPrepublishedKey) {
  DomainConfig d = Example();
  d.prepublish = 0;
  std::string w = OnlyWarning(WithDomain(d));
  EXPECT_TRUE(StartsWith(w, "domain example.com: prepublish = 0: no spare key")) << w;
}

TEST(CheckPractices, ShortPropagationOnlyMattersWithoutAuthoritativeCheck) {
  Config c;
  c.dns.min_propagation = seconds(600);
  EXPECT_TRUE(CheckPractices(c).empty());
  c.dns.check_authoritative = false;
  std::string w = OnlyWarning(c);
  EXPECT_TRUE(StartsWith(w, "dns.min_propagation = \"10m\" with check_authoritative = false"))
      << w;
  c.dns.min_propagation = seconds(3600);
  EXPECT_TRUE(CheckPractices(c).empty());
}

TEST(CheckPractices, EveryClientInternal) {
  Config c;
  c.signing.internal_hosts = {util::Cidr::Parse("127.0.0.1/32").value(),
                              util::Cidr::Parse("0.0.0.0/0").value()};
  std::string w = OnlyWarning(c);
  EXPECT_TRUE(StartsWith(w, "signing.internal_hosts contains \"0.0.0.0/0\"")) << w;
}

TEST(CheckPractices, NothingWouldBeSigned) {
  Config c = WithDomain(Example());
  c.signing.internal_hosts.clear();
  c.signing.sign_authenticated = false;
  std::string w = OnlyWarning(c);
  EXPECT_NE(w.find("no message will be signed"), std::string::npos) << w;
}

TEST(CheckPractices, WarnsPerDomainAndFinding) {
  Config c;
  DomainConfig a = Example();
  a.prepublish = 0;
  a.grace = seconds(0);
  DomainConfig b = Example();
  b.domain = "example.org";
  b.key_lifetime = 365 * kDay;
  c.domains = {a, b};
  std::vector<std::string> w = CheckPractices(c);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_TRUE(StartsWith(w[0], "domain example.com: grace")) << w[0];
  EXPECT_TRUE(StartsWith(w[1], "domain example.com: prepublish")) << w[1];
  EXPECT_TRUE(StartsWith(w[2], "domain example.org: key_lifetime = \"365d\"")) << w[2];
}

// Issue 13: whoever can connect to the milter socket can have mail signed.
TEST(MilterSocketWarnings, LoopbackAndPrivateUnixSocketsAreQuiet) {
  for (const char* socket : {"inet:8891@127.0.0.1", "inet:8891@127.0.0.53", "inet:8891@localhost",
                             "inet6:8891@::1", "inet6:8891@[::1]", "unix:/run/dkimrotor/milter.sock",
                             "local:/run/dkimrotor/milter.sock"}) {
    MilterConfig m;
    m.socket = socket;
    EXPECT_TRUE(MilterSocketWarnings(m).empty()) << socket;
  }
}

TEST(MilterSocketWarnings, BeyondLoopback) {
  for (const char* socket : {"inet:8891@0.0.0.0", "inet:8891", "inet6:8891@::", "inet6:8891@[::]",
                             "inet:8891@192.0.2.1", "inet:8891@mail.example.com", "inet6:8891@2001:db8::1"}) {
    MilterConfig m;
    m.socket = socket;
    std::vector<std::string> w = MilterSocketWarnings(m);
    ASSERT_EQ(w.size(), 1u) << socket;
    EXPECT_TRUE(StartsWith(w[0], "milter.socket = \"" + std::string(socket) + "\" listens beyond loopback")) << w[0];
    EXPECT_NE(w[0].find("anyone who can connect to it can have mail signed"), std::string::npos) << w[0];
    Config c;
    c.milter = m;
    EXPECT_EQ(CheckPractices(c), w) << "check reports what the daemon logs";
  }
}

TEST(MilterSocketWarnings, WorldWritableUnixSocket) {
  MilterConfig m;
  m.socket = "unix:/run/dkimrotor/milter.sock";
  m.socket_mode = 0666;
  std::vector<std::string> w = MilterSocketWarnings(m);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_TRUE(StartsWith(w[0], "milter.socket_mode = \"0666\" lets every local user connect")) << w[0];
  m.socket_mode = 0660;
  EXPECT_TRUE(MilterSocketWarnings(m).empty());
  m.socket = "inet:8891@127.0.0.1";
  m.socket_mode = 0666;  // means nothing for an inet socket
  EXPECT_TRUE(MilterSocketWarnings(m).empty());
}

}  // namespace
}  // namespace dkimrotor::conf
