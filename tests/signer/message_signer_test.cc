#include "signer/message_signer.h"

#include "tests/signer/test_keys.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "signer/message_parser.h"
#include "signer/tag_list.h"
#include "signer/verifier.h"
#include "util/file.h"

namespace dkimrotor::signer {
namespace {

constexpr int64_t kTimestamp = 1700000000;

// Folded Subject, trailing white space, an unsigned Received and a body with trailing blank
// lines, so that the canonicalizations differ.
constexpr std::string_view kMessage =
    "Received: from mx.example.net by mx.example.com\r\n"
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner\r\n"
    "   ready?  \r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "X-Unsigned: yes\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?  \r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n"
    "\r\n";

struct SplitMessage {
  std::vector<HeaderField> fields;
  std::string body;
};

SplitMessage Split(std::string_view message) {
  SplitMessage out;
  auto end = FindEndOfHeaders(message);
  EXPECT_TRUE(end.has_value()) << "no end of headers";
  if (!end) return out;
  auto fields = ParseHeaderBlock(message.substr(0, end->header_bytes));
  EXPECT_TRUE(fields.has_value()) << fields.error().message;
  if (fields) out.fields = std::move(fields).value();
  out.body = std::string(message.substr(end->body_start));
  return out;
}

using testing::Rfc8463RsaPem;

std::shared_ptr<const PrivateKey> OrNull(util::Result<std::shared_ptr<const PrivateKey>> key) {
  EXPECT_TRUE(key.has_value()) << key.error().message;
  return key.has_value() ? *key : nullptr;
}

// The private key behind each selector the tests use; made on first use.
std::shared_ptr<const PrivateKey> PrivateKeyFor(std::string_view selector) {
  if (selector == "rsa") {
    static const auto key = OrNull(PrivateKey::FromPem(Rfc8463RsaPem()));
    return key;
  }
  if (selector == "ed") {
    static const auto key = OrNull(PrivateKey::Generate(Algorithm::kEd25519Sha256, 0));
    return key;
  }
  if (selector == "rsa2048") {
    static const auto key = OrNull(PrivateKey::Generate(Algorithm::kRsaSha256, 2048));
    return key;
  }
  return nullptr;
}

class MessageSignerTest : public ::testing::Test {
 protected:
  static std::shared_ptr<const SigningKey> Key(const std::string& selector,
                                               Canonicalization canon = {}) {
    auto private_key = PrivateKeyFor(selector);
    EXPECT_NE(private_key, nullptr) << selector;
    auto key = SigningKey::Create({"football.example.com", selector, private_key, canon});
    EXPECT_TRUE(key.has_value()) << key.error().message;
    return key.has_value() ? *key : nullptr;
  }

  // Signs `message`, feeding the body in chunks of `chunk` bytes (0: all at once).
  std::vector<std::string> Sign(std::vector<std::shared_ptr<const SigningKey>> keys,
                                std::string_view message, MessageOptions options = {},
                                size_t chunk = 0) {
    SplitMessage m = Split(message);
    MessageSigner signer(std::move(keys), &selector_, options);
    for (auto& f : m.fields) signer.AddHeader(f);
    auto st = signer.EndOfHeaders();
    EXPECT_TRUE(st.has_value()) << st.error().message;
    if (chunk == 0) chunk = m.body.size() + 1;
    for (size_t i = 0; i < m.body.size(); i += chunk)
      signer.AddBody(std::string_view(m.body).substr(i, chunk));
    auto out = signer.Finish();
    EXPECT_TRUE(out.has_value()) << out.error().message;
    return out.has_value() ? *out : std::vector<std::string>{};
  }

  static std::string Prepend(const std::vector<std::string>& signatures, std::string_view message) {
    std::string out;
    for (const auto& s : signatures) out += s + "\r\n";
    out += message;
    return out;
  }

  static std::vector<SignatureVerdict> Verify(std::string_view signed_message) {
    MessageVerifier verifier([](std::string_view domain, std::string_view selector,
                                Algorithm algorithm)
                                 -> util::Result<std::shared_ptr<const PublicKey>> {
      EXPECT_EQ(domain, "football.example.com");
      auto key = PrivateKeyFor(selector);
      if (!key) return util::Err(util::ErrorCode::kNotFound, "no key " + std::string(selector));
      return PublicKey::FromDkim(algorithm, key->dkim_public_key());
    });
    SplitMessage m = Split(signed_message);
    for (auto& f : m.fields) verifier.AddHeader(f);
    verifier.EndOfHeaders();
    verifier.AddBody(m.body);
    return verifier.Finish();
  }

