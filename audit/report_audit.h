// Checks DMARC aggregate reports against the keystore's key history: per configured domain and
// per selector the receivers saw, whether dkimrotor manages it, its state during the reports'
// date ranges, the messages and the DKIM passes and failures, and what needs attention.
// A pure function over parsed reports and KeyInfo values; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audit/dmarc_report.h"
#include "keystore/key_info.h"

namespace dkimrotor::audit {

struct SelectorAudit {
  std::string selector;
  bool managed = false;
  // "active" when the key signed at any time during a report's range; otherwise its state at
  // the latest range's end ("pending", "ready", "retiring", "revoked", or "not yet created").
  // Empty for a selector dkimrotor does not manage.
  std::optional<std::string> state;
  uint64_t messages = 0;  // <count> of the records where the selector appears
  uint64_t pass = 0;      // of those, records where it passed
  uint64_t fail = 0;      // records where it did not pass and was not "none"
  std::vector<std::string> findings;
};

struct DomainAudit {
  std::string domain;
  std::vector<SelectorAudit> selectors;  // sorted by selector
};

struct AuditResult {
  std::vector<DomainAudit> domains;  // every configured domain, in configuration order
  std::vector<std::string> notes;    // one line per report skipped (domain not configured)
  bool NeedsAttention() const;       // any finding
};

AuditResult AuditReports(const std::vector<DmarcReport>& reports, const std::vector<std::string>& configured_domains,
                         const std::vector<keystore::KeyInfo>& keys);

// "2026-11-01T00:00:00Z..2026-11-02T00:00:00Z"
std::string RangeText(const DmarcReport& report);

}  // namespace dkimrotor::audit
