#include "session/signing_policy.h"

#include <utility>

namespace dkimrotor::session {

util::Result<SigningPolicy> SigningPolicy::Create(std::vector<util::Cidr> networks,
                                                  bool sign_authenticated) {
  SigningPolicy p;
  p.networks_ = std::move(networks);
  p.sign_authenticated_ = sign_authenticated;
  return p;
}

bool SigningPolicy::IsInternal(const sockaddr* client) const {
  if (client == nullptr) return true;
  if (client->sa_family == AF_UNIX) return true;  // a local socket: not from the internet
  for (const auto& n : networks_)
    if (n.Contains(client)) return true;
  return false;
}

}  // namespace dkimrotor::session
