#include "keystore/dns/key_record.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

#include "signer/private_key.h"
#include "util/base64.h"
#include "util/openssl_ptr.h"

namespace dkimrotor::keystore {
namespace {

using signer::Algorithm;
using V = KeyRecordVerdict;

// Keys are generated once: RSA generation is the slow part of this file.
const std::string& RsaP() {
  static const std::string p = [] {
    auto key = signer::PrivateKey::Generate(Algorithm::kRsaSha256, 1024);
    EXPECT_TRUE(key.has_value());
    return key ? (*key)->dkim_public_key() : std::string();
  }();
  return p;
}

const std::string& OtherRsaP() {
  static const std::string p = [] {
    auto key = signer::PrivateKey::Generate(Algorithm::kRsaSha256, 1024);
    EXPECT_TRUE(key.has_value());
    return key ? (*key)->dkim_public_key() : std::string();
  }();
  return p;
}

// The size RFC 8301 asks for: no size warning.
const std::string& Rsa2048P() {
  static const std::string p = [] {
    auto key = signer::PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
    EXPECT_TRUE(key.has_value());
    return key ? (*key)->dkim_public_key() : std::string();
  }();
  return p;
}

const std::string& Ed25519P() {
  static const std::string p = [] {
    auto key = signer::PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
    EXPECT_TRUE(key.has_value());
    return key ? (*key)->dkim_public_key() : std::string();
  }();
  return p;
}

// signer::PrivateKey refuses to make one, so OpenSSL does.
std::string Rsa512P() {
  util::EvpPkeyPtr pkey(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(512)));
  EXPECT_NE(pkey, nullptr);
  if (!pkey) return "";
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey.get(), &der);
  EXPECT_GT(len, 0);
  std::string out = util::Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

TEST(KeyRecord, MatchesTheExpectedRsaKey) {
  auto check = CheckKeyRecord("v=DKIM1; k=rsa; p=" + Rsa2048P(), Algorithm::kRsaSha256, Rsa2048P());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
  EXPECT_TRUE(check.as_expected);
  EXPECT_TRUE(check.detail.empty());
  EXPECT_TRUE(check.warnings.empty());
  EXPECT_EQ(check.key_bits, 2048);
}

TEST(KeyRecord, RsaKeyBelow2048BitsIsAWarning) {
  auto check = CheckKeyRecord("v=DKIM1; k=rsa; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
  EXPECT_TRUE(check.as_expected);
  EXPECT_EQ(check.key_bits, 1024);
  ASSERT_EQ(check.warnings.size(), 1u);
  EXPECT_NE(check.warnings[0].find("RSA key of 1024 bits"), std::string::npos) << check.warnings[0];
  EXPECT_NE(check.warnings[0].find(": set bits = 2048 and rotate"), std::string::npos) << check.warnings[0];
  EXPECT_TRUE(CheckKeyRecord("p=" + Ed25519P(), Algorithm::kEd25519Sha256, Ed25519P()).warnings.empty());
}

TEST(KeyRecord, MatchesWithoutVAndKTags) {
  // v= is optional and k= defaults to rsa (RFC 6376 3.6.1).
  auto check = CheckKeyRecord("p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
}

TEST(KeyRecord, MatchesAnEd25519Key) {
  auto check =
      CheckKeyRecord("v=DKIM1; k=ed25519; p=" + Ed25519P(), Algorithm::kEd25519Sha256, Ed25519P());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
  EXPECT_EQ(check.key_bits, 256);
}

TEST(KeyRecord, ComparesDecodedBytesNotText) {
  // White space inside p= (a folded record) is not a different key.
  std::string folded = RsaP();
  folded.insert(30, " ").insert(90, "\t ");
  auto check = CheckKeyRecord("v=DKIM1; p=" + folded, Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
}

TEST(KeyRecord, JoinsTwoTxtStrings) {
  // A long record does not fit one 255-byte string: it is split, then joined again.
  std::string value =
      "v=DKIM1; k=rsa; h=sha256; s=email; n=" + std::string(40, 'x') + "; p=" + RsaP();
  auto strings = SplitTxtStrings(value);
  ASSERT_EQ(strings.size(), 2u);
  std::string joined = strings[0] + strings[1];
  auto check = CheckKeyRecord(joined, Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
}

TEST(KeyRecord, EmptyPIsRevoked) {
  auto check = CheckKeyRecord("v=DKIM1; p=", Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kRevoked);
  EXPECT_FALSE(check.as_expected);
  EXPECT_NE(check.detail.find("revoked"), std::string::npos) << check.detail;
}

TEST(KeyRecord, EmptyPIsExpectedWhenRevocationWasPublished) {
  auto check = CheckKeyRecord("v=DKIM1; p=", Algorithm::kRsaSha256, "");
  EXPECT_EQ(check.verdict, V::kRevoked);
  EXPECT_TRUE(check.as_expected);
  EXPECT_TRUE(check.detail.empty());
}

// dkimrotor revokes every key with "v=DKIM1; p=" (no k=, which alone would mean rsa): found
// by the kill campaign, an ed25519 key's revocation was "wrong" for ever and its private key
// never destroyed.
TEST(KeyRecord, EmptyPRevokesAnEd25519KeyWithoutKTag) {
  for (const char* record : {"v=DKIM1; p=", "v=DKIM1; k=ed25519; p=", "v=DKIM1; k=rsa; p="}) {
    auto check = CheckKeyRecord(record, Algorithm::kEd25519Sha256, "");
    EXPECT_EQ(check.verdict, V::kRevoked) << record << ": " << check.detail;
    EXPECT_TRUE(check.as_expected) << record;
  }
  auto published = CheckKeyRecord("v=DKIM1; k=rsa; p=", Algorithm::kEd25519Sha256, Ed25519P());
  EXPECT_EQ(published.verdict, V::kRevoked);
  EXPECT_FALSE(published.as_expected);
}

TEST(KeyRecord, AKeyWhereRevocationIsExpectedIsWrong) {
  auto check = CheckKeyRecord("v=DKIM1; p=" + RsaP(), Algorithm::kRsaSha256, "");
  EXPECT_EQ(check.verdict, V::kWrongKey);
  EXPECT_FALSE(check.as_expected);
  EXPECT_NE(check.detail.find("revocation"), std::string::npos) << check.detail;
}

TEST(KeyRecord, AnotherKeyIsWrongKey) {
  auto check = CheckKeyRecord("v=DKIM1; p=" + OtherRsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kWrongKey);
  EXPECT_FALSE(check.as_expected);
  EXPECT_NE(check.detail.find("republish"), std::string::npos) << check.detail;
}

TEST(KeyRecord, KeyTypeMismatchIsWrongKey) {
  auto explicit_k =
      CheckKeyRecord("v=DKIM1; k=rsa; p=" + Ed25519P(), Algorithm::kEd25519Sha256, Ed25519P());
  EXPECT_EQ(explicit_k.verdict, V::kWrongKey);
  EXPECT_NE(explicit_k.detail.find("k=rsa"), std::string::npos) << explicit_k.detail;
  // Without k= the record means rsa, so an Ed25519 key needs k=ed25519.
  auto default_k =
      CheckKeyRecord("v=DKIM1; p=" + Ed25519P(), Algorithm::kEd25519Sha256, Ed25519P());
  EXPECT_EQ(default_k.verdict, V::kWrongKey);
  EXPECT_NE(default_k.detail.find("means rsa"), std::string::npos) << default_k.detail;
}

TEST(KeyRecord, HashListWithoutSha256IsRejected) {
  auto sha1 = CheckKeyRecord("v=DKIM1; h=sha1; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(sha1.verdict, V::kMalformed);
  EXPECT_NE(sha1.detail.find("sha256"), std::string::npos) << sha1.detail;
  auto both =
      CheckKeyRecord("v=DKIM1; h=sha1 : sha256; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(both.verdict, V::kMatches) << both.detail;
}

TEST(KeyRecord, ServiceTypeMustIncludeEmail) {
  auto other = CheckKeyRecord("v=DKIM1; s=tlsrpt; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(other.verdict, V::kMalformed);
  EXPECT_NE(other.detail.find("s=email"), std::string::npos) << other.detail;
  EXPECT_EQ(CheckKeyRecord("s=*; p=" + RsaP(), Algorithm::kRsaSha256, RsaP()).verdict, V::kMatches);
  EXPECT_EQ(CheckKeyRecord("s=x:email; p=" + RsaP(), Algorithm::kRsaSha256, RsaP()).verdict,
            V::kMatches);
}

TEST(KeyRecord, TestingFlagIsAWarning) {
  auto check = CheckKeyRecord("v=DKIM1; t=s:y; p=" + Rsa2048P(), Algorithm::kRsaSha256, Rsa2048P());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
  EXPECT_TRUE(check.as_expected);
  ASSERT_EQ(check.warnings.size(), 1u);
  EXPECT_NE(check.warnings[0].find("testing mode left on"), std::string::npos);
  EXPECT_TRUE(CheckKeyRecord("t=s; p=" + Rsa2048P(), Algorithm::kRsaSha256, Rsa2048P()).warnings.empty());
}

TEST(KeyRecord, VersionMustComeFirstAndBeDkim1) {
  EXPECT_EQ(CheckKeyRecord("k=rsa; v=DKIM1; p=" + RsaP(), Algorithm::kRsaSha256, RsaP()).verdict,
            V::kMalformed);
  auto wrong = CheckKeyRecord("v=DKIM2; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(wrong.verdict, V::kMalformed);
  EXPECT_NE(wrong.detail.find("DKIM1"), std::string::npos);
}

TEST(KeyRecord, BadBase64IsMalformed) {
  auto check = CheckKeyRecord("v=DKIM1; p=MIGf!!!", Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMalformed);
  EXPECT_NE(check.detail.find("base64"), std::string::npos) << check.detail;
}

TEST(KeyRecord, BadTagListIsMalformed) {
  EXPECT_EQ(CheckKeyRecord("v=DKIM1; p=abc; p=abc", Algorithm::kRsaSha256, RsaP()).verdict,
            V::kMalformed);
  EXPECT_EQ(CheckKeyRecord("v=DKIM1; nonsense", Algorithm::kRsaSha256, RsaP()).verdict,
            V::kMalformed);
  auto no_p = CheckKeyRecord("v=DKIM1; k=rsa", Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(no_p.verdict, V::kMalformed);
  EXPECT_NE(no_p.detail.find("no p="), std::string::npos);
}

TEST(KeyRecord, Base64ThatIsNoKeyIsMalformed) {
  auto check = CheckKeyRecord("v=DKIM1; p=" + util::Base64Encode("not a key"),
                              Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMalformed);
}

TEST(KeyRecord, Rsa512IsTooShort) {
  std::string p = Rsa512P();
  auto check = CheckKeyRecord("v=DKIM1; k=rsa; p=" + p, Algorithm::kRsaSha256, p);
  EXPECT_EQ(check.verdict, V::kKeyTooShort);
  EXPECT_FALSE(check.as_expected);
  EXPECT_EQ(check.key_bits, 512);
  EXPECT_NE(check.detail.find("512 bits"), std::string::npos) << check.detail;
}

TEST(KeyRecord, UnknownTagsAreIgnored) {
  auto check =
      CheckKeyRecord("v=DKIM1; n=a note; x-future=1; p=" + RsaP(), Algorithm::kRsaSha256, RsaP());
  EXPECT_EQ(check.verdict, V::kMatches) << check.detail;
}

TEST(SplitTxtStrings, SplitsAt255Bytes) {
  EXPECT_EQ(SplitTxtStrings(""), std::vector<std::string>{""});
  EXPECT_EQ(SplitTxtStrings("abc"), std::vector<std::string>{"abc"});
  std::string exact(255, 'a');
  EXPECT_EQ(SplitTxtStrings(exact), std::vector<std::string>{exact});
  std::string long_value = std::string(255, 'a') + std::string(255, 'b') + "c";
  auto parts = SplitTxtStrings(long_value);
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0], std::string(255, 'a'));
  EXPECT_EQ(parts[1], std::string(255, 'b'));
  EXPECT_EQ(parts[2], "c");
}

}  // namespace
}  // namespace dkimrotor::keystore
