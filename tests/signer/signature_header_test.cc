#include "signer/signature_header.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "signer/tag_list.h"

namespace dkimrotor::signer {
namespace {

// A 2048-bit RSA signature is 256 bytes: 344 base64 characters.
std::string FakeSignature(size_t chars) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string s;
  for (size_t i = 0; i < chars; ++i) s += kAlphabet[(i * 7) % 64];
  return s;
}

SignatureHeaderWriter::Tags TypicalTags() {
  SignatureHeaderWriter::Tags tags;
  tags.algorithm = "rsa-sha256";
  tags.canonicalization = "relaxed/relaxed";
  tags.domain = "example.com";
  tags.selector = "s2024";
  tags.timestamp = 1700000000;
  tags.expiration = 1700086400;
  tags.headers = {"from", "to", "subject", "date", "message-id", "from", "subject", "date", "to"};
  tags.body_hash = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
  return tags;
}

std::vector<std::string> Lines(const std::string& field) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (true) {
    size_t crlf = field.find("\r\n", start);
    lines.push_back(field.substr(start, crlf == std::string::npos ? std::string::npos : crlf - start));
    if (crlf == std::string::npos) break;
    start = crlf + 2;
  }
  return lines;
}

void ExpectFoldedWithin76Columns(const std::string& field) {
  auto lines = Lines(field);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_LE(lines[i].size(), 76u) << "line " << i << ": " << lines[i];
    EXPECT_FALSE(lines[i].empty()) << "line " << i;
    if (i > 0) {
      EXPECT_TRUE(lines[i][0] == ' ' || lines[i][0] == '\t') << "line " << i;
    }
    EXPECT_EQ(lines[i].find('\r'), std::string::npos) << "line " << i;
    EXPECT_EQ(lines[i].find('\n'), std::string::npos) << "line " << i;
  }
}

std::string ValueOf(const std::string& field) {
  EXPECT_EQ(field.rfind("DKIM-Signature:", 0), 0u);
  return field.substr(std::string("DKIM-Signature:").size());
}

