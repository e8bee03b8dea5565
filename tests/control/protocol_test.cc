#include "control/protocol.h"

#include <gtest/gtest.h>

namespace dkimrotor::control {
namespace {

TEST(Protocol, RequestsRoundTrip) {
  Request r;
  r.command = Command::kEmergency;
  r.domain = "example.test";
  r.selector = "s1";
  r.force = true;
  auto parsed = ParseRequest(SerializeRequest(r));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message;
  EXPECT_EQ(parsed->command, Command::kEmergency);
  EXPECT_EQ(parsed->domain, "example.test");
  EXPECT_EQ(parsed->selector, "s1");
  EXPECT_TRUE(parsed->force);
}

TEST(Protocol, BadRequestsAreRefusedWithoutThrowing) {
  for (const char* text : {"", "garbage", "[]", "{\"command\": 1}", "{\"command\": \"rotate\"}",
                           "{\"command\": \"status\", \"domain\": \"x\"}", "{\"command\": \"keys\", \"force\": true}",
                           "{\"command\": \"emergency\", \"domain\": \"d\", \"selector\": \"s\", \"force\": \"yes\"}",
                           "{\"command\": \"import\", \"domain\": \"d\", \"selector\": \"s\"}",
                           "{\"command\": \"status\", \"x\": null}", "{\"command\": \"st\xff\"}", "[[[[[[[[[]]]]]]]]]"}) {
    EXPECT_FALSE(ParseRequest(text).has_value()) << text;
  }
  EXPECT_FALSE(ParseRequest(std::string(kMaxRequestBytes + 1, ' ')).has_value());
  EXPECT_FALSE(ParseRequest("{\"command\": \"rotate\", \"domain\": \"" + std::string(300, 'a') + "\"}").has_value());
}

TEST(Protocol, AnswersRoundTripAndInvalidUtf8IsReplaced) {
  auto ok = ParseAnswer(SerializeAnswer(Success({{"pid", 7}})));
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(ok->ok);
  EXPECT_EQ(ok->result["pid"], 7);
  auto bad = ParseAnswer(SerializeAnswer(Failure("no key \xff")));
  ASSERT_TRUE(bad.has_value());
  EXPECT_FALSE(bad->ok);
  EXPECT_FALSE(ParseAnswer("{}").has_value());
}

}  // namespace
}  // namespace dkimrotor::control
