// Writes a DKIM-Signature field: tags in a fixed order, folded so no line passes 76 columns,
// b= last and filled in after the rest has been hashed. Never emits l=.
// Not thread-safe: one instance per signature.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dkimrotor::signer {

inline constexpr std::string_view kDkimSignatureName = "DKIM-Signature";

class SignatureHeaderWriter {
 public:
  struct Tags {
    std::string_view algorithm;         // a=
    std::string canonicalization;       // c=
    std::string_view domain;            // d=
    std::string_view selector;          // s=
    std::optional<int64_t> timestamp;   // t=
    std::optional<int64_t> expiration;  // x=
    std::vector<std::string> headers;   // h=
    std::string body_hash;              // bh=, base64
  };

  explicit SignatureHeaderWriter(const Tags& tags);

  // The field's value (after "DKIM-Signature:") with an empty b=: the bytes that are hashed.
  const std::string& unsigned_value() const { return value_; }
  // The whole field, "DKIM-Signature: ..." with CRLF folds and no final CRLF.
  std::string Complete(std::string_view signature_base64) const;

 private:
  void Append(std::string_view token, bool space_before);

  std::string value_;
  size_t column_;  // of the next byte on the current line
};

}  // namespace dkimrotor::signer
