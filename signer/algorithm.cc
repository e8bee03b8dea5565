#include "signer/algorithm.h"

#include <string>

#include "signer/internal/text.h"

namespace dkimrotor::signer {

std::string_view AlgorithmName(Algorithm a) {
  return a == Algorithm::kRsaSha256 ? "rsa-sha256" : "ed25519-sha256";
}

std::string_view KeyTypeName(Algorithm a) { return a == Algorithm::kRsaSha256 ? "rsa" : "ed25519"; }

util::Result<Algorithm> ParseAlgorithm(std::string_view name) {
  if (internal::EqualsIgnoreCase(name, "rsa-sha256")) return Algorithm::kRsaSha256;
  if (internal::EqualsIgnoreCase(name, "ed25519-sha256")) return Algorithm::kEd25519Sha256;
  if (internal::EqualsIgnoreCase(name, "rsa-sha1"))
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "algorithm rsa-sha1 is obsolete (RFC 8301): use rsa-sha256 or ed25519-sha256");
  return util::Err(util::ErrorCode::kInvalidArgument,
                   "unknown algorithm '" + std::string(name) +
                       "': use rsa-sha256 or ed25519-sha256");
}

}  // namespace dkimrotor::signer
