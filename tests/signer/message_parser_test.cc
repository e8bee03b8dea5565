#include "signer/message_parser.h"
#include "signer/header_field.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace dkimrotor::signer {
namespace {

std::vector<HeaderField> ParseOk(std::string_view block) {
  auto r = ParseHeaderBlock(block);
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r.has_value() ? std::move(r).value() : std::vector<HeaderField>{};
}

TEST(ParseHeaderBlock, CrlfBlock) {
  auto fields = ParseOk("From: a@x\r\nTo:b@y\r\nSubject : hi \r\n");
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].name, "From");
  EXPECT_EQ(fields[0].value, " a@x");
  EXPECT_EQ(fields[1].name, "To");
  EXPECT_EQ(fields[1].value, "b@y");
  EXPECT_EQ(fields[2].name, "Subject ");  // WSP before the colon stays in the name
  EXPECT_EQ(fields[2].value, " hi ");     // trailing WSP stays in the value
}

TEST(ParseHeaderBlock, BareLfBlockGivesTheSameFields) {
  auto crlf = ParseOk("From: a@x\r\nSubject: s\r\n");
  auto lf = ParseOk("From: a@x\nSubject: s\n");
  ASSERT_EQ(lf.size(), 2u);
  ASSERT_EQ(crlf.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(lf[i].name, crlf[i].name);
    EXPECT_EQ(lf[i].value, crlf[i].value);
  }
}

TEST(ParseHeaderBlock, LastLineWithoutLineEnd) {
  auto fields = ParseOk("From: a@x\r\nSubject: s");
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].value, " s");
}

// Found by the differential fuzzer: the CR used to be taken for a line end and the field
// signed as "<c.4", while the MTA delivers "<c.4\r\r\n" and Mail::DKIM hashes the CR.
TEST(ParseHeaderBlock, CrThatEndsTheInputStaysInTheValue) {
  auto fields = ParseOk("From: a@x\r\nMessage-ID: <c.4\r");
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].value, " <c.4\r");
  EXPECT_EQ(CheckField(fields[1].name, fields[1].value).reading, FieldReading::kAmbiguous);
}

TEST(ParseHeaderBlock, FoldedLinesAreKeptAsCrlf) {
  auto crlf = ParseOk("Subject: one\r\n two\r\n\tthree\r\nFrom: a@x\r\n");
  ASSERT_EQ(crlf.size(), 2u);
  EXPECT_EQ(crlf[0].name, "Subject");
  EXPECT_EQ(crlf[0].value, " one\r\n two\r\n\tthree");
  EXPECT_EQ(crlf[1].value, " a@x");

  auto lf = ParseOk("Subject: one\n two\n\tthree\nFrom: a@x\n");
  ASSERT_EQ(lf.size(), 2u);
  EXPECT_EQ(lf[0].value, " one\r\n two\r\n\tthree");
}

TEST(ParseHeaderBlock, MixedLineEnds) {
  auto fields = ParseOk("A: 1\nB: 2\r\n 2b\nC: 3\r\n");
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].value, " 1");
  EXPECT_EQ(fields[1].value, " 2\r\n 2b");
  EXPECT_EQ(fields[2].value, " 3");
}

TEST(ParseHeaderBlock, ValueMayContainColonsAndBeEmpty) {
  auto fields = ParseOk("Date: Fri, 11 Jul 2003 21:00:37 -0700\r\nX-Empty:\r\nX-Space: \r\n");
  ASSERT_EQ(fields.size(), 3u);
  EXPECT_EQ(fields[0].value, " Fri, 11 Jul 2003 21:00:37 -0700");
  EXPECT_EQ(fields[1].name, "X-Empty");
  EXPECT_EQ(fields[1].value, "");
  EXPECT_EQ(fields[2].value, " ");
}

TEST(ParseHeaderBlock, EightBitBytesAreKept) {
  auto fields = ParseOk("Subject: caf\xc3\xa9\r\n");
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(fields[0].value, " caf\xc3\xa9");
}

TEST(ParseHeaderBlock, EmptyBlockHasNoFields) { EXPECT_TRUE(ParseOk("").empty()); }

