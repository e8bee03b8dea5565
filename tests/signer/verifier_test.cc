#include "signer/verifier.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "signer/internal/sha256.h"
#include "signer/message_parser.h"
#include "signer/message_signer.h"
#include "signer/private_key.h"
#include "signer/tag_list.h"
#include "util/base64.h"
#include "util/file.h"

namespace dkimrotor::signer {
namespace {

using internal::Sha256;

TEST(RemoveSignatureValue, DeletesOnlyTheBValueAndItsWhiteSpace) {
  EXPECT_EQ(RemoveSignatureValue("a=1; b=abc \r\n def; bh=xyz"), "a=1; b=; bh=xyz");
}

TEST(RemoveSignatureValue, BAsLastTag) {
  EXPECT_EQ(RemoveSignatureValue(" v=1; bh=xyz=;\r\n b=abc\r\n def=="), " v=1; bh=xyz=;\r\n b=");
  EXPECT_EQ(RemoveSignatureValue(" v=1; b=abc;"), " v=1; b=;");
}

TEST(RemoveSignatureValue, KeepsWhiteSpaceAroundTheTagName) {
  EXPECT_EQ(RemoveSignatureValue("v=1;\r\n\tb = abc ; d=x"), "v=1;\r\n\tb =; d=x");
}

TEST(RemoveSignatureValue, LeavesOtherTagsThatContainB) {
  EXPECT_EQ(RemoveSignatureValue("bh=abc; xb=1; b2=keep"), "bh=abc; xb=1; b2=keep");
}

TEST(RemoveSignatureValue, EmptyBStaysEmpty) {
  EXPECT_EQ(RemoveSignatureValue(" v=1; b="), " v=1; b=");
}

constexpr char kBodyHash[] = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";  // SHA-256 of ""

std::vector<SignatureVerdict> VerifyFields(std::vector<HeaderField> fields,
                                           std::string_view body = "",
                                           MessageVerifier::KeyLookup lookup = nullptr) {
  if (!lookup) {
    lookup = [](std::string_view, std::string_view,
                Algorithm) -> util::Result<std::shared_ptr<const PublicKey>> {
      return util::Err(util::ErrorCode::kNotFound, "test: no key published");
    };
  }
  MessageVerifier verifier(std::move(lookup));
  for (auto& f : fields) verifier.AddHeader(std::move(f));
  verifier.EndOfHeaders();
  verifier.AddBody(body);
  return verifier.Finish();
}

// A well-formed ed25519 signature value with `drop` removed and `extra` appended.
std::string SignatureValue(std::string_view drop = "", std::string_view extra = "") {
  std::vector<std::pair<std::string, std::string>> tags = {
      {"v", "1"},
      {"a", "ed25519-sha256"},
      {"c", "relaxed/relaxed"},
      {"d", "example.com"},
      {"s", "sel"},
      {"h", "from:subject"},
      {"bh", kBodyHash},
      {"b", "AAAA"}};
  std::string out;
  for (const auto& [k, v] : tags)
    if (k != drop) out += " " + k + "=" + v + ";";
  out += extra;
  return out;
}

std::string ErrorOf(const SignatureVerdict& v) {
  return v.status.has_value() ? std::string("(verified)") : v.status.error().message;
}

TEST(MessageVerifier, MissingRequiredTagsAreRejected) {
  for (const char* tag : {"v", "a", "b", "bh", "d", "h", "s"}) {
    auto verdicts = VerifyFields({{"DKIM-Signature", SignatureValue(tag)}, {"From", " a@x"}});
    ASSERT_EQ(verdicts.size(), 1u);
    EXPECT_EQ(ErrorOf(verdicts[0]), std::string("missing required tag ") + tag + "=");
  }
}

TEST(MessageVerifier, BodyLengthIsUnsupported) {
  auto verdicts = VerifyFields({{"DKIM-Signature", SignatureValue("", " l=0;")}, {"From", " a@x"}});
  ASSERT_EQ(verdicts.size(), 1u);
  ASSERT_FALSE(verdicts[0].status.has_value());
  EXPECT_NE(ErrorOf(verdicts[0]).find("l="), std::string::npos) << ErrorOf(verdicts[0]);
  EXPECT_NE(ErrorOf(verdicts[0]).find("not supported"), std::string::npos) << ErrorOf(verdicts[0]);
}

TEST(MessageVerifier, HeaderListWithoutFromIsRejected) {
  std::string value = SignatureValue("h", " h=subject : date;");
  auto verdicts = VerifyFields({{"DKIM-Signature", value}, {"From", " a@x"}});
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_NE(ErrorOf(verdicts[0]).find("From"), std::string::npos) << ErrorOf(verdicts[0]);
  // "FROM" in h= counts as from: the failure is then the missing key, not h=.
  auto upper = VerifyFields(
      {{"DKIM-Signature", SignatureValue("h", " h=FROM : subject;")}, {"From", " a@x"}});
  ASSERT_EQ(upper.size(), 1u);
  EXPECT_EQ(ErrorOf(upper[0]), "test: no key published");
}

TEST(MessageVerifier, EmptyNameInHeaderListIsRejected) {
  auto verdicts = VerifyFields(
      {{"DKIM-Signature", SignatureValue("h", " h=from::subject;")}, {"From", " a@x"}});
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_FALSE(verdicts[0].status.has_value());
}

TEST(MessageVerifier, OtherMalformedSignatures) {
  struct Case {
    std::string value;
    std::string expect_in_error;
  };
  const std::vector<Case> cases = {
      {SignatureValue("v", " v=2;"), "v="},
      {SignatureValue("a", " a=rsa-sha1;"), "rsa-sha1"},
      {SignatureValue("a", " a=hmac-md5;"), "unknown algorithm"},
      {SignatureValue("c", " c=strict/relaxed;"), "canonicalization"},
      {SignatureValue("bh", " bh=not*base64;"), "bh="},
      {SignatureValue("b", " b=A;"), "b="},
      {SignatureValue("", " d=dup.example;"), "duplicate"},
      {" v=1; nonsense", "nonsense"},
  };
  for (const auto& c : cases) {
    auto verdicts = VerifyFields({{"DKIM-Signature", c.value}, {"From", " a@x"}});
    ASSERT_EQ(verdicts.size(), 1u);
    EXPECT_NE(ErrorOf(verdicts[0]).find(c.expect_in_error), std::string::npos)
        << c.value << " -> " << ErrorOf(verdicts[0]);
  }
}

TEST(MessageVerifier, MessageWithoutSignaturesHasNoVerdicts) {
  EXPECT_TRUE(VerifyFields({{"From", " a@x"}, {"Subject", " s"}}, "body\r\n").empty());
}

TEST(MessageVerifier, VerdictsCarryDomainSelectorAlgorithm) {
  auto verdicts = VerifyFields({{"DKIM-Signature", SignatureValue()}, {"From", " a@x"}});
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].domain, "example.com");
  EXPECT_EQ(verdicts[0].selector, "sel");
  EXPECT_EQ(verdicts[0].algorithm, "ed25519-sha256");
  EXPECT_EQ(ErrorOf(verdicts[0]), "test: no key published");
}

