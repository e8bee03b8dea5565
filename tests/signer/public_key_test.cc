#include "signer/public_key.h"

#include "tests/signer/test_keys.h"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

#include "signer/private_key.h"
#include "util/base64.h"
#include "util/file.h"

namespace dkimrotor::signer {
namespace {

using internal::Sha256;

// The p= value of RFC 8463 A.2's RSA record (1024 bits, SubjectPublicKeyInfo).
constexpr char kRfc8463RsaP[] =
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"
    "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLz"
    "BfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";

std::string Base64Der(EVP_PKEY* pkey, int (*encode)(const EVP_PKEY*, unsigned char**)) {
  unsigned char* der = nullptr;
  int len = encode(pkey, &der);
  EXPECT_GT(len, 0);
  if (len <= 0) return "";
  std::string out = util::Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

int EncodeSpki(const EVP_PKEY* pkey, unsigned char** out) { return i2d_PUBKEY(pkey, out); }
int EncodePkcs1(const EVP_PKEY* pkey, unsigned char** out) { return i2d_PublicKey(pkey, out); }

using testing::Rfc8463RsaPem;

TEST(PublicKey, AcceptsRfc8463RsaKey) {
  auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, kRfc8463RsaP);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->bits(), 1024);
  EXPECT_EQ((*key)->algorithm(), Algorithm::kRsaSha256);
}

TEST(PublicKey, AcceptsFoldedP) {
  // A DNS record split into strings or a folded value carries white space inside p=.
  std::string folded = std::string(kRfc8463RsaP).insert(40, " \t").insert(100, "\r\n ");
  auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, folded);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->bits(), 1024);
}

TEST(PublicKey, RejectsBadBase64) {
  for (std::string_view p : {"MIGf!MA0G", "MIGfMA0", "=MIG"}) {
    auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, p);
    ASSERT_FALSE(key.has_value()) << p;
    EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
    EXPECT_NE(key.error().message.find("p="), std::string::npos) << key.error().message;
  }
  EXPECT_FALSE(PublicKey::FromDkim(Algorithm::kEd25519Sha256, "11qYAYKx!").has_value());
}

TEST(PublicKey, EmptyPMeansRevoked) {
  for (std::string_view p : {"", " ", "\r\n "}) {
    for (Algorithm a : {Algorithm::kRsaSha256, Algorithm::kEd25519Sha256}) {
      auto key = PublicKey::FromDkim(a, p);
      ASSERT_FALSE(key.has_value());
      EXPECT_NE(key.error().message.find("revoked"), std::string::npos) << key.error().message;
    }
  }
}

TEST(PublicKey, RejectsRsa512) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(512));
  ASSERT_NE(raw, nullptr);
  util::EvpPkeyPtr pkey(raw);
  auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, Base64Der(pkey.get(), EncodeSpki));
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(key.error().message.find("512"), std::string::npos) << key.error().message;
  EXPECT_NE(key.error().message.find("1024"), std::string::npos) << key.error().message;
}

TEST(PublicKey, AcceptsBarePkcs1RsaPublicKey) {
  // Re-encode RFC 8463's SubjectPublicKeyInfo as a bare PKCS#1 RSAPublicKey.
  auto spki = util::Base64Decode(kRfc8463RsaP);
  ASSERT_TRUE(spki.has_value());
  const auto* p = reinterpret_cast<const unsigned char*>(spki->data());
  util::EvpPkeyPtr pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(spki->size())));
  ASSERT_NE(pub, nullptr);
  const std::string pkcs1 = Base64Der(pub.get(), EncodePkcs1);
  ASSERT_FALSE(pkcs1.empty());
  ASSERT_NE(pkcs1, kRfc8463RsaP);  // really a different encoding
  // PKCS#1 is the SPKI's BIT STRING content: SPKI's 22-byte prefix (AlgorithmIdentifier etc.)
  // is missing, so 162 bytes become 140.
  EXPECT_EQ(util::Base64Decode(pkcs1)->size(), 140u);

  auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, pkcs1);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->bits(), 1024);

  // It verifies a signature made with the matching private key (RFC 8463 A.1).
  auto priv = PrivateKey::FromPem(Rfc8463RsaPem());
  ASSERT_TRUE(priv.has_value()) << priv.error().message;
  const auto digest = Sha256("pkcs1");
  auto sig = (*priv)->Sign(digest);
  ASSERT_TRUE(sig.has_value()) << sig.error().message;
  auto ok = (*key)->Verify(digest, *sig);
  EXPECT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_FALSE((*key)->Verify(Sha256("other"), *sig).has_value());
}

TEST(PublicKey, RejectsNonRsaDerForRsa) {
  // An Ed25519 SubjectPublicKeyInfo is valid DER but not an RSA key.
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  ASSERT_NE(raw, nullptr);
  util::EvpPkeyPtr pkey(raw);
  auto key = PublicKey::FromDkim(Algorithm::kRsaSha256, Base64Der(pkey.get(), EncodeSpki));
  ASSERT_FALSE(key.has_value());
  EXPECT_NE(key.error().message.find("RSA"), std::string::npos) << key.error().message;
  // Random bytes are neither SPKI nor PKCS#1.
  EXPECT_FALSE(PublicKey::FromDkim(Algorithm::kRsaSha256, "AAECAwQFBgcICQ==").has_value());
}

TEST(PublicKey, Ed25519NeedsExactly32Bytes) {
  auto ok = PublicKey::FromDkim(Algorithm::kEd25519Sha256,
                                "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ((*ok)->algorithm(), Algorithm::kEd25519Sha256);
  // 31 and 33 bytes.
  EXPECT_FALSE(PublicKey::FromDkim(Algorithm::kEd25519Sha256,
                                   util::Base64Encode(std::string(31, 'a')))
                   .has_value());
  EXPECT_FALSE(PublicKey::FromDkim(Algorithm::kEd25519Sha256,
                                   util::Base64Encode(std::string(33, 'a')))
                   .has_value());
  // An RSA key's SPKI is not an Ed25519 key.
  EXPECT_FALSE(PublicKey::FromDkim(Algorithm::kEd25519Sha256, kRfc8463RsaP).has_value());
}

TEST(PublicKey, VerifyRejectsWrongLengthSignatures) {
  auto priv = PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
  ASSERT_TRUE(priv.has_value());
  auto key = PublicKey::FromDkim(Algorithm::kEd25519Sha256, (*priv)->dkim_public_key());
  ASSERT_TRUE(key.has_value());
  const auto digest = Sha256("x");
  std::string sig = (*priv)->Sign(digest).value();
  EXPECT_TRUE((*key)->Verify(digest, sig).has_value());
  EXPECT_FALSE((*key)->Verify(digest, sig.substr(0, 63)).has_value());
  EXPECT_FALSE((*key)->Verify(digest, sig + "x").has_value());
  EXPECT_FALSE((*key)->Verify(digest, "").has_value());
}

}  // namespace
}  // namespace dkimrotor::signer