TEST(ParseHeaderBlock, LineWithoutColonNamesItsLine) {
  auto r = ParseHeaderBlock("From: a@x\r\nSubject: s\r\nno colon here\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(r.error().message.find("line 3"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("colon"), std::string::npos) << r.error().message;
}

TEST(ParseHeaderBlock, LineNumbersCountContinuationLines) {
  auto r = ParseHeaderBlock("Subject: a\r\n b\r\n c\r\nbroken\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("line 4"), std::string::npos) << r.error().message;
}

TEST(ParseHeaderBlock, LeadingContinuationIsAnError) {
  for (std::string_view block : {" folded: x\r\nFrom: a@x\r\n", "\tx\nFrom: a@x\n"}) {
    auto r = ParseHeaderBlock(block);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, util::ErrorCode::kInvalidArgument);
    EXPECT_NE(r.error().message.find("line 1"), std::string::npos) << r.error().message;
  }
}

TEST(ParseHeaderBlock, EmptyFieldNameIsAnError) {
  EXPECT_FALSE(ParseHeaderBlock(": v\r\n").has_value());
  auto r = ParseHeaderBlock("From: a@x\r\n: v\r\n");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("line 2"), std::string::npos) << r.error().message;
}

TEST(FindEndOfHeaders, CrlfMessage) {
  std::string_view msg = "From: a@x\r\nSubject: s\r\n\r\nbody\r\n";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->header_bytes, 23u);  // through the CRLF of "Subject: s"
  EXPECT_EQ(end->body_start, 25u);
  EXPECT_EQ(msg.substr(end->body_start), "body\r\n");
  EXPECT_EQ(msg.substr(0, end->header_bytes), "From: a@x\r\nSubject: s\r\n");
}

TEST(FindEndOfHeaders, BareLfMessage) {
  std::string_view msg = "From: a@x\nSubject: s\n\nbody\n";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(msg.substr(0, end->header_bytes), "From: a@x\nSubject: s\n");
  EXPECT_EQ(msg.substr(end->body_start), "body\n");
}

TEST(FindEndOfHeaders, MixedLfThenCrlfEmptyLine) {
  std::string_view msg = "From: a@x\n\r\nbody";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(msg.substr(0, end->header_bytes), "From: a@x\n");
  EXPECT_EQ(msg.substr(end->body_start), "body");
}

TEST(FindEndOfHeaders, MessageStartingWithEmptyLine) {
  auto crlf = FindEndOfHeaders("\r\nbody\r\n");
  ASSERT_TRUE(crlf.has_value());
  EXPECT_EQ(crlf->header_bytes, 0u);
  EXPECT_EQ(crlf->body_start, 2u);
  auto lf = FindEndOfHeaders("\nbody\n");
  ASSERT_TRUE(lf.has_value());
  EXPECT_EQ(lf->header_bytes, 0u);
  EXPECT_EQ(lf->body_start, 1u);
}

TEST(FindEndOfHeaders, EmptyBodyAfterSeparator) {
  std::string_view msg = "From: a@x\r\n\r\n";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->header_bytes, 11u);
  EXPECT_EQ(end->body_start, msg.size());
}

TEST(FindEndOfHeaders, NoEmptyLine) {
  EXPECT_FALSE(FindEndOfHeaders("").has_value());
  EXPECT_FALSE(FindEndOfHeaders("From: a@x").has_value());
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\nSubject: s\r\n").has_value());
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\nSubject: s\r\n\r").has_value());
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\n \r\nSubject: s\r\n").has_value());  // WSP line
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\r\nX: y").has_value());
}

TEST(FindEndOfHeaders, FoldedHeadersAreNotTheEnd) {
  std::string_view msg = "Subject: a\r\n b\r\n\tc\r\nFrom: x\r\n\r\nB";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(msg.substr(end->body_start), "B");
}

