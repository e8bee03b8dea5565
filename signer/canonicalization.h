// The c= tag: header and body canonicalization algorithms (RFC 6376 section 3.4).
// Plain values; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::signer {

enum class Canon { kSimple, kRelaxed };

struct Canonicalization {
  Canon header = Canon::kRelaxed;
  Canon body = Canon::kRelaxed;

  friend bool operator==(const Canonicalization&, const Canonicalization&) = default;
};

std::string_view CanonName(Canon c);

// "relaxed/relaxed", "simple" (= simple/simple, as RFC 6376 3.5 defines a lone header
// algorithm), "relaxed/simple", ...; case-insensitive.
util::Result<Canonicalization> ParseCanonicalization(std::string_view text);

// The c= value: "relaxed/relaxed".
std::string FormatCanonicalization(const Canonicalization& c);

}  // namespace dkimrotor::signer
