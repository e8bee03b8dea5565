// sigwait() on the blocked set: no signal handlers, so nothing runs in signal context.
#include "daemon/signals.h"

namespace dkimrotor::daemon {
namespace {

sigset_t DaemonSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, kWakeSignal);
  return set;
}

}  // namespace

void BlockDaemonSignals() {
  const sigset_t set = DaemonSignals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

int WaitForDaemonSignal() {
  const sigset_t set = DaemonSignals();
  while (true) {
    int sig = 0;
    if (::sigwait(&set, &sig) == 0) return sig;
  }
}

void SignalThread(pthread_t thread, int signal) { ::pthread_kill(thread, signal); }

}  // namespace dkimrotor::daemon
