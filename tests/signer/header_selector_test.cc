#include "signer/header_selector.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace dkimrotor::signer {
namespace {

using Names = std::vector<std::string>;

// A policy that signs the given names and oversigns nothing, so the h= list shows matching alone.
HeaderSelector SignOnly(std::vector<std::string> sign) {
  return HeaderSelector(HeaderPolicy{std::move(sign), {}});
}

std::vector<HeaderField> Fields(std::initializer_list<std::pair<const char*, const char*>> list) {
  std::vector<HeaderField> out;
  for (const auto& [name, value] : list) out.push_back(HeaderField{name, value});
  return out;
}

HeaderSelector DefaultSignOnly() { return SignOnly(HeaderPolicy::Default().sign); }

TEST(HeaderSelector, DefaultListSignsTheUsualFields) {
  auto fields = Fields({{"From", " a@x"},
                        {"To", " b@y"},
                        {"Subject", " hi"},
                        {"Date", " now"},
                        {"Message-ID", " <1@x>"},
                        {"MIME-Version", " 1.0"},
                        {"Content-Type", " text/plain"},
                        {"X-Mailer", " z"}});
  EXPECT_EQ(DefaultSignOnly().SelectNames(fields),
            (Names{"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}));
}

TEST(HeaderSelector, ReceivedAndUnknownFieldsAreNotSigned) {
  auto fields = Fields({{"Received", " from a"},
                        {"Received", " from b"},
                        {"Return-Path", " <a@x>"},
                        {"From", " a@x"},
                        {"X-Spam", " no"}});
  EXPECT_EQ(DefaultSignOnly().SelectNames(fields), (Names{"from"}));
}

TEST(HeaderSelector, PrefixPatternsMatchListAndResentFields) {
  auto fields = Fields({{"From", " a@x"},
                        {"List-Id", " <l.x>"},
                        {"List-Unsubscribe", " <mailto:u@x>"},
                        {"Resent-From", " r@x"},
                        {"Resent-Date", " d"}});
  EXPECT_EQ(DefaultSignOnly().SelectNames(fields),
            (Names{"from", "list-id", "list-unsubscribe", "resent-from", "resent-date"}));
}

TEST(HeaderSelector, PrefixPatternNeedsSomethingAfterThePrefix) {
  auto fields = Fields({{"From", " a@x"}, {"List-", " bare"}, {"Resent-", " bare"}, {"Listing", " x"}});
  EXPECT_EQ(SignOnly({"list-*", "resent-*"}).SelectNames(fields), (Names{"from"}));
}

TEST(HeaderSelector, PatternsDoNotMatchUnlistedPrefixes) {
  auto fields = Fields({{"From", " a@x"}, {"List-Id", " <l.x>"}});
  // Without "list-*" or "list-id" in the policy, List-Id is not signed.
  EXPECT_EQ(SignOnly({"subject"}).SelectNames(fields), (Names{"from"}));
}

TEST(HeaderSelector, RepeatedFieldsAreListedOncePerOccurrence) {
  auto fields = Fields({{"From", " a@x"},
                        {"To", " 1"},
                        {"Cc", " c"},
                        {"To", " 2"},
                        {"To", " 3"}});
  EXPECT_EQ(DefaultSignOnly().SelectNames(fields), (Names{"from", "to", "cc", "to", "to"}));
}

TEST(HeaderSelector, FromIsAlwaysSigned) {
  auto fields = Fields({{"Subject", " s"}, {"From", " a@x"}});
  EXPECT_EQ(SignOnly({"subject"}).SelectNames(fields), (Names{"subject", "from"}));
  // Even a message without From gets "from" in h= (RFC 6376 5.4: From must be signed).
  auto no_from = Fields({{"Subject", " s"}});
  EXPECT_EQ(SignOnly({"subject"}).SelectNames(no_from), (Names{"from", "subject"}));
}

TEST(HeaderSelector, NamesMatchCaseInsensitively) {
  auto fields = Fields({{"FROM", " a@x"}, {"sUbJeCt", " s"}, {"LIST-ID", " l"}, {"Subject ", " t"}});
  HeaderSelector selector(HeaderPolicy{{"SUBJECT", "List-*"}, {}});
  EXPECT_EQ(selector.SelectNames(fields), (Names{"from", "subject", "list-id", "subject"}));
  EXPECT_EQ(selector.policy().sign, (Names{"subject", "list-*"}));
}

TEST(HeaderSelector, OversigningAddsOneExtraPerNameWhetherPresentOrNot) {
  auto fields = Fields({{"From", " a@x"}, {"Subject", " s"}, {"Subject", " t"}});
  HeaderSelector selector(HeaderPolicy{{"subject", "to"}, {"subject", "to", "from"}});
  // Present twice -> listed three times; absent To -> listed once; From once -> twice.
  EXPECT_EQ(selector.SelectNames(fields),
            (Names{"from", "subject", "subject", "subject", "to", "from"}));
}

TEST(HeaderSelector, DefaultPolicyOversignsEachNameExactlyOnce) {
  auto fields = Fields({{"From", " a@x"}, {"To", " b@y"}, {"Subject", " s"}});
  HeaderSelector selector(HeaderPolicy::Default());
  Names names = selector.SelectNames(fields);
  const Names oversign = HeaderPolicy::Default().oversign;
  ASSERT_GE(names.size(), oversign.size());
  Names present_oversign;
  for (const auto& n : oversign)
    if (n != "date" && n != "message-id") present_oversign.push_back(n);
  Names tail(names.end() - static_cast<std::ptrdiff_t>(present_oversign.size()), names.end());
  EXPECT_EQ(tail, present_oversign);
  auto count = [&](const std::string& n) { return std::count(names.begin(), names.end(), n); };
  EXPECT_EQ(count("from"), 2);
  EXPECT_EQ(count("to"), 2);
  EXPECT_EQ(count("subject"), 2);
  // Absent Date and Message-ID are not oversigned: an MTA adds them after the milter.
  EXPECT_EQ(count("date"), 0);
  EXPECT_EQ(count("message-id"), 0);
  EXPECT_EQ(count("cc"), 1);  // absent: the oversign entry alone
  EXPECT_EQ(names.size(), 3 + oversign.size() - 2);
}

TEST(HeaderSelector, PresentDateAndMessageIdAreOversigned) {
  auto fields = Fields({{"From", " a@x"}, {"Date", " d"}, {"Message-ID", " <m@x>"}});
  HeaderSelector selector(HeaderPolicy{{"date", "message-id"}, {"date", "message-id", "subject"}});
  EXPECT_EQ(selector.SelectNames(fields),
            (Names{"from", "date", "message-id", "date", "message-id", "subject"}));
}

TEST(HeaderSelector, PatternsInOversignAreIgnored) {
  auto fields = Fields({{"From", " a@x"}, {"List-Id", " l"}});
  HeaderSelector selector(HeaderPolicy{{"list-*"}, {"list-*"}});
  EXPECT_EQ(selector.SelectNames(fields), (Names{"from", "list-id"}));
}

TEST(CollectSignedFields, PicksInstancesBottomUp) {
  auto fields = Fields({{"From", " a@x"}, {"Subject", " upper"}, {"To", " t"}, {"Subject", " lower"}});
  auto one = CollectSignedFields(fields, {"subject"});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], &fields[3]);  // the lower (later) Subject
  auto two = CollectSignedFields(fields, {"subject", "from", "subject"});
  ASSERT_EQ(two.size(), 3u);
  EXPECT_EQ(two[0], &fields[3]);
  EXPECT_EQ(two[1], &fields[0]);
  EXPECT_EQ(two[2], &fields[1]);
}

TEST(CollectSignedFields, NameListedMoreOftenThanPresentSelectsNothingExtra) {
  auto fields = Fields({{"From", " a@x"}, {"Subject", " s"}});
  auto got = CollectSignedFields(fields, {"from", "subject", "from", "subject", "date"});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], &fields[0]);
  EXPECT_EQ(got[1], &fields[1]);
}

