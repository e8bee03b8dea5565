#include "signer/tag_list.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {

util::Result<TagList> TagList::Parse(std::string_view text) {
  TagList list;
  while (true) {
    size_t semi = text.find(';');
    std::string_view spec = internal::TrimFws(text.substr(0, semi));
    if (!spec.empty()) {
      size_t eq = spec.find('=');
      if (eq == std::string_view::npos)
        return util::Err(util::ErrorCode::kInvalidArgument,
                         "tag list: '" + std::string(spec) + "' has no '='");
      std::string name(internal::TrimFws(spec.substr(0, eq)));
      if (name.empty())
        return util::Err(util::ErrorCode::kInvalidArgument, "tag list: a tag has no name");
      if (list.Get(name))
        return util::Err(util::ErrorCode::kInvalidArgument, "tag list: duplicate tag " + name + "=");
      list.tags_.emplace_back(std::move(name), std::string(internal::TrimFws(spec.substr(eq + 1))));
    }
    if (semi == std::string_view::npos) break;
    text.remove_prefix(semi + 1);
  }
  return list;
}

std::optional<std::string_view> TagList::Get(std::string_view name) const {
  for (const auto& [k, v] : tags_)
    if (k == name) return std::string_view(v);
  return std::nullopt;
}

std::string StripFws(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out.push_back(c);
  return out;
}

}  // namespace dkimrotor::signer
