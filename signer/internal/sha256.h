// SHA-256 through OpenSSL's EVP with the algorithm fetched once per process: OpenSSL 3 makes
// implicit fetches (EVP_sha256() in an Init call) cost a locked lookup on every use.
// Thread-safe: the fetched EVP_MD is immutable and shared.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include <openssl/evp.h>

namespace dkimrotor::signer::internal {

using Sha256Digest = std::array<uint8_t, 32>;

const EVP_MD* Sha256Md();

// One-shot digest; aborts only if OpenSSL cannot compute SHA-256 at all.
Sha256Digest Sha256(std::string_view data);

inline std::string_view AsBytes(const Sha256Digest& d) {
  return {reinterpret_cast<const char*>(d.data()), d.size()};
}

}  // namespace dkimrotor::signer::internal
