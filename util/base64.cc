#include "util/base64.h"

#include <array>
#include <cstdint>

namespace dkimrotor::util {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  return t;
}
constexpr auto kDecode = MakeDecodeTable();

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t n = bytes.size();
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8) | p[i + 2];
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = p[i] << 16;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (n - i == 2) {
    uint32_t v = (p[i] << 16) | (p[i + 1] << 8);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  int quantum = 0;  // characters of the current 4-character group, padding included
  int padding = 0;
  for (char c : text) {
    if (IsSpace(c)) continue;
    if (c == '=') {
      if (quantum < 2) return Err(ErrorCode::kInvalidArgument, "base64: misplaced '='");
      ++padding;
      ++quantum;
      if (quantum == 4) quantum = 0;
      continue;
    }
    if (padding > 0) return Err(ErrorCode::kInvalidArgument, "base64: data after '=' padding");
    int8_t v = kDecode[static_cast<uint8_t>(c)];
    if (v < 0) return Err(ErrorCode::kInvalidArgument, "base64: character outside the alphabet");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
    quantum = (quantum + 1) % 4;
  }
  if (quantum != 0) return Err(ErrorCode::kInvalidArgument, "base64: truncated (length is not a multiple of 4)");
  if (padding > 2) return Err(ErrorCode::kInvalidArgument, "base64: too much '=' padding");
  return out;
}

}  // namespace dkimrotor::util
