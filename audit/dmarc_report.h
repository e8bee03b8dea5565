// One DMARC aggregate report (RFC 7489 appendix C), parsed from XML into what the audit needs:
// who sent it, for which domain and period, and per record the message count and the DKIM
// results. pugixml parses it; it expands no DTD entities (only the five predefined ones and
// character references), so an entity bomb stays unexpanded text. Plain values and a
// stateless function; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace dkimrotor::audit {

struct DkimResult {
  std::string domain;    // d=, lowercase
  std::string selector;  // s=, lowercase
  std::string result;    // "pass", "fail", "temperror", ... lowercase
};

struct ReportRecord {
  uint64_t count = 0;
  std::vector<DkimResult> dkim;
};

struct DmarcReport {
  std::string org_name;
  std::string report_id;
  std::string domain;  // policy_published/domain, lowercase
  int64_t begin = 0;   // date_range, seconds since the epoch
  int64_t end = 0;
  std::vector<ReportRecord> records;
};

// Dates are refused when end < begin or either lies outside 2000..2100: a report that wrong
// cannot be placed in the key history.
util::Result<DmarcReport> ParseDmarcReport(std::string_view xml);

}  // namespace dkimrotor::audit
