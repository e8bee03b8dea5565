// One message's signing session: header fields in, then body chunks, then a Verdict. It owns
// the decisions about the message: the From field (exactly one, with one address), the
// configured domain it falls under, the keys (one per algorithm, round-robin among the active
// ones of the snapshot it began with), t= and x=, and the audit record.
// Made by SigningService::Begin(); borrows the service, which outlives it. The body is never
// buffered: it streams into the body hashes.
// Not thread-safe: one message, one thread at a time (a milter connection, a CLI run).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "keystore/signing_snapshot.h"
#include "session/settings.h"
#include "session/signing_service.h"
#include "session/verdict.h"
#include "signer/header_field.h"
#include "signer/message_signer.h"
#include "util/result.h"

namespace dkimrotor::session {

class Session {
 public:
  ~Session();  // the message leaves the service's in-flight count, however it ended
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Names the message in logs and the audit record (the MTA's queue id); may come late.
  void SetId(std::string id) { id_ = std::move(id); }
  const std::string& id() const { return id_; }

  // `name` is the bytes before the colon; `value` every byte after it, folds as CRLF, no
  // final line end. Only before EndOfHeaders(). Past Settings::max_header_fields or
  // max_header_bytes the fields kept so far are dropped, no more are kept, and EndOfHeaders()
  // refuses the message naming the limit.
  void AddHeader(std::string_view name, std::string_view value);

  // After the last header field: picks the domain and the keys. Returns the final verdict
  // (counted) when the message will not be signed, so a front end can answer at once and skip
  // the body; nullopt when the body is wanted. Called again, it returns the same answer.
  std::optional<Verdict> EndOfHeaders();

  void AddBody(std::string_view chunk);

  // Where the signatures go into the message; a failure there (the MTA refused the header)
  // turns the verdict into an error.
  using Deliver = std::function<util::Status(const std::vector<std::string>& signatures)>;

  // Signs, hands the signatures to `deliver`, and returns the verdict, counted and (when
  // signed) audited. Ends the session: call it once.
  Verdict Finish(const Deliver& deliver);

 private:
  friend class SigningService;
  Session(SigningService* service, std::shared_ptr<const Settings> settings,
          std::shared_ptr<const keystore::SigningSnapshot> snapshot, MessageOverrides overrides);

  Verdict Refuse(Refusal refusal, std::string reason);

  SigningService* service_;
  std::shared_ptr<const Settings> settings_;                  // as at Begin
  std::shared_ptr<const keystore::SigningSnapshot> snapshot_;  // as at Begin
  MessageOverrides overrides_;
  std::string id_;
  std::vector<signer::HeaderField> fields_;  // until EndOfHeaders
  size_t header_fields_ = 0;                 // counted by AddHeader, kept or not
  size_t header_bytes_ = 0;
  std::string over_limit_;                   // why the header is too large; empty while it is not
  std::optional<signer::MessageSigner> signer_;  // from EndOfHeaders, when signing
  std::string domain_;                       // d=
  std::optional<Verdict> refused_;           // set when EndOfHeaders refused the message
  bool finished_ = false;
};

}  // namespace dkimrotor::session
