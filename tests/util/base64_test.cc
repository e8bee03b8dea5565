#include "util/base64.h"

#include <gtest/gtest.h>

namespace dkimrotor::util {
namespace {

TEST(Base64, EncodesRfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Base64, DecodesAndIgnoresFoldingWhiteSpace) {
  EXPECT_EQ(Base64Decode("Zm9v\r\n YmFy").value(), "foobar");
  EXPECT_EQ(Base64Decode("Zm9vYg==").value(), "foob");
  EXPECT_EQ(Base64Decode("").value(), "");
}

TEST(Base64, RejectsMalformedInput) {
  EXPECT_FALSE(Base64Decode("Zm9").has_value());      // truncated
  EXPECT_FALSE(Base64Decode("Zm9v!").has_value());    // outside the alphabet
  EXPECT_FALSE(Base64Decode("Zg==Zg==").has_value()); // data after padding
  EXPECT_FALSE(Base64Decode("=Zm9").has_value());     // misplaced padding
}

TEST(Base64, RoundTripsEveryByteValue) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(Base64Decode(Base64Encode(all)).value(), all);
}

}  // namespace
}  // namespace dkimrotor::util
