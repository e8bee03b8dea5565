// The a= tag: signing algorithms dkimrotor signs and verifies (RFC 6376, RFC 8301, RFC 8463).
// Plain values; safe from any thread.
#pragma once

#include <array>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::signer {

enum class Algorithm { kRsaSha256, kEd25519Sha256 };

// Every Algorithm, in the order they are offered to people.
inline constexpr std::array<Algorithm, 2> kAlgorithms = {Algorithm::kRsaSha256,
                                                        Algorithm::kEd25519Sha256};

// RFC 8301: verifiers must accept at least 1024 bits; signers must not use fewer.
inline constexpr int kMinRsaBits = 1024;
inline constexpr int kMaxRsaBits = 4096;

std::string_view AlgorithmName(Algorithm a);   // "rsa-sha256", "ed25519-sha256"
std::string_view KeyTypeName(Algorithm a);     // the k= tag: "rsa", "ed25519"
// The one parser of algorithm names (case-insensitive, as a= in mail may be); the only place
// besides AlgorithmName that spells them.
util::Result<Algorithm> ParseAlgorithm(std::string_view name);

}  // namespace dkimrotor::signer
