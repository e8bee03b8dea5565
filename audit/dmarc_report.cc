#include "audit/dmarc_report.h"

#include <pugixml.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace dkimrotor::audit {
namespace {

using util::ErrorCode;

constexpr int64_t kEarliest = 946684800;   // 2000-01-01T00:00:00Z
constexpr int64_t kLatest = 4102444800;    // 2100-01-01T00:00:00Z
constexpr size_t kMaxRecords = 1'000'000;  // far above any real report; bounds the work

// Element names compared without a namespace prefix: DMARCbis reports may carry one.
std::string_view LocalName(const pugi::xml_node& n) {
  std::string_view name = n.name();
  size_t colon = name.find(':');
  return colon == std::string_view::npos ? name : name.substr(colon + 1);
}

pugi::xml_node Child(const pugi::xml_node& parent, std::string_view name) {
  for (pugi::xml_node c = parent.first_child(); c; c = c.next_sibling())
    if (c.type() == pugi::node_element && LocalName(c) == name) return c;
  return {};
}

std::string Trimmed(const pugi::xml_node& n) {
  std::string_view v = n.child_value();
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.front()))) v.remove_prefix(1);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.remove_suffix(1);
  return std::string(v);
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool ParseInt(const std::string& text, int64_t& out) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && p == text.data() + text.size();
}

}  // namespace

util::Result<DmarcReport> ParseDmarcReport(std::string_view xml) {
  pugi::xml_document doc;
  // parse_default has no parse_doctype: a DTD is skipped, and its entities are never defined.
  const pugi::xml_parse_result parsed = doc.load_buffer(xml.data(), xml.size(), pugi::parse_default);
  if (!parsed)
    return util::Err(ErrorCode::kInvalidArgument, std::string("not well-formed XML: ") + parsed.description() +
                                                      " at byte " + std::to_string(parsed.offset));
  const pugi::xml_node feedback = doc.document_element();
  if (LocalName(feedback) != "feedback")
    return util::Err(ErrorCode::kInvalidArgument,
                     "not a DMARC aggregate report: the root element is <" + std::string(feedback.name()) +
                         ">, not <feedback>");
  DmarcReport r;
  const pugi::xml_node meta = Child(feedback, "report_metadata");
  r.org_name = Trimmed(Child(meta, "org_name"));
  r.report_id = Trimmed(Child(meta, "report_id"));
  r.domain = Lower(Trimmed(Child(Child(feedback, "policy_published"), "domain")));
  if (r.domain.empty())
    return util::Err(ErrorCode::kInvalidArgument, "no <policy_published><domain>: the report names no domain");

  const pugi::xml_node range = Child(meta, "date_range");
  const std::string begin = Trimmed(Child(range, "begin"));
  const std::string end = Trimmed(Child(range, "end"));
  if (!ParseInt(begin, r.begin) || !ParseInt(end, r.end))
    return util::Err(ErrorCode::kInvalidArgument,
                     "<date_range> needs <begin> and <end> in seconds since the epoch, found '" + begin +
                         "' and '" + end + "'");
  if (r.begin < kEarliest || r.begin >= kLatest || r.end < kEarliest || r.end >= kLatest)
    return util::Err(ErrorCode::kInvalidArgument, "<date_range> " + begin + ".." + end +
                                                      " lies outside the years 2000 to 2099: wrong dates");
  if (r.end < r.begin)
    return util::Err(ErrorCode::kInvalidArgument,
                     "<date_range> ends (" + end + ") before it begins (" + begin + "): wrong dates");

  for (pugi::xml_node rec = feedback.first_child(); rec; rec = rec.next_sibling()) {
    if (rec.type() != pugi::node_element || LocalName(rec) != "record") continue;
    if (r.records.size() >= kMaxRecords)
      return util::Err(ErrorCode::kInvalidArgument, "more than " + std::to_string(kMaxRecords) + " records");
    ReportRecord record;
    const std::string count = Trimmed(Child(Child(rec, "row"), "count"));
    int64_t n = 0;
    if (!ParseInt(count, n) || n < 0)
      return util::Err(ErrorCode::kInvalidArgument,
                       "record " + std::to_string(r.records.size() + 1) + ": <row><count> is '" + count +
                           "', not a count");
    record.count = static_cast<uint64_t>(n);
    const pugi::xml_node auth = Child(rec, "auth_results");
    for (pugi::xml_node d = auth.first_child(); d; d = d.next_sibling()) {
      if (d.type() != pugi::node_element || LocalName(d) != "dkim") continue;
      DkimResult result{Lower(Trimmed(Child(d, "domain"))), Lower(Trimmed(Child(d, "selector"))),
                        Lower(Trimmed(Child(d, "result")))};
      if (result.domain.empty() || result.selector.empty()) continue;  // nothing to attribute
      record.dkim.push_back(std::move(result));
    }
    r.records.push_back(std::move(record));
  }
  return r;
}

}  // namespace dkimrotor::audit
