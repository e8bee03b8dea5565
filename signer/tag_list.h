// Parses a DKIM tag=value list (RFC 6376 3.2): DKIM-Signature values and DNS key records.
// Plain value; safe to share read-only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace dkimrotor::signer {

class TagList {
 public:
  // Tag names are case-sensitive; values keep inner folding white space (the caller strips
  // it where the tag's syntax allows). A duplicate tag or a spec without '=' is an error.
  static util::Result<TagList> Parse(std::string_view text);

  std::optional<std::string_view> Get(std::string_view name) const;
  const std::vector<std::pair<std::string, std::string>>& tags() const { return tags_; }

 private:
  std::vector<std::pair<std::string, std::string>> tags_;
};

// The value with every space, tab, CR and LF removed (for b=, bh=, p= and h= values).
std::string StripFws(std::string_view value);

}  // namespace dkimrotor::signer
