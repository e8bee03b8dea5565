#include "signer/public_key.h"

#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/base64.h"
#include "util/openssl_error.h"

namespace dkimrotor::signer {

using util::ErrorCode;

util::Result<std::shared_ptr<const PublicKey>> PublicKey::FromDkim(Algorithm algorithm,
                                                                   std::string_view p_base64) {
  auto der = util::Base64Decode(p_base64);
  if (!der) return util::Err(ErrorCode::kInvalidArgument, "p= is not valid " + der.error().message);
  if (der->empty())
    return util::Err(ErrorCode::kInvalidArgument, "p= is empty: the key has been revoked");
  const auto* bytes = reinterpret_cast<const unsigned char*>(der->data());
  util::EvpPkeyPtr pkey;
  if (algorithm == Algorithm::kEd25519Sha256) {
    pkey.reset(EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr, bytes, der->size()));
    if (!pkey) return util::OpenSslError("p= is not a 32-byte Ed25519 key", ErrorCode::kInvalidArgument);
    return std::make_shared<const PublicKey>(std::move(pkey), algorithm, 256);
  }
  const unsigned char* p = bytes;
  pkey.reset(d2i_PUBKEY(nullptr, &p, static_cast<long>(der->size())));
  if (!pkey) {
    p = bytes;  // some publishers put the bare PKCS#1 RSAPublicKey in p=
    pkey.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, static_cast<long>(der->size())));
  }
  if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_RSA)
    return util::OpenSslError("p= is not an RSA public key", ErrorCode::kInvalidArgument);
  int bits = EVP_PKEY_get_bits(pkey.get());
  if (bits < kMinRsaBits)
    return util::Err(ErrorCode::kInvalidArgument,
                     "RSA key of " + std::to_string(bits) + " bits is below RFC 8301's 1024");
  return std::make_shared<const PublicKey>(std::move(pkey), algorithm, bits);
}

util::Status PublicKey::Verify(const internal::Sha256Digest& digest, std::string_view signature) const {
  const auto* sig = reinterpret_cast<const unsigned char*>(signature.data());
  if (algorithm_ == Algorithm::kRsaSha256) {
    util::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_.get(), nullptr));
    if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx.get(), internal::Sha256Md()) != 1)
      return util::OpenSslError("preparing RSA verification");
    if (EVP_PKEY_verify(ctx.get(), sig, signature.size(), digest.data(), digest.size()) != 1)
      return util::OpenSslError("RSA signature does not verify");
    return util::Ok();
  }
  util::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, pkey_.get(),
                                      nullptr) != 1)
    return util::OpenSslError("preparing Ed25519 verification");
  if (EVP_DigestVerify(ctx.get(), sig, signature.size(), digest.data(), digest.size()) != 1)
    return util::OpenSslError("Ed25519 signature does not verify");
  return util::Ok();
}

}  // namespace dkimrotor::signer
