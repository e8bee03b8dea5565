// The signing service: the one place that decides what happens to a message, whatever front end
// carries it (the milter, `dkimrotor sign -c`, later others). It holds the current settings and
// reads the keystore's current key snapshot, and hands out one Session per message; a session
// keeps the settings and snapshot it began with, however many reloads and rotations happen
// meanwhile. It counts every verdict and writes the audit record of every signed message.
// Borrows the SnapshotHolder (the caller keeps it alive, and the service outlives its sessions).
// Thread-safety: every method may be called from any thread. The hot path takes no lock: the
// settings and the snapshot are atomic shared_ptr loads, the counters relaxed atomics.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "keystore/signing_snapshot.h"
#include "session/settings.h"
#include "session/verdict.h"
#include "util/histogram.h"

namespace dkimrotor::session {

class Session;

// Who is sending the message, as the front end knows it.
struct Client {
  const sockaddr* address = nullptr;  // null: no network peer (local submission): internal
  std::string_view auth_authen;       // the SMTP AUTH login; empty when not authenticated
};

// What `dkimrotor sign` may set for one message that the milter takes from the clock and the
// From header.
struct MessageOverrides {
  std::optional<std::string> domain;    // sign as if the From domain were this
  std::optional<int64_t> timestamp;     // t=; the system clock otherwise
  std::optional<int64_t> lifetime;      // x= = t= + this; the settings' otherwise
};

// Messages by outcome, and signatures made. Read with relaxed loads.
struct Counters {
  std::atomic<uint64_t> signed_messages{0};
  std::atomic<uint64_t> unsigned_messages{0};
  std::atomic<uint64_t> tempfailed_messages{0};
  std::atomic<uint64_t> rejected_messages{0};
  std::atomic<uint64_t> signatures{0};
};

class SigningService {
 public:
  // `log` gets refusals and failures; `audit` one line per signature (may be `log`, or null).
  SigningService(const keystore::SnapshotHolder* keys, std::shared_ptr<const Settings> settings,
                 std::shared_ptr<spdlog::logger> log, std::shared_ptr<spdlog::logger> audit);
  ~SigningService();
  SigningService(const SigningService&) = delete;
  SigningService& operator=(const SigningService&) = delete;

  // Either a session for the message, or (session null) the verdict for a message that is not
  // to be signed at all: from outside, or arriving while the service stops. That verdict is
  // counted already.
  struct Start {
    std::unique_ptr<Session> session;
    Verdict verdict;
  };
  Start Begin(const Client& client, MessageOverrides overrides = {});

  // The verdict for a failure a front end met outside any session's control (an exception, a
  // protocol error): the configured on_error answer. Counted and logged.
  Verdict Fail(std::string_view id, std::string reason);

  void SwapSettings(std::shared_ptr<const Settings> settings) {
    settings_.store(std::move(settings), std::memory_order_release);
  }
  std::shared_ptr<const Settings> settings() const { return settings_.load(std::memory_order_acquire); }

  // The first step of a clean stop: from now on a message that would be signed gets a
  // tempfail verdict (the MTA retries it later), while the sessions already open go on.
  void RefuseNewMessages() { stopping_.store(true, std::memory_order_release); }
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  // Sessions alive right now (from Begin until the Session is destroyed, however it ends).
  int messages_in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  // Waits until no session is alive, at most `timeout`; returns how many still are.
  int WaitForMessagesInFlight(std::chrono::milliseconds timeout) const;

  const Counters& counters() const { return counters_; }
  // How long Session::Finish took to sign each signed message: the header hash and every
  // private-key operation (the body was hashed as it streamed in). Seconds.
  const util::Histogram& sign_duration() const { return sign_duration_; }

 private:
  friend class Session;

  // A refusal under `settings`: the outcome its kind and the settings call for. Not counted.
  static Verdict Refuse(const Settings& settings, Refusal refusal, std::string reason);
  // Counts the verdict, logs a refusal (`id` names the message), audits a signature.
  void Report(std::string_view id, const Verdict& verdict);

  const keystore::SnapshotHolder* keys_;
  std::atomic<std::shared_ptr<const Settings>> settings_;
  std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<spdlog::logger> audit_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> in_flight_{0};
  Counters counters_;
  util::Histogram sign_duration_;
};

}  // namespace dkimrotor::session
