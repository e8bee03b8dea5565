#include "util/server_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace dkimrotor::util {
namespace {

constexpr std::string_view kForms =
    "write an address: \"IP\", \"IPv4:PORT\" or \"[IPv6]:PORT\" (e.g. \"127.0.0.1:5353\", "
    "\"[::1]:53\")";

Unexpected Invalid(std::string message) {
  return Err(ErrorCode::kInvalidArgument, std::move(message));
}

// The canonical text of `s` if it is an address of `family`; empty otherwise.
std::string Canonical(int family, std::string_view s) {
  unsigned char bytes[sizeof(in6_addr)];
  if (s.size() >= INET6_ADDRSTRLEN || ::inet_pton(family, std::string(s).c_str(), bytes) != 1)
    return {};
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(family, bytes, buf, sizeof buf);
  return buf;
}

// A decimal port in [1, 65535]; false for anything else, including a sign or overflow.
bool ParsePort(std::string_view s, uint16_t& out) {
  if (s.empty() || s.size() > 9 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  unsigned long v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned long>(c - '0');
  if (v < 1 || v > 65535) return false;
  out = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

Result<ServerAddress> ServerAddress::Parse(std::string_view text, uint16_t default_port) {
  if (text.empty()) return Invalid("it is empty; " + std::string(kForms));
  ServerAddress out;
  out.port = default_port;
  std::string_view port;
  bool has_port = false;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return Invalid("'[' lacks its closing ']'");
    std::string_view host = text.substr(1, close - 1);
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Invalid(std::string(kForms));
      port = after.substr(1);
      has_port = true;
    }
    out.ip = Canonical(AF_INET6, host);
    out.family = AF_INET6;
    if (out.ip.empty()) {
      if (!Canonical(AF_INET, host).empty())
        return Invalid("brackets are for IPv6 addresses: write " + std::string(host) +
                       (has_port ? ":" + std::string(port) : ""));
      return Invalid("'" + std::string(host) + "' is not an IPv6 address");
    }
  } else if (out.ip = Canonical(AF_INET, text); !out.ip.empty()) {
    out.family = AF_INET;
  } else if (out.ip = Canonical(AF_INET6, text); !out.ip.empty()) {
    out.family = AF_INET6;
  } else {
    size_t colon = text.rfind(':');
    if (colon != std::string_view::npos &&
        !(out.ip = Canonical(AF_INET, text.substr(0, colon))).empty()) {
      out.family = AF_INET;
      port = text.substr(colon + 1);
      has_port = true;
    } else {
      if (text.find(':') != text.rfind(':'))
        return Invalid("not an IPv6 address; with a port, write it as [IPv6]:PORT");
      return Invalid("'" + std::string(text.substr(0, colon)) +
                     "' is not an IP address (resolvers are addresses, not names); " +
                     std::string(kForms));
    }
  }
  if (has_port && !ParsePort(port, out.port))
    return Invalid("port '" + std::string(port) + "' is not a number from 1 to 65535");
  return out;
}

std::string ServerAddress::ToString() const {
  if (family == AF_INET6) return "[" + ip + "]:" + std::to_string(port);
  return ip + ":" + std::to_string(port);
}

}  // namespace dkimrotor::util
