// Turns a DMARC aggregate report file's bytes, as receivers send them (plain XML, gzip, or a
// zip holding .xml entries), into XML documents. The format is told by the magic bytes, not
// the file name. Every size is capped, so a decompression bomb stops at a limit with a
// message instead of filling memory; zip entries that are not regular files ending in .xml
// are skipped. Stateless functions over bytes; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace dkimrotor::audit {

struct DecodeLimits {
  size_t max_xml_bytes = 50u << 20;         // one XML document, plain or decompressed
  size_t max_zip_total_bytes = 100u << 20;  // all of a zip's .xml entries together
  size_t max_zip_entries = 64;              // entries in a zip, of any kind
};

enum class ReportFormat { kXml, kGzip, kZip };

// By the magic bytes: gzip 1f 8b, zip "PK\3\4" (or "PK\5\6", an empty zip); anything else
// is taken for XML and left to the parser to judge.
ReportFormat DetectFormat(std::string_view bytes);

struct XmlDocument {
  std::string name;  // the zip entry's name; empty for plain XML and gzip
  std::string xml;
};

// The XML documents in `bytes`. An error says what was wrong and which limit was hit.
util::Result<std::vector<XmlDocument>> DecodeReport(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace dkimrotor::audit