  static void ExpectAllPass(const std::vector<SignatureVerdict>& verdicts, size_t count) {
    ASSERT_EQ(verdicts.size(), count);
    for (const auto& v : verdicts)
      EXPECT_TRUE(v.status.has_value()) << v.selector << ": " << v.status.error().message;
  }

  static TagList Tags(const std::string& field) {
    constexpr std::string_view kPrefix = "DKIM-Signature:";
    EXPECT_EQ(field.rfind(kPrefix, 0), 0u) << field;
    auto tags = TagList::Parse(std::string_view(field).substr(kPrefix.size()));
    EXPECT_TRUE(tags.has_value()) << tags.error().message;
    return tags.has_value() ? *tags : TagList();
  }

  HeaderSelector selector_{HeaderPolicy::Default()};
};

TEST_F(MessageSignerTest, NoFromHeaderIsRefused) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("Subject", " no from");
  signer.AddHeader("Sender", " a@x");
  auto st = signer.EndOfHeaders();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message, "no From header");
}

TEST_F(MessageSignerTest, TwoFromHeadersAreRefused) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("From", " a@x");
  signer.AddHeader("Subject", " s");
  signer.AddHeader("FROM ", " b@x");  // case and WSP before the colon do not hide it
  auto st = signer.EndOfHeaders();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.error().message, "2 From headers");
}

TEST_F(MessageSignerTest, FinishWithoutEndOfHeadersStillChecksFrom) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("Subject", " s");
  auto out = signer.Finish();
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().message, "no From header");
}

// From is always signed, so a From field verifiers read differently leaves the message unsigned.
TEST_F(MessageSignerTest, AFromFieldVerifiersReadDifferentlyIsRefused) {
  for (const char* from : {"\r Alice <a@x>", " Alice <a@x>\r", " \vAlice <a@x>"}) {
    MessageSigner signer({Key("ed")}, &selector_, {});
    signer.AddHeader("From", from);
    auto st = signer.EndOfHeaders();
    ASSERT_FALSE(st.has_value()) << from;
    EXPECT_NE(st.error().message.find("the From field holds"), std::string::npos) << st.error().message;
  }
}

// The MTA writes each line of a field out as a line: after a line break without white space
// verifiers see other fields than the ones signed.
TEST_F(MessageSignerTest, ALineBreakInsideAFieldIsRefused) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("From", " a@x");
  signer.AddHeader("Subject", " x\r\nBcc: evil@y");
  auto st = signer.EndOfHeaders();
  ASSERT_FALSE(st.has_value());
  EXPECT_EQ(st.error().message,
            "header field 2 (subject) holds a line break not followed by white space: the MTA "
            "writes it out as more lines than one field");
}

TEST_F(MessageSignerTest, AFieldWithoutAValidNameIsRefused) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("From", " a@x");
  signer.AddHeader("Subj\xc3\xa9" "ct", " x");
  auto st = signer.EndOfHeaders();
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message.find("header field 2 has no valid name"), std::string::npos);
}

// A Subject with a bare CR stays out of h=, and the rest of the message still verifies.
TEST_F(MessageSignerTest, AnAmbiguousFieldIsLeftOutAndTheSignatureVerifies) {
  const std::string message =
      "From: Joe <joe@football.example.com>\r\nSubject: x\rSubject: y\r\nDate:\r Mon, 4 Mar 2024\r\n"
      "To: a@b\r\n\r\nbody\r\n";
  auto signatures = Sign({Key("ed")}, message);
  ASSERT_EQ(signatures.size(), 1u);
  const std::string h(Tags(signatures[0]).Get("h").value_or(""));
  EXPECT_EQ(h.find("subject"), std::string::npos) << h;
  EXPECT_EQ(h.find("date"), std::string::npos) << h;
  EXPECT_NE(h.find("to"), std::string::npos) << h;
  ExpectAllPass(Verify(Prepend(signatures, message)), 1);
}

TEST_F(MessageSignerTest, NoKeysIsRefused) {
  MessageSigner signer({}, &selector_, {});
  signer.AddHeader("From", " a@x");
  EXPECT_FALSE(signer.EndOfHeaders().has_value());
}