TEST(MessageVerifier, WrongBodyHashIsReportedBeforeTheKeyIsLookedUp) {
  bool looked_up = false;
  auto verdicts = VerifyFields({{"DKIM-Signature", SignatureValue()}, {"From", " a@x"}},
                               "a non-empty body\r\n",
                               [&](std::string_view, std::string_view, Algorithm)
                                   -> util::Result<std::shared_ptr<const PublicKey>> {
                                 looked_up = true;
                                 return util::Err(util::ErrorCode::kNotFound, "no key");
                               });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_NE(ErrorOf(verdicts[0]).find("body hash"), std::string::npos) << ErrorOf(verdicts[0]);
  EXPECT_FALSE(looked_up);
}

TEST(MessageVerifier, KeyTypeMustMatchAlgorithm) {
  auto verdicts = VerifyFields(
      {{"DKIM-Signature", SignatureValue()}, {"From", " a@x"}}, "",
      [](std::string_view, std::string_view, Algorithm) -> util::Result<std::shared_ptr<const PublicKey>> {
        // An RSA key published where the signature says ed25519.
        return PublicKey::FromDkim(
            Algorithm::kRsaSha256,
            "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/"
            "J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZy"
            "VYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB");
      });
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_NE(ErrorOf(verdicts[0]).find("a="), std::string::npos) << ErrorOf(verdicts[0]);
}

// RFC 8463 Appendix A: the example message signed with both ed25519-sha256 and rsa-sha256.

std::string ReadTestFile(const std::string& name) {
  auto data = util::ReadFile(std::string(DKIMROTOR_TEST_DATA) + "/rfc8463/" + name);
  EXPECT_TRUE(data.has_value()) << data.error().message;
  return data.has_value() ? *data : std::string();
}

