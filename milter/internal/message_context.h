// Per-connection and per-message state of the milter. A connection context lives from
// negotiate to close (owned through libmilter's private pointer); a message context from MAIL
// FROM to end of message or abort. Not thread-safe: libmilter runs one connection's callbacks
// on one thread at a time.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "keystore/signing_snapshot.h"
#include "milter/milter.h"
#include "signer/header_field.h"
#include "signer/message_signer.h"

namespace dkimrotor::milter::internal {

// Counts a message as in flight for as long as its context lives, however it ends (end of
// message, abort, close or a dropped connection).
class InFlight {
 public:
  InFlight() = default;
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;
  ~InFlight() {
    if (counter_) counter_->fetch_sub(1, std::memory_order_release);
  }
  void Count(std::atomic<int>* counter) {
    counter_ = counter;
    counter_->fetch_add(1, std::memory_order_relaxed);
  }

 private:
  std::atomic<int>* counter_ = nullptr;
};

struct MessageContext {
  InFlight in_flight;
  std::shared_ptr<const MilterSettings> settings;             // as at MAIL FROM
  std::shared_ptr<const keystore::SigningSnapshot> snapshot;  // as at MAIL FROM
  std::vector<signer::HeaderField> fields;                    // until end of headers
  keystore::SigningSnapshot::KeyList keys;
  std::optional<signer::MessageSigner> signer;                // from end of headers

  // `value` as the MTA sent it: with its leading space when negotiated, folds as LF or CRLF.
  void AddHeader(const char* name, const char* value, bool leading_space);
  // The domain of the single From field, or why there is none.
  util::Result<std::string> FromDomain() const;
  // Creates the signer and feeds it the header fields.
  util::Status Begin(keystore::SigningSnapshot::KeyList keys, signer::MessageOptions options);
};

struct ConnectionContext {
  sockaddr_storage address{};
  bool has_address = false;
  bool leading_space = false;
  bool noreply_header = false;
  bool noreply_body = false;
  bool can_skip = false;
  std::unique_ptr<MessageContext> message;
};

// A complete "DKIM-Signature: v=1; ..." field as the value smfi_insheader takes: folds as LF
// (the MTA writes its own line ends), with the leading space only when negotiated.
std::string MilterHeaderValue(const std::string& field, bool leading_space);

}  // namespace dkimrotor::milter::internal
