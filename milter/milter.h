// The libmilter filter: takes each message's header fields and body chunks straight into the
// signer (the body is never buffered) and adds the DKIM-Signature fields at end of message as
// the first headers. Keys come from the keystore's snapshot, loaded once per message; the
// reloadable settings likewise, so a message in flight keeps what it began with.
// libmilter is process-global: at most one Milter exists at a time.
// Thread-safety: libmilter calls the callbacks on its worker threads, one message per thread
// at a time; SwapSettings() and Stop() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "keystore/signing_snapshot.h"
#include "milter/signing_policy.h"
#include "signer/header_selector.h"
#include "util/result.h"

namespace dkimrotor::milter {

enum class OnError { kTempfail, kAccept };
enum class OnBadMessage { kAccept, kReject, kTempfail };

// What a reload may change. Immutable once built.
struct MilterSettings {
  SigningPolicy policy;
  signer::HeaderSelector selector{signer::HeaderPolicy::Default()};
  struct Domain {
    std::string name;
    bool subdomains = false;
  };
  std::vector<Domain> domains;
  OnError on_error = OnError::kTempfail;
  OnBadMessage on_bad_message = OnBadMessage::kAccept;
  std::optional<int64_t> signature_lifetime;  // x= = t= + this
};

struct MilterOptions {
  std::string socket;        // libmilter syntax: inet:PORT@HOST, inet6:PORT@HOST, unix:/path
  unsigned socket_mode = 0660;
  int backlog = 128;
  keystore::SnapshotHolder* keys = nullptr;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> audit;  // one line per signed message; may be the same as log
};

class Milter {
 public:
  static util::Result<std::unique_ptr<Milter>> Create(MilterOptions options,
                                                      std::shared_ptr<const MilterSettings> settings);
  ~Milter();

  // Registers with libmilter and binds the socket (before privileges are dropped). Sets
  // TCP_NODELAY on an inet listener, so accepted sockets inherit it: replies are small writes
  // that must not wait for the MTA's delayed ACK.
  util::Status Listen();
  // Serves until Stop(); returns once libmilter has finished.
  util::Status Run();
  // The first step of a clean stop: from now on a message that begins gets a 4xx (the MTA
  // retries it later), while the messages in flight are still served.
  void RefuseNewMessages() { stopping_.store(true, std::memory_order_release); }
  // Waits until no message is between MAIL FROM and its end, at most `timeout`. Returns how
  // many are still in flight (0: all finished).
  int WaitForMessagesInFlight(std::chrono::milliseconds timeout) const;
  // libmilter closes its listener, and its worker pool stops serving every connection:
  // call it after the messages in flight are done. Run() returns within libmilter's 5 s
  // listener poll.
  void Stop();
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  void SwapSettings(std::shared_ptr<const MilterSettings> settings) {
    settings_.store(std::move(settings), std::memory_order_release);
  }
  std::shared_ptr<const MilterSettings> settings() const {
    return settings_.load(std::memory_order_acquire);
  }
  const MilterOptions& options() const { return options_; }

  // Counters for logs and tests.
  std::atomic<uint64_t> signed_messages{0};
  std::atomic<uint64_t> unsigned_messages{0};
  std::atomic<uint64_t> failed_messages{0};
  std::atomic<int> messages_in_flight{0};  // from MAIL FROM until the message context is freed

 private:
  explicit Milter(MilterOptions options, std::shared_ptr<const MilterSettings> settings);

  MilterOptions options_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::shared_ptr<const MilterSettings>> settings_;
};

}  // namespace dkimrotor::milter
