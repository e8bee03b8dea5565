#include "signer/header_field.h"

#include <gtest/gtest.h>

#include <string>

#include "signer/message_parser.h"

namespace dkimrotor::signer {
namespace {

std::string Canonical(Canon mode, std::string_view name, std::string_view value) {
  std::string out;
  AppendCanonicalHeader(mode, name, value, &out);
  return out;
}

std::string Relaxed(std::string_view name, std::string_view value) {
  return Canonical(Canon::kRelaxed, name, value);
}

std::string Simple(std::string_view name, std::string_view value) {
  return Canonical(Canon::kSimple, name, value);
}

// RFC 6376 section 3.4.5: "A: X" and "B : Y<HTAB><CRLF><SP>Z<SP><SP>" (the fold is CRLF HTAB
// in our input; the RFC example folds with SP, both are WSP) become "a:X" and "b:Y Z".
TEST(AppendCanonicalHeader, RelaxedRfc6376Example) {
  EXPECT_EQ(Relaxed("A", " X"), "a:X\r\n");
  EXPECT_EQ(Relaxed("B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
  EXPECT_EQ(Relaxed("B ", " Y\t\r\n Z  "), "b:Y Z\r\n");
}

TEST(AppendCanonicalHeader, SimpleRfc6376ExampleKeepsEveryByte) {
  EXPECT_EQ(Simple("A", " X"), "A: X\r\n");
  EXPECT_EQ(Simple("B ", " Y\t\r\n\tZ  "), "B : Y\t\r\n\tZ  \r\n");
}

TEST(AppendCanonicalHeader, SimpleKeepsWhitespaceBeforeColon) {
  EXPECT_EQ(Simple("Subject  ", " x"), "Subject  : x\r\n");
  EXPECT_EQ(Relaxed("Subject  ", " x"), "subject:x\r\n");
}

TEST(AppendCanonicalHeader, RelaxedCollapsesRunsAndTrims) {
  EXPECT_EQ(Relaxed("Subject", "  a \t b\t\tc  "), "subject:a b c\r\n");
  EXPECT_EQ(Relaxed("Subject", "\ta"), "subject:a\r\n");
  EXPECT_EQ(Relaxed("SUBJECT", "NoSpace"), "subject:NoSpace\r\n");
}

TEST(AppendCanonicalHeader, RelaxedUnfoldsMultipleContinuations) {
  EXPECT_EQ(Relaxed("References", " <a@x>\r\n <b@x>\r\n\t<c@x>"),
            "references:<a@x> <b@x> <c@x>\r\n");
  // A continuation line of white space only adds nothing but one separating SP.
  EXPECT_EQ(Relaxed("Subject", " a\r\n   \r\n b"), "subject:a b\r\n");
  // A fold right after the colon is leading white space and goes.
  EXPECT_EQ(Relaxed("Subject", "\r\n b"), "subject:b\r\n");
}

TEST(AppendCanonicalHeader, RelaxedKeepsValueCase) {
  EXPECT_EQ(Relaxed("X-Mixed", " MiXeD CaSe"), "x-mixed:MiXeD CaSe\r\n");
}

TEST(AppendCanonicalHeader, EmptyValues) {
  EXPECT_EQ(Relaxed("X-Empty", ""), "x-empty:\r\n");
  EXPECT_EQ(Relaxed("X-Empty", " "), "x-empty:\r\n");
  EXPECT_EQ(Relaxed("X-Empty", " \t \r\n "), "x-empty:\r\n");
  EXPECT_EQ(Simple("X-Empty", ""), "X-Empty:\r\n");
  EXPECT_EQ(Simple("X-Empty", " "), "X-Empty: \r\n");
}

TEST(AppendCanonicalHeader, EightBitAndNulBytesSurvive) {
  const std::string value = std::string(" caf\xc3\xa9 \x00 \xff", 10);
  const std::string relaxed_expected = std::string("x-raw:caf\xc3\xa9 \x00 \xff\r\n", 17);
  EXPECT_EQ(Relaxed("X-Raw", value), relaxed_expected);
  EXPECT_EQ(Simple("X-Raw", value), "X-Raw:" + value + "\r\n");
  // Bytes >= 0x80 are not letters to lowercase.
  EXPECT_EQ(Relaxed("X-\xc3\x89", " v"), "x-\xc3\x89:v\r\n");
}

TEST(AppendCanonicalHeader, AppendsToExistingOutput) {
  std::string out = "previous\r\n";
  AppendCanonicalHeader(Canon::kRelaxed, "A", " X", &out);
  AppendCanonicalHeader(Canon::kSimple, "B", " Y", &out);
  EXPECT_EQ(out, "previous\r\na:X\r\nB: Y\r\n");
}

TEST(FieldKey, LowercasesAndStripsWhitespaceBeforeColon) {
  EXPECT_EQ(FieldKey("From"), "from");
  EXPECT_EQ(FieldKey("SUBJECT"), "subject");
  EXPECT_EQ(FieldKey("Subject  "), "subject");
  EXPECT_EQ(FieldKey("Subject\t \t"), "subject");
  EXPECT_EQ(FieldKey("List-ID"), "list-id");
  EXPECT_EQ(FieldKey("DKIM-Signature"), "dkim-signature");
  EXPECT_EQ(FieldKey(""), "");
  EXPECT_EQ(FieldKey("  "), "");
}

// The milter's path (IsFieldName on the name libmilter hands over) and the `sign` path (the
// parser's idea of where a field starts) must agree on every byte, 8-bit and NUL included.
TEST(IsFieldName, AgreesWithTheParserOnEveryByte) {
  for (int b = 0; b < 256; ++b) {
    if (b == '\n' || b == ':') continue;  // a line end, or the colon that ends the name
    const std::string name = std::string("X") + static_cast<char>(b) + "Y";
    const std::string message = "From: a@x\r\n" + name + ": v\r\n\r\nbody\r\n";
    auto end = FindEndOfHeaders(message, /*at_eof=*/true);
    ASSERT_TRUE(end.has_value());
    const bool parser_sees_a_field = !end->separator_missing;
    EXPECT_EQ(IsFieldName(name), parser_sees_a_field) << "byte " << b;
  }
  for (size_t length : {kMaxFieldNameLength, kMaxFieldNameLength + 1}) {
    const std::string name(length, 'x');
    auto end = FindEndOfHeaders("From: a@x\r\n" + name + ": v\r\n\r\n", /*at_eof=*/true);
    ASSERT_TRUE(end.has_value());
    EXPECT_EQ(IsFieldName(name), !end->separator_missing) << length;
  }
  EXPECT_TRUE(IsFieldName("Subject \t"));  // obsolete white space before the colon
  EXPECT_FALSE(IsFieldName(" Subject"));
  EXPECT_FALSE(IsFieldName(""));
  EXPECT_FALSE(IsFieldName("Subj\xc3\xa9" "ct"));
}

TEST(CheckField, PlainFieldsFoldsAndEightBitValuesAreSignable) {
  EXPECT_EQ(CheckField("Subject", " hello").reading, FieldReading::kPlain);
  EXPECT_EQ(CheckField("Subject", " a\r\n b\r\n\tc").reading, FieldReading::kPlain);
  EXPECT_EQ(CheckField("Subject", " caf\xc3\xa9").reading, FieldReading::kPlain);
  EXPECT_EQ(CheckField("Subject ", " x").reading, FieldReading::kPlain);
}

TEST(CheckField, BytesVerifiersReadDifferentlyMakeItAmbiguous) {
  for (const char* value : {" x\rSubject: y", "\r Mon, 04 Mar 2024", " x\r", " \vx", " x\f"})
    EXPECT_EQ(CheckField("Subject", value).reading, FieldReading::kAmbiguous) << value;
  EXPECT_EQ(CheckField("Subject", std::string(" a\0b", 4)).reading, FieldReading::kAmbiguous);
  EXPECT_EQ(CheckField("List-X;y", " 1").reading, FieldReading::kAmbiguous);
  EXPECT_STREQ(CheckField("List-X;y", " 1").why, "a ';' in its name");
}

TEST(CheckField, ALineBreakWithoutWhiteSpaceAfterItIsBroken) {
  EXPECT_EQ(CheckField("Subject", " x\r\nBcc: y").reading, FieldReading::kBroken);
  EXPECT_EQ(CheckField("Subject", " x\r\n").reading, FieldReading::kBroken);
  EXPECT_EQ(CheckField("Subject", " x\ny").reading, FieldReading::kBroken);
  EXPECT_EQ(CheckField("Subject", " x\n y").reading, FieldReading::kBroken);  // LF must be CRLF here
}

}  // namespace
}  // namespace dkimrotor::signer
