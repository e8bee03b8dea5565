// Judges a published DKIM key record (RFC 6376 3.6.1) against the key dkimrotor expects there,
// and splits a record value into the <=255-byte character-strings a TXT RR is made of.
// Pure functions over plain values: no DNS, no files; safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "signer/algorithm.h"

namespace dkimrotor::keystore {

enum class KeyRecordVerdict {
  kMatches,      // p= holds exactly the expected key and the record lets verifiers use it
  kRevoked,      // p= is empty (RFC 6376 3.6.1: the key has been revoked)
  kWrongKey,     // a well-formed record for another key, or of another key type (k=)
  kMalformed,    // unparsable tags, bad base64, or a record verifiers would not apply to us
  kKeyTooShort,  // an RSA key below RFC 8301's 1024 bits: verifiers must reject it
};

std::string_view KeyRecordVerdictName(KeyRecordVerdict v);  // "matches", "revoked", ...

struct KeyRecordCheck {
  KeyRecordVerdict verdict = KeyRecordVerdict::kMalformed;
  // True when the record is what the caller asked for: kMatches for a key, kRevoked when the
  // expected key was empty (a revocation was expected).
  bool as_expected = false;
  // Names the problem and the fix; empty for an expected record.
  std::string detail;
  // Problems that do not stop verification: "t=y" (testing mode) left on, or an RSA key below
  // kRecommendedRsaBits.
  std::vector<std::string> warnings;
  // The published key's size in bits when it could be decoded (0 otherwise).
  int key_bits = 0;
};

// `txt_joined` is the record's character-strings concatenated (one TXT RR); `expected_p_base64`
// is the p= value we published (white space ignored), or empty when we expect `p=` (revoked).
KeyRecordCheck CheckKeyRecord(std::string_view txt_joined, signer::Algorithm expected,
                              std::string_view expected_p_base64);

// Splits a TXT value into character-strings of at most 255 bytes (RFC 1035 3.3), in order;
// an empty value gives one empty string. Callers quote each string for zone files and hooks.
std::vector<std::string> SplitTxtStrings(std::string_view value);

inline constexpr size_t kMaxTxtStringBytes = 255;

// RFC 8301 3.2: signers MUST use at least 1024 bits and SHOULD use 2048.
inline constexpr int kRecommendedRsaBits = 2048;

}  // namespace dkimrotor::keystore
