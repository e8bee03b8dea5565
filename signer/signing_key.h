// What one DKIM signature needs besides the message: domain, selector, key, canonicalization.
// Validated once when created (so nothing can inject ';' or CRLF into the header), then
// immutable and shared by every message that signs with it; safe from any thread.
#pragma once

#include <memory>
#include <string>

#include "signer/canonicalization.h"
#include "signer/private_key.h"
#include "util/result.h"

namespace dkimrotor::signer {

struct SigningKeyOptions {
  std::string domain;    // d=
  std::string selector;  // s=
  std::shared_ptr<const PrivateKey> key;
  Canonicalization canonicalization;  // c=, relaxed/relaxed unless set
};

class SigningKey {
 public:
  static util::Result<std::shared_ptr<const SigningKey>> Create(SigningKeyOptions options);

  const std::string& domain() const { return options_.domain; }
  const std::string& selector() const { return options_.selector; }
  const PrivateKey& key() const { return *options_.key; }
  Algorithm algorithm() const { return options_.key->algorithm(); }
  const Canonicalization& canonicalization() const { return options_.canonicalization; }

  explicit SigningKey(SigningKeyOptions options) : options_(std::move(options)) {}

 private:
  SigningKeyOptions options_;
};

// A domain name or selector as DKIM allows: dot-separated labels of letters, digits, '-' and
// (for selectors, and underscores seen in the wild) '_', no label empty or over 63 bytes.
// `what` names the setting in the error ("domain", "selector").
util::Status ValidateDnsName(std::string_view name, std::string_view what);

}  // namespace dkimrotor::signer