std::string TrimLineEnd(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// The p= value of a one-line DNS key record file.
std::string DnsP(const std::string& name) {
  auto tags = TagList::Parse(TrimLineEnd(ReadTestFile(name)));
  EXPECT_TRUE(tags.has_value());
  if (!tags || !tags->Get("p")) return "";
  return std::string(*tags->Get("p"));
}

class MessageVerifierRfc8463Test : public ::testing::Test {
 protected:
  void SetUp() override {
    message_ = ReadTestFile("signed.eml");
    ASSERT_EQ(message_.size(), 1088u);
    auto end = FindEndOfHeaders(message_);
    ASSERT_TRUE(end.has_value());
    auto fields = ParseHeaderBlock(std::string_view(message_).substr(0, end->header_bytes));
    ASSERT_TRUE(fields.has_value()) << fields.error().message;
    fields_ = std::move(fields).value();
    body_ = message_.substr(end->body_start);
    ed25519_p_ = DnsP("ed25519.dns.txt");
    rsa_p_ = DnsP("rsa.dns.txt");
    ASSERT_EQ(fields_.size(), 7u);
    ASSERT_EQ(FieldKey(fields_[0].name), "dkim-signature");
    ASSERT_EQ(FieldKey(fields_[1].name), "dkim-signature");
  }

  MessageVerifier::KeyLookup Lookup() const {
    return [this](std::string_view domain, std::string_view selector,
                  Algorithm algorithm) -> util::Result<std::shared_ptr<const PublicKey>> {
      if (domain != "football.example.com")
        return util::Err(util::ErrorCode::kNotFound, "unexpected domain");
      if (selector == "brisbane") return PublicKey::FromDkim(algorithm, ed25519_p_);
      if (selector == "test") return PublicKey::FromDkim(algorithm, rsa_p_);
      return util::Err(util::ErrorCode::kNotFound, "unexpected selector");
    };
  }

  std::vector<SignatureVerdict> Verify(const std::vector<HeaderField>& fields,
                                       std::string_view body) const {
    MessageVerifier verifier(Lookup());
    for (const auto& f : fields) verifier.AddHeader(f);
    verifier.EndOfHeaders();
    verifier.AddBody(body);
    return verifier.Finish();
  }

  // What a verifier hashes for the signature in fields_[index] (RFC 6376 3.7).
  std::string HeaderHashInput(size_t index) const {
    const HeaderField& sig = fields_[index];
    auto tags = TagList::Parse(sig.value);
    EXPECT_TRUE(tags.has_value());
    std::vector<std::string> names;
    std::string h = StripFws(*tags->Get("h"));
    for (size_t start = 0; start <= h.size();) {
      size_t colon = h.find(':', start);
      if (colon == std::string::npos) colon = h.size();
      names.push_back(h.substr(start, colon - start));
      start = colon + 1;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"from", "to", "subject", "date", "message-id",
                                               "from", "subject", "date"}));
    std::string input;
    AppendHeaderHashInput(Canon::kRelaxed, fields_, names, sig.name,
                          RemoveSignatureValue(sig.value), &input);
    return input;
  }

  std::string PublishedB(size_t index) const {
    auto tags = TagList::Parse(fields_[index].value);
    EXPECT_TRUE(tags.has_value());
    return StripFws(*tags->Get("b"));
  }

  std::string message_;
  std::vector<HeaderField> fields_;
  std::string body_;
  std::string ed25519_p_;
  std::string rsa_p_;
};

TEST_F(MessageVerifierRfc8463Test, BothSignaturesVerify) {
  auto verdicts = Verify(fields_, body_);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].algorithm, "ed25519-sha256");
  EXPECT_EQ(verdicts[0].selector, "brisbane");
  EXPECT_TRUE(verdicts[0].status.has_value()) << verdicts[0].status.error().message;
  EXPECT_EQ(verdicts[1].algorithm, "rsa-sha256");
  EXPECT_EQ(verdicts[1].selector, "test");
  EXPECT_TRUE(verdicts[1].status.has_value()) << verdicts[1].status.error().message;
}

TEST_F(MessageVerifierRfc8463Test, BodyFedByteByByteVerifies) {
  MessageVerifier verifier(Lookup());
  for (const auto& f : fields_) verifier.AddHeader(f);
  verifier.EndOfHeaders();
  for (char c : body_) verifier.AddBody(std::string_view(&c, 1));
  auto verdicts = verifier.Finish();
  ASSERT_EQ(verdicts.size(), 2u);
  for (const auto& v : verdicts) EXPECT_TRUE(v.status.has_value()) << v.selector;
}

