// One header field as it appeared in the message, and its canonical forms (RFC 6376 3.4.1-2).
// Plain value; safe to share read-only between threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "signer/canonicalization.h"

namespace dkimrotor::signer {

struct HeaderField {
  // The bytes before the colon, exactly (obsolete syntax may leave white space before it).
  std::string name;
  // Every byte after the colon up to, not including, the CRLF that ends the field; folded
  // lines keep their CRLF. Bare LF line ends must already be CRLF (the parsers do this).
  std::string value;
};

// The field's name for matching against h=: lowercased, white space before the colon removed.
std::string FieldKey(std::string_view name);

// Appends the canonical form of one field, with its terminating CRLF, to `out`.
void AppendCanonicalHeader(Canon mode, std::string_view name, std::string_view value,
                           std::string* out);

}  // namespace dkimrotor::signer
