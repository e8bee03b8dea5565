// A public key from a DKIM key record's p= tag, verifying signatures over SHA-256 digests.
// Immutable after creation; Verify() is safe from many threads at once.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "signer/algorithm.h"
#include "signer/internal/sha256.h"
#include "util/openssl_ptr.h"
#include "util/result.h"

namespace dkimrotor::signer {

class PublicKey {
 public:
  // `p_base64` is the p= value; RSA accepts SubjectPublicKeyInfo or bare RSAPublicKey DER.
  static util::Result<std::shared_ptr<const PublicKey>> FromDkim(Algorithm algorithm,
                                                                 std::string_view p_base64);

  Algorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }

  // Ok when `signature` is valid for `digest`; a crypto error naming the reason otherwise.
  util::Status Verify(const internal::Sha256Digest& digest, std::string_view signature) const;

  PublicKey(util::EvpPkeyPtr pkey, Algorithm algorithm, int bits)
      : pkey_(std::move(pkey)), algorithm_(algorithm), bits_(bits) {}

 private:
  util::EvpPkeyPtr pkey_;
  Algorithm algorithm_;
  int bits_;
};

}  // namespace dkimrotor::signer
