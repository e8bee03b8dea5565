#include "milter/internal/message_context.h"

#include <gtest/gtest.h>

namespace dkimrotor::milter::internal {
namespace {

// With SMFIP_HDR_LEADSPC the value arrives exactly as it was after the colon; folds may come
// as bare LF. Simple header canonicalization needs the CRLF form and every space.
TEST(MessageContext, KeepsHeaderBytesAndMakesFoldsCrlf) {
  MessageContext m;
  m.AddHeader("Subject", "  two spaces\n\tfolded", true);
  m.AddHeader("X-Empty", "", true);
  m.AddHeader("To", " a@example.com,\r\n b@example.com", true);
  ASSERT_EQ(m.fields.size(), 3u);
  EXPECT_EQ(m.fields[0].value, "  two spaces\r\n\tfolded");
  EXPECT_EQ(m.fields[1].value, "");
  EXPECT_EQ(m.fields[2].value, " a@example.com,\r\n b@example.com");
}

TEST(MessageContext, WithoutLeadingSpaceRestoresTheUsualSpace) {
  MessageContext m;
  m.AddHeader("Subject", "hello", false);
  EXPECT_EQ(m.fields[0].value, " hello");
}

TEST(MessageContext, FromDomainNeedsExactlyOneFrom) {
  MessageContext none;
  EXPECT_EQ(none.FromDomain().error().message, "no From header");
  MessageContext two;
  two.AddHeader("From", " a@example.com", true);
  two.AddHeader("from", " b@example.com", true);
  EXPECT_EQ(two.FromDomain().error().message, "2 From headers");
  MessageContext one;
  one.AddHeader("From", " Alice <alice@Mail.Example.COM>", true);
  EXPECT_EQ(one.FromDomain().value(), "mail.example.com");
}

TEST(MilterHeaderValue, LfFoldsAndLeadingSpaceAsNegotiated) {
  const std::string field = "DKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\n def";
  EXPECT_EQ(MilterHeaderValue(field, true), " v=1; a=rsa-sha256;\n b=abc\n def");
  EXPECT_EQ(MilterHeaderValue(field, false), "v=1; a=rsa-sha256;\n b=abc\n def");
}

}  // namespace
}  // namespace dkimrotor::milter::internal
