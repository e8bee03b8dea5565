// A loaded private key that signs SHA-256 digests for DKIM: RSA PKCS#1 v1.5 (rsa-sha256) or
// PureEd25519 over the digest (ed25519-sha256, RFC 8463 section 3).
// Knows nothing of files: it takes PEM bytes and gives PEM bytes.
// Immutable after creation; Sign() is safe from many threads at once (each call works on its
// own duplicate of a context prepared at load time, so no OpenSSL fetch happens per message).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "signer/algorithm.h"
#include "signer/internal/sha256.h"
#include "util/openssl_ptr.h"
#include "util/result.h"

namespace dkimrotor::signer {

class PrivateKey {
 public:
  // PKCS#8 or traditional PEM. RSA below 1024 or above 4096 bits and other key types are refused.
  static util::Result<std::shared_ptr<const PrivateKey>> FromPem(std::string_view pem);
  // A raw 32-byte Ed25519 seed (RFC 8032), as RFC 8463's examples give keys.
  static util::Result<std::shared_ptr<const PrivateKey>> FromEd25519Seed(std::string_view seed);
  // A fresh key: `bits` is used for RSA only. Slow for RSA-4096 (seconds): keep it off the hot path.
  static util::Result<std::shared_ptr<const PrivateKey>> Generate(Algorithm algorithm, int bits);

  Algorithm algorithm() const { return algorithm_; }
  int bits() const { return bits_; }

  // The signature over a SHA-256 digest of canonicalized headers (raw bytes, not base64).
  util::Result<std::string> Sign(const internal::Sha256Digest& digest) const;

  // The p= value for this key's DNS record: base64 of the SubjectPublicKeyInfo DER (RSA) or of
  // the raw 32-byte public key (Ed25519).
  const std::string& dkim_public_key() const { return dkim_public_key_; }

  // PKCS#8 PEM, for storing the key. Holds the secret: never log it.
  util::Result<std::string> ToPem() const;

  PrivateKey(util::EvpPkeyPtr pkey, Algorithm algorithm, int bits);

 private:
  static util::Result<std::shared_ptr<const PrivateKey>> Wrap(util::EvpPkeyPtr pkey);
  util::Status Prepare();

  util::EvpPkeyPtr pkey_;
  Algorithm algorithm_;
  int bits_;
  std::string dkim_public_key_;
  // RSA: an EVP_PKEY_CTX after EVP_PKEY_sign_init with padding and digest set.
  util::EvpPkeyCtxPtr rsa_template_;
  // Ed25519: an EVP_MD_CTX after EVP_DigestSignInit_ex.
  util::EvpMdCtxPtr ed25519_template_;
};

}  // namespace dkimrotor::signer
