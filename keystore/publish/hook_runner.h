// Runs a publish hook: `HOOK publish|revoke DOMAIN SELECTOR VALUE`, executed directly (no shell,
// so nothing in a selector or key can be interpreted as a command), with a timeout after which
// the hook is killed, and its stderr captured (bounded) for the log. The hook must belong to
// root or the daemon's user and be writable by nobody else; it runs in a process group of its
// own with a minimal environment: PATH=kHookPath and the daemon's DKIMROTOR_* variables (which
// contrib/hooks/nsupdate reads, e.g. DKIMROTOR_NS_TSIG). On timeout the whole group gets
// SIGTERM, then SIGKILL after kHookTermGrace; RunHook never waits for longer than that.
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
  bool unreaped = false;    // killed but still not gone (stuck in the kernel); reaped later
  std::string stderr_text;  // at most kMaxHookStderr bytes
};

inline constexpr size_t kMaxHookStderr = 4096;
inline constexpr char kHookPath[] = "/usr/sbin:/usr/bin:/sbin:/bin";
inline constexpr std::chrono::milliseconds kHookTermGrace{2000};

// Ok if `path` is a regular file owned by root or the effective user and writable by neither
// group nor others; otherwise an error naming the path, what is wrong and the fix.
util::Status CheckHookFile(const std::string& path);

// The environment a hook gets from the daemon's `env` (environ): PATH=kHookPath and every
// DKIMROTOR_* variable, nothing else; then `extra` ("NAME=value", the call's own variables such
// as DKIMROTOR_RECORD_NAME), which replace inherited variables of the same name.
std::vector<std::string> HookEnvironment(char** env, const std::vector<std::string>& extra = {});

// Runs `argv` (argv[0] an absolute path, passing CheckHookFile) with stdin from /dev/null and
// stdout discarded, in HookEnvironment(environ, extra_env).
// Ok with the result whenever the hook ran; an error only when it could not be started.
util::Result<HookResult> RunHook(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                 const std::vector<std::string>& extra_env = {});

// Ok when the hook exited 0; otherwise an error that says what happened and what it printed.
util::Status RunHookChecked(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                            const std::vector<std::string>& extra_env = {});

}  // namespace dkimrotor::keystore
