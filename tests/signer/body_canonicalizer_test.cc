#include "signer/body_canonicalizer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace dkimrotor::signer {
namespace {

class StringSink : public BodyCanonicalizer::Sink {
 public:
  void Write(std::string_view bytes) override { out.append(bytes); }
  std::string out;
};

std::string Canonicalize(Canon mode, const std::vector<std::string_view>& chunks) {
  StringSink sink;
  BodyCanonicalizer c(mode, &sink);
  for (auto chunk : chunks) c.Update(chunk);
  c.Finish();
  EXPECT_EQ(c.canonical_length(), sink.out.size());
  return sink.out;
}

std::string Simple(std::string_view body) { return Canonicalize(Canon::kSimple, {body}); }
std::string Relaxed(std::string_view body) { return Canonicalize(Canon::kRelaxed, {body}); }

// RFC 6376 section 3.4.5's example body: " C \r\nD \t E\r\n\r\n\r\n".
TEST(BodyCanonicalizer, Rfc6376Example) {
  EXPECT_EQ(Simple(" C \r\nD \t E\r\n\r\n\r\n"), " C \r\nD \t E\r\n");
  EXPECT_EQ(Relaxed(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
}

TEST(BodyCanonicalizer, EmptyBodyIsCrlfForSimpleAndEmptyForRelaxed) {
  EXPECT_EQ(Simple(""), "\r\n");
  EXPECT_EQ(Relaxed(""), "");
}

TEST(BodyCanonicalizer, BodyOfOnlyLineEnds) {
  EXPECT_EQ(Simple("\r\n"), "\r\n");
  EXPECT_EQ(Simple("\r\n\r\n\r\n"), "\r\n");
  EXPECT_EQ(Relaxed("\r\n"), "");
  EXPECT_EQ(Relaxed("\r\n\r\n\r\n"), "");
}

// Erratum 1384: trailing white space goes first, so whitespace-only lines at the end vanish.
TEST(BodyCanonicalizer, RelaxedDropsWhitespaceOnlyTrailingLines) {
  EXPECT_EQ(Relaxed("abc\r\n  \r\n\t\r\n"), "abc\r\n");
  EXPECT_EQ(Relaxed("  \r\n"), "");
  EXPECT_EQ(Simple("abc\r\n  \r\n"), "abc\r\n  \r\n");
}

TEST(BodyCanonicalizer, MissingFinalLineEndIsAdded) {
  EXPECT_EQ(Simple("abc"), "abc\r\n");
  EXPECT_EQ(Relaxed("abc"), "abc\r\n");
  EXPECT_EQ(Relaxed("abc  "), "abc\r\n");
  EXPECT_EQ(Simple("abc  "), "abc  \r\n");
}

TEST(BodyCanonicalizer, BareLfIsALineBreak) {
  EXPECT_EQ(Simple("a\nb\n\n"), "a\r\nb\r\n");
  EXPECT_EQ(Relaxed("a \nb\t\n\n"), "a\r\nb\r\n");
  EXPECT_EQ(Simple("\n"), "\r\n");
}

TEST(BodyCanonicalizer, BareCrIsContent) {
  EXPECT_EQ(Simple("a\rb\r\n"), "a\rb\r\n");
  EXPECT_EQ(Relaxed("a \rb\r\n"), "a \rb\r\n");
}

TEST(BodyCanonicalizer, RelaxedReducesWhitespaceRunsAndKeepsLeadingSpace) {
  EXPECT_EQ(Relaxed("a  b\t\tc \t d\r\n"), "a b c d\r\n");
  EXPECT_EQ(Relaxed("\t\tindented\r\n"), " indented\r\n");
  EXPECT_EQ(Relaxed("a b c\r\n"), "a b c\r\n");
}

TEST(BodyCanonicalizer, InnerEmptyLinesAreKept) {
  EXPECT_EQ(Simple("a\r\n\r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
  EXPECT_EQ(Relaxed("a\r\n \r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");
}

TEST(BodyCanonicalizer, NulAnd8BitBytesAreContent) {
  std::string body("a\0b\xff\xfe  c\r\n", 10);
  EXPECT_EQ(Simple(body), body);
  EXPECT_EQ(Relaxed(body), std::string("a\0b\xff\xfe c\r\n", 9));
}

// Every way of cutting the body must give the same bytes: inside CRLF, inside white-space runs,
// inside runs of trailing empty lines, and across the SSE2 scanner's 16-byte blocks.
TEST(BodyCanonicalizer, ChunkingDoesNotChangeTheResult) {
  std::string body =
      "Line one  with   spaces\t\t and tabs \r\n"
      "\r\n"
      "   \r\n"
      "bare\nLF line\n"
      "a\rbare CR\r\n"
      "0123456789abcdef0123456789abcdef 0123456789abcdef  \r\n"
      "end without crlf   \r\n\r\n \t \r\n\r\n";
  for (Canon mode : {Canon::kSimple, Canon::kRelaxed}) {
    const std::string expected = Canonicalize(mode, {body});
    for (size_t size : {1, 2, 3, 5, 7, 13, 16, 17, 31}) {
      std::vector<std::string_view> chunks;
      for (size_t i = 0; i < body.size(); i += size)
        chunks.push_back(std::string_view(body).substr(i, size));
      EXPECT_EQ(Canonicalize(mode, chunks), expected) << "chunk size " << size;
    }
    std::mt19937 rng(42);
    for (int round = 0; round < 200; ++round) {
      std::vector<std::string_view> chunks;
      for (size_t i = 0; i < body.size();) {
        size_t n = std::uniform_int_distribution<size_t>(0, 12)(rng);
        chunks.push_back(std::string_view(body).substr(i, n));
        i += n;
      }
      EXPECT_EQ(Canonicalize(mode, chunks), expected) << "random round " << round;
    }
  }
}

// The buffered and direct-write paths meet at the 16 KiB buffer edge and the 4 KiB span limit.
TEST(BodyCanonicalizer, LargeBodiesMatchAByteAtATimeReference) {
  std::mt19937 rng(7);
  const char alphabet[] = "ab  \t\r\n\nxyz";
  std::string body;
  for (int i = 0; i < 100000; ++i) body.push_back(alphabet[rng() % (sizeof alphabet - 1)]);
  body += std::string(20000, 'q') + "\r\n";
  for (Canon mode : {Canon::kSimple, Canon::kRelaxed}) {
    std::vector<std::string_view> one_byte;
    for (size_t i = 0; i < body.size(); ++i) one_byte.push_back(std::string_view(body).substr(i, 1));
    EXPECT_EQ(Canonicalize(mode, {body}), Canonicalize(mode, one_byte));
  }
}

// Mostly plain text with sparse line ends and white space, so the 64-byte scanner crosses whole
// blocks and meets CRLF pairs, empty lines and runs at every offset of a block.
TEST(BodyCanonicalizer, SparseSpecialBytesMatchAByteAtATimeReference) {
  std::mt19937 rng(11);
  const std::string_view specials[] = {" ", "  ", "\t", "\r\n", "\r\n\r\n", "\n", "\r", " \r\n",
                                       "\r\n ", "\r\n\t", "\r\n\r\n\r\n"};
  for (int round = 0; round < 20; ++round) {
    std::string body;
    while (body.size() < 50000) {
      body.append(std::uniform_int_distribution<size_t>(0, 150)(rng), 'w');
      body.append(specials[rng() % std::size(specials)]);
    }
    for (Canon mode : {Canon::kSimple, Canon::kRelaxed}) {
      std::vector<std::string_view> one_byte;
      for (size_t i = 0; i < body.size(); ++i) one_byte.push_back(std::string_view(body).substr(i, 1));
      std::vector<std::string_view> odd;
      for (size_t i = 0; i < body.size(); i += 97) odd.push_back(std::string_view(body).substr(i, 97));
      const std::string reference = Canonicalize(mode, one_byte);
      EXPECT_EQ(Canonicalize(mode, {body}), reference) << "round " << round;
      EXPECT_EQ(Canonicalize(mode, odd), reference) << "round " << round;
    }
  }
}

}  // namespace
}  // namespace dkimrotor::signer
