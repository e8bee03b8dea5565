#include "milter/internal/message_context.h"

#include <cstring>

#include "signer/from_domain.h"

namespace dkimrotor::milter::internal {

void MessageContext::AddHeader(const char* name, const char* value, bool leading_space) {
  std::string v;
  if (!leading_space) v.push_back(' ');  // what the MTA stripped after the colon
  for (const char* p = value; *p; ++p) {
    if (*p == '\n' && (v.empty() || v.back() != '\r')) v.push_back('\r');
    v.push_back(*p);
  }
  fields.push_back(signer::HeaderField{name, std::move(v)});
}

util::Result<std::string> MessageContext::FromDomain() const {
  const signer::HeaderField* from = nullptr;
  int count = 0;
  for (const auto& f : fields)
    if (signer::FieldKey(f.name) == "from" && ++count == 1) from = &f;
  if (count == 0) return util::Err(util::ErrorCode::kInvalidArgument, "no From header");
  if (count > 1) return util::Err(util::ErrorCode::kInvalidArgument, std::to_string(count) + " From headers");
  return signer::FromDomain(from->value);
}

util::Status MessageContext::Begin(keystore::SigningSnapshot::KeyList chosen, signer::MessageOptions options) {
  keys = chosen;
  signer.emplace(std::move(chosen), &settings->selector, options);
  for (auto& f : fields) signer->AddHeader(std::move(f));
  fields.clear();
  return signer->EndOfHeaders();
}

std::string MilterHeaderValue(const std::string& field, bool leading_space) {
  std::string value = field.substr(field.find(':') + 1);
  if (!leading_space && !value.empty() && value.front() == ' ') value.erase(0, 1);
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n') continue;
    out.push_back(value[i]);
  }
  return out;
}

}  // namespace dkimrotor::milter::internal
