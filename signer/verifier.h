// Verifies the DKIM-Signature fields of one message against public keys the caller supplies:
// for self-checks and tests, so it needs no DNS. Streams the body like MessageSigner.
// Signatures with l= are reported as unsupported rather than verified on a partial body.
// Not thread-safe: one instance per message.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "signer/algorithm.h"
#include "signer/body_hasher.h"
#include "signer/canonicalization.h"
#include "signer/header_field.h"
#include "signer/public_key.h"
#include "util/result.h"

namespace dkimrotor::signer {

struct SignatureVerdict {
  std::string domain;
  std::string selector;
  std::string algorithm;
  util::Status status;  // Ok, or why the signature fails
};

class MessageVerifier {
 public:
  using KeyLookup = std::function<util::Result<std::shared_ptr<const PublicKey>>(
      std::string_view domain, std::string_view selector, Algorithm algorithm)>;

  explicit MessageVerifier(KeyLookup lookup) : lookup_(std::move(lookup)) {}

  void AddHeader(HeaderField field) { fields_.push_back(std::move(field)); }
  // Parses every DKIM-Signature field; malformed ones become failing verdicts.
  void EndOfHeaders();
  void AddBody(std::string_view chunk);
  // One verdict per DKIM-Signature field, top to bottom. Empty if the message has none.
  std::vector<SignatureVerdict> Finish();

 private:
  struct Pending {
    SignatureVerdict verdict;
    Algorithm algorithm = Algorithm::kRsaSha256;
    Canonicalization canon;
    std::vector<std::string> names;  // h=
    std::string field_name;
    std::string value_without_b;
    std::string body_hash;           // bh=, decoded
    std::string signature;           // b=, decoded
  };

  Pending Parse(const HeaderField& field) const;

  KeyLookup lookup_;
  std::vector<HeaderField> fields_;
  std::vector<Pending> pending_;
  std::unique_ptr<BodyHasher> hashers_[2];
};

// The DKIM-Signature value with the b= tag's value (and its surrounding white space) deleted.
std::string RemoveSignatureValue(std::string_view value);

}  // namespace dkimrotor::signer
