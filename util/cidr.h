// An IP network, IPv4 or IPv6, as "ADDRESS/PREFIX": the one parser of the networks the
// configuration lists (signing.internal_hosts) and the matcher the milter asks per connection.
// A plain value that owns its bytes; immutable once built, so safe to share between threads.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::util {

class Cidr {
 public:
  // "ADDRESS/PREFIX" with the host bits clear, or a bare address (its full-length prefix).
  // Rejects host names, prefixes out of range and host bits beyond the prefix; each message
  // says the fix ("did you mean 10.0.0.0/8?") and reads well after "SETTING = VALUE: ".
  static Result<Cidr> Parse(std::string_view text);

  // Whether `address` (AF_INET or AF_INET6) lies in the network. An IPv4-mapped IPv6 address
  // (::ffff:10.1.2.3, an IPv4 client seen through an IPv6 socket) matches IPv4 networks, and an
  // IPv4 address matches ::ffff:0:0/96 and the networks inside it. False for null and for any
  // other family.
  bool Contains(const sockaddr* address) const;

  int family() const { return family_; }  // AF_INET or AF_INET6
  int prefix() const { return prefix_; }  // 0..32 or 0..128
  // The canonical text: "10.0.0.0/8", "2001:db8::/32" (lowercase, compressed).
  std::string ToString() const;

  friend bool operator==(const Cidr&, const Cidr&) = default;

 private:
  Cidr() = default;

  int family_ = 0;
  std::array<std::uint8_t, 16> bytes_{};  // network order; an IPv4 address uses the first 4
  int prefix_ = 0;
};

}  // namespace dkimrotor::util
