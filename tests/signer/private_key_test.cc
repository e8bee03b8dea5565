#include "signer/private_key.h"

#include "tests/signer/test_keys.h"

#include <gtest/gtest.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <string>

#include "signer/public_key.h"
#include "util/base64.h"
#include "util/file.h"

namespace dkimrotor::signer {
namespace {

using internal::Sha256;
using internal::Sha256Digest;

std::string PemOf(EVP_PKEY* pkey) {
  util::BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_NE(bio, nullptr);
  EXPECT_EQ(PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr, nullptr), 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

using testing::Rfc8463RsaPem;

class PrivateKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const std::shared_ptr<const PrivateKey> rsa = [] {
      auto key = PrivateKey::FromPem(Rfc8463RsaPem());
      EXPECT_TRUE(key.has_value()) << key.error().message;
      return key.has_value() ? *key : nullptr;
    }();
    static const std::shared_ptr<const PrivateKey> ed25519 = [] {
      auto key = PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
      EXPECT_TRUE(key.has_value()) << key.error().message;
      return key.has_value() ? *key : nullptr;
    }();
    rsa_ = rsa.get();
    ed25519_ = ed25519.get();
    ASSERT_NE(rsa_, nullptr);
    ASSERT_NE(ed25519_, nullptr);
  }

  const PrivateKey& Rsa() const { return *rsa_; }
  const PrivateKey& Ed25519() const { return *ed25519_; }

 private:
  const PrivateKey* rsa_ = nullptr;
  const PrivateKey* ed25519_ = nullptr;
};

TEST(PrivateKey, GeneratesRsa2048) {
  auto key = PrivateKey::Generate(Algorithm::kRsaSha256, 2048);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->algorithm(), Algorithm::kRsaSha256);
  EXPECT_EQ((*key)->bits(), 2048);
  // SubjectPublicKeyInfo of RSA-2048 is 294 bytes: 392 base64 characters.
  EXPECT_EQ((*key)->dkim_public_key().size(), 392u);

  const Sha256Digest digest = Sha256("generated");
  auto sig = (*key)->Sign(digest);
  ASSERT_TRUE(sig.has_value()) << sig.error().message;
  EXPECT_EQ(sig->size(), 256u);
  auto pub = PublicKey::FromDkim(Algorithm::kRsaSha256, (*key)->dkim_public_key());
  ASSERT_TRUE(pub.has_value()) << pub.error().message;
  EXPECT_EQ((*pub)->bits(), 2048);
  auto ok = (*pub)->Verify(digest, *sig);
  EXPECT_TRUE(ok.has_value()) << ok.error().message;

  auto pem = (*key)->ToPem();
  ASSERT_TRUE(pem.has_value()) << pem.error().message;
  auto back = PrivateKey::FromPem(*pem);
  ASSERT_TRUE(back.has_value()) << back.error().message;
  EXPECT_EQ((*back)->dkim_public_key(), (*key)->dkim_public_key());
  EXPECT_EQ((*back)->Sign(digest).value(), *sig);
}

TEST_F(PrivateKeyTest, LoadsTraditionalRsaPem) {
  EXPECT_EQ(Rsa().algorithm(), Algorithm::kRsaSha256);
  EXPECT_EQ(Rsa().bits(), 1024);  // RFC 8301's minimum, still allowed
  // RFC 8463 A.2 publishes this key's SubjectPublicKeyInfo.
  EXPECT_EQ(Rsa().dkim_public_key(),
            "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"
            "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZy"
            "VYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB");
}

TEST_F(PrivateKeyTest, GeneratesEd25519) {
  EXPECT_EQ(Ed25519().algorithm(), Algorithm::kEd25519Sha256);
  EXPECT_NE(Ed25519().dkim_public_key(), Rsa().dkim_public_key());
}

TEST_F(PrivateKeyTest, Ed25519PublicKeyIs32BytesIn44Base64Chars) {
  const std::string& p = Ed25519().dkim_public_key();
  EXPECT_EQ(p.size(), 44u);
  auto raw = util::Base64Decode(p);
  ASSERT_TRUE(raw.has_value()) << raw.error().message;
  EXPECT_EQ(raw->size(), 32u);
}

TEST(PrivateKey, GenerateRefusesRsaSizesOutsideTheLimits) {
  EXPECT_FALSE(PrivateKey::Generate(Algorithm::kRsaSha256, 512).has_value());
  EXPECT_FALSE(PrivateKey::Generate(Algorithm::kRsaSha256, 8192).has_value());
}

TEST_F(PrivateKeyTest, PemRoundTripKeepsTheKey) {
  for (const PrivateKey* key : {&Rsa(), &Ed25519()}) {
    auto pem = key->ToPem();
    ASSERT_TRUE(pem.has_value()) << pem.error().message;
    EXPECT_NE(pem->find("-----BEGIN PRIVATE KEY-----"), std::string::npos);  // PKCS#8
    auto back = PrivateKey::FromPem(*pem);
    ASSERT_TRUE(back.has_value()) << back.error().message;
    EXPECT_EQ((*back)->algorithm(), key->algorithm());
    EXPECT_EQ((*back)->bits(), key->bits());
    EXPECT_EQ((*back)->dkim_public_key(), key->dkim_public_key());
    auto again = (*back)->ToPem();
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, *pem);
  }
}

