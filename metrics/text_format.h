// Writes the Prometheus text exposition format (version 0.0.4): HELP and TYPE lines, samples
// with escaped label values, and histograms as cumulative buckets with +Inf, _sum and _count.
// Knows nothing about where the numbers come from; the daemon feeds it at each scrape.
// Not thread-safe: one writer per scrape.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/histogram.h"

namespace dkimrotor::metrics {

using LabelPairs = std::vector<std::pair<std::string_view, std::string_view>>;

// The content type of what TextWriter writes.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

class TextWriter {
 public:
  // Starts a metric family; its samples follow. `type` is "counter", "gauge" or "histogram".
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const LabelPairs& labels, uint64_t value);
  void Sample(std::string_view name, const LabelPairs& labels, int64_t value);
  void Sample(std::string_view name, const LabelPairs& labels, double value);
  // The buckets, _sum and _count of a histogram family started with Family().
  void Histogram(std::string_view name, const LabelPairs& labels, const util::Histogram::Reading& reading);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

  // A label value as the format wants it: backslash, double quote and line feed escaped.
  static std::string EscapeLabelValue(std::string_view value);

 private:
  void Name(std::string_view name, const LabelPairs& labels);
  std::string out_;
};

}  // namespace dkimrotor::metrics
