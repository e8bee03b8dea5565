// Owning pointers for OpenSSL objects, one word wide (PowerDNS's pattern).
// Each frees its object with the matching OpenSSL function; nothing else is shared.
// Thread-safety: as the pointee (OpenSSL objects are not safe to mutate concurrently).
#pragma once

#include <memory>

#include <openssl/bio.h>
#include <openssl/evp.h>

namespace dkimrotor::util {

template <auto Fn>
struct CDeleter {
  void operator()(auto* p) const noexcept { Fn(p); }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, CDeleter<&EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, CDeleter<&EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, CDeleter<&EVP_MD_CTX_free>>;
using EvpMdPtr = std::unique_ptr<EVP_MD, CDeleter<&EVP_MD_free>>;
using BioPtr = std::unique_ptr<BIO, CDeleter<&BIO_free_all>>;

}  // namespace dkimrotor::util
