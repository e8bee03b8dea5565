// Hostile and malformed input: nothing may crash or read out of bounds (run under ASan in CI),
// and every refusal must say why.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "signer/header_selector.h"
#include "signer/message_parser.h"
#include "signer/message_signer.h"
#include "signer/private_key.h"
#include "signer/verifier.h"

namespace dkimrotor::signer {
namespace {

std::shared_ptr<const SigningKey> TestKey() {
  static auto key = [] {
    auto pk = PrivateKey::Generate(Algorithm::kEd25519Sha256, 0);
    return SigningKey::Create({"example.com", "s1", pk.value(), {}}).value();
  }();
  return key;
}

std::string RandomBytes(std::mt19937& rng, size_t n, std::string_view alphabet) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(alphabet[rng() % alphabet.size()]);
  return s;
}

// Signs `message` if its header block parses and it has one From; returns whether it signed.
bool TrySign(std::string_view message, std::string* reason) {
  HeaderSelector selector(HeaderPolicy::Default());
  MessageSigner signer({TestKey()}, &selector, {.timestamp = 1, .lifetime = std::nullopt});
  auto end = FindEndOfHeaders(message);
  std::string_view block = end ? message.substr(0, end->header_bytes) : message;
  auto fields = ParseHeaderBlock(block);
  if (!fields) {
    *reason = fields.error().message;
    return false;
  }
  for (auto& f : *fields) signer.AddHeader(std::move(f));
  if (auto st = signer.EndOfHeaders(); !st) {
    *reason = st.error().message;
    return false;
  }
  if (end) signer.AddBody(message.substr(end->body_start));
  auto sigs = signer.Finish();
  if (!sigs) {
    *reason = sigs.error().message;
    return false;
  }
  return sigs->size() == 1;
}

TEST(Robustness, RandomMessagesEitherSignOrSayWhy) {
  std::mt19937 rng(1234);
  const std::string alphabet = std::string("From:ab \t\r\n\r\n:x\0\xff", 18);
  int signed_count = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string message = RandomBytes(rng, rng() % 300, alphabet);
    if (i % 3 == 0) message = "From: a@example.com\r\n" + message;
    std::string reason;
    if (TrySign(message, &reason)) {
      ++signed_count;
    } else {
      EXPECT_FALSE(reason.empty()) << "refused without a reason";
    }
  }
  EXPECT_GT(signed_count, 0);  // the generator does produce signable messages
}

TEST(Robustness, OneMegabyteHeaderLineAndBodyLineSign) {
  std::string message = "From: a@example.com\r\nSubject: " + std::string(1 << 20, 'x') + "\r\n\r\n" +
                        std::string(1 << 20, 'y') + "\r\n";
  std::string reason;
  EXPECT_TRUE(TrySign(message, &reason)) << reason;
}

TEST(Robustness, NulAndEightBitBytesSign) {
  using namespace std::string_literals;
  const std::string message =
      "From: \xc3\xa9t\xc3\xa9 <a@example.com>\r\nSubject: a\0b\r\n\r\n\0\xff\xfe\r\n"s;
  ASSERT_EQ(message.size(), 50u);  // the NUL bytes are inside the string
  std::string reason;
  EXPECT_TRUE(TrySign(message, &reason)) << reason;
}

TEST(Robustness, MalformedSignatureFieldsFailWithReasons) {
  std::mt19937 rng(99);
  const std::string alphabet = "v=1;a=rsa-sha256;bh=b=h=from:d=s=c=relaxed/ \r\n\t";
  auto lookup = [](std::string_view, std::string_view, Algorithm) -> util::Result<std::shared_ptr<const PublicKey>> {
    return util::Err(util::ErrorCode::kNotFound, "no key");
  };
  for (int i = 0; i < 2000; ++i) {
    MessageVerifier verifier(lookup);
    verifier.AddHeader({"DKIM-Signature", RandomBytes(rng, rng() % 120, alphabet)});
    verifier.AddHeader({"From", " a@example.com"});
    verifier.EndOfHeaders();
    verifier.AddBody("body\r\n");
    auto verdicts = verifier.Finish();
    ASSERT_EQ(verdicts.size(), 1u);
    ASSERT_FALSE(verdicts[0].status.has_value());
    EXPECT_FALSE(verdicts[0].status.error().message.empty());
  }
}

}  // namespace
}  // namespace dkimrotor::signer
