#include "signer/signature_header.h"

namespace dkimrotor::signer {
namespace {

constexpr size_t kMaxColumns = 76;

}  // namespace

SignatureHeaderWriter::SignatureHeaderWriter(const Tags& tags)
    : column_(kDkimSignatureName.size() + 1) {
  Append("v=1;", true);
  Append("a=" + std::string(tags.algorithm) + ";", true);
  Append("c=" + tags.canonicalization + ";", true);
  Append("d=" + std::string(tags.domain) + ";", true);
  Append("s=" + std::string(tags.selector) + ";", true);
  if (tags.timestamp) Append("t=" + std::to_string(*tags.timestamp) + ";", true);
  if (tags.expiration) Append("x=" + std::to_string(*tags.expiration) + ";", true);
  // h= may fold after any ':' (RFC 6376 3.5: FWS around the colons is allowed).
  for (size_t i = 0; i < tags.headers.size(); ++i) {
    std::string token = (i == 0 ? "h=" : "") + tags.headers[i] +
                        (i + 1 == tags.headers.size() ? ";" : ":");
    Append(token, i == 0);
  }
  Append("bh=" + tags.body_hash + ";", true);
  // b= starts a line of its own: the signature then fills whole lines, as OpenDKIM's does.
  value_ += "\r\n b=";
  column_ = 3;
}

void SignatureHeaderWriter::Append(std::string_view token, bool space_before) {
  size_t need = token.size() + (space_before ? 1 : 0);
  if (column_ + need > kMaxColumns && column_ > 1) {
    value_ += "\r\n ";
    column_ = 1;
  } else if (space_before) {
    value_ += ' ';
    ++column_;
  }
  value_ += token;
  column_ += token.size();
}

std::string SignatureHeaderWriter::Complete(std::string_view signature_base64) const {
  std::string out(kDkimSignatureName);
  out += ':';
  out += value_;
  size_t column = column_;
  while (!signature_base64.empty()) {
    if (column >= kMaxColumns) {
      out += "\r\n ";
      column = 1;
    }
    size_t take = std::min(signature_base64.size(), kMaxColumns - column);
    out.append(signature_base64.substr(0, take));
    signature_base64.remove_prefix(take);
    column += take;
  }
  return out;
}

}  // namespace dkimrotor::signer
