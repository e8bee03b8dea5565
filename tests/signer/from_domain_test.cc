#include "signer/from_domain.h"

#include <gtest/gtest.h>

namespace dkimrotor::signer {
namespace {

TEST(FromDomain, FindsTheDomainInCommonForms) {
  EXPECT_EQ(FromDomain(" joe@Example.COM").value(), "example.com");
  EXPECT_EQ(FromDomain(" Joe Q. Public <joe@example.com>").value(), "example.com");
  EXPECT_EQ(FromDomain(" \"Smith, Joe\" <joe@mail.example.org>").value(), "mail.example.org");
  EXPECT_EQ(FromDomain(" \"joe@fake.example\" <joe@real.example>").value(), "real.example");
  EXPECT_EQ(FromDomain(" joe@example.com (Joe <joe@evil.example>)").value(), "example.com");
  EXPECT_EQ(FromDomain(" =?utf-8?q?J=C3=B6rg?= <jorg@example.de.>").value(), "example.de");
  EXPECT_EQ(FromDomain(" Joe\r\n <joe@example.com>").value(), "example.com");
  EXPECT_EQ(FromDomain(" \"a\\\"b\" <x@example.net>").value(), "example.net");
}

TEST(FromDomain, RefusesWhatCannotNameOneSigningDomain) {
  EXPECT_NE(FromDomain(" a@example.com, b@example.org").error().message.find("2 addresses"), std::string::npos);
  EXPECT_FALSE(FromDomain(" undisclosed-recipients:;").has_value());
  EXPECT_FALSE(FromDomain(" Joe").has_value());
  EXPECT_FALSE(FromDomain(" joe@").has_value());
  EXPECT_FALSE(FromDomain(" <joe@example.com").has_value());
  EXPECT_FALSE(FromDomain(" \"unclosed <joe@example.com>").has_value());
  EXPECT_FALSE(FromDomain(" joe@[192.0.2.1]").has_value());
  EXPECT_FALSE(FromDomain("").has_value());
}

TEST(DomainMatches, ExactOrLabelWiseSubdomain) {
  EXPECT_TRUE(DomainMatches("example.com", "example.com", false));
  EXPECT_FALSE(DomainMatches("mail.example.com", "example.com", false));
  EXPECT_TRUE(DomainMatches("mail.example.com", "example.com", true));
  EXPECT_FALSE(DomainMatches("badexample.com", "example.com", true));
  EXPECT_FALSE(DomainMatches("example.com.evil", "example.com", true));
}

}  // namespace
}  // namespace dkimrotor::signer
