// Signs one message with one or more keys as it streams through: header fields first, then
// body chunks, then Finish() returns one DKIM-Signature field per key.
// Body hashing costs one pass per body canonicalization in use, not one per signature
// (rsa-sha256 and ed25519-sha256 both hash the body with SHA-256).
// Borrows the HeaderSelector (caller keeps it alive); shares the SigningKeys.
// Not thread-safe: one instance per message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signer/body_hasher.h"
#include "signer/header_field.h"
#include "signer/header_selector.h"
#include "signer/signing_key.h"
#include "util/result.h"

namespace dkimrotor::signer {

struct MessageOptions {
  std::optional<int64_t> timestamp;  // t=, seconds since the epoch; the caller's clock
  std::optional<int64_t> lifetime;   // x= = t= + lifetime (requires timestamp; positive)
};

class MessageSigner {
 public:
  MessageSigner(std::vector<std::shared_ptr<const SigningKey>> keys, const HeaderSelector* selector,
                MessageOptions options);

  // `value` is every byte after the colon, folds as CRLF, no final CRLF.
  void AddHeader(std::string_view name, std::string_view value);
  void AddHeader(HeaderField field) { fields_.push_back(std::move(field)); }

  // After the last header: checks the message can be signed at all. Errors name the reason
  // ("no From header", "2 From headers", a field name that is none, a line break inside a
  // field, a From field verifiers read differently) and leave the decision to the caller;
  // Finish() then returns the same error rather than a signature.
  util::Status EndOfHeaders();

  void AddBody(std::string_view chunk);

  // One complete "DKIM-Signature: ..." field per key, in key order, CRLF-folded, no final CRLF.
  util::Result<std::vector<std::string>> Finish();

  const std::vector<HeaderField>& fields() const { return fields_; }
  const std::vector<std::shared_ptr<const SigningKey>>& keys() const { return keys_; }

 private:
  util::Status CheckHeaders();
  BodyHasher& HasherFor(Canon mode);

  std::vector<std::shared_ptr<const SigningKey>> keys_;
  const HeaderSelector* selector_;
  MessageOptions options_;
  std::vector<HeaderField> fields_;
  std::unique_ptr<BodyHasher> hashers_[2];  // indexed by Canon
  std::optional<util::Status> headers_status_;  // set by EndOfHeaders()
};

// Appends the header-hash input for one signature: the fields h= names, canonicalized, then
// the DKIM-Signature field itself with an empty b= and no final CRLF (RFC 6376 3.7).
// Shared by signing and verification so the two cannot disagree.
void AppendHeaderHashInput(Canon mode, const std::vector<HeaderField>& fields,
                           const std::vector<std::string>& names, std::string_view signature_name,
                           std::string_view signature_value_without_b, std::string* out);

// The last part of that input: the signature field, canonicalized, without its final CRLF.
void AppendSignatureField(Canon mode, std::string_view name, std::string_view value_without_b,
                          std::string* out);

}  // namespace dkimrotor::signer
