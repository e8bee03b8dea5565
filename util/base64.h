// Base64 (RFC 4648, with padding) for DKIM's b=, bh= and p= tags.
// Stateless; safe from any thread.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace dkimrotor::util {

std::string Base64Encode(std::string_view bytes);

// Ignores white space anywhere (DNS records and folded headers carry it); rejects any other
// character outside the alphabet, misplaced padding, and a length that is not a whole quantum.
Result<std::string> Base64Decode(std::string_view text);

}  // namespace dkimrotor::util
