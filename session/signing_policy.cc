#include "session/signing_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace dkimrotor::session {
namespace {

std::array<uint8_t, 16> Mapped(const in_addr& v4) {
  std::array<uint8_t, 16> a{};
  a[10] = a[11] = 0xff;
  std::memcpy(&a[12], &v4, 4);
  return a;
}

bool PrefixEquals(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, int bits) {
  int i = 0;
  for (; bits >= 8; bits -= 8, ++i)
    if (a[i] != b[i]) return false;
  if (bits == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (a[i] & mask) == (b[i] & mask);
}

}  // namespace

util::Result<SigningPolicy> SigningPolicy::Create(const std::vector<std::string>& networks,
                                                  bool sign_authenticated) {
  SigningPolicy p;
  p.sign_authenticated_ = sign_authenticated;
  for (const auto& text : networks) {
    auto slash = text.find('/');
    std::string addr = text.substr(0, slash);
    Network n;
    in_addr v4{};
    in6_addr v6{};
    int max_prefix;
    if (inet_pton(AF_INET, addr.c_str(), &v4) == 1) {
      n.address = Mapped(v4);
      max_prefix = 32;
    } else if (inet_pton(AF_INET6, addr.c_str(), &v6) == 1) {
      std::memcpy(n.address.data(), &v6, 16);
      max_prefix = 128;
    } else {
      return util::Err(util::ErrorCode::kInvalidArgument, "internal host '" + text + "' is not an IP network");
    }
    int prefix = max_prefix;
    if (slash != std::string::npos) {
      try {
        prefix = std::stoi(text.substr(slash + 1));
      } catch (...) {
        prefix = -1;
      }
      if (prefix < 0 || prefix > max_prefix)
        return util::Err(util::ErrorCode::kInvalidArgument, "internal host '" + text + "' has a bad prefix length");
    }
    n.prefix = max_prefix == 32 ? prefix + 96 : prefix;
    p.networks_.push_back(n);
  }
  return p;
}

bool SigningPolicy::IsInternal(const sockaddr* client) const {
  if (client == nullptr) return true;
  std::array<uint8_t, 16> a{};
  if (client->sa_family == AF_INET) {
    a = Mapped(reinterpret_cast<const sockaddr_in*>(client)->sin_addr);
  } else if (client->sa_family == AF_INET6) {
    std::memcpy(a.data(), &reinterpret_cast<const sockaddr_in6*>(client)->sin6_addr, 16);
  } else if (client->sa_family == AF_UNIX) {
    return true;  // a local socket: not from the internet
  } else {
    return false;
  }
  for (const auto& n : networks_)
    if (PrefixEquals(a, n.address, n.prefix)) return true;
  return false;
}

}  // namespace dkimrotor::session