TEST_F(PrivateKeyTest, ReloadedKeySignsTheSameBytes) {
  // Both schemes are deterministic: the key read back must give identical signatures.
  const Sha256Digest digest = Sha256("reloaded");
  for (const PrivateKey* key : {&Rsa(), &Ed25519()}) {
    auto back = PrivateKey::FromPem(key->ToPem().value());
    ASSERT_TRUE(back.has_value()) << back.error().message;
    auto a = key->Sign(digest);
    auto b = (*back)->Sign(digest);
    ASSERT_TRUE(a.has_value() && b.has_value());
    EXPECT_EQ(*a, *b);
  }
}

TEST(PrivateKey, RefusesRsa512WithAMessageNaming1024) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(512));
  ASSERT_NE(raw, nullptr);
  util::EvpPkeyPtr pkey(raw);
  auto key = PrivateKey::FromPem(PemOf(pkey.get()));
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(key.error().message.find("1024"), std::string::npos) << key.error().message;
  EXPECT_NE(key.error().message.find("512"), std::string::npos) << key.error().message;
}

TEST(PrivateKey, RefusesGarbagePem) {
  for (std::string_view pem :
       {std::string_view(""), std::string_view("not a key"),
        std::string_view("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}) {
    auto key = PrivateKey::FromPem(pem);
    ASSERT_FALSE(key.has_value()) << pem;
    EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
    EXPECT_NE(key.error().message.find("PEM"), std::string::npos) << key.error().message;
  }
}

TEST(PrivateKey, RefusesEcKeyAsUnsupported) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(raw, nullptr);
  util::EvpPkeyPtr pkey(raw);
  auto key = PrivateKey::FromPem(PemOf(pkey.get()));
  ASSERT_FALSE(key.has_value());
  EXPECT_EQ(key.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(key.error().message.find("unsupported"), std::string::npos) << key.error().message;
}

TEST(PrivateKey, FromEd25519SeedRejectsWrongLength) {
  EXPECT_FALSE(PrivateKey::FromEd25519Seed(std::string(31, 'x')).has_value());
  EXPECT_FALSE(PrivateKey::FromEd25519Seed(std::string(33, 'x')).has_value());
  EXPECT_FALSE(PrivateKey::FromEd25519Seed("").has_value());
  auto ok = PrivateKey::FromEd25519Seed(std::string(32, 'x'));
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_EQ((*ok)->algorithm(), Algorithm::kEd25519Sha256);
}

// RFC 8032 section 7.1 TEST 1: this seed's public key is d75a9801...511a (the key RFC 8463 uses).
TEST(PrivateKey, FromEd25519SeedDerivesRfc8032PublicKey) {
  auto seed = util::Base64Decode("nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=");
  ASSERT_TRUE(seed.has_value());
  auto key = PrivateKey::FromEd25519Seed(*seed);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->dkim_public_key(), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
}

TEST_F(PrivateKeyTest, SignaturesVerifyWithThePublishedKey) {
  const Sha256Digest digest = Sha256("canonicalized headers");
  for (const PrivateKey* key : {&Rsa(), &Ed25519()}) {
    auto sig = key->Sign(digest);
    ASSERT_TRUE(sig.has_value()) << sig.error().message;
    EXPECT_EQ(sig->size(), key->algorithm() == Algorithm::kRsaSha256 ? 128u : 64u);
    auto pub = PublicKey::FromDkim(key->algorithm(), key->dkim_public_key());
    ASSERT_TRUE(pub.has_value()) << pub.error().message;
    auto ok = (*pub)->Verify(digest, *sig);
    EXPECT_TRUE(ok.has_value()) << ok.error().message;
  }
}

TEST_F(PrivateKeyTest, VerificationFailsAfterOneFlippedBit) {
  const Sha256Digest digest = Sha256("canonicalized headers");
  for (const PrivateKey* key : {&Rsa(), &Ed25519()}) {
    auto sig = key->Sign(digest);
    ASSERT_TRUE(sig.has_value()) << sig.error().message;
    auto pub = PublicKey::FromDkim(key->algorithm(), key->dkim_public_key());
    ASSERT_TRUE(pub.has_value()) << pub.error().message;

    Sha256Digest other = digest;
    other[17] ^= 0x01;
    auto bad_digest = (*pub)->Verify(other, *sig);
    EXPECT_FALSE(bad_digest.has_value());
    if (!bad_digest.has_value()) {
      EXPECT_EQ(bad_digest.error().code, util::ErrorCode::kCrypto);
    }

    std::string flipped = *sig;
    flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x10);
    EXPECT_FALSE((*pub)->Verify(digest, flipped).has_value());
  }
}

TEST_F(PrivateKeyTest, SignatureDoesNotVerifyWithAnotherKey) {
  auto other = PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
  ASSERT_TRUE(other.has_value());
  auto pub = PublicKey::FromDkim(Algorithm::kEd25519Sha256, (*other)->dkim_public_key());
  ASSERT_TRUE(pub.has_value());
  const Sha256Digest digest = Sha256("x");
  EXPECT_FALSE((*pub)->Verify(digest, Ed25519().Sign(digest).value()).has_value());
}

TEST_F(PrivateKeyTest, SignaturesAreDeterministic) {
  const Sha256Digest digest = Sha256("same input");
  for (const PrivateKey* key : {&Rsa(), &Ed25519()}) {
    auto a = key->Sign(digest);
    auto b = key->Sign(digest);
    ASSERT_TRUE(a.has_value() && b.has_value());
    EXPECT_EQ(*a, *b);
    auto c = key->Sign(Sha256("other input"));
    ASSERT_TRUE(c.has_value());
    EXPECT_NE(*a, *c);
  }
}

}  // namespace
}  // namespace dkimrotor::signer
