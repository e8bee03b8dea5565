// The daemon's signals. Every thread blocks them and only the main thread sigwait()s them:
// libmilter's own signal thread also sigwaits SIGHUP, SIGTERM and SIGINT and takes any of
// them for "stop everything now", and the kernel hands a process signal to a thread waiting
// for it, so the main thread must be back in sigwait at all times (the work a signal asks for
// runs on other threads). SIGUSR1, which libmilter does not wait for, is the daemon's own
// thread-directed wake-up (pthread_kill), never sent process-wide.
// Stateless functions over the calling thread's signal mask.
#pragma once

#include <pthread.h>
#include <signal.h>

namespace dkimrotor::daemon {

// Wakes the main thread's sigwait from another thread of the daemon.
inline constexpr int kWakeSignal = SIGUSR1;

// Blocks SIGHUP, SIGTERM, SIGINT and kWakeSignal in the calling thread, and ignores SIGPIPE.
// Call it before any thread exists, so every thread inherits the mask.
void BlockDaemonSignals();

// Waits for one of the signals BlockDaemonSignals() blocked; returns its number.
int WaitForDaemonSignal();

// A signal to one thread of this process (never process-wide: libmilter's signal thread
// could take it).
void SignalThread(pthread_t thread, int signal);

}  // namespace dkimrotor::daemon
