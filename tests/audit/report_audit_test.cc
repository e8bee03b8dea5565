#include "audit/report_audit.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace dkimrotor::audit {
namespace {

using keystore::FromUnix;
using keystore::KeyInfo;
using keystore::KeyState;

constexpr int64_t kDay = 86400;
constexpr int64_t kT0 = 1764028800;  // 2025-11-25T00:00:00Z: the reports' day

KeyInfo Key(const std::string& selector, KeyState state, int64_t created, std::optional<int64_t> activated = {},
            std::optional<int64_t> retired = {}, std::optional<int64_t> revoked = {}) {
  KeyInfo k;
  k.domain = "example.test";
  k.selector = selector;
  k.state = state;
  k.created = FromUnix(created);
  if (activated) k.activated = FromUnix(*activated);
  if (retired) k.retired = FromUnix(*retired);
  if (revoked) k.revoked = FromUnix(*revoked);
  return k;
}

ReportRecord Record(uint64_t count, std::vector<DkimResult> dkim) { return ReportRecord{count, std::move(dkim)}; }

DmarcReport Report(std::vector<ReportRecord> records, const std::string& domain = "example.test",
                   int64_t begin = kT0, int64_t end = kT0 + kDay - 1) {
  DmarcReport r;
  r.org_name = "google.com";
  r.report_id = "r1";
  r.domain = domain;
  r.begin = begin;
  r.end = end;
  r.records = std::move(records);
  return r;
}

const std::vector<KeyInfo> kKeys = {
    Key("live", KeyState::kActive, kT0 - 30 * kDay, kT0 - 29 * kDay),
    Key("spare", KeyState::kReady, kT0 - 2 * kDay),
    Key("gone", KeyState::kRevoked, kT0 - 90 * kDay, kT0 - 89 * kDay, kT0 - 40 * kDay, kT0 - 20 * kDay),
    Key("handover", KeyState::kRetiring, kT0 - 60 * kDay, kT0 - 59 * kDay, kT0 + 3600),
};

const SelectorAudit* Find(const AuditResult& r, const std::string& selector) {
  for (const auto& d : r.domains)
    for (const auto& s : d.selectors)
      if (s.selector == selector) return &s;
  return nullptr;
}

TEST(ReportAudit, ManagedSelectorPassingNeedsNoAttention) {
  auto r = AuditReports({Report({Record(10, {{"example.test", "live", "pass"}})})}, {"example.test"}, kKeys);
  ASSERT_EQ(r.domains.size(), 1u);
  ASSERT_EQ(r.domains[0].selectors.size(), 1u);
  const auto& s = r.domains[0].selectors[0];
  EXPECT_TRUE(s.managed);
  EXPECT_EQ(s.state, "active");
  EXPECT_EQ(s.messages, 10u);
  EXPECT_EQ(s.pass, 10u);
  EXPECT_EQ(s.fail, 0u);
  EXPECT_TRUE(s.findings.empty());
  EXPECT_FALSE(r.NeedsAttention());
}

TEST(ReportAudit, ManagedSelectorFailingIsAFinding) {
  auto r = AuditReports({Report({Record(7, {{"example.test", "live", "pass"}}),
                                  Record(3, {{"example.test", "live", "fail"}}),
                                  Record(2, {{"example.test", "live", "permerror"}})})},
                        {"example.test"}, kKeys);
  const auto* s = Find(r, "live");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->messages, 12u);
  EXPECT_EQ(s->pass, 7u);
  EXPECT_EQ(s->fail, 5u);
  ASSERT_EQ(s->findings.size(), 1u);
  EXPECT_EQ(s->findings[0].rfind("failing at receivers: 5 of 12 message(s)", 0), 0u) << s->findings[0];
  EXPECT_TRUE(r.NeedsAttention());
}

TEST(ReportAudit, UnknownSelectorIsListedAsUnmanaged) {
  auto r = AuditReports({Report({Record(4, {{"example.test", "selector1", "pass"}, {"esp.test", "k1", "pass"}})})},
                        {"example.test"}, kKeys);
  ASSERT_EQ(r.domains[0].selectors.size(), 1u) << "another domain's d= is not ours to judge";
  const auto& s = r.domains[0].selectors[0];
  EXPECT_EQ(s.selector, "selector1");
  EXPECT_FALSE(s.managed);
  EXPECT_FALSE(s.state.has_value());
  EXPECT_EQ(s.messages, 4u);
  ASSERT_EQ(s.findings.size(), 1u);
  EXPECT_NE(s.findings[0].find("not managed by dkimrotor: another service signs for example.test"), std::string::npos);
}

