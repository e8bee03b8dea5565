#include "milter/internal/message_context.h"

namespace dkimrotor::milter::internal {

std::string SessionHeaderValue(std::string_view value, bool leading_space) {
  std::string v;
  v.reserve(value.size() + 2);
  if (!leading_space) v.push_back(' ');  // what the MTA stripped after the colon
  for (char c : value) {
    if (c == '\n') v.push_back('\r');
    v.push_back(c);
  }
  return v;
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
