#include "audit/report_decoder.h"

#include <sys/stat.h>
#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <memory>

#include "util/openssl_ptr.h"

namespace dkimrotor::audit {
namespace {

using util::ErrorCode;

constexpr size_t kChunk = 64 * 1024;

std::string Mib(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

std::string TooBig(const std::string& what, size_t limit) {
  return what + " decompresses to more than " + Mib(limit) +
         " (the limit): refused as a possible decompression bomb";
}

bool EndsWithXml(std::string_view name) {
  if (name.size() < 4) return false;
  std::string tail(name.substr(name.size() - 4));
  std::transform(tail.begin(), tail.end(), tail.begin(), [](unsigned char c) { return std::tolower(c); });
  return tail == ".xml";
}

// zlib's inflate, one chunk at a time, so a bomb stops at the limit having used at most the
// limit in memory. Concatenated gzip members (RFC 1952 allows them) are read in turn.
util::Result<std::string> Gunzip(std::string_view in, size_t limit) {
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) return util::Err(ErrorCode::kInternal, "zlib: inflateInit2 failed");
  std::unique_ptr<z_stream, util::CDeleter<&inflateEnd>> guard(&zs);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[kChunk];
  for (;;) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const size_t produced = sizeof(buf) - zs.avail_out;
    if (out.size() + produced > limit) return util::Err(ErrorCode::kInvalidArgument, TooBig("gzip data", limit));
    out.append(buf, produced);
    if (rc == Z_STREAM_END) {
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        if (inflateReset(&zs) != Z_OK) return util::Err(ErrorCode::kInternal, "zlib: inflateReset failed");
        continue;
      }
      return out;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0)
      return util::Err(ErrorCode::kInvalidArgument, "gzip data is truncated");
    if (rc != Z_OK)
      return util::Err(ErrorCode::kInvalidArgument,
                       std::string("gzip data is corrupt (") + (zs.msg ? zs.msg : "zlib error") + ")");
  }
}

using ZipPtr = std::unique_ptr<zip_t, util::CDeleter<&zip_discard>>;

int CloseZipFile(zip_file_t* f) { return zip_fclose(f); }
using ZipFilePtr = std::unique_ptr<zip_file_t, util::CDeleter<&CloseZipFile>>;

