#include "signer/message_parser.h"

#include <string>

#include "signer/internal/text.h"

namespace dkimrotor::signer {

std::optional<HeaderEnd> FindEndOfHeaders(std::string_view data, size_t from) {
  if (from == 0 && data.starts_with("\r\n")) return HeaderEnd{0, 2};
  if (from == 0 && data.starts_with("\n")) return HeaderEnd{0, 1};
  for (size_t pos = data.find('\n', from); pos != std::string_view::npos; pos = data.find('\n', pos + 1)) {
    if (pos + 1 < data.size() && data[pos + 1] == '\n') return HeaderEnd{pos + 1, pos + 2};
    if (pos + 2 < data.size() && data[pos + 1] == '\r' && data[pos + 2] == '\n')
      return HeaderEnd{pos + 1, pos + 3};
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
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

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
