// The daemon's signals. libmilter's own signal thread sigwait()s SIGHUP, SIGTERM and SIGINT
// and takes any of them for "stop everything now", so the daemon must make sure the kernel
// never hands it one. A process-directed signal goes to the thread it was sent to (the main
// thread: kill(pid) and systemd name it) whenever that thread does not block it; only when
// it blocks it (or has another signal pending and is off the CPU) does the kernel look for
// another thread, and libmilter's would then be the only one waiting. So: the main thread
// keeps the three signals unblocked at all times, even inside its handler (SA_NODEFER), with
// a handler that only records the signal and writes a byte to a pipe; every other thread
// blocks them. sigwait() in the main thread does not do: between two calls the signal is
// blocked there, and a SIGHUP storm under load used to stop the daemon (issue 13,
// tests/faults/signal_storm_test.cc).
// Process-wide state (the handler's flags and pipe), set up once by BlockDaemonSignals().
#pragma once

namespace dkimrotor::daemon {

// What WaitForDaemonSignal() returns when WakeSignalWaiter() was called.
inline constexpr int kWakeUp = 0;

// Installs the handlers for SIGHUP, SIGTERM and SIGINT, blocks the three in the calling thread
// and ignores SIGPIPE. Call it once, before any thread exists, so every thread inherits the
// mask.
void BlockDaemonSignals();

// Unblocks the three signals in the calling thread only: the main thread, once every other
// thread the daemon starts exists (threads inherit the mask of the thread that starts them).
void UnblockDaemonSignalsInThisThread();

// Waits until a signal was received or WakeSignalWaiter() was called; returns SIGTERM, SIGINT,
// SIGHUP (in this order when several came) or kWakeUp. Signals of one kind that come before
// the call are reported once.
int WaitForDaemonSignal();

// Makes WaitForDaemonSignal() return kWakeUp; callable from any thread.
void WakeSignalWaiter();

}  // namespace dkimrotor::daemon
