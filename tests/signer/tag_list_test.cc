#include "signer/tag_list.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace dkimrotor::signer {
namespace {

using Tags = std::vector<std::pair<std::string, std::string>>;

TEST(TagList, ParsesSimpleList) {
  auto list = TagList::Parse("v=1;a=rsa-sha256;d=example.com");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  EXPECT_EQ(list->tags(), (Tags{{"v", "1"}, {"a", "rsa-sha256"}, {"d", "example.com"}}));
  EXPECT_EQ(*list->Get("a"), "rsa-sha256");
  EXPECT_FALSE(list->Get("b").has_value());
}

TEST(TagList, FoldingWhiteSpaceAroundTagsAndValues) {
  auto list = TagList::Parse(" v = 1 ;\r\n\ta=rsa-sha256;\r\n h=from : to :\r\n subject ; bh= ab\r\n cd== ");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  EXPECT_EQ(*list->Get("v"), "1");
  EXPECT_EQ(*list->Get("a"), "rsa-sha256");
  // Inner folding white space stays in the value; the caller strips it where allowed.
  EXPECT_EQ(*list->Get("h"), "from : to :\r\n subject");
  EXPECT_EQ(*list->Get("bh"), "ab\r\n cd==");
}

TEST(TagList, TrailingSemicolonIsAllowed) {
  auto list = TagList::Parse("v=DKIM1; k=ed25519; p=abc;");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  EXPECT_EQ(list->tags().size(), 3u);
  auto with_space = TagList::Parse("v=DKIM1; p=abc; \r\n ");
  ASSERT_TRUE(with_space.has_value()) << with_space.error().message;
  EXPECT_EQ(with_space->tags().size(), 2u);
}

TEST(TagList, EmptyValueIsKept) {
  auto list = TagList::Parse("v=DKIM1; p=");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  ASSERT_TRUE(list->Get("p").has_value());
  EXPECT_EQ(*list->Get("p"), "");
}

TEST(TagList, ValueMayContainEquals) {
  auto list = TagList::Parse("bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=; b=Zg==");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  EXPECT_EQ(*list->Get("bh"), "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
  EXPECT_EQ(*list->Get("b"), "Zg==");
}

TEST(TagList, DuplicateTagIsRejected) {
  auto list = TagList::Parse("v=1; d=a.example; d=b.example");
  ASSERT_FALSE(list.has_value());
  EXPECT_EQ(list.error().code, util::ErrorCode::kInvalidArgument);
  EXPECT_NE(list.error().message.find("duplicate"), std::string::npos) << list.error().message;
  EXPECT_NE(list.error().message.find("d="), std::string::npos) << list.error().message;
  // Surrounding white space does not make a name different.
  EXPECT_FALSE(TagList::Parse("b=1; b =2").has_value());
}

TEST(TagList, NamesAreCaseSensitive) {
  auto list = TagList::Parse("b=1; B=2");
  ASSERT_TRUE(list.has_value()) << list.error().message;
  EXPECT_EQ(*list->Get("b"), "1");
  EXPECT_EQ(*list->Get("B"), "2");
}

TEST(TagList, SpecWithoutEqualsIsRejected) {
  auto list = TagList::Parse("v=1; nonsense; d=x");
  ASSERT_FALSE(list.has_value());
  EXPECT_NE(list.error().message.find("nonsense"), std::string::npos) << list.error().message;
}

TEST(TagList, TagWithoutNameIsRejected) {
  EXPECT_FALSE(TagList::Parse("v=1; =x").has_value());
  EXPECT_FALSE(TagList::Parse(" \t= x").has_value());
}

TEST(TagList, EmptyTextIsAnEmptyList) {
  auto list = TagList::Parse("");
  ASSERT_TRUE(list.has_value());
  EXPECT_TRUE(list->tags().empty());
}

TEST(StripFws, RemovesSpaceTabCrLfEverywhere) {
  EXPECT_EQ(StripFws(" from : to :\r\n\tsubject "), "from:to:subject");
  EXPECT_EQ(StripFws("ab\r\n cd\t=="), "abcd==");
  EXPECT_EQ(StripFws(""), "");
  EXPECT_EQ(StripFws(" \t\r\n"), "");
  EXPECT_EQ(StripFws("unchanged"), "unchanged");
}

}  // namespace
}  // namespace dkimrotor::signer
