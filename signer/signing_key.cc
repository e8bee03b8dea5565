#include "signer/signing_key.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {

util::Status ValidateDnsName(std::string_view name, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return util::Err(util::ErrorCode::kInvalidArgument,
                     std::string(what) + " '" + std::string(name) + "' " + std::string(why));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 253) return bad("is longer than 253 characters");
  size_t label = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0) return bad("has an empty label (a leading, trailing or doubled dot)");
      if (label > 63) return bad("has a label longer than 63 characters");
      label = 0;
      continue;
    }
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok) return bad("contains a character not allowed in a DNS name: use letters, digits, '-', '.'");
    ++label;
  }
  return util::Ok();
}

util::Result<std::shared_ptr<const SigningKey>> SigningKey::Create(SigningKeyOptions options) {
  RETURN_IF_ERROR(ValidateDnsName(options.domain, "domain"));
  RETURN_IF_ERROR(ValidateDnsName(options.selector, "selector"));
  if (!options.key)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "selector " + options.selector + " has no private key");
  options.domain = internal::LowerAscii(options.domain);
  return std::make_shared<const SigningKey>(std::move(options));
}

}  // namespace dkimrotor::signer
