// The libmilter adapter: maps libmilter's callbacks onto one signing session per message
// (session::SigningService decides everything about the message) and the session's verdict
// onto libmilter replies. Header fields and body chunks go straight into the session (the body
// is never buffered); the DKIM-Signature fields are inserted at end of message as the first
// headers. libmilter is process-global: at most one Milter exists at a time.
// Borrows the SigningService, which outlives the Milter.
// Thread-safety: libmilter calls the callbacks on its worker threads, one message per thread
// at a time; Stop() may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "session/signing_service.h"
#include "util/result.h"

namespace dkimrotor::milter {

struct MilterOptions {
  std::string socket;        // libmilter syntax: inet:PORT@HOST, inet6:PORT@HOST, unix:/path
  unsigned socket_mode = 0660;
  int backlog = 128;
  session::SigningService* service = nullptr;
  std::shared_ptr<spdlog::logger> log;  // unexpected failures inside the callbacks
};

// The path of a "unix:PATH" or "local:PATH" socket; empty for inet sockets.
std::string UnixSocketPath(const std::string& socket);

// Ok if a unix socket can be bound at `path` without harm: its folder is not writable by
// everyone (unless sticky), and what is there, if anything, is a stale socket nobody listens on
// (libmilter removes it before binding). A live socket, a link or another file is refused with
// the fix, and left alone.
util::Status CheckUnixSocketPath(const std::string& path);

class Milter {
 public:
  static util::Result<std::unique_ptr<Milter>> Create(MilterOptions options);
  ~Milter();

  // Registers with libmilter and binds the socket (before privileges are dropped). Sets
  // TCP_NODELAY on an inet listener, so accepted sockets inherit it: replies are small writes
  // that must not wait for the MTA's delayed ACK.
  util::Status Listen();
  // Serves until Stop(); returns once libmilter has finished.
  util::Status Run();
  // libmilter closes its listener, and its worker pool stops serving every connection: call
  // it after the service's messages in flight are done (SigningService::RefuseNewMessages and
  // WaitForMessagesInFlight). Run() returns within libmilter's 5 s listener poll.
  void Stop();
  // Whether Stop() was called: if Run() returns without it, libmilter stopped by itself.
  bool stop_requested() const { return stop_requested_.load(std::memory_order_acquire); }

  const MilterOptions& options() const { return options_; }
  session::SigningService& service() const { return *options_.service; }

 private:
  explicit Milter(MilterOptions options);

  MilterOptions options_;
  std::atomic<bool> stop_requested_{false};
};

}  // namespace dkimrotor::milter
