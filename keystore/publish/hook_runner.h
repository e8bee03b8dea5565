// Runs a publish hook: `HOOK publish|revoke DOMAIN SELECTOR VALUE`, executed directly (no shell,
// so nothing in a selector or key can be interpreted as a command), with a timeout after which
// the hook is killed, and its stderr captured (bounded) for the log.
// Stateless; safe from any thread (each call spawns and reaps its own child).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "util/result.h"

namespace dkimrotor::keystore {

struct HookResult {
  int exit_status = -1;     // the hook's exit code; -1 if it was killed or could not start
  bool timed_out = false;
  std::string stderr_text;  // at most kMaxHookStderr bytes
};

inline constexpr size_t kMaxHookStderr = 4096;

// Runs `argv` (argv[0] an absolute path) with stdin from /dev/null and stdout discarded.
// Ok with the result whenever the hook ran; an error only when it could not be started.
util::Result<HookResult> RunHook(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

// Ok when the hook exited 0; otherwise an error that says what happened and what it printed.
util::Status RunHookChecked(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

}  // namespace dkimrotor::keystore
