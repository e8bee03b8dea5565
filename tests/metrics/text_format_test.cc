#include "metrics/text_format.h"

#include <gtest/gtest.h>

namespace dkimrotor::metrics {
namespace {

TEST(TextWriter, EscapesBackslashQuoteAndNewlineInLabelValues) {
  EXPECT_EQ(TextWriter::EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  TextWriter w;
  w.Family("x_total", "counter", "Help with a \\ and a\nnewline.");
  w.Sample("x_total", {{"domain", "ex\"ample"}, {"selector", "s\\1\n"}}, uint64_t{7});
  EXPECT_EQ(w.text(),
            "# HELP x_total Help with a \\\\ and a\\nnewline.\n"
            "# TYPE x_total counter\n"
            "x_total{domain=\"ex\\\"ample\",selector=\"s\\\\1\\n\"} 7\n");
}

TEST(TextWriter, WritesSamplesWithoutLabelsAndNegativeGauges) {
  TextWriter w;
  w.Sample("g", {}, int64_t{-42});
  w.Sample("h", {{"a", "b"}}, 0.5);
  EXPECT_EQ(w.text(), "g -42\nh{a=\"b\"} 0.5\n");
}

TEST(TextWriter, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  util::Histogram h;
  h.Observe(0.00003);  // first bucket
  h.Observe(0.0003);   // le=0.0005
  h.Observe(0.0003);
  h.Observe(5);        // above every bound
  TextWriter w;
  w.Histogram("d_seconds", {}, h.Read());
  const std::string& t = w.text();
  EXPECT_NE(t.find("d_seconds_bucket{le=\"0.00005\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_bucket{le=\"0.00025\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_bucket{le=\"0.0005\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_bucket{le=\"1\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_count 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("d_seconds_sum 5.00063"), std::string::npos) << t;
  // Never decreasing from one bucket to the next, and +Inf last.
  uint64_t last = 0;
  size_t buckets = 0;
  for (size_t pos = t.find("_bucket{"); pos != std::string::npos; pos = t.find("_bucket{", pos + 1)) {
    const uint64_t v = std::stoull(t.substr(t.find("} ", pos) + 2));
    EXPECT_GE(v, last);
    last = v;
    ++buckets;
  }
  EXPECT_EQ(buckets, util::Histogram::kBounds.size() + 1);
  EXPECT_LT(t.find("le=\"1\""), t.find("le=\"+Inf\""));
}

TEST(TextWriter, HistogramKeepsOtherLabelsBeforeLe) {
  TextWriter w;
  w.Histogram("d", {{"k", "v"}}, util::Histogram().Read());
  EXPECT_NE(w.text().find("d_bucket{k=\"v\",le=\"+Inf\"} 0\n"), std::string::npos) << w.text();
  EXPECT_NE(w.text().find("d_sum{k=\"v\"} 0\n"), std::string::npos) << w.text();
}

}  // namespace
}  // namespace dkimrotor::metrics
