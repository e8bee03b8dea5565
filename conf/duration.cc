#include "conf/duration.h"

#include <cstdint>
#include <limits>

namespace dkimrotor::conf {
namespace {

constexpr std::int64_t kNoUnit = 0;

// Seconds per unit, kNoUnit for a character that is not a unit.
std::int64_t UnitSeconds(char c) {
  switch (c) {
    case 's': return 1;
    case 'm': return 60;
    case 'h': return 3600;
    case 'd': return 86400;
    case 'w': return 7 * 86400;
    default: return kNoUnit;
  }
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

util::Unexpected Invalid(std::string_view text, std::string_view why) {
  return util::Err(util::ErrorCode::kInvalidArgument,
                   "\"" + std::string(text) + "\" is not a duration: " + std::string(why));
}

constexpr std::string_view kForm =
    "write one whole number and one unit: s, m, h, d or w (e.g. \"30s\", \"10m\", \"14d\")";

// Parses "<digits><unit>" at text[pos], advancing pos; false if it is not one.
bool ParseTerm(std::string_view text, size_t& pos, std::int64_t& out, bool& overflow) {
  size_t start = pos;
  std::int64_t n = 0;
  while (pos < text.size() && IsDigit(text[pos])) {
    int digit = text[pos] - '0';
    if (n > (std::numeric_limits<std::int64_t>::max() - digit) / 10) overflow = true;
    else n = n * 10 + digit;
    ++pos;
  }
  if (pos == start || pos == text.size()) return false;
  std::int64_t unit = UnitSeconds(text[pos]);
  if (unit == kNoUnit) return false;
  ++pos;
  if (n > std::numeric_limits<std::int64_t>::max() / unit) overflow = true;
  else out = n * unit;
  return true;
}

}  // namespace

util::Result<std::chrono::seconds> ParseDuration(std::string_view text) {
  if (text.empty()) return Invalid(text, std::string("it is empty; ") + std::string(kForm));
  if (text.front() == '-') return Invalid(text, "it must not be negative");
  if (text.front() == ' ' || text.back() == ' ' || text.front() == '\t' || text.back() == '\t')
    return Invalid(text, "remove the spaces around it");

  size_t pos = 0;
  while (pos < text.size() && IsDigit(text[pos])) ++pos;
  if (pos == 0) return Invalid(text, std::string(kForm));
  if (pos == text.size())
    return Invalid(text, "add a unit: \"" + std::string(text) + "s\" for seconds, or m, h, d, w");

  std::string_view rest = text.substr(pos);
  bool all_letters = true;
  for (char c : rest) all_letters &= (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (all_letters && rest.size() > 1)
    return Invalid(text, "unknown unit '" + std::string(rest) + "': use s, m, h, d or w");
  if (rest.size() == 1 && UnitSeconds(rest[0]) == kNoUnit) {
    char c = rest[0];
    if (c >= 'A' && c <= 'Z' && UnitSeconds(static_cast<char>(c - 'A' + 'a')) != kNoUnit)
      return Invalid(text, "units are lowercase: s, m, h, d or w (M is not months)");
    return Invalid(text, "unknown unit '" + std::string(rest) +
                             "': use s, m, h, d or w (months and years vary in length)");
  }
  if (rest[0] == '.' || rest[0] == ',')
    return Invalid(text, "use a whole number of a smaller unit");

  size_t p = 0;
  std::int64_t total = 0;
  bool overflow = false;
  size_t terms = 0;
  while (p < text.size()) {
    std::int64_t v = 0;
    if (!ParseTerm(text, p, v, overflow)) return Invalid(text, kForm);
    if (v > std::numeric_limits<std::int64_t>::max() - total) overflow = true;
    else total += v;
    ++terms;
  }
  // Far below what int64 seconds hold: every duration ends up added to a time_point or turned
  // into std::chrono::nanoseconds (steady_clock), where 292 years already overflow.
  if (overflow || total > kMaxDuration.count())
    return Invalid(text, "it is too large: at most " + FormatDuration(kMaxDuration) +
                             " (about 100 years)");
  if (terms > 1)
    return Invalid(text, "use one number and one unit: write \"" +
                             FormatDuration(std::chrono::seconds(total)) + "\"");
  return std::chrono::seconds(total);
}

std::string FormatDuration(std::chrono::seconds d) {
  std::int64_t s = d.count();
  if (s == 0) return "0s";
  std::string sign;
  std::uint64_t magnitude =
      s < 0 ? 0 - static_cast<std::uint64_t>(s) : static_cast<std::uint64_t>(s);
  if (s < 0) sign = "-";
  for (char unit : {'w', 'd', 'h', 'm'}) {
    auto per = static_cast<std::uint64_t>(UnitSeconds(unit));
    if (magnitude % per == 0) return sign + std::to_string(magnitude / per) + unit;
  }
  return sign + std::to_string(magnitude) + "s";
}

}  // namespace dkimrotor::conf
