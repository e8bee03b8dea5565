// Self-pipe signal handling: the handler records the signal in a lock-free atomic flag and
// writes one byte to a non-blocking pipe; the main thread reads the pipe and then the flags,
// so a full pipe loses a wake-up byte, never a signal.
#include "daemon/signals.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace dkimrotor::daemon {
namespace {

std::atomic<bool> hup{false}, term{false}, interrupt{false}, wake{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs lock-free flags");
int wake_pipe[2] = {-1, -1};

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

void Poke() {
  const int saved = errno;
  const char byte = 0;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe[1], &byte, 1);  // EAGAIN: a byte is waiting anyway
  errno = saved;
}

void OnSignal(int sig) {
  if (sig == SIGHUP) hup.store(true);
  if (sig == SIGTERM) term.store(true);
  if (sig == SIGINT) interrupt.store(true);
  Poke();
}

}  // namespace

void BlockDaemonSignals() {
  if (wake_pipe[0] < 0) {
    if (::pipe2(wake_pipe, O_CLOEXEC) != 0) {
      std::perror("dkimrotor: pipe2");
      std::abort();  // at start, before anything: no file descriptor left at all
    }
    ::fcntl(wake_pipe[1], F_SETFL, ::fcntl(wake_pipe[1], F_GETFL) | O_NONBLOCK);
  }
  const sigset_t set = DaemonSignals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  // SA_NODEFER: the signal stays unblocked in the main thread while its handler runs.
  action.sa_flags = SA_RESTART | SA_NODEFER;
  for (int sig : {SIGHUP, SIGTERM, SIGINT}) ::sigaction(sig, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

void UnblockDaemonSignalsInThisThread() {
  const sigset_t set = DaemonSignals();
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

int WaitForDaemonSignal() {
  while (true) {
    if (term.exchange(false)) return SIGTERM;
    if (interrupt.exchange(false)) return SIGINT;
    if (hup.exchange(false)) return SIGHUP;
    if (wake.exchange(false)) return kWakeUp;
    char buffer[64];
    const ssize_t n = ::read(wake_pipe[0], buffer, sizeof buffer);
    if (n < 0 && errno != EINTR) {
      std::perror("dkimrotor: reading the signal pipe");
      std::abort();
    }
  }
}

void WakeSignalWaiter() {
  wake.store(true);
  Poke();
}

}  // namespace dkimrotor::daemon
