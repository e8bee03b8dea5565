#include "signer/canonicalization.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {
namespace {

util::Result<Canon> ParseOne(std::string_view s) {
  if (internal::EqualsIgnoreCase(s, "relaxed")) return Canon::kRelaxed;
  if (internal::EqualsIgnoreCase(s, "simple")) return Canon::kSimple;
  return util::Err(util::ErrorCode::kInvalidArgument,
                   "unknown canonicalization '" + std::string(s) +
                       "': use simple or relaxed, as in relaxed/relaxed");
}

}  // namespace

std::string_view CanonName(Canon c) { return c == Canon::kRelaxed ? "relaxed" : "simple"; }

util::Result<Canonicalization> ParseCanonicalization(std::string_view text) {
  Canonicalization c;
  auto slash = text.find('/');
  ASSIGN_OR_RETURN(c.header, ParseOne(text.substr(0, slash)));
  if (slash == std::string_view::npos) {
    c.body = Canon::kSimple;
  } else {
    ASSIGN_OR_RETURN(c.body, ParseOne(text.substr(slash + 1)));
  }
  return c;
}

std::string FormatCanonicalization(const Canonicalization& c) {
  std::string s(CanonName(c.header));
  s += '/';
  s += CanonName(c.body);
  return s;
}

}  // namespace dkimrotor::signer
