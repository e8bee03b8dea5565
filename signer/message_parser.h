// Splits a raw RFC 5322 message into header fields and body: for callers that hold the message
// as bytes (the CLI, tests); the milter receives fields already split by the MTA.
// Stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "signer/header_field.h"
#include "util/result.h"

namespace dkimrotor::signer {

struct HeaderEnd {
  size_t header_bytes;  // the header block, including the last field's line end
  size_t body_start;    // after the empty line that separates header and body
  // The header ended at a line that is no header field and no continuation (no colon, a
  // space in the name, 8-bit bytes): that line begins the body, and there was no empty line.
  // Postfix and Sendmail do the same and insert the empty line when they pass the message on.
  bool separator_missing = false;
};

// Where a search over growing prefixes of the same data goes on: the start of the first line
// not yet known to be a header field or a continuation, and how much of it holds no line end.
struct HeaderScan {
  size_t line_start = 0;
  size_t searched = 0;
};

// The end of the header block as an MTA sees it: the first empty line (CRLF or bare LF), or the
// first line that is neither a header field (RFC 5322 printable ASCII name, optional white space,
// colon) nor a continuation of one. Nothing when the data has neither yet; with `at_eof` the
// data is all there is. `scan` carries the search across calls on growing prefixes of the same
// data, so a header block arriving in many chunks is scanned once.
std::optional<HeaderEnd> FindEndOfHeaders(std::string_view data, HeaderScan* scan, bool at_eof);
inline std::optional<HeaderEnd> FindEndOfHeaders(std::string_view data, bool at_eof = false) {
  HeaderScan scan;
  return FindEndOfHeaders(data, &scan, at_eof);
}

// Parses a header block into fields. Line ends may be CRLF or bare LF; folds are stored as CRLF.
// Errors name the line: a line without a colon, a continuation line with no field before it,
// an empty field name.
util::Result<std::vector<HeaderField>> ParseHeaderBlock(std::string_view block);

}  // namespace dkimrotor::signer