TEST(ReportAudit, RevokedSelectorStillSigningIsAFinding) {
  auto r = AuditReports({Report({Record(1, {{"example.test", "gone", "fail"}})})}, {"example.test"}, kKeys);
  const auto* s = Find(r, "gone");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->state, "revoked");
  ASSERT_GE(s->findings.size(), 1u);
  EXPECT_EQ(s->findings[0].rfind("signing after revocation: revoked 2025-11-05T00:00:00Z", 0), 0u) << s->findings[0];
}

TEST(ReportAudit, StateIsActiveWhenTheKeySignedDuringTheRange) {
  auto r = AuditReports({Report({Record(2, {{"example.test", "handover", "pass"}, {"example.test", "spare", "pass"}})})},
                        {"example.test"}, kKeys);
  EXPECT_EQ(Find(r, "handover")->state, "active");  // retired an hour into the range
  EXPECT_EQ(Find(r, "spare")->state, "ready");
}

TEST(ReportAudit, OtherDomainIsSkippedWithANote) {
  auto r = AuditReports({Report({Record(5, {{"other.test", "s", "pass"}})}, "other.test")}, {"example.test"}, kKeys);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("other.test, which is not configured here: skipped"), std::string::npos) << r.notes[0];
  ASSERT_EQ(r.domains.size(), 1u);
  EXPECT_TRUE(r.domains[0].selectors.empty());
  EXPECT_FALSE(r.NeedsAttention());
}

TEST(ReportAudit, SeveralRecordsAndASelectorSignedTwiceCountOnce) {
  auto r = AuditReports({Report({Record(3, {{"example.test", "live", "pass"}, {"example.test", "live", "fail"}}),
                                  Record(4, {{"example.test", "live", "none"}})})},
                        {"example.test"}, kKeys);
  const auto* s = Find(r, "live");
  EXPECT_EQ(s->messages, 7u);
  EXPECT_EQ(s->pass, 3u);
  EXPECT_EQ(s->fail, 0u);
}

TEST(ReportAudit, ReportsFromSeveralReceiversMerge) {
  DmarcReport second = Report({Record(6, {{"example.test", "live", "fail"}}), Record(1, {{"example.test", "x", "pass"}})},
                              "example.test", kT0 + kDay, kT0 + 2 * kDay - 1);
  second.org_name = "yahoo.com";
  auto r = AuditReports({Report({Record(10, {{"example.test", "live", "pass"}})}), second}, {"example.test"}, kKeys);
  ASSERT_EQ(r.domains[0].selectors.size(), 2u);
  const auto* s = Find(r, "live");
  EXPECT_EQ(s->messages, 16u);
  EXPECT_EQ(s->pass, 10u);
  EXPECT_EQ(s->fail, 6u);
  EXPECT_EQ(Find(r, "x")->messages, 1u);
}

TEST(ReportAudit, SelectorSeenBeforeTheKeyWasCreatedIsAFinding) {
  auto r = AuditReports({Report({Record(1, {{"example.test", "live", "pass"}})}, "example.test", kT0 - 40 * kDay,
                                kT0 - 39 * kDay)},
                        {"example.test"}, kKeys);
  const auto* s = Find(r, "live");
  EXPECT_EQ(s->state, "not yet created");
  ASSERT_EQ(s->findings.size(), 1u);
  EXPECT_NE(s->findings[0].find("seen before the key was created"), std::string::npos);
}

TEST(ReportAudit, HugeCountsSaturateInsteadOfWrapping) {
  const uint64_t big = 9'000'000'000'000'000'000u;
  auto r = AuditReports({Report({Record(big, {{"example.test", "live", "pass"}}),
                                  Record(big, {{"example.test", "live", "pass"}}),
                                  Record(big, {{"example.test", "live", "pass"}})})},
                        {"example.test"}, kKeys);
  EXPECT_EQ(Find(r, "live")->messages, UINT64_MAX);
}

}  // namespace
}  // namespace dkimrotor::audit
