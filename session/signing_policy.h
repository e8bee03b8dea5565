// Decides whether a message may be signed at all: only mail from internal networks (CIDR,
// IPv4 and IPv6) or from SMTP-AUTH sessions, never mail arriving from the internet.
// Immutable after creation; safe from any thread.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace dkimrotor::session {

class SigningPolicy {
 public:
  // `networks` as "ADDRESS/PREFIX" (IPv4 or IPv6).
  static util::Result<SigningPolicy> Create(const std::vector<std::string>& networks,
                                            bool sign_authenticated);

  // `client` may be null (the MTA sent no address, e.g. a local submission through sendmail -bs
  // or a unix socket): that counts as internal, as it cannot come from the internet.
  bool IsInternal(const sockaddr* client) const;
  bool MaySign(const sockaddr* client, std::string_view auth_authen) const {
    return IsInternal(client) || (sign_authenticated_ && !auth_authen.empty());
  }

 private:
  struct Network {
    std::array<uint8_t, 16> address{};  // IPv4 as an IPv4-mapped IPv6 address
    int prefix = 0;                     // over the 128 bits
  };
  std::vector<Network> networks_;
  bool sign_authenticated_ = true;
};

}  // namespace dkimrotor::session
