// Turns the thread's OpenSSL error queue into an Error: the one place that drains it.
// Stateless; safe from any thread (the queue is thread-local in OpenSSL).
#pragma once

#include <string_view>

#include "util/result.h"

namespace dkimrotor::util {

// `what` names the operation ("signing with key s1"); OpenSSL's reasons follow it.
// The queue is cleared, so a later failure does not report stale reasons.
Error OpenSslError(std::string_view what, ErrorCode code = ErrorCode::kCrypto);

}  // namespace dkimrotor::util
