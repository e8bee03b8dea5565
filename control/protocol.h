// The control channel's protocol: one JSON request per connection (the client shuts down its
// writing side after it), one JSON answer back. Requests are parsed strictly (known commands
// and fields only, bounded size and nesting) because anything the daemon's user can run may
// connect; answers are {"ok": true, "result": {...}} or {"ok": false, "error": "..."}.
// control/ sits between keystore/ and daemon/ + cli/: util <- signer <- keystore <- control.
// Plain values and stateless functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace dkimrotor::control {

// A PEM for `keys import` (an RSA-4096 key is about 3.3 KB) fits many times over.
inline constexpr size_t kMaxRequestBytes = 64 * 1024;
inline constexpr const char* kSocketName = "control.sock";

// <keystore directory>/control.sock
std::string SocketPath(const std::string& keystore_directory);

enum class Command { kStatus, kKeys, kRotate, kEmergency, kImport };
std::string_view CommandName(Command command);

struct Request {
  Command command = Command::kStatus;
  std::string domain;    // rotate, emergency, import
  std::string selector;  // emergency, import
  bool force = false;    // emergency: even if the domain's last active key has no ready spare
  std::string pem;       // import: the private key
};

std::string SerializeRequest(const Request& request);
// Errors name what is wrong with the request, for the answer sent back.
util::Result<Request> ParseRequest(std::string_view text);

struct Answer {
  bool ok = false;
  std::string error;       // when !ok
  nlohmann::json result;   // when ok: the command's own fields
};

Answer Success(nlohmann::json result);
Answer Failure(std::string error);
std::string SerializeAnswer(const Answer& answer);
util::Result<Answer> ParseAnswer(std::string_view text);

}  // namespace dkimrotor::control
