#include "signer/internal/sha256.h"

#include <cstdio>
#include <cstdlib>

namespace dkimrotor::signer::internal {

const EVP_MD* Sha256Md() {
  static const EVP_MD* md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
    if (fetched == nullptr) {
      std::fputs("dkimrotor: OpenSSL has no SHA-256 implementation\n", stderr);
      std::abort();
    }
    return fetched;  // kept for the life of the process
  }();
  return md;
}

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, Sha256Md(), nullptr) != 1) {
    std::fputs("dkimrotor: SHA-256 failed\n", stderr);
    std::abort();
  }
  return out;
}

}  // namespace dkimrotor::signer::internal
