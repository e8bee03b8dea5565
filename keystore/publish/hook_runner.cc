#include "keystore/publish/hook_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <thread>

#include "util/file.h"

extern char** environ;

namespace dkimrotor::keystore {
namespace {

using Clock = std::chrono::steady_clock;

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) fds_[0] = fds_[1] = -1;
  }
  ~Pipe() {
    CloseRead();
    CloseWrite();
  }
  bool ok() const { return fds_[0] >= 0; }
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void CloseRead() {
    if (fds_[0] >= 0) ::close(fds_[0]);
    fds_[0] = -1;
  }
  void CloseWrite() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  int fds_[2];
};

}  // namespace

util::Status CheckHookFile(const std::string& path) {
  struct stat st {};
  // stat, not lstat: what runs is the file a link points to, so that is what must be safe.
  if (::stat(path.c_str(), &st) != 0)
    return util::Err(util::ErrorCode::kIo, "cannot run hook " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return util::Err(util::ErrorCode::kInvalidArgument, "hook " + path + " is not a regular file");
  const uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "hook " + path + " is owned by uid " + std::to_string(st.st_uid) +
                         ", neither root nor the daemon's user (uid " + std::to_string(me) +
                         "): whoever owns it can run commands as dkimrotor; chown root it");
  if ((st.st_mode & 022) != 0) {
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "hook " + path + " is writable by group or others (mode " + util::ModeText(st.st_mode) +
                         "): anyone who can write it runs commands as dkimrotor; chmod 0755 it");
  }
  return util::Ok();
}

std::vector<std::string> HookEnvironment(char** env, const std::vector<std::string>& extra) {
  auto name_of = [](std::string_view v) { return v.substr(0, v.find('=')); };
  auto overridden = [&](std::string_view v) {
    for (const auto& x : extra)
      if (name_of(x) == name_of(v)) return true;
    return false;
  };
  std::vector<std::string> out{std::string("PATH=") + kHookPath};
  for (char** e = env; e && *e; ++e)
    if (std::string_view(*e).rfind("DKIMROTOR_", 0) == 0 && !overridden(*e)) out.emplace_back(*e);
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

namespace {

// Waits up to `until` for `pid`; true once it is reaped.
bool ReapBy(pid_t pid, int& status, Clock::time_point until) {
  while (true) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid || (w < 0 && errno == ECHILD)) return true;
    if (Clock::now() >= until) return false;
    ::usleep(2000);
  }
}

// SIGTERM to the hook's whole process group, SIGKILL to what is left after a grace period.
// A child stuck in the kernel (uninterruptible sleep, e.g. on a dead NFS server) cannot be
// reaped even then: a detached thread waits for it, so neither reload nor stop ever blocks on
// the hook (issue 13).
void KillGroup(pid_t pid, HookResult& result) {
  int status = 0;
  ::kill(-pid, SIGTERM);
  if (ReapBy(pid, status, Clock::now() + kHookTermGrace)) {
    ::kill(-pid, SIGKILL);  // children that outlived the hook's own exit
    return;
  }
  ::kill(-pid, SIGKILL);
  if (ReapBy(pid, status, Clock::now() + kHookTermGrace)) return;
  result.unreaped = true;
  std::thread([pid] {
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
  }).detach();
}

}  // namespace

util::Result<HookResult> RunHook(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                                 const std::vector<std::string>& extra_env) {
  if (argv.empty() || argv[0].empty() || argv[0][0] != '/')
    return util::Err(util::ErrorCode::kInvalidArgument, "a hook must be given by its absolute path");
  RETURN_IF_ERROR(CheckHookFile(argv[0]));
  Pipe err;
  if (!err.ok()) return util::Err(util::ErrorCode::kIo, std::string("pipe: ") + std::strerror(errno));

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, err.write_end(), STDERR_FILENO);
  // Nothing else of the daemon's: libmilter marks its listening socket and each connection
  // close-on-exec only after socket()/accept() return, so a hook spawned in between inherits
  // it (and any descriptor a library opens without O_CLOEXEC); a hook still running after the
  // daemon died would keep the milter port, and has no business with the MTA's connections.
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Its own process group, so a timeout kills whatever the hook started too.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGHUP);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // Not the daemon's environment (which may hold credentials of other programs, LD_PRELOAD,
  // a PATH with writable folders): a fixed PATH and the DKIMROTOR_* settings hooks read.
  std::vector<std::string> env = HookEnvironment(environ, extra_env);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, argv[0].c_str(), &actions, &attr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  err.CloseWrite();
  if (rc != 0)
    return util::Err(util::ErrorCode::kIo, "cannot run hook " + argv[0] + ": " + std::strerror(rc));

  HookResult result;
  const auto deadline = Clock::now() + timeout;
  bool open = true;
  while (open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      break;
    }
    pollfd pfd{err.read_end(), POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60000)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    char buf[1024];
    ssize_t got = ::read(err.read_end(), buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      open = false;
      break;
    }
    size_t room = kMaxHookStderr - std::min(kMaxHookStderr, result.stderr_text.size());
    result.stderr_text.append(buf, std::min(room, static_cast<size_t>(got)));
  }
  int status = 0;
  // stderr closed; the hook may still be running (it closed stderr itself): bounded wait.
  if (!result.timed_out && ReapBy(pid, status, deadline)) {
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
  }
  result.timed_out = true;
  KillGroup(pid, result);
  return result;
}

util::Status RunHookChecked(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                            const std::vector<std::string>& extra_env) {
  ASSIGN_OR_RETURN(HookResult r, RunHook(argv, timeout, extra_env));
  if (r.exit_status == 0 && !r.timed_out) return util::Ok();
  std::string text = r.stderr_text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  std::string what = r.timed_out ? "was killed after " + std::to_string(timeout.count()) + " ms" +
                                       (r.unreaped ? " (and is stuck in the kernel, not yet gone)" : "")
                                 : r.exit_status < 0 ? "was killed by a signal"
                                                     : "exited with status " + std::to_string(r.exit_status);
  return util::Err(util::ErrorCode::kIo,
                   "hook " + argv[0] + " " + what + (text.empty() ? "" : ": " + text));
}

}  // namespace dkimrotor::keystore
