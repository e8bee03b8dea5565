#include "conf/duration.h"

#include <gtest/gtest.h>

namespace dkimrotor::conf {
namespace {

using std::chrono::seconds;

std::string ErrorOf(std::string_view text) {
  auto r = ParseDuration(text);
  EXPECT_FALSE(r.has_value()) << text << " parsed as " << r->count();
  if (r.has_value()) return "";
  EXPECT_EQ(r.error().code, util::ErrorCode::kInvalidArgument);
  return r.error().message;
}

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("30s").value(), seconds(30));
  EXPECT_EQ(ParseDuration("10m").value(), seconds(600));
  EXPECT_EQ(ParseDuration("1h").value(), seconds(3600));
  EXPECT_EQ(ParseDuration("14d").value(), seconds(14 * 86400));
  EXPECT_EQ(ParseDuration("2w").value(), seconds(14 * 86400));
  EXPECT_EQ(ParseDuration("0s").value(), seconds(0));
  EXPECT_EQ(ParseDuration("007m").value(), seconds(420));
}

TEST(ParseDuration, MissingUnitSuggestsSeconds) {
  EXPECT_NE(ErrorOf("30").find("add a unit: \"30s\""), std::string::npos);
}

TEST(ParseDuration, CombinedUnitsSuggestOne) {
  EXPECT_NE(ErrorOf("1h30m").find("write \"90m\""), std::string::npos);
  EXPECT_NE(ErrorOf("1d12h").find("write \"36h\""), std::string::npos);
}

TEST(ParseDuration, RejectsFractionsSignsSpacesAndUnknownUnits) {
  EXPECT_NE(ErrorOf("1.5h").find("whole number"), std::string::npos);
  EXPECT_NE(ErrorOf("-1d").find("negative"), std::string::npos);
  EXPECT_NE(ErrorOf(" 1d").find("spaces"), std::string::npos);
  EXPECT_NE(ErrorOf("1 d").find("one unit"), std::string::npos);
  EXPECT_NE(ErrorOf("3y").find("unknown unit 'y'"), std::string::npos);
  EXPECT_NE(ErrorOf("3M").find("lowercase"), std::string::npos);
  EXPECT_NE(ErrorOf("2hours").find("unknown unit 'hours'"), std::string::npos);
  EXPECT_NE(ErrorOf("").find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf("d").find("whole number"), std::string::npos);
  EXPECT_NE(ErrorOf("1s ").find("spaces"), std::string::npos);
}

TEST(ParseDuration, ErrorQuotesTheText) {
  EXPECT_EQ(ErrorOf("3y").rfind("\"3y\" is not a duration", 0), 0u);
}

TEST(ParseDuration, RejectsOverflow) {
  EXPECT_NE(ErrorOf("99999999999999999999s").find("too large"), std::string::npos);
  EXPECT_NE(ErrorOf("9999999999999999w").find("too large"), std::string::npos);
  // Fits in int64 seconds but not in a nanosecond clock: issue 13's poll that made the
  // rotation thread spin.
  EXPECT_NE(ErrorOf("15250284453w").find("too large: at most 5218w"), std::string::npos);
  EXPECT_NE(ErrorOf("9223372036854775807s").find("too large"), std::string::npos);
  EXPECT_EQ(ParseDuration("5218w").value(), kMaxDuration);
  EXPECT_NE(ErrorOf("3155846401s").find("too large"), std::string::npos);
}

TEST(FormatDuration, UsesTheLargestExactUnit) {
  EXPECT_EQ(FormatDuration(seconds(0)), "0s");
  EXPECT_EQ(FormatDuration(seconds(59)), "59s");
  EXPECT_EQ(FormatDuration(seconds(60)), "1m");
  EXPECT_EQ(FormatDuration(seconds(5400)), "90m");
  EXPECT_EQ(FormatDuration(seconds(3600)), "1h");
  EXPECT_EQ(FormatDuration(seconds(86400)), "1d");
  EXPECT_EQ(FormatDuration(seconds(120 * 86400)), "120d");
  EXPECT_EQ(FormatDuration(seconds(14 * 86400)), "2w");
  EXPECT_EQ(FormatDuration(seconds(-90)), "-90s");
}

TEST(FormatDuration, RoundTripsThroughParse) {
  for (long long s : {0LL, 1LL, 59LL, 61LL, 3600LL, 3660LL, 86400LL, 604800LL, 10368000LL,
                      123456789LL}) {
    EXPECT_EQ(ParseDuration(FormatDuration(seconds(s))).value(), seconds(s)) << s;
  }
}

}  // namespace
}  // namespace dkimrotor::conf
