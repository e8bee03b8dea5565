#include "signer/header_field.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {

std::string FieldKey(std::string_view name) {
  while (!name.empty() && internal::IsWsp(name.back())) name.remove_suffix(1);
  return internal::LowerAscii(name);
}

void AppendCanonicalHeader(Canon mode, std::string_view name, std::string_view value,
                           std::string* out) {
  if (mode == Canon::kSimple) {
    out->append(name);
    out->push_back(':');
    out->append(value);
    out->append("\r\n");
    return;
  }
  // Relaxed: lowercase name without surrounding white space; the value unfolded, each run of
  // white space reduced to one SP, white space at both ends removed.
  std::string_view trimmed_name = name;
  while (!trimmed_name.empty() && internal::IsWsp(trimmed_name.back())) trimmed_name.remove_suffix(1);
  while (!trimmed_name.empty() && internal::IsWsp(trimmed_name.front())) trimmed_name.remove_prefix(1);
  for (char c : trimmed_name) out->push_back(internal::LowerAscii(c));
  out->push_back(':');
  bool pending_space = false;
  bool started = false;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      ++i;  // unfold: CRLF goes, the white space that follows it counts as a run
      continue;
    }
    if (c == '\n') continue;  // unfold a bare LF the same way
    if (internal::IsWsp(c)) {
      pending_space = true;
      continue;
    }
    if (pending_space && started) out->push_back(' ');
    pending_space = false;
    started = true;
    out->push_back(c);
  }
  out->append("\r\n");
}

}  // namespace dkimrotor::signer
