// The daemon's one door to the libmilter filter (milter::Milter): creating and binding it,
// serving on a thread of its own, swapping its settings, draining and stopping it, and its
// counters. Nothing else in daemon/ names milter:: types, so moving the daemon onto another
// front end (the protocol-neutral session/ layer) changes this file pair only.
// Owns the Milter and its server thread; borrows the SnapshotHolder, which must outlive it.
// Thread-safety: Start(), Stop() and destruction from one thread at a time; SwapSettings(),
// RefuseNewMessages(), WaitForMessagesInFlight() and the counters from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/logger.h>

#include "keystore/signing_snapshot.h"
#include "milter/milter.h"
#include "util/result.h"

namespace dkimrotor::daemon {

// What a reload may change in the front end. Immutable once built.
using FrontendSettings = std::shared_ptr<const milter::MilterSettings>;

struct FrontendOptions {
  std::string socket;
  unsigned socket_mode = 0660;
  keystore::SnapshotHolder* keys = nullptr;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> audit;  // one line per signed message; may be the same as log
};

class MilterFrontend {
 public:
  static util::Result<std::unique_ptr<MilterFrontend>> Create(FrontendOptions options, FrontendSettings settings);
  ~MilterFrontend();  // Stop()s a front end still serving
  MilterFrontend(const MilterFrontend&) = delete;
  MilterFrontend& operator=(const MilterFrontend&) = delete;

  // Binds the socket (before privileges are dropped).
  util::Status Listen();
  // Serves on a thread of its own. `on_unexpected_exit` runs on that thread if libmilter
  // stops by itself, i.e. before RefuseNewMessages() or Stop().
  void Start(std::function<void()> on_unexpected_exit);
  void SwapSettings(FrontendSettings settings);
  // A message that begins from now on gets a 4xx; the messages in flight are still served.
  void RefuseNewMessages();
  int MessagesInFlight() const;
  // Waits at most `timeout` for the messages in flight; returns how many are left.
  int WaitForMessagesInFlight(std::chrono::milliseconds timeout) const;
  // Ends every connection and joins the server thread (libmilter notices within its 5 s
  // listener poll). Call it once the messages in flight are done. Idempotent.
  void Stop();
  uint64_t SignedMessages() const;

 private:
  explicit MilterFrontend(std::unique_ptr<milter::Milter> milter) : milter_(std::move(milter)) {}

  std::unique_ptr<milter::Milter> milter_;
  std::shared_ptr<spdlog::logger> log_;
  std::thread server_;
};

}  // namespace dkimrotor::daemon
