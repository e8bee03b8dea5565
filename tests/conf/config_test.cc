#include "conf/config.h"

#include <gtest/gtest.h>

#include "signer/header_selector.h"

namespace dkimrotor::conf {
namespace {

// conf reads header names as text and keeps its own copy of the signer's default lists; this
// keeps them equal.
TEST(SigningConfig, DefaultHeaderListsMatchTheSigner) {
  SigningConfig defaults;
  signer::HeaderPolicy policy = signer::HeaderPolicy::Default();
  EXPECT_EQ(defaults.headers, policy.sign);
  EXPECT_EQ(defaults.oversign, policy.oversign);
}

TEST(Config, EnumNamesAreTheFileSpelling) {
  EXPECT_EQ(OnErrorName(OnError::kTempfail), "tempfail");
  EXPECT_EQ(OnErrorName(OnError::kAccept), "accept");
  EXPECT_EQ(OnBadMessageName(OnBadMessage::kReject), "reject");
  EXPECT_EQ(LogTargetName(LogTarget::kSyslog), "syslog");
  EXPECT_EQ(LogLevelName(LogLevel::kWarn), "warn");
  EXPECT_EQ(LogLevelName(LogLevel::kOff), "off");
}

TEST(Config, DefaultsAreTheDocumentedOnes) {
  Config c;
  EXPECT_EQ(c.milter.socket, "inet:8891@127.0.0.1");
  EXPECT_EQ(c.milter.on_error, OnError::kTempfail);
  EXPECT_EQ(c.milter.on_bad_message, OnBadMessage::kAccept);
  EXPECT_EQ(c.milter.socket_mode, 0660u);
  EXPECT_EQ(c.milter.stop_timeout, std::chrono::seconds(30));
  ASSERT_EQ(c.signing.internal_hosts.size(), 2u);
  EXPECT_EQ(c.signing.internal_hosts[0].ToString(), "127.0.0.1/32");
  EXPECT_EQ(c.signing.internal_hosts[1].ToString(), "::1/128");
  EXPECT_EQ(c.dns.min_propagation, std::chrono::hours(1));
  EXPECT_EQ(c.dns.poll, std::chrono::minutes(1));
  EXPECT_TRUE(c.domains.empty());
  DomainConfig d;
  EXPECT_EQ(d.key_lifetime, std::chrono::hours(120 * 24));
  EXPECT_EQ(d.grace, std::chrono::hours(14 * 24));
  EXPECT_EQ(d.algorithms, std::vector<signer::Algorithm>{signer::Algorithm::kRsaSha256});
  EXPECT_EQ(c.signing.canonicalization,
            (signer::Canonicalization{signer::Canon::kRelaxed, signer::Canon::kRelaxed}));
}

}  // namespace
}  // namespace dkimrotor::conf
