#include "signer/body_hasher.h"

#include <cstdio>
#include <cstdlib>

namespace dkimrotor::signer {
namespace {

[[noreturn]] void DigestFailed() {
  // SHA-256 over memory has no failure mode short of a broken OpenSSL: stop loudly.
  std::fputs("dkimrotor: SHA-256 digest failed inside OpenSSL\n", stderr);
  std::abort();
}

}  // namespace

BodyHasher::BodyHasher(Canon mode)
    : mode_(mode), ctx_(EVP_MD_CTX_new()), canonicalizer_(mode, this) {
  if (!ctx_ || EVP_DigestInit_ex2(ctx_.get(), internal::Sha256Md(), nullptr) != 1) DigestFailed();
}

void BodyHasher::Write(std::string_view canonical_bytes) {
  if (EVP_DigestUpdate(ctx_.get(), canonical_bytes.data(), canonical_bytes.size()) != 1)
    DigestFailed();
}

internal::Sha256Digest BodyHasher::Finish() {
  canonicalizer_.Finish();
  internal::Sha256Digest out{};
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) != 1) DigestFailed();
  return out;
}

}  // namespace dkimrotor::signer
