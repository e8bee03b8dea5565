// One header field as it appeared in the message, and its canonical forms (RFC 6376 3.4.1-2).
// Plain value; safe to share read-only between threads.
#pragma once

#include <cstddef>
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

// Whether `name` is a field name as Postfix's is_header() and the message parser see one:
// printable US-ASCII other than the colon, then optional white space (obsolete syntax). A line
// whose name has 8-bit bytes, NUL or inner white space is no field to an MTA: it begins the body.
// A longer name than any line RFC 5322 allows (998 bytes with the colon) is none either.
bool IsFieldName(std::string_view name);
inline constexpr size_t kMaxFieldNameLength = 997;

// How the verifiers read one field, as far as signing it goes (README, "Malformed header bytes").
enum class FieldReading {
  kPlain,      // dkimpy, Mail::DKIM, OpenDKIM and Rspamd canonicalize it alike: signable
  kAmbiguous,  // they canonicalize it differently, or h= cannot name it: leave it out of h=
  kBroken,     // a line break not followed by white space: the MTA writes it out as more lines
               // than one field, so verifiers see other fields than the signer: never signable
};
struct FieldCheck {
  FieldReading reading = FieldReading::kPlain;
  const char* why = "";  // for kAmbiguous and kBroken: what makes it so, for the log
};
// `name` must pass IsFieldName(); `value` is in HeaderField's form (folds as CRLF).
FieldCheck CheckField(std::string_view name, std::string_view value);

// Appends the canonical form of one field, with its terminating CRLF, to `out`.
void AppendCanonicalHeader(Canon mode, std::string_view name, std::string_view value,
                           std::string* out);

}  // namespace dkimrotor::signer
