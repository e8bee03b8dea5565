#include "signer/private_key.h"

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "util/base64.h"
#include "util/openssl_error.h"

namespace dkimrotor::signer {
namespace {

using util::ErrorCode;

util::Result<std::string> PublicKeyForDns(EVP_PKEY* pkey, Algorithm algorithm) {
  if (algorithm == Algorithm::kEd25519Sha256) {
    unsigned char raw[32];
    size_t len = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw)
      return util::OpenSslError("reading the Ed25519 public key");
    return util::Base64Encode(std::string_view(reinterpret_cast<char*>(raw), len));
  }
  unsigned char* der = nullptr;
  int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) return util::OpenSslError("encoding the RSA public key");
  std::string out = util::Base64Encode(std::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

}  // namespace

PrivateKey::PrivateKey(util::EvpPkeyPtr pkey, Algorithm algorithm, int bits)
    : pkey_(std::move(pkey)), algorithm_(algorithm), bits_(bits) {}

util::Result<std::shared_ptr<const PrivateKey>> PrivateKey::Wrap(util::EvpPkeyPtr pkey) {
  Algorithm algorithm;
  int bits = EVP_PKEY_get_bits(pkey.get());
  switch (EVP_PKEY_get_base_id(pkey.get())) {
    case EVP_PKEY_RSA:
      algorithm = Algorithm::kRsaSha256;
      if (bits < kMinRsaBits)
        return util::Err(ErrorCode::kInvalidArgument,
                         "RSA key of " + std::to_string(bits) +
                             " bits is too short: RFC 8301 requires at least 1024, use 2048");
      if (bits > kMaxRsaBits)
        return util::Err(ErrorCode::kInvalidArgument,
                         "RSA key of " + std::to_string(bits) +
                             " bits is too long: verifiers need not support more than 4096");
      break;
    case EVP_PKEY_ED25519:
      algorithm = Algorithm::kEd25519Sha256;
      break;
    default:
      return util::Err(ErrorCode::kInvalidArgument,
                       "unsupported key type: DKIM signs with RSA or Ed25519 keys only");
  }
  auto key = std::make_shared<PrivateKey>(std::move(pkey), algorithm, bits);
  RETURN_IF_ERROR(key->Prepare());
  return std::shared_ptr<const PrivateKey>(std::move(key));
}

util::Status PrivateKey::Prepare() {
  ASSIGN_OR_RETURN(dkim_public_key_, PublicKeyForDns(pkey_.get(), algorithm_));
  if (algorithm_ == Algorithm::kRsaSha256) {
    rsa_template_.reset(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey_.get(), nullptr));
    if (!rsa_template_ || EVP_PKEY_sign_init(rsa_template_.get()) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(rsa_template_.get(), RSA_PKCS1_PADDING) != 1 ||
        EVP_PKEY_CTX_set_signature_md(rsa_template_.get(), internal::Sha256Md()) != 1)
      return util::OpenSslError("preparing RSA signing");
  } else {
    ed25519_template_.reset(EVP_MD_CTX_new());
    if (!ed25519_template_ ||
        EVP_DigestSignInit_ex(ed25519_template_.get(), nullptr, nullptr, nullptr, nullptr,
                              pkey_.get(), nullptr) != 1)
      return util::OpenSslError("preparing Ed25519 signing");
  }
  return util::Ok();
}

util::Result<std::shared_ptr<const PrivateKey>> PrivateKey::FromPem(std::string_view pem) {
  util::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return util::OpenSslError("allocating a memory BIO", ErrorCode::kInternal);
  // An empty passphrase callback: an encrypted key fails instead of prompting on a terminal.
  auto no_password = [](char*, int, int, void*) -> int { return 0; };
  util::EvpPkeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!pkey)
    return util::OpenSslError("not a readable PEM private key (encrypted keys are not supported)",
                              ErrorCode::kInvalidArgument);
  return Wrap(std::move(pkey));
}

util::Result<std::shared_ptr<const PrivateKey>> PrivateKey::FromEd25519Seed(std::string_view seed) {
  if (seed.size() != 32)
    return util::Err(ErrorCode::kInvalidArgument, "an Ed25519 seed is 32 bytes, got " +
                                                      std::to_string(seed.size()));
  util::EvpPkeyPtr pkey(EVP_PKEY_new_raw_private_key_ex(
      nullptr, "ED25519", nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (!pkey) return util::OpenSslError("loading the Ed25519 seed", ErrorCode::kInvalidArgument);
  return Wrap(std::move(pkey));
}

util::Result<std::shared_ptr<const PrivateKey>> PrivateKey::Generate(Algorithm algorithm, int bits) {
  EVP_PKEY* raw = nullptr;
  if (algorithm == Algorithm::kRsaSha256) {
    if (bits < kMinRsaBits || bits > kMaxRsaBits)
      return util::Err(ErrorCode::kInvalidArgument,
                       "RSA key size " + std::to_string(bits) + " is outside 1024..4096 bits");
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
  } else {
    raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  if (raw == nullptr) return util::OpenSslError("generating a key");
  return Wrap(util::EvpPkeyPtr(raw));
}

util::Result<std::string> PrivateKey::Sign(const internal::Sha256Digest& digest) const {
  if (algorithm_ == Algorithm::kRsaSha256) {
    util::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_dup(rsa_template_.get()));
    if (!ctx) return util::OpenSslError("duplicating the RSA signing context");
    size_t len = 0;
    if (EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1)
      return util::OpenSslError("sizing the RSA signature");
    std::string sig(len, '\0');
    if (EVP_PKEY_sign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, digest.data(),
                      digest.size()) != 1)
      return util::OpenSslError("RSA signing");
    sig.resize(len);
    return sig;
  }
  util::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), ed25519_template_.get()) != 1)
    return util::OpenSslError("duplicating the Ed25519 signing context");
  std::string sig(64, '\0');
  size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, digest.data(),
                     digest.size()) != 1)
    return util::OpenSslError("Ed25519 signing");
  sig.resize(len);
  return sig;
}

util::Result<std::string> PrivateKey::ToPem() const {
  util::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1)
    return util::OpenSslError("writing the private key as PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

}  // namespace dkimrotor::signer
