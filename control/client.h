// The CLI's end of the control channel: sends one request to a running daemon and returns its
// answer. "No daemon" (no socket file, or nobody accepting on it) is an error of its own, code
// kNotFound, so a command can fall back to working on the keystore directly.
// Stateless; thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "control/protocol.h"
#include "util/result.h"

namespace dkimrotor::control {

// Waits at most `timeout` for the answer. kNotFound: no daemon listens on `path`; kIo: the
// daemon did not answer (stopping, timed out) or answered nonsense.
util::Result<Answer> Call(const std::string& path, const Request& request, std::chrono::milliseconds timeout);

}  // namespace dkimrotor::control
