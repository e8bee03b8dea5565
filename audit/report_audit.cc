#include "audit/report_audit.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

namespace dkimrotor::audit {
namespace {

using keystore::KeyInfo;
using keystore::KeyState;
using keystore::TimePoint;

struct Tally {
  SelectorAudit audit;
  const KeyInfo* key = nullptr;
  bool active_in_some_range = false;
  int64_t latest_end = 0;
  std::string state_at_latest_end;
  std::set<std::string> seen_findings;

  void AddFinding(std::string f) {
    if (seen_findings.insert(f).second) audit.findings.push_back(std::move(f));
  }
};

// Counts come from strangers: a hostile report must not wrap a sum around to a small number.
void Add(uint64_t& sum, uint64_t n) { sum = n > UINT64_MAX - sum ? UINT64_MAX : sum + n; }

std::string ReporterText(const DmarcReport& r) {
  return (r.org_name.empty() ? std::string("a receiver") : r.org_name) + " (report " +
         (r.report_id.empty() ? std::string("without id") : r.report_id) + ", " + RangeText(r) + ")";
}

// The key's state at `t`, from its transition times. Before activation the history does not
// say when DNS was verified, so a key that is past pending now is called ready then.
std::string StateAt(const KeyInfo& k, TimePoint t) {
  if (t < k.created) return "not yet created";
  if (k.revoked && *k.revoked <= t) return "revoked";
  if (k.retired && *k.retired <= t) return "retiring";
  if (k.activated && *k.activated <= t) return "active";
  return k.state == KeyState::kPending ? "pending" : "ready";
}

bool ActiveDuring(const KeyInfo& k, TimePoint begin, TimePoint end) {
  if (!k.activated || *k.activated > end) return false;
  if (k.retired && *k.retired < begin) return false;
  if (k.revoked && *k.revoked < begin) return false;
  return true;
}

void Judge(Tally& t, const DmarcReport& r, const std::string& domain) {
  if (t.key == nullptr) {
    t.AddFinding("not managed by dkimrotor: another service signs for " + domain +
                 " with this selector; add it to the inventory or stop it");
    return;
  }
  const KeyInfo& k = *t.key;
  const TimePoint begin = keystore::FromUnix(r.begin), end = keystore::FromUnix(r.end);
  if (ActiveDuring(k, begin, end)) t.active_in_some_range = true;
  if (r.end >= t.latest_end) {
    t.latest_end = r.end;
    t.state_at_latest_end = StateAt(k, end);
  }
  if (k.revoked && *k.revoked < begin)
    t.AddFinding("signing after revocation: revoked " + keystore::Rfc3339(*k.revoked) + ", yet " +
                 ReporterText(r) + " saw it sign: its private key may be in other hands");
  else if (end < k.created)
    t.AddFinding("seen before the key was created (" + keystore::Rfc3339(k.created) + ") by " + ReporterText(r) +
                 ": something else signs with this selector name");
}

}  // namespace

bool AuditResult::NeedsAttention() const {
  for (const auto& d : domains)
    for (const auto& s : d.selectors)
      if (!s.findings.empty()) return true;
  return false;
}

std::string RangeText(const DmarcReport& r) {
  return keystore::Rfc3339(keystore::FromUnix(r.begin)) + ".." + keystore::Rfc3339(keystore::FromUnix(r.end));
}

AuditResult AuditReports(const std::vector<DmarcReport>& reports, const std::vector<std::string>& configured_domains,
                         const std::vector<KeyInfo>& keys) {
  AuditResult result;
  std::map<std::string, std::map<std::string, Tally>> tallies;  // domain -> selector -> tally
  const std::set<std::string> configured(configured_domains.begin(), configured_domains.end());
  for (const DmarcReport& r : reports) {
    if (!configured.count(r.domain)) {
      result.notes.push_back("report from " + ReporterText(r) + " is for " + r.domain +
                             ", which is not configured here: skipped");
      continue;
    }
    auto& selectors = tallies[r.domain];
    for (const ReportRecord& rec : r.records) {
      // One verdict per selector and record: a message signed twice with one selector counts once.
      std::map<std::string, std::pair<bool, bool>> verdicts;  // selector -> (passed, failed)
      for (const DkimResult& d : rec.dkim) {
        if (d.domain != r.domain) continue;  // a third party's own d=, not ours to judge
        auto& v = verdicts[d.selector];
        if (d.result == "pass") v.first = true;
        else if (d.result != "none") v.second = true;
      }
      for (const auto& [selector, v] : verdicts) {
        Tally& t = selectors[selector];
        if (t.audit.selector.empty()) {
          t.audit.selector = selector;
          for (const KeyInfo& k : keys)
            if (k.domain == r.domain && k.selector == selector) t.key = &k;
          t.audit.managed = t.key != nullptr;
        }
        Add(t.audit.messages, rec.count);
        if (v.first) Add(t.audit.pass, rec.count);
        else if (v.second) Add(t.audit.fail, rec.count);
        Judge(t, r, r.domain);
      }
    }
  }
  for (const std::string& domain : configured_domains) {
    DomainAudit d;
    d.domain = domain;
    for (auto& [selector, t] : tallies[domain]) {
      if (t.key != nullptr) {
        t.audit.state = t.active_in_some_range ? "active" : t.state_at_latest_end;
        if (t.audit.fail > 0)
          t.AddFinding("failing at receivers: " + std::to_string(t.audit.fail) + " of " +
                       std::to_string(t.audit.messages) +
                       " message(s) failed DKIM; run 'dkimrotor check' for its DNS record");
      }
      d.selectors.push_back(std::move(t.audit));
    }
    result.domains.push_back(std::move(d));
  }
  return result;
}

}  // namespace dkimrotor::audit
