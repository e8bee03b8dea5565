// Canonicalizes a body as it streams in and hashes it with SHA-256: the bh= value.
// Owns its canonicalizer and digest context. Not thread-safe: one instance per message.
#pragma once

#include <string_view>

#include "signer/body_canonicalizer.h"
#include "signer/internal/sha256.h"
#include "util/openssl_ptr.h"

namespace dkimrotor::signer {

class BodyHasher final : private BodyCanonicalizer::Sink {
 public:
  explicit BodyHasher(Canon mode);

  void Update(std::string_view chunk) { canonicalizer_.Update(chunk); }
  // Ends the body and returns its digest; call once.
  internal::Sha256Digest Finish();

  Canon mode() const { return mode_; }
  uint64_t canonical_length() const { return canonicalizer_.canonical_length(); }

 private:
  void Write(std::string_view canonical_bytes) override;

  Canon mode_;
  util::EvpMdCtxPtr ctx_;
  BodyCanonicalizer canonicalizer_;
};

}  // namespace dkimrotor::signer
