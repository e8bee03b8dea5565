#include "signer/message_parser.h"

#include <algorithm>
#include <string>

#include "signer/internal/text.h"

namespace dkimrotor::signer {

namespace {

enum class Line { kField, kOther, kUndecided };

// Whether `line` (a line's start, perhaps not all of it) opens a header field as Postfix's
// is_header() decides: printable US-ASCII other than the colon, optional white space, a colon.
// The incremental form of IsFieldName(), which the milter's path checks the same names with.
// A name longer than any line RFC 5322 allows makes it no field, so a search over a huge
// line that never ends stays linear.
constexpr size_t kMaxFieldName = kMaxFieldNameLength + 1;

Line FieldStart(std::string_view line, bool complete) {
  size_t i = 0;
  while (i < line.size()) {
    if (i == kMaxFieldName) return Line::kOther;
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c <= 32 || c >= 127 || c == ':') break;
    ++i;
  }
  if (i == line.size()) return complete ? Line::kOther : Line::kUndecided;
  if (i == 0) return Line::kOther;
  while (i < line.size() && internal::IsWsp(line[i])) ++i;
  if (i == line.size()) return complete ? Line::kOther : Line::kUndecided;
  return line[i] == ':' ? Line::kField : Line::kOther;
}

}  // namespace

std::optional<HeaderEnd> FindEndOfHeaders(std::string_view data, HeaderScan* scan, bool at_eof) {
  size_t pos = scan->line_start;
  while (pos < data.size()) {
    // An empty line ends the header; the body follows it.
    if (data[pos] == '\n') return HeaderEnd{pos, pos + 1};
    if (data[pos] == '\r' && pos + 1 < data.size() && data[pos + 1] == '\n') return HeaderEnd{pos, pos + 2};
    if (data[pos] == '\r' && pos + 1 == data.size() && !at_eof) return std::nullopt;
    const size_t search_from = std::max(pos, pos + scan->searched);
    const size_t nl = data.find('\n', std::min(search_from, data.size()));
    const bool complete = nl != std::string_view::npos || at_eof;
    const std::string_view line = data.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (!(pos > 0 && internal::IsWsp(data[pos]))) {  // not a continuation of the field before
      switch (FieldStart(line, complete)) {
        case Line::kField: break;
        case Line::kOther: return HeaderEnd{pos, pos, /*separator_missing=*/true};
        case Line::kUndecided: break;
      }
    }
    if (nl == std::string_view::npos) {
      scan->line_start = pos;
      scan->searched = data.size() - pos;
      return std::nullopt;
    }
    pos = nl + 1;
    scan->line_start = pos;
    scan->searched = 0;
  }
  return std::nullopt;
}

util::Result<std::vector<HeaderField>> ParseHeaderBlock(std::string_view block) {
  std::vector<HeaderField> fields;
  size_t line_no = 0;
  while (!block.empty()) {
    ++line_no;
    size_t nl = block.find('\n');
    std::string_view line = block.substr(0, nl);
    block.remove_prefix(nl == std::string_view::npos ? block.size() : nl + 1);
    // Only a CR before the LF belongs to the line end. A CR that ends the input is a bare CR
    // in the value: the MTA delivers "\r\r\n", which verifiers read differently.
    if (nl != std::string_view::npos && !line.empty() && line.back() == '\r') line.remove_suffix(1);

    if (!line.empty() && internal::IsWsp(line.front())) {
      if (fields.empty())
        return util::Err(util::ErrorCode::kInvalidArgument,
                         "header line 1 starts with white space: a continuation with no field");
      fields.back().value += "\r\n";
      fields.back().value.append(line);
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "header line " + std::to_string(line_no) + " has no colon");
    std::string_view name = line.substr(0, colon);
    if (FieldKey(name).empty())
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "header line " + std::to_string(line_no) + " has an empty field name");
    fields.push_back(HeaderField{std::string(name), std::string(line.substr(colon + 1))});
  }
  return fields;
}

}  // namespace dkimrotor::signer