TEST(CollectSignedFields, MatchesNamesCaseInsensitively) {
  auto fields = Fields({{"FROM", " a@x"}, {"Subject ", " s"}});
  auto got = CollectSignedFields(fields, {"From", "SUBJECT"});
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], &fields[0]);
  EXPECT_EQ(got[1], &fields[1]);
}

TEST(CollectSignedFields, FollowsTheOrderOfNames) {
  auto fields = Fields({{"From", " a@x"}, {"To", " t"}, {"Date", " d"}});
  auto got = CollectSignedFields(fields, {"date", "from", "to"});
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], &fields[2]);
  EXPECT_EQ(got[1], &fields[0]);
  EXPECT_EQ(got[2], &fields[1]);
}

}  // namespace
}  // namespace dkimrotor::signer

namespace dkimrotor::signer {
namespace {

// An oversign name outside the sign list is still listed once more than it occurs.
TEST(HeaderSelector, OversignsNamesOutsideTheSignList) {
  HeaderSelector selector(HeaderPolicy{{"from"}, {"subject"}});
  std::vector<HeaderField> fields = {{"From", " a@example.com"}, {"Subject", " one"}};
  EXPECT_EQ(selector.SelectNames(fields), (std::vector<std::string>{"from", "subject", "subject"}));
  fields.push_back({"Subject", " two"});
  EXPECT_EQ(selector.SelectNames(fields),
            (std::vector<std::string>{"from", "subject", "subject", "subject"}));
}

// h= picks instances bottom-up by name, so a name with one instance verifiers read differently
// is left out whole: neither signed nor oversigned.
TEST(HeaderSelector, ANameWithAFieldVerifiersReadDifferentlyIsLeftOut) {
  HeaderSelector selector(HeaderPolicy::Default());
  auto fields = Fields({{"From", " a@x"}, {"Subject", " one"}, {"To", " b@y"}, {"Subject", " x\rtwo"}});
  Names names = selector.SelectNames(fields);
  EXPECT_EQ(std::count(names.begin(), names.end(), "subject"), 0) << ::testing::PrintToString(names);
  EXPECT_EQ(std::count(names.begin(), names.end(), "to"), 2);    // signed and oversigned as before
  EXPECT_EQ(std::count(names.begin(), names.end(), "from"), 2);
}

TEST(HeaderSelector, ANameWithASemicolonNeverReachesH) {
  HeaderSelector selector(HeaderPolicy{{"list-*", "x;y"}, {"from", "x;y"}});
  auto fields = Fields({{"From", " a@x"}, {"List-X;y", " 1"}, {"x;y", " 2"}, {"List-Id", " <l>"}});
  EXPECT_EQ(selector.SelectNames(fields), (Names{"from", "list-id", "from"}));
}

}  // namespace
}  // namespace dkimrotor::signer
