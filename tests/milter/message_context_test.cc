#include "milter/internal/message_context.h"

#include <gtest/gtest.h>

#include "signer/header_field.h"

namespace dkimrotor::milter::internal {
namespace {

// With SMFIP_HDR_LEADSPC the value arrives exactly as it was after the colon; folds may come
// as bare LF. Simple header canonicalization needs the CRLF form and every space.
TEST(SessionHeaderValue, KeepsHeaderBytesAndMakesFoldsCrlf) {
  EXPECT_EQ(SessionHeaderValue("  two spaces\n\tfolded", true), "  two spaces\r\n\tfolded");
  EXPECT_EQ(SessionHeaderValue("", true), "");
}

// Found by the differential fuzzer: "using\r" + LF + " runs" (a bare CR before a fold, which
// Postfix delivers as "using\r\r\n runs") was taken for a plain fold and signed without the
// CR, and both verifiers rejected the signature.
TEST(SessionHeaderValue, ACrBeforeAnLfIsABareCrThatStays) {
  EXPECT_EQ(SessionHeaderValue(" using\r\n runs", true), " using\r\r\n runs");
  EXPECT_EQ(signer::CheckField("Subject", SessionHeaderValue(" using\r\n runs", true)).reading,
            signer::FieldReading::kAmbiguous);
  EXPECT_EQ(signer::CheckField("Subject", SessionHeaderValue(" using\n runs", true)).reading,
            signer::FieldReading::kPlain);
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