util::Result<std::vector<XmlDocument>> Unzip(std::string_view in, const DecodeLimits& limits) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(in.data(), in.size(), 0, &error);
  if (source == nullptr) {
    std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    return util::Err(ErrorCode::kInternal, "libzip: " + why);
  }
  ZipPtr archive(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (!archive) {
    std::string why = zip_error_strerror(&error);
    zip_error_fini(&error);
    zip_source_free(source);
    return util::Err(ErrorCode::kInvalidArgument, "not a readable zip archive (" + why + ")");
  }
  zip_error_fini(&error);

  const zip_int64_t entries = zip_get_num_entries(archive.get(), 0);
  if (entries < 0 || static_cast<size_t>(entries) > limits.max_zip_entries)
    return util::Err(ErrorCode::kInvalidArgument,
                     "zip holds " + std::to_string(entries) + " entries, over the limit of " +
                         std::to_string(limits.max_zip_entries));

  // First the headers: a bomb that declares its size is refused before anything is inflated.
  std::vector<zip_uint64_t> wanted;
  size_t declared_total = 0;
  for (zip_uint64_t i = 0; i < static_cast<zip_uint64_t>(entries); ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(archive.get(), i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      return util::Err(ErrorCode::kInvalidArgument, "zip entry " + std::to_string(i) + " is unreadable");
    std::string_view name = st.name;
    if (name.empty() || name.back() == '/' || !EndsWithXml(name)) continue;
    zip_uint8_t opsys = 0;
    zip_uint32_t attributes = 0;
    if (zip_file_get_external_attributes(archive.get(), i, 0, &opsys, &attributes) == 0 &&
        opsys == ZIP_OPSYS_UNIX) {
      const mode_t mode = attributes >> 16;
      // No type bits (some writers, Python's zipfile) is a plain file; a symlink is not.
      if ((mode & S_IFMT) != 0 && !S_ISREG(mode)) continue;
    }
    if (st.valid & ZIP_STAT_SIZE) {
      if (st.size > limits.max_xml_bytes)
        return util::Err(ErrorCode::kInvalidArgument,
                         "zip entry " + std::string(name) + " declares " + std::to_string(st.size) +
                             " bytes uncompressed, over the " + Mib(limits.max_xml_bytes) +
                             " limit: refused before inflating (a possible zip bomb)");
      declared_total += st.size;
      if (declared_total > limits.max_zip_total_bytes)
        return util::Err(ErrorCode::kInvalidArgument,
                         "zip entries declare more than " + Mib(limits.max_zip_total_bytes) +
                             " uncompressed together: refused before inflating (a possible zip bomb)");
    }
    wanted.push_back(i);
  }
  if (wanted.empty()) return util::Err(ErrorCode::kInvalidArgument, "zip holds no regular .xml entry");

  // Then the data, capped again while inflating: headers can lie.
  std::vector<XmlDocument> docs;
  size_t total = 0;
  char buf[kChunk];
  for (zip_uint64_t i : wanted) {
    XmlDocument doc;
    doc.name = zip_get_name(archive.get(), i, 0);
    ZipFilePtr file(zip_fopen_index(archive.get(), i, 0));
    if (!file)
      return util::Err(ErrorCode::kInvalidArgument,
                       "zip entry " + doc.name + " cannot be opened (" + zip_strerror(archive.get()) + ")");
    for (;;) {
      const zip_int64_t n = zip_fread(file.get(), buf, sizeof(buf));
      if (n < 0)
        return util::Err(ErrorCode::kInvalidArgument,
                         "zip entry " + doc.name + " is corrupt (" + zip_file_strerror(file.get()) + ")");
      if (n == 0) break;
      total += static_cast<size_t>(n);
      if (doc.xml.size() + static_cast<size_t>(n) > limits.max_xml_bytes)
        return util::Err(ErrorCode::kInvalidArgument, TooBig("zip entry " + doc.name, limits.max_xml_bytes));
      if (total > limits.max_zip_total_bytes)
        return util::Err(ErrorCode::kInvalidArgument, TooBig("the zip's .xml entries", limits.max_zip_total_bytes));
      doc.xml.append(buf, static_cast<size_t>(n));
    }
    docs.push_back(std::move(doc));
  }
  return docs;
}

}  // namespace

ReportFormat DetectFormat(std::string_view bytes) {
  if (bytes.size() >= 2 && static_cast<unsigned char>(bytes[0]) == 0x1f && static_cast<unsigned char>(bytes[1]) == 0x8b)
    return ReportFormat::kGzip;
  if (bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K' &&
      ((bytes[2] == 3 && bytes[3] == 4) || (bytes[2] == 5 && bytes[3] == 6)))
    return ReportFormat::kZip;
  return ReportFormat::kXml;
}

util::Result<std::vector<XmlDocument>> DecodeReport(std::string_view bytes, const DecodeLimits& limits) {
  switch (DetectFormat(bytes)) {
    case ReportFormat::kGzip: {
      ASSIGN_OR_RETURN(std::string xml, Gunzip(bytes, limits.max_xml_bytes));
      return std::vector<XmlDocument>{XmlDocument{"", std::move(xml)}};
    }
    case ReportFormat::kZip:
      return Unzip(bytes, limits);
    case ReportFormat::kXml:
      break;
  }
  if (bytes.size() > limits.max_xml_bytes)
    return util::Err(ErrorCode::kInvalidArgument,
                     "XML report is " + std::to_string(bytes.size()) + " bytes, over the " +
                         Mib(limits.max_xml_bytes) + " limit");
  return std::vector<XmlDocument>{XmlDocument{"", std::string(bytes)}};
}

}  // namespace dkimrotor::audit
