#include "milter/internal/message_context.h"

#include <gtest/gtest.h>

namespace dkimrotor::milter::internal {
namespace {

// With SMFIP_HDR_LEADSPC the value arrives exactly as it was after the colon; folds may come
// as bare LF. Simple header canonicalization needs the CRLF form and every space.
TEST(SessionHeaderValue, KeepsHeaderBytesAndMakesFoldsCrlf) {
  EXPECT_EQ(SessionHeaderValue("  two spaces\n\tfolded", true), "  two spaces\r\n\tfolded");
  EXPECT_EQ(SessionHeaderValue("", true), "");
  EXPECT_EQ(SessionHeaderValue(" a@example.com,\r\n b@example.com", true), " a@example.com,\r\n b@example.com");
}

TEST(SessionHeaderValue, WithoutLeadingSpaceRestoresTheUsualSpace) {
  EXPECT_EQ(SessionHeaderValue("hello", false), " hello");
}

TEST(MilterHeaderValue, LfFoldsAndLeadingSpaceAsNegotiated) {
  const std::string field = "DKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\n def";
  EXPECT_EQ(MilterHeaderValue(field, true), " v=1; a=rsa-sha256;\n b=abc\n def");
  EXPECT_EQ(MilterHeaderValue(field, false), "v=1; a=rsa-sha256;\n b=abc\n def");
}

}  // namespace
}  // namespace dkimrotor::milter::internal