TEST(SignatureHeaderWriter, TagsComeInFixedOrder) {
  SignatureHeaderWriter writer(TypicalTags());
  auto tags = TagList::Parse(ValueOf(writer.Complete(FakeSignature(344))));
  ASSERT_TRUE(tags.has_value()) << tags.error().message;
  std::vector<std::string> order;
  for (const auto& [name, value] : tags->tags()) order.push_back(name);
  EXPECT_EQ(order, (std::vector<std::string>{"v", "a", "c", "d", "s", "t", "x", "h", "bh", "b"}));
  EXPECT_EQ(*tags->Get("v"), "1");
  EXPECT_EQ(*tags->Get("a"), "rsa-sha256");
  EXPECT_EQ(*tags->Get("c"), "relaxed/relaxed");
  EXPECT_EQ(*tags->Get("d"), "example.com");
  EXPECT_EQ(*tags->Get("s"), "s2024");
  EXPECT_EQ(*tags->Get("t"), "1700000000");
  EXPECT_EQ(*tags->Get("x"), "1700086400");
  EXPECT_EQ(StripFws(*tags->Get("h")), "from:to:subject:date:message-id:from:subject:date:to");
  EXPECT_EQ(StripFws(*tags->Get("bh")), "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
}

TEST(SignatureHeaderWriter, OmitsTimestampAndExpirationWhenUnset) {
  auto t = TypicalTags();
  t.timestamp.reset();
  t.expiration.reset();
  SignatureHeaderWriter writer(t);
  auto tags = TagList::Parse(ValueOf(writer.Complete("AAAA")));
  ASSERT_TRUE(tags.has_value()) << tags.error().message;
  std::vector<std::string> order;
  for (const auto& [name, value] : tags->tags()) order.push_back(name);
  EXPECT_EQ(order, (std::vector<std::string>{"v", "a", "c", "d", "s", "h", "bh", "b"}));
}

TEST(SignatureHeaderWriter, StartsWithVersionAfterOneSpace) {
  SignatureHeaderWriter writer(TypicalTags());
  EXPECT_EQ(writer.unsigned_value().rfind(" v=1; a=rsa-sha256; c=relaxed/relaxed;", 0), 0u)
      << writer.unsigned_value();
  EXPECT_EQ(writer.Complete("AAAA").rfind("DKIM-Signature: v=1;", 0), 0u);
}

TEST(SignatureHeaderWriter, EveryLineFitsIn76Columns) {
  for (size_t sig_chars : {0u, 4u, 88u, 344u, 684u, 1000u}) {
    SignatureHeaderWriter writer(TypicalTags());
    std::string field = writer.Complete(FakeSignature(sig_chars));
    SCOPED_TRACE("signature of " + std::to_string(sig_chars) + " chars");
    ExpectFoldedWithin76Columns(field);
  }
}

TEST(SignatureHeaderWriter, SignatureRejoinsToTheInputAfterRemovingFws) {
  for (size_t sig_chars : {4u, 88u, 344u, 684u}) {
    const std::string sig = FakeSignature(sig_chars);
    SignatureHeaderWriter writer(TypicalTags());
    std::string field = writer.Complete(sig);
    auto tags = TagList::Parse(ValueOf(field));
    ASSERT_TRUE(tags.has_value()) << tags.error().message;
    ASSERT_TRUE(tags->Get("b").has_value());
    EXPECT_EQ(StripFws(*tags->Get("b")), sig);
    // Complete() is the unsigned value with the signature appended, folds aside.
    EXPECT_EQ(StripFws(field), StripFws("DKIM-Signature:" + writer.unsigned_value() + sig));
  }
}

TEST(SignatureHeaderWriter, UnsignedValueEndsWithEmptyB) {
  SignatureHeaderWriter writer(TypicalTags());
  const std::string& v = writer.unsigned_value();
  ASSERT_GE(v.size(), 2u);
  EXPECT_EQ(v.substr(v.size() - 2), "b=");
  // b= is the last tag and its own tag, not the end of "bh=".
  EXPECT_NE(v.substr(v.size() - 3), "bh=");
  EXPECT_EQ(v.find("b=", v.find("bh=") + 3), v.size() - 2);
  // The complete field is exactly the unsigned value followed by the (folded) signature.
  EXPECT_EQ(writer.Complete("").substr(std::string("DKIM-Signature:").size()), v);
  EXPECT_EQ(writer.Complete("AAAA"), "DKIM-Signature:" + v + "AAAA");
}

TEST(SignatureHeaderWriter, LongHeaderListsFoldOnlyAfterColons) {
  auto t = TypicalTags();
  t.headers.clear();
  for (int i = 0; i < 40; ++i) t.headers.push_back("x-header-number-" + std::to_string(i));
  SignatureHeaderWriter writer(t);
  std::string field = writer.Complete(FakeSignature(344));
  ExpectFoldedWithin76Columns(field);

  size_t h = field.find(" h=");
  ASSERT_NE(h, std::string::npos);
  size_t h_end = field.find(';', h);
  ASSERT_NE(h_end, std::string::npos);
  std::string h_value = field.substr(h, h_end - h);
  size_t folds = 0;
  for (size_t pos = h_value.find("\r\n"); pos != std::string::npos; pos = h_value.find("\r\n", pos + 2)) {
    ++folds;
    ASSERT_GT(pos, 0u);
    EXPECT_EQ(h_value[pos - 1], ':') << "fold inside h= not after a colon: " << h_value;
  }
  EXPECT_GE(folds, 5u);  // 40 names of ~19 characters do not fit on fewer lines
  std::string joined;
  for (size_t i = 0; i < t.headers.size(); ++i) joined += (i ? ":" : "") + t.headers[i];
  EXPECT_EQ(StripFws(h_value.substr(3)), joined);
}

TEST(SignatureHeaderWriter, NeverEmitsBodyLength) {
  SignatureHeaderWriter writer(TypicalTags());
  auto tags = TagList::Parse(ValueOf(writer.Complete(FakeSignature(344))));
  ASSERT_TRUE(tags.has_value()) << tags.error().message;
  EXPECT_FALSE(tags->Get("l").has_value());
  EXPECT_EQ(writer.unsigned_value().find("l="), std::string::npos);
}

TEST(SignatureHeaderWriter, Ed25519SignatureFitsItsOwnLines) {
  auto t = TypicalTags();
  t.algorithm = "ed25519-sha256";
  SignatureHeaderWriter writer(t);
  const std::string sig = FakeSignature(88);
  std::string field = writer.Complete(sig);
  ExpectFoldedWithin76Columns(field);
  auto lines = Lines(field);
  // b= starts a line of its own.
  bool found = false;
  for (const auto& line : lines) found |= line.rfind(" b=", 0) == 0;
  EXPECT_TRUE(found) << field;
}

}  // namespace
}  // namespace dkimrotor::signer
