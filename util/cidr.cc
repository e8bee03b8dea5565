#include "util/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace dkimrotor::util {
namespace {

Unexpected Invalid(std::string message) {
  return Err(ErrorCode::kInvalidArgument, std::move(message));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Dot-separated labels of letters, digits and '-', the first starting with a letter: what
// someone who wrote a name where a network belongs would write. Only chooses the message.
bool LooksLikeHostName(std::string_view s) {
  if (s.empty() || s.size() > 253 || !IsAlpha(s.front())) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!IsAlpha(c) && !IsDigit(c) && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// A decimal number in [0, max]; false for anything else, including a sign or overflow.
bool ParsePrefix(std::string_view s, int max, int& out) {
  if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), IsDigit)) return false;
  long v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  if (v > max) return false;
  out = static_cast<int>(v);
  return true;
}

// The 16-byte form both families are compared in: IPv4 as an IPv4-mapped IPv6 address.
std::array<std::uint8_t, 16> Mapped(const std::uint8_t* v4) {
  std::array<std::uint8_t, 16> a{};
  a[10] = a[11] = 0xff;
  std::memcpy(&a[12], v4, 4);
  return a;
}

bool PrefixEquals(const std::array<std::uint8_t, 16>& a, const std::array<std::uint8_t, 16>& b,
                  int bits) {
  int i = 0;
  for (; bits >= 8; bits -= 8, ++i)
    if (a[i] != b[i]) return false;
  if (bits == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a[i] & mask) == (b[i] & mask);
}

}  // namespace

Result<Cidr> Cidr::Parse(std::string_view text) {
  size_t slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  Cidr c;
  std::string z(addr);
  if (addr.size() < INET6_ADDRSTRLEN && ::inet_pton(AF_INET, z.c_str(), c.bytes_.data()) == 1) {
    c.family_ = AF_INET;
  } else if (addr.size() < INET6_ADDRSTRLEN &&
             ::inet_pton(AF_INET6, z.c_str(), c.bytes_.data()) == 1) {
    c.family_ = AF_INET6;
  } else if (LooksLikeHostName(addr)) {
    return Invalid("'" + z + "' is a host name; write a network as ADDRESS/PREFIX, e.g. "
                   "192.0.2.0/24");
  } else {
    return Invalid("'" + z +
                   "' is not an IPv4 or IPv6 address; write ADDRESS/PREFIX, e.g. 192.0.2.0/24 "
                   "or 2001:db8::/32");
  }
  const int max_prefix = c.family_ == AF_INET ? 32 : 128;
  c.prefix_ = max_prefix;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    if (!ParsePrefix(p, max_prefix, c.prefix_))
      return Invalid("prefix length '" + std::string(p) + "' must be a number from 0 to " +
                     std::to_string(max_prefix) + " for an " +
                     (c.family_ == AF_INET ? "IPv4" : "IPv6") + " address");
  }
  // A set host bit is a typo more often than not (10.0.0.1/8 for 10.0.0.0/8, or a /8 meant as
  // a /32): refuse it rather than guess which.
  Cidr network = c;
  for (int i = 0; i < max_prefix / 8; ++i) {
    int first_bit = i * 8;
    if (first_bit >= c.prefix_) network.bytes_[i] = 0;
    else if (first_bit + 8 > c.prefix_)
      network.bytes_[i] &= static_cast<std::uint8_t>(0xFFu << (8 - (c.prefix_ - first_bit)));
  }
  if (network != c)
    return Invalid("the address has bits set beyond the /" + std::to_string(c.prefix_) +
                   " prefix: did you mean " + network.ToString() + "?");
  return c;
}

bool Cidr::Contains(const sockaddr* address) const {
  if (address == nullptr) return false;
  std::array<std::uint8_t, 16> a{};
  if (address->sa_family == AF_INET) {
    a = Mapped(reinterpret_cast<const std::uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(address)->sin_addr));
  } else if (address->sa_family == AF_INET6) {
    std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, 16);
  } else {
    return false;
  }
  if (family_ == AF_INET) return PrefixEquals(a, Mapped(bytes_.data()), prefix_ + 96);
  return PrefixEquals(a, bytes_, prefix_);
}

std::string Cidr::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family_, bytes_.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(prefix_);
}

}  // namespace dkimrotor::util