TEST_F(MessageVerifierRfc8463Test, ChangedSubjectFailsBoth) {
  auto fields = fields_;
  ASSERT_EQ(FieldKey(fields[4].name), "subject");
  fields[4].value = " Is dinner ready!";
  auto verdicts = Verify(fields, body_);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_FALSE(verdicts[0].status.has_value());
  EXPECT_FALSE(verdicts[1].status.has_value());
}

TEST_F(MessageVerifierRfc8463Test, ChangedBodyFailsBothOnBodyHash) {
  std::string body = body_;
  body[0] = 'h';
  auto verdicts = Verify(fields_, body);
  ASSERT_EQ(verdicts.size(), 2u);
  for (const auto& v : verdicts) {
    ASSERT_FALSE(v.status.has_value());
    EXPECT_NE(v.status.error().message.find("body hash"), std::string::npos);
  }
}

TEST_F(MessageVerifierRfc8463Test, ChangedEd25519SignatureFailsOnlyIt) {
  auto fields = fields_;
  size_t pos = fields[0].value.find("b=/gCr");
  ASSERT_NE(pos, std::string::npos);
  fields[0].value[pos + 3] = 'h';  // "/gCr" -> "/hCr"
  auto verdicts = Verify(fields, body_);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_FALSE(verdicts[0].status.has_value());
  EXPECT_TRUE(verdicts[1].status.has_value()) << verdicts[1].status.error().message;
}

TEST_F(MessageVerifierRfc8463Test, SeedGivesThePublishedEd25519Key) {
  auto seed = util::Base64Decode(TrimLineEnd(ReadTestFile("ed25519.seed.b64")));
  ASSERT_TRUE(seed.has_value()) << seed.error().message;
  auto key = PrivateKey::FromEd25519Seed(*seed);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->dkim_public_key(), ed25519_p_);
  EXPECT_EQ(ed25519_p_, "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
}

TEST_F(MessageVerifierRfc8463Test, Ed25519SignatureIsReproducedExactly) {
  auto seed = util::Base64Decode(TrimLineEnd(ReadTestFile("ed25519.seed.b64")));
  ASSERT_TRUE(seed.has_value()) << seed.error().message;
  auto key = PrivateKey::FromEd25519Seed(*seed);
  ASSERT_TRUE(key.has_value()) << key.error().message;

  const std::string input = HeaderHashInput(0);
  // The input starts with the first From (bottom-up: the only one) and ends with the field
  // itself, b= empty and no CRLF.
  EXPECT_EQ(input.rfind("from:Joe SixPack <joe@football.example.com>\r\n", 0), 0u) << input;
  EXPECT_TRUE(input.ends_with(
      "bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b="))
      << input;
  auto sig = (*key)->Sign(Sha256(input));
  ASSERT_TRUE(sig.has_value()) << sig.error().message;
  EXPECT_EQ(util::Base64Encode(*sig), PublishedB(0));
  EXPECT_EQ(PublishedB(0),
            "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==");
}

TEST_F(MessageVerifierRfc8463Test, RsaSignatureVerifiesWithThe1024BitKey) {
  auto pub = PublicKey::FromDkim(Algorithm::kRsaSha256, rsa_p_);
  ASSERT_TRUE(pub.has_value()) << pub.error().message;
  EXPECT_EQ((*pub)->bits(), 1024);
  auto sig = util::Base64Decode(PublishedB(1));
  ASSERT_TRUE(sig.has_value());
  const std::string input = HeaderHashInput(1);
  auto ok = (*pub)->Verify(Sha256(input), *sig);
  EXPECT_TRUE(ok.has_value()) << ok.error().message;
  // The same signature does not cover the ed25519 field's input.
  EXPECT_FALSE((*pub)->Verify(Sha256(HeaderHashInput(0)), *sig).has_value());
}

TEST_F(MessageVerifierRfc8463Test, RsaSignatureIsReproducedExactly) {
  // PKCS#1 v1.5 is deterministic: the RFC's private key must give the published b= exactly.
  std::string b64 = TrimLineEnd(ReadTestFile("rsa.key.der.b64"));
  std::string pem = "-----BEGIN RSA PRIVATE KEY-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  pem += "-----END RSA PRIVATE KEY-----\n";
  auto key = PrivateKey::FromPem(pem);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_EQ((*key)->bits(), 1024);
  EXPECT_EQ((*key)->dkim_public_key(), rsa_p_);
  auto sig = (*key)->Sign(Sha256(HeaderHashInput(1)));
  ASSERT_TRUE(sig.has_value()) << sig.error().message;
  EXPECT_EQ(util::Base64Encode(*sig), PublishedB(1));
}

}  // namespace
}  // namespace dkimrotor::signer