TEST_F(MessageSignerTest, DualSignedMessageVerifies) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage, {.timestamp = kTimestamp, .lifetime = std::nullopt});
  ASSERT_EQ(sigs.size(), 2u);
  EXPECT_EQ(*Tags(sigs[0]).Get("a"), "rsa-sha256");
  EXPECT_EQ(*Tags(sigs[1]).Get("a"), "ed25519-sha256");
  for (const auto& s : sigs) {
    EXPECT_EQ(s.rfind("DKIM-Signature: v=1;", 0), 0u);
    EXPECT_FALSE(s.ends_with("\r\n"));
  }
  auto verdicts = Verify(Prepend(sigs, kMessage));
  ExpectAllPass(verdicts, 2);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_EQ(verdicts[0].selector, "rsa");
  EXPECT_EQ(verdicts[0].algorithm, "rsa-sha256");
  EXPECT_EQ(verdicts[1].selector, "ed");
  EXPECT_EQ(verdicts[1].domain, "football.example.com");
}

TEST_F(MessageSignerTest, Rsa2048SignatureVerifies) {
  auto sigs = Sign({Key("rsa2048"), Key("ed")}, kMessage, {.timestamp = kTimestamp, .lifetime = 600});
  ASSERT_EQ(sigs.size(), 2u);
  // 256 signature bytes are 344 base64 characters, spread over several folded lines.
  EXPECT_EQ(StripFws(*Tags(sigs[0]).Get("b")).size(), 344u);
  ExpectAllPass(Verify(Prepend(sigs, kMessage)), 2);
}

TEST_F(MessageSignerTest, DualSignaturesShareTheBodyHash) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage);
  ASSERT_EQ(sigs.size(), 2u);
  const TagList tags0 = Tags(sigs[0]);
  const TagList tags1 = Tags(sigs[1]);
  auto bh0 = tags0.Get("bh");
  auto bh1 = tags1.Get("bh");
  ASSERT_TRUE(bh0.has_value() && bh1.has_value());
  EXPECT_EQ(StripFws(*bh0), StripFws(*bh1));
  EXPECT_EQ(StripFws(*bh0).size(), 44u);
}

TEST_F(MessageSignerTest, DifferentBodyCanonicalizationsHashDifferently) {
  auto sigs = Sign({Key("rsa", {Canon::kRelaxed, Canon::kSimple}),
                    Key("ed", {Canon::kRelaxed, Canon::kRelaxed})},
                   kMessage);
  ASSERT_EQ(sigs.size(), 2u);
  EXPECT_NE(StripFws(*Tags(sigs[0]).Get("bh")), StripFws(*Tags(sigs[1]).Get("bh")));
  ExpectAllPass(Verify(Prepend(sigs, kMessage)), 2);
}

TEST_F(MessageSignerTest, AllFourCanonicalizationsVerify) {
  for (Canon header : {Canon::kSimple, Canon::kRelaxed}) {
    for (Canon body : {Canon::kSimple, Canon::kRelaxed}) {
      Canonicalization canon{header, body};
      SCOPED_TRACE(FormatCanonicalization(canon));
      auto sigs = Sign({Key("rsa", canon), Key("ed", canon)}, kMessage);
      ASSERT_EQ(sigs.size(), 2u);
      EXPECT_EQ(*Tags(sigs[0]).Get("c"), FormatCanonicalization(canon));
      ExpectAllPass(Verify(Prepend(sigs, kMessage)), 2);
    }
  }
}

TEST_F(MessageSignerTest, EmptyBodyVerifies) {
  constexpr std::string_view kEmpty = "From: a@football.example.com\r\nSubject: s\r\n\r\n";
  for (Canon body : {Canon::kSimple, Canon::kRelaxed}) {
    auto sigs = Sign({Key("ed", {Canon::kRelaxed, body})}, kEmpty);
    ExpectAllPass(Verify(Prepend(sigs, kEmpty)), 1);
  }
}

TEST_F(MessageSignerTest, ChangedBodyByteFailsTheBodyHash) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage);
  std::string tampered = Prepend(sigs, kMessage);
  size_t pos = tampered.find("hungry");
  ASSERT_NE(pos, std::string::npos);
  tampered[pos] = 'H';
  auto verdicts = Verify(tampered);
  ASSERT_EQ(verdicts.size(), 2u);
  for (const auto& v : verdicts) {
    ASSERT_FALSE(v.status.has_value());
    EXPECT_NE(v.status.error().message.find("body hash"), std::string::npos)
        << v.status.error().message;
  }
}

