// Durations as the configuration file writes them: one whole number and one unit, s m h d or w
// ("30s", "10m", "1h", "14d", "2w"). Deliberately no combinations ("1h30m") and no months or
// years, whose length varies.
// Stateless; safe from any thread.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::conf {

// No duration the file can hold is longer: 5218 weeks, about 100 years, far from where
// nanosecond clocks overflow (292 years). Each setting has a much smaller maximum of its own.
inline constexpr std::chrono::seconds kMaxDuration{5218LL * 7 * 86400};

// kInvalidArgument, with the fix, for anything else: "1.5h", "1h30m" (suggests "90m"), "30"
// (suggests "30s"), "3M", "-1d", " 1d", and values over kMaxDuration.
util::Result<std::chrono::seconds> ParseDuration(std::string_view text);

// The largest unit that divides the value exactly: 86400s -> "1d", 5400s -> "90m", 0 -> "0s".
// ParseDuration(FormatDuration(d)) == d for every d >= 0.
std::string FormatDuration(std::chrono::seconds d);

}  // namespace dkimrotor::conf
