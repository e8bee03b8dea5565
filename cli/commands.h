// The dkimrotor subcommands. Each takes the arguments after its name and returns the exit
// status: 0 done, 1 failed (the reason on stderr), 2 bad usage; `status` says 3 when no daemon
// runs.
#pragma once

#include <span>
#include <string_view>

namespace dkimrotor::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotRunning = 3;

int RunSign(std::span<char*> args);
int RunKeys(std::span<char*> args);
int RunDns(std::span<char*> args);
int RunCheck(std::span<char*> args);
int RunRotate(std::span<char*> args);
int RunStatus(std::span<char*> args);
int RunDaemon(std::span<char*> args);
int RunAudit(std::span<char*> args);
int RunMigrate(std::span<char*> args);

}  // namespace dkimrotor::cli