TEST_F(MessageSignerTest, ChangedSignedHeaderFailsTheSignature) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage);
  std::string tampered = Prepend(sigs, kMessage);
  size_t pos = tampered.find("Is dinner");
  ASSERT_NE(pos, std::string::npos);
  tampered[pos + 3] = 'D';
  auto verdicts = Verify(tampered);
  ASSERT_EQ(verdicts.size(), 2u);
  for (const auto& v : verdicts) {
    ASSERT_FALSE(v.status.has_value()) << v.selector;
    EXPECT_EQ(v.status.error().message.find("body hash"), std::string::npos);
    EXPECT_NE(v.status.error().message.find("signature does not verify"), std::string::npos)
        << v.status.error().message;
  }
}

TEST_F(MessageSignerTest, ChangedUnsignedHeaderStillVerifies) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage);
  std::string changed = Prepend(sigs, kMessage);
  size_t pos = changed.find("X-Unsigned: yes");
  ASSERT_NE(pos, std::string::npos);
  changed.replace(pos, 15, "X-Unsigned: no, changed");
  changed.insert(0, "Received: from relay.example.org\r\n");
  ExpectAllPass(Verify(changed), 2);
}

TEST_F(MessageSignerTest, RelaxedSurvivesRefoldingOfSignedHeaders) {
  auto sigs = Sign({Key("ed", {Canon::kRelaxed, Canon::kRelaxed}),
                    Key("rsa", {Canon::kSimple, Canon::kSimple})},
                   kMessage);
  std::string refolded = Prepend(sigs, kMessage);
  size_t pos = refolded.find("Is dinner\r\n   ready?  ");
  ASSERT_NE(pos, std::string::npos);
  refolded.replace(pos, 22, "Is  dinner ready?");
  auto verdicts = Verify(refolded);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_TRUE(verdicts[0].status.has_value()) << verdicts[0].status.error().message;
  EXPECT_FALSE(verdicts[1].status.has_value());  // simple header canonicalization sees the change
}

TEST_F(MessageSignerTest, OversignedFieldsCannotBeAdded) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage);
  const std::string signed_message = Prepend(sigs, kMessage);
  ExpectAllPass(Verify(signed_message), 2);
  const size_t body_sep = signed_message.find("\r\n\r\n") + 2;
  const size_t after_sigs = signed_message.find("Received:");
  for (std::string_view extra : {"From: Mallory <m@evil.example>\r\n", "Subject: Free money\r\n",
                                 "Date: Sat, 12 Jul 2003 00:00:00 +0000\r\n",
                                 "Cc: someone@evil.example\r\n"}) {
    for (size_t pos : {after_sigs, body_sep}) {
      std::string tampered = signed_message;
      tampered.insert(pos, extra);
      SCOPED_TRACE(std::string(extra) + (pos == body_sep ? " at the bottom" : " at the top"));
      auto verdicts = Verify(tampered);
      ASSERT_EQ(verdicts.size(), 2u);
      for (const auto& v : verdicts) EXPECT_FALSE(v.status.has_value()) << v.selector;
    }
  }
}

TEST_F(MessageSignerTest, OversigningListsEachNameOnceMore) {
  auto sigs = Sign({Key("ed")}, kMessage);
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_EQ(StripFws(*Tags(sigs[0]).Get("h")),
            "from:to:subject:date:message-id:"
            "from:subject:date:to:cc:reply-to:message-id");
}

TEST_F(MessageSignerTest, TimestampAndExpirationWhenSet) {
  auto sigs = Sign({Key("ed")}, kMessage, {.timestamp = kTimestamp, .lifetime = 86400});
  ASSERT_EQ(sigs.size(), 1u);
  TagList tags = Tags(sigs[0]);
  ASSERT_TRUE(tags.Get("t").has_value());
  ASSERT_TRUE(tags.Get("x").has_value());
  EXPECT_EQ(*tags.Get("t"), "1700000000");
  EXPECT_EQ(*tags.Get("x"), "1700086400");
  ExpectAllPass(Verify(Prepend(sigs, kMessage)), 1);
}

TEST_F(MessageSignerTest, NoTimestampOrExpirationWhenUnset) {
  auto sigs = Sign({Key("ed")}, kMessage);
  ASSERT_EQ(sigs.size(), 1u);
  EXPECT_FALSE(Tags(sigs[0]).Get("t").has_value());
  EXPECT_FALSE(Tags(sigs[0]).Get("x").has_value());
  // A timestamp alone gives t= without x=.
  auto timestamp_only = Sign({Key("ed")}, kMessage, {.timestamp = kTimestamp, .lifetime = std::nullopt});
  ASSERT_EQ(timestamp_only.size(), 1u);
  EXPECT_TRUE(Tags(timestamp_only[0]).Get("t").has_value());
  EXPECT_FALSE(Tags(timestamp_only[0]).Get("x").has_value());
}

