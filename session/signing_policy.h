// Decides whether a message may be signed at all: only mail from internal networks (CIDR,
// IPv4 and IPv6) or from SMTP-AUTH sessions, never mail arriving from the internet.
// Owns its copy of the networks. Immutable after creation; safe from any thread.
#pragma once

#include <sys/socket.h>

#include <string_view>
#include <vector>

#include "util/cidr.h"
#include "util/result.h"

namespace dkimrotor::session {

class SigningPolicy {
 public:
  // The networks come parsed (util::Cidr), so nothing can fail today; the Result stays so that
  // callers keep one shape should a check be added.
  static util::Result<SigningPolicy> Create(std::vector<util::Cidr> networks,
                                            bool sign_authenticated);

  // `client` may be null (the MTA sent no address, e.g. a local submission through sendmail -bs
  // or a unix socket): that counts as internal, as it cannot come from the internet.
  bool IsInternal(const sockaddr* client) const;
  bool MaySign(const sockaddr* client, std::string_view auth_authen) const {
    return IsInternal(client) || (sign_authenticated_ && !auth_authen.empty());
  }

 private:
  std::vector<util::Cidr> networks_;
  bool sign_authenticated_ = true;
};

}  // namespace dkimrotor::session
