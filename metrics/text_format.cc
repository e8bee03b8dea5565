#include "metrics/text_format.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace dkimrotor::metrics {
namespace {

std::string Number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v);
  return ec == std::errc() ? std::string(buffer, end) : "NaN";
}

// Bucket bounds in plain decimals ("0.0005", not "5e-04"), as client libraries write them.
std::string Bound(double v) {
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, v, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buffer, end) : Number(v);
}

// HELP text escapes backslash and line feed only.
std::string EscapeHelp(std::string_view help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

std::string TextWriter::EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void TextWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += EscapeHelp(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::Name(std::string_view name, const LabelPairs& labels) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      if (i > 0) out_ += ',';
      out_ += labels[i].first;
      out_ += "=\"";
      out_ += EscapeLabelValue(labels[i].second);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
}

void TextWriter::Sample(std::string_view name, const LabelPairs& labels, uint64_t value) {
  Name(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void TextWriter::Sample(std::string_view name, const LabelPairs& labels, int64_t value) {
  Name(name, labels);
  out_ += std::to_string(value);
  out_ += '\n';
}

void TextWriter::Sample(std::string_view name, const LabelPairs& labels, double value) {
  Name(name, labels);
  out_ += Number(value);
  out_ += '\n';
}

void TextWriter::Histogram(std::string_view name, const LabelPairs& labels,
                           const util::Histogram::Reading& reading) {
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < reading.buckets.size(); ++i) {
    cumulative += reading.buckets[i];
    const std::string le = i < util::Histogram::kBounds.size() ? Bound(util::Histogram::kBounds[i]) : "+Inf";
    LabelPairs with_le = labels;
    with_le.emplace_back("le", le);
    // The bucket reads are not one atomic snapshot: +Inf is the count so the two agree.
    Sample(bucket, with_le, i + 1 == reading.buckets.size() ? std::max(cumulative, reading.count) : cumulative);
  }
  Sample(std::string(name) + "_sum", labels, reading.sum);
  Sample(std::string(name) + "_count", labels, std::max(cumulative, reading.count));
}

}  // namespace dkimrotor::metrics
