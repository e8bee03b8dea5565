#include "signer/selector_format.h"

#include <cstdio>

#include "signer/internal/text.h"

namespace dkimrotor::signer {
namespace {

constexpr std::string_view kPlaceholders = "{stream}, {yyyymmdd}, {yyyymm}, {alg}, {bits} or {n}";

util::Unexpected Invalid(std::string message) {
  return util::Err(util::ErrorCode::kInvalidArgument, std::move(message));
}

bool IsSelectorChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.';
}

}  // namespace

SelectorFormat::SelectorFormat() : SelectorFormat(Parse(kDefault).value()) {}

util::Result<SelectorFormat> SelectorFormat::Parse(std::string_view text) {
  if (text.empty()) return Invalid("it is empty; e.g. \"" + std::string(kDefault) + "\"");
  SelectorFormat f{Unparsed{}};
  f.text_ = std::string(text);
  auto literal = [&f](char c) {
    if (f.pieces_.empty() || f.pieces_.back().field != Field::kLiteral)
      f.pieces_.push_back({Field::kLiteral, ""});
    f.pieces_.back().literal += c;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '{') {
      size_t close = text.find('}', i);
      if (close == std::string_view::npos)
        return Invalid("'{' at position " + std::to_string(i + 1) + " is not closed");
      std::string_view name = text.substr(i + 1, close - i - 1);
      Field field;
      if (name == "stream") field = Field::kStream;
      else if (name == "yyyymmdd") field = Field::kYyyymmdd;
      else if (name == "yyyymm") field = Field::kYyyymm;
      else if (name == "alg") field = Field::kAlg;
      else if (name == "bits") field = Field::kBits;
      else if (name == "n") field = Field::kN;
      else
        return Invalid("unknown placeholder {" + std::string(name) + "}: use " +
                       std::string(kPlaceholders));
      f.pieces_.push_back({field, ""});
      i = close;
    } else if (c == '}') {
      return Invalid("'}' at position " + std::to_string(i + 1) + " has no matching '{'");
    } else if (IsSelectorChar(c)) {
      literal(c);
    } else {
      return Invalid(std::string("'") + c +
                     "' is not allowed in a selector: use letters, digits, '-', '.' and " +
                     std::string(kPlaceholders));
    }
  }
  if (!f.has_date() && !f.has_n())
    return Invalid("it has no {yyyymmdd}, {yyyymm} or {n}, so every new key would get the same "
                   "selector; selectors must never be reused: add {yyyymmdd}");
  return f;
}

std::string SelectorFormat::Expand(const SelectorValues& values) const {
  char yyyymmdd[64];
  std::snprintf(yyyymmdd, sizeof yyyymmdd, "%04d%02u%02u", static_cast<int>(values.date.year()),
                static_cast<unsigned>(values.date.month()),
                static_cast<unsigned>(values.date.day()));
  const bool rsa = values.algorithm == Algorithm::kRsaSha256;
  std::string out;
  for (const Piece& p : pieces_) {
    switch (p.field) {
      case Field::kLiteral: out += p.literal; break;
      case Field::kStream: out += values.stream; break;
      case Field::kYyyymmdd: out += yyyymmdd; break;
      case Field::kYyyymm: out += std::string_view(yyyymmdd, 6); break;
      case Field::kAlg: out += KeyTypeName(values.algorithm); break;
      case Field::kBits:
        if (rsa) out += std::to_string(values.bits);
        break;
      case Field::kN: out += std::to_string(values.n); break;
    }
  }
  return internal::LowerAscii(out);
}

bool SelectorFormat::Has(Field f) const {
  for (const Piece& p : pieces_)
    if (p.field == f) return true;
  return false;
}

}  // namespace dkimrotor::signer