// x= must lie after t= (RFC 6376 3.5): a lifetime with no timestamp, a non-positive one, or one
// that overflows is refused rather than silently dropped or wrapped.
TEST_F(MessageSignerTest, RefusesAnExpirationItCannotWrite) {
  SplitMessage m = Split(kMessage);
  const MessageOptions bad[] = {{.timestamp = std::nullopt, .lifetime = 3600},
                                {.timestamp = kTimestamp, .lifetime = 0},
                                {.timestamp = kTimestamp, .lifetime = -5},
                                {.timestamp = kTimestamp, .lifetime = INT64_MAX}};
  for (const auto& options : bad) {
    MessageSigner signer({Key("ed")}, &selector_, options);
    for (auto& f : m.fields) signer.AddHeader(f);
    ASSERT_TRUE(signer.EndOfHeaders().has_value());
    signer.AddBody(m.body);
    auto out = signer.Finish();
    ASSERT_FALSE(out.has_value());
    EXPECT_NE(out.error().message.find("lifetime"), std::string::npos) << out.error().message;
  }
}

// A caller that ignores EndOfHeaders()'s refusal still gets no signature from Finish().
TEST_F(MessageSignerTest, FinishRepeatsTheHeaderRefusal) {
  MessageSigner signer({Key("ed")}, &selector_, {});
  signer.AddHeader("To", " someone@example.net");
  ASSERT_FALSE(signer.EndOfHeaders().has_value());
  signer.AddBody("body\r\n");
  auto out = signer.Finish();
  ASSERT_FALSE(out.has_value());
  EXPECT_EQ(out.error().message, "no From header");
}

TEST_F(MessageSignerTest, ByteChunksGiveTheSameSignatures) {
  const MessageOptions options{.timestamp = kTimestamp, .lifetime = 600};
  for (Canon body : {Canon::kSimple, Canon::kRelaxed}) {
    Canonicalization canon{Canon::kRelaxed, body};
    auto whole = Sign({Key("rsa", canon), Key("ed", canon)}, kMessage, options);
    auto bytes = Sign({Key("rsa", canon), Key("ed", canon)}, kMessage, options, 1);
    auto sevens = Sign({Key("rsa", canon), Key("ed", canon)}, kMessage, options, 7);
    ASSERT_EQ(whole.size(), 2u);
    EXPECT_EQ(bytes, whole);
    EXPECT_EQ(sevens, whole);
  }
}

TEST_F(MessageSignerTest, SignaturesFoldWithin76Columns) {
  auto sigs = Sign({Key("rsa"), Key("ed")}, kMessage, {.timestamp = kTimestamp, .lifetime = 600});
  for (const auto& s : sigs) {
    size_t start = 0;
    while (true) {
      size_t end = s.find("\r\n", start);
      std::string_view line = std::string_view(s).substr(start, end == std::string::npos ? s.npos : end - start);
      EXPECT_LE(line.size(), 76u) << line;
      if (end == std::string::npos) break;
      start = end + 2;
    }
  }
}

TEST(AppendHeaderHashInput, RelaxedHandWorked) {
  std::vector<HeaderField> fields = {
      {"From", " Joe <joe@x>"}, {"Subject ", " one\r\n  two "}, {"X-Other", " o"}};
  std::string out;
  AppendHeaderHashInput(Canon::kRelaxed, fields, {"from", "subject", "from"}, "DKIM-Signature",
                        " v=1; h=from:subject:from;\r\n b=", &out);
  EXPECT_EQ(out,
            "from:Joe <joe@x>\r\n"
            "subject:one two\r\n"
            "dkim-signature:v=1; h=from:subject:from; b=");
}

TEST(AppendHeaderHashInput, SimpleHandWorked) {
  std::vector<HeaderField> fields = {
      {"From", " Joe <joe@x>"}, {"Subject ", " one\r\n  two "}, {"X-Other", " o"}};
  std::string out = "kept:";
  AppendHeaderHashInput(Canon::kSimple, fields, {"subject", "from"}, "DKIM-Signature",
                        " v=1; h=subject:from;\r\n b=", &out);
  EXPECT_EQ(out,
            "kept:"
            "Subject : one\r\n  two \r\n"
            "From: Joe <joe@x>\r\n"
            "DKIM-Signature: v=1; h=subject:from;\r\n b=");
}

}  // namespace
}  // namespace dkimrotor::signer
