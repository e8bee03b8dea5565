// The a= tag: signing algorithms dkimrotor signs and verifies (RFC 6376, RFC 8301, RFC 8463).
// Plain values; safe from any thread.
#pragma once

#include <string_view>

#include "util/result.h"

namespace dkimrotor::signer {

enum class Algorithm { kRsaSha256, kEd25519Sha256 };

// RFC 8301: verifiers must accept at least 1024 bits; signers must not use fewer.
inline constexpr int kMinRsaBits = 1024;
inline constexpr int kMaxRsaBits = 4096;

std::string_view AlgorithmName(Algorithm a);   // "rsa-sha256", "ed25519-sha256"
std::string_view KeyTypeName(Algorithm a);     // the k= tag: "rsa", "ed25519"
util::Result<Algorithm> ParseAlgorithm(std::string_view name);

}  // namespace dkimrotor::signer
