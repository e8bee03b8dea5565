// Small ASCII helpers shared inside signer/. Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace dkimrotor::signer::internal {

inline bool IsWsp(char c) { return c == ' ' || c == '\t'; }

inline char LowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

inline std::string LowerAscii(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  return true;
}

// Trims SP, HTAB, CR and LF at both ends (folding white space).
inline std::string_view TrimFws(std::string_view s) {
  auto is_fws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_fws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_fws(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace dkimrotor::signer::internal
