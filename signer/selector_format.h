// How new selectors are named: a validated format such as "{stream}-{yyyymmdd}-{alg}{bits}",
// parsed once and expanded for each new key. The configuration's checks (does every selector
// fit in DNS?) and the rotation engine's naming of keys both expand through Expand(), so what
// was checked is what gets generated.
// A plain value that owns its pieces; immutable once parsed, so safe to share between threads.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "signer/algorithm.h"
#include "util/result.h"

namespace dkimrotor::signer {

// What the placeholders stand for in one selector.
struct SelectorValues {
  std::string stream;                 // {stream}
  Algorithm algorithm = Algorithm::kRsaSha256;  // {alg}: "rsa" or "ed25519"
  int bits = 0;                       // {bits}: the RSA modulus; nothing for ed25519
  std::chrono::year_month_day date;   // {yyyymmdd}, {yyyymm}: the key's creation day, UTC
  unsigned n = 0;                     // {n}: a sequence number
};

class SelectorFormat {
 public:
  static constexpr std::string_view kDefault = "{stream}-{yyyymmdd}-{alg}{bits}";

  // kDefault.
  SelectorFormat();

  // Letters, digits, '-', '.' and the placeholders {stream} {yyyymmdd} {yyyymm} {alg} {bits}
  // {n}; must hold {yyyymmdd}, {yyyymm} or {n}, so that a selector is never reused. Each message
  // says the fix and reads well after "SETTING = VALUE: ".
  static util::Result<SelectorFormat> Parse(std::string_view text);

  // The selector for `values`, in lowercase (DNS names compare case-insensitively; one spelling
  // keeps the state file and the zone alike). Not checked against DNS's limits: the caller
  // knows the domain it goes under.
  std::string Expand(const SelectorValues& values) const;

  const std::string& text() const { return text_; }  // as written
  bool has_stream() const { return Has(Field::kStream); }
  bool has_date() const { return Has(Field::kYyyymmdd) || Has(Field::kYyyymm); }
  bool has_n() const { return Has(Field::kN); }
  bool has_alg() const { return Has(Field::kAlg); }
  bool has_bits() const { return Has(Field::kBits); }

  friend bool operator==(const SelectorFormat& a, const SelectorFormat& b) {
    return a.text_ == b.text_;
  }

 private:
  enum class Field { kLiteral, kStream, kYyyymmdd, kYyyymm, kAlg, kBits, kN };
  struct Piece {
    Field field = Field::kLiteral;
    std::string literal;  // kLiteral only
  };

  struct Unparsed {};
  explicit SelectorFormat(Unparsed) {}
  bool Has(Field f) const;

  std::string text_;
  std::vector<Piece> pieces_;
};

}  // namespace dkimrotor::signer
