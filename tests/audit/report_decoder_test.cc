#include "audit/report_decoder.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <string>

namespace dkimrotor::audit {
namespace {

std::string Gzip(const std::string& data) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

TEST(ReportDecoder, DetectsTheFormatByMagicBytes) {
  EXPECT_EQ(DetectFormat("<?xml version=\"1.0\"?><feedback/>"), ReportFormat::kXml);
  EXPECT_EQ(DetectFormat(Gzip("<feedback/>")), ReportFormat::kGzip);
  EXPECT_EQ(DetectFormat(std::string("PK\x03\x04rest", 8)), ReportFormat::kZip);
  EXPECT_EQ(DetectFormat(""), ReportFormat::kXml);
}

TEST(ReportDecoder, PlainXmlPassesThrough) {
  auto docs = DecodeReport("<feedback/>");
  ASSERT_TRUE(docs.has_value()) << docs.error().message;
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0].xml, "<feedback/>");
}

TEST(ReportDecoder, PlainXmlOverTheLimitIsRefused) {
  DecodeLimits limits;
  limits.max_xml_bytes = 1024;
  auto docs = DecodeReport(std::string(2048, ' '), limits);
  ASSERT_FALSE(docs.has_value());
  EXPECT_NE(docs.error().message.find("over the"), std::string::npos) << docs.error().message;
}

TEST(ReportDecoder, GzipIsInflated) {
  const std::string xml = "<feedback>" + std::string(100000, 'x') + "</feedback>";
  auto docs = DecodeReport(Gzip(xml));
  ASSERT_TRUE(docs.has_value()) << docs.error().message;
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0].xml, xml);
}

TEST(ReportDecoder, ConcatenatedGzipMembersAreRead) {
  auto docs = DecodeReport(Gzip("<feed") + Gzip("back/>"));
  ASSERT_TRUE(docs.has_value()) << docs.error().message;
  EXPECT_EQ((*docs)[0].xml, "<feedback/>");
}

TEST(ReportDecoder, GzipBombStopsAtTheLimit) {
  DecodeLimits limits;
  limits.max_xml_bytes = 1 << 20;
  auto docs = DecodeReport(Gzip(std::string(20 << 20, '\0')), limits);
  ASSERT_FALSE(docs.has_value());
  EXPECT_NE(docs.error().message.find("decompression bomb"), std::string::npos) << docs.error().message;
}

TEST(ReportDecoder, TruncatedOrCorruptGzipIsAnError) {
  std::string gz = Gzip(std::string(100000, 'a') + "xyz");
  auto truncated = DecodeReport(gz.substr(0, gz.size() / 2));
  ASSERT_FALSE(truncated.has_value());
  EXPECT_NE(truncated.error().message.find("truncated"), std::string::npos) << truncated.error().message;
  std::string corrupt = gz;
  for (size_t i = 12; i < corrupt.size() - 8; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5a);
  auto bad = DecodeReport(corrupt);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("gzip"), std::string::npos) << bad.error().message;
}

TEST(ReportDecoder, ZipThatIsNotAZipIsAnError) {
  auto docs = DecodeReport(std::string("PK\x03\x04garbage", 11));
  ASSERT_FALSE(docs.has_value());
  EXPECT_NE(docs.error().message.find("zip"), std::string::npos) << docs.error().message;
}

}  // namespace
}  // namespace dkimrotor::audit