// Feeding the data as growing prefixes, the scan carried from call to call, must give the
// same answer as one search over the whole data.
std::optional<HeaderEnd> ChunkedSearch(std::string_view data, size_t chunk, bool at_eof) {
  HeaderScan scan;
  for (size_t size = std::min(chunk, data.size());; size = std::min(size + chunk, data.size())) {
    const bool last = size == data.size();
    auto end = FindEndOfHeaders(data.substr(0, size), &scan, at_eof && last);
    if (end) return end;
    if (last) return std::nullopt;
  }
}

TEST(FindEndOfHeaders, ChunkedSearchMatchesOneSearch) {
  const std::vector<std::string> messages = {
      "From: a@x\r\nSubject: s\r\n\r\nbody\r\n",
      "From: a@x\nSubject: s\n\nbody\n",
      "From: a@x\n\r\nbody",
      "\r\nbody",
      "\nbody",
      "Subject: a\r\n b\r\n\tc\r\nFrom: x\r\n\r\n",
      "From: a@x\r\nX: \r\r\n\r\n",
      "From: a@x\r\nSubject: s\r\n",
      "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n\r\n\r\n",
      "From: a@x\r\nno colon here\r\n\r\nbody\r\n",
      "From: a@x\r\nLong-Name-Without-End",
      "From: a@x\r\nBad Name: v\r\nbody",
      "From: a@x\r\nSubject: s",
  };
  for (bool at_eof : {false, true}) {
    for (const auto& msg : messages) {
      auto whole = FindEndOfHeaders(msg, at_eof);
      for (size_t chunk = 1; chunk <= msg.size(); ++chunk) {
        SCOPED_TRACE("chunk " + std::to_string(chunk) + " at_eof " + std::to_string(at_eof) + " of message: " + msg);
        auto chunked = ChunkedSearch(msg, chunk, at_eof);
        ASSERT_EQ(chunked.has_value(), whole.has_value());
        if (whole) {
          EXPECT_EQ(chunked->header_bytes, whole->header_bytes);
          EXPECT_EQ(chunked->body_start, whole->body_start);
          EXPECT_EQ(chunked->separator_missing, whole->separator_missing);
        }
      }
    }
  }
}

// Postfix and Sendmail end the header at the first line that is no header field and pass that
// line on as the body's first line; so does dkimrotor sign.
TEST(FindEndOfHeaders, LineThatIsNoFieldBeginsTheBody) {
  std::string_view msg = "From: a@x\r\nSubject: s\r\nno colon here\r\nmore\r\n";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(end->separator_missing);
  EXPECT_EQ(msg.substr(0, end->header_bytes), "From: a@x\r\nSubject: s\r\n");
  EXPECT_EQ(msg.substr(end->body_start), "no colon here\r\nmore\r\n");
  for (std::string_view bad : {"From: a@x\r\nBad Name: v\r\n", "From: a@x\r\nN\xc3\xa4me: v\r\n",
                               "From: a@x\r\n: empty name\r\n", " leading space\r\nFrom: a@x\r\n"}) {
    auto e = FindEndOfHeaders(bad);
    ASSERT_TRUE(e.has_value()) << bad;
    EXPECT_TRUE(e->separator_missing) << bad;
  }
  // Obsolete syntax: white space between the name and the colon is still a field.
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\nSubject : s\r\n").has_value());
}

TEST(FindEndOfHeaders, AtEofALastLineWithoutColonBeginsTheBody) {
  // "nocolon" could still become "nocolon: value" while more data may come.
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\nnocolon", false).has_value());
  auto end = FindEndOfHeaders("From: a@x\r\nnocolon", true);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->header_bytes, 11u);
  EXPECT_FALSE(FindEndOfHeaders("From: a@x\r\nSubject: s", true).has_value());
}

TEST(FindEndOfHeaders, SplitsParseableBlock) {
  std::string msg = "From: a@x\r\nSubject: one\r\n two\r\n\r\nHi.\r\n";
  auto end = FindEndOfHeaders(msg);
  ASSERT_TRUE(end.has_value());
  auto fields = ParseOk(std::string_view(msg).substr(0, end->header_bytes));
  ASSERT_EQ(fields.size(), 2u);
  EXPECT_EQ(fields[1].value, " one\r\n two");
}

}  // namespace
}  // namespace dkimrotor::signer
