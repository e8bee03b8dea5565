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
};

// The first empty line (CRLF or bare LF), or nothing if the data has none yet. `from` skips
// line ends already examined in an earlier call on a shorter prefix of the same data (pass the
// earlier size minus 2), so a header block arriving in many chunks is scanned once.
std::optional<HeaderEnd> FindEndOfHeaders(std::string_view data, size_t from = 0);

// Parses a header block into fields. Line ends may be CRLF or bare LF; folds are stored as CRLF.
// Errors name the line: a line without a colon, a continuation line with no field before it,
// an empty field name.
util::Result<std::vector<HeaderField>> ParseHeaderBlock(std::string_view block);

}  // namespace dkimrotor::signer
