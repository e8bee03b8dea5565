// A DNS server to send queries to: an IP address (never a name) and a port. The one parser of
// the configuration's dns.resolvers, and the address type the keystore's resolver uses, for
// configured resolvers and for authoritative servers found in A/AAAA records alike.
// A plain value; safe to share read-only between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::util {

struct ServerAddress {
  std::string ip;   // canonical text from inet_ntop: "192.0.2.1", "2001:db8::1"
  int family = 0;   // AF_INET or AF_INET6
  uint16_t port = 53;

  // "IP", "IPv4:PORT", "[IPv6]:PORT", "[IPv6]" or a bare IPv6 address; `default_port` when the
  // text names none. Each message says the fix and reads well after "SETTING = VALUE: ".
  static Result<ServerAddress> Parse(std::string_view text, uint16_t default_port);

  // "192.0.2.1:53", "[2001:db8::1]:53": what Parse reads back as the same address.
  std::string ToString() const;

  friend bool operator==(const ServerAddress&, const ServerAddress&) = default;
};

}  // namespace dkimrotor::util
