#include "signer/selector_format.h"

#include <gtest/gtest.h>

namespace dkimrotor::signer {
namespace {

using namespace std::chrono;

std::string Why(const util::Result<SelectorFormat>& r) {
  return r.has_value() ? std::string("(accepted)") : r.error().message;
}

SelectorValues Values() {
  SelectorValues v;
  v.stream = "mta1";
  v.algorithm = Algorithm::kRsaSha256;
  v.bits = 2048;
  v.date = 2026y / January / 31d;
  v.n = 7;
  return v;
}

std::string Expand(std::string_view format, const SelectorValues& v) {
  auto f = SelectorFormat::Parse(format);
  return f ? f->Expand(v) : "error: " + f.error().message;
}

TEST(SelectorFormat, DefaultIsTheDocumentedOne) {
  SelectorFormat f;
  EXPECT_EQ(f.text(), "{stream}-{yyyymmdd}-{alg}{bits}");
  EXPECT_EQ(f, SelectorFormat::Parse("{stream}-{yyyymmdd}-{alg}{bits}").value());
  EXPECT_FALSE(f == SelectorFormat::Parse("k{n}").value());
  EXPECT_EQ(f.Expand(Values()), "mta1-20260131-rsa2048");
}

TEST(SelectorFormat, ReportsPlaceholders) {
  auto f = SelectorFormat::Parse("{stream}-{yyyymmdd}-{alg}{bits}");
  ASSERT_TRUE(f.has_value()) << Why(f);
  EXPECT_TRUE(f->has_stream());
  EXPECT_TRUE(f->has_date());
  EXPECT_TRUE(f->has_alg());
  EXPECT_TRUE(f->has_bits());
  EXPECT_FALSE(f->has_n());
  f = SelectorFormat::Parse("key{n}");
  ASSERT_TRUE(f.has_value()) << Why(f);
  EXPECT_TRUE(f->has_n());
  EXPECT_FALSE(f->has_date());
  EXPECT_FALSE(f->has_stream());
  EXPECT_FALSE(f->has_alg());
  f = SelectorFormat::Parse("s.{yyyymm}");
  ASSERT_TRUE(f.has_value()) << Why(f);
  EXPECT_TRUE(f->has_date());
}

TEST(SelectorFormat, ExpandsEachPlaceholder) {
  SelectorValues v = Values();
  EXPECT_EQ(Expand("{stream}-{yyyymmdd}-{alg}{bits}", v), "mta1-20260131-rsa2048");
  EXPECT_EQ(Expand("{yyyymm}.{n}", v), "202601.7");
  EXPECT_EQ(Expand("k{n}{n}", v), "k77");
  EXPECT_EQ(Expand("{stream}{stream}-{n}", v), "mta1mta1-7");
  v.algorithm = Algorithm::kEd25519Sha256;
  // {bits} is empty for ed25519, whose keys have one size.
  EXPECT_EQ(Expand("{stream}-{yyyymmdd}-{alg}{bits}", v), "mta1-20260131-ed25519");
  v.date = 2027y / March / 5d;
  v.n = 12;
  EXPECT_EQ(Expand("{yyyymmdd}.{yyyymm}.{n}", v), "20270305.202703.12");
}

TEST(SelectorFormat, ExpandsInLowercase) {
  SelectorValues v = Values();
  v.stream = "MTA1";
  EXPECT_EQ(Expand("Key-{stream}-{yyyymmdd}", v), "key-mta1-20260131");
}

TEST(SelectorFormat, RejectsUnknownPlaceholdersAndReuse) {
  EXPECT_EQ(Why(SelectorFormat::Parse("{stream}-{date}")),
            "unknown placeholder {date}: use {stream}, {yyyymmdd}, {yyyymm}, {alg}, {bits} or {n}");
  EXPECT_EQ(Why(SelectorFormat::Parse("{stream}-{alg}")),
            "it has no {yyyymmdd}, {yyyymm} or {n}, so every new key would get the same "
            "selector; selectors must never be reused: add {yyyymmdd}");
  EXPECT_EQ(Why(SelectorFormat::Parse("{yyyymmdd")), "'{' at position 1 is not closed");
  EXPECT_EQ(Why(SelectorFormat::Parse("a}{n}")), "'}' at position 2 has no matching '{'");
  EXPECT_EQ(Why(SelectorFormat::Parse("k_{n}")),
            "'_' is not allowed in a selector: use letters, digits, '-', '.' and {stream}, "
            "{yyyymmdd}, {yyyymm}, {alg}, {bits} or {n}");
  EXPECT_EQ(Why(SelectorFormat::Parse("")),
            "it is empty; e.g. \"{stream}-{yyyymmdd}-{alg}{bits}\"");
  EXPECT_NE(Why(SelectorFormat::Parse("{}{n}")).find("unknown placeholder {}"), std::string::npos);
}

}  // namespace
}  // namespace dkimrotor::signer
