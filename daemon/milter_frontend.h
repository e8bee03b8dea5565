// The daemon's door to the libmilter filter (milter::Milter): creating and binding it, serving
// on a thread of its own, and stopping it. Everything about messages (settings, drain,
// counters) lives in the session::SigningService the milter adapts, which the daemon owns.
// Owns the Milter and its server thread; borrows the SigningService, which must outlive it.
// Thread-safety: Start(), Stop() and destruction from one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/logger.h>

#include "milter/milter.h"
#include "session/signing_service.h"
#include "util/result.h"

namespace dkimrotor::daemon {

struct FrontendOptions {
  std::string socket;
  unsigned socket_mode = 0660;
  session::SigningService* service = nullptr;
  std::shared_ptr<spdlog::logger> log;
};

class MilterFrontend {
 public:
  static util::Result<std::unique_ptr<MilterFrontend>> Create(FrontendOptions options);
  ~MilterFrontend();  // Stop()s a front end still serving
  MilterFrontend(const MilterFrontend&) = delete;
  MilterFrontend& operator=(const MilterFrontend&) = delete;

  // Binds the socket (before privileges are dropped).
  util::Status Listen();
  // Serves on a thread of its own. `on_unexpected_exit` runs on that thread if libmilter
  // stops by itself, i.e. before Stop().
  void Start(std::function<void()> on_unexpected_exit);
  // Ends every connection and joins the server thread (libmilter notices within its 5 s
  // listener poll). Call it once the service's messages in flight are done. Idempotent.
  void Stop();

 private:
  explicit MilterFrontend(std::unique_ptr<milter::Milter> milter) : milter_(std::move(milter)) {}

  std::unique_ptr<milter::Milter> milter_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread server_;
};

}  // namespace dkimrotor::daemon
