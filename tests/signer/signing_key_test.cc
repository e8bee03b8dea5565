#include "signer/signing_key.h"

#include <gtest/gtest.h>

#include <string>

namespace dkimrotor::signer {
namespace {

std::shared_ptr<const PrivateKey> Ed25519Key() {
  static const std::shared_ptr<const PrivateKey> key = [] {
    auto k = PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
    EXPECT_TRUE(k.has_value()) << k.error().message;
    return k.has_value() ? *k : nullptr;
  }();
  return key;
}

void ExpectRejected(std::string_view name) {
  auto st = ValidateDnsName(name, "selector");
  EXPECT_FALSE(st.has_value()) << "accepted: '" << name << "'";
  if (!st.has_value()) {
    EXPECT_EQ(st.error().code, util::ErrorCode::kInvalidArgument);
    EXPECT_EQ(st.error().message.rfind("selector", 0), 0u) << st.error().message;
  }
}

void ExpectAccepted(std::string_view name) {
  auto st = ValidateDnsName(name, "domain");
  EXPECT_TRUE(st.has_value()) << name << ": " << st.error().message;
}

TEST(ValidateDnsName, AcceptsNormalNames) {
  ExpectAccepted("example.com");
  ExpectAccepted("mail.example.co.uk");
  ExpectAccepted("s2024-01");
  ExpectAccepted("Example.COM");
  ExpectAccepted("a");
  ExpectAccepted("xn--bcher-kva.example");
}

TEST(ValidateDnsName, AcceptsUnderscores) {
  ExpectAccepted("_dmarc.example.com");
  ExpectAccepted("sel_2024");
}

TEST(ValidateDnsName, RejectsCharactersThatCouldBreakTheHeader) {
  ExpectRejected("sel;x=1");
  ExpectRejected("sel\r\nX-Injected: 1");
  ExpectRejected("sel\r");
  ExpectRejected("sel\n");
  ExpectRejected("sel 1");
  ExpectRejected("sel\t1");
  ExpectRejected("sel=1");
  ExpectRejected("sel:1");
  ExpectRejected(std::string_view("sel\0", 4));
  ExpectRejected("s\xc3\xa9l");
}

TEST(ValidateDnsName, RejectsEmptyLabels) {
  ExpectRejected("");
  ExpectRejected(".");
  ExpectRejected(".example.com");
  ExpectRejected("example.com.");
  ExpectRejected("example..com");
}

TEST(ValidateDnsName, LabelLengthLimitIs63) {
  ExpectAccepted(std::string(63, 'a') + ".example");
  ExpectRejected(std::string(64, 'a') + ".example");
  ExpectRejected("example." + std::string(64, 'b'));
}

TEST(ValidateDnsName, NameLengthLimitIs253) {
  // Four labels of 63 plus 3 dots is 255; three of 63 and one of 61 is 253.
  std::string l63(63, 'a');
  ExpectAccepted(l63 + "." + l63 + "." + l63 + "." + std::string(61, 'b'));
  ExpectRejected(l63 + "." + l63 + "." + l63 + "." + std::string(62, 'b'));
}

TEST(ValidateDnsName, ErrorNamesTheSettingAndValue) {
  auto st = ValidateDnsName("bad;name", "domain");
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("domain"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find("bad;name"), std::string::npos) << st.error().message;
}

TEST(SigningKey, CreateLowercasesDomain) {
  ASSERT_NE(Ed25519Key(), nullptr);
  auto key = SigningKey::Create({"Mail.EXAMPLE.com", "Sel1", Ed25519Key(), {}});
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->domain(), "mail.example.com");
  EXPECT_EQ((*key)->selector(), "Sel1");
  EXPECT_EQ((*key)->algorithm(), Algorithm::kEd25519Sha256);
  EXPECT_EQ(&(*key)->key(), Ed25519Key().get());
}

TEST(SigningKey, DefaultCanonicalizationIsRelaxedRelaxed) {
  ASSERT_NE(Ed25519Key(), nullptr);
  auto key = SigningKey::Create({"example.com", "s", Ed25519Key(), {}});
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->canonicalization(), (Canonicalization{Canon::kRelaxed, Canon::kRelaxed}));
  auto simple = SigningKey::Create(
      {"example.com", "s", Ed25519Key(), Canonicalization{Canon::kSimple, Canon::kRelaxed}});
  ASSERT_TRUE(simple.has_value()) << simple.error().message;
  EXPECT_EQ((*simple)->canonicalization(), (Canonicalization{Canon::kSimple, Canon::kRelaxed}));
}

TEST(SigningKey, CreateRejectsNullKey) {
  auto key = SigningKey::Create({"example.com", "s1", nullptr, {}});
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(key.error().message.find("s1"), std::string::npos) << key.error().message;
  EXPECT_NE(key.error().message.find("no private key"), std::string::npos) << key.error().message;
}

TEST(SigningKey, CreateRejectsBadDomainAndSelector) {
  ASSERT_NE(Ed25519Key(), nullptr);
  auto bad_domain = SigningKey::Create({"example.com;", "s1", Ed25519Key(), {}});
  ASSERT_FALSE(bad_domain.has_value());
  EXPECT_NE(bad_domain.error().message.find("domain"), std::string::npos);
  auto bad_selector = SigningKey::Create({"example.com", "s1\r\n", Ed25519Key(), {}});
  ASSERT_FALSE(bad_selector.has_value());
  EXPECT_NE(bad_selector.error().message.find("selector"), std::string::npos);
}

}  // namespace
}  // namespace dkimrotor::signer
