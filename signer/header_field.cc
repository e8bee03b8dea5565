#include "signer/header_field.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {

std::string FieldKey(std::string_view name) {
  while (!name.empty() && internal::IsWsp(name.back())) name.remove_suffix(1);
  return internal::LowerAscii(name);
}

bool IsFieldName(std::string_view name) {
  while (!name.empty() && internal::IsWsp(name.back())) name.remove_suffix(1);
  if (name.empty() || name.size() > kMaxFieldNameLength) return false;
  for (unsigned char c : name)
    if (c < 33 || c > 126 || c == ':') return false;
  return true;
}

FieldCheck CheckField(std::string_view name, std::string_view value) {
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n') {
      // A fold: CRLF and white space. Anything else after the CRLF starts a line of its own.
      if (i + 2 >= value.size() || !internal::IsWsp(value[i + 2]))
        return {FieldReading::kBroken, "a line break not followed by white space"};
      ++i;
      continue;
    }
    // dkimpy and Mail::DKIM keep a bare CR, VT or FF inside the value and strip it at the start;
    // at the end dkimpy strips it and Mail::DKIM keeps it; OpenDKIM and Rspamd read each as
    // white space; NUL ends the value for OpenDKIM, Rspamd and libmilter (C strings).
    if (c == '\r') return {FieldReading::kAmbiguous, "a bare CR"};
    if (c == '\n') return {FieldReading::kBroken, "a bare LF"};
    if (c == '\v' || c == '\f') return {FieldReading::kAmbiguous, "a vertical tab or form feed"};
    if (c == '\0') return {FieldReading::kAmbiguous, "a NUL byte"};
  }
  // RFC 5322 allows ';' in a name, but in h= it would end the tag (RFC 6376 3.2).
  if (name.find(';') != std::string_view::npos) return {FieldReading::kAmbiguous, "a ';' in its name"};
  return {};
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
