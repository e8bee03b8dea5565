#include "signer/from_domain.h"

#include "signer/internal/text.h"

namespace dkimrotor::signer {
namespace {

util::Unexpected Bad(std::string why) {
  return util::Err(util::ErrorCode::kInvalidArgument, std::move(why));
}

}  // namespace

util::Result<std::string> FromDomain(std::string_view value) {
  // One pass that drops comments and quoted strings' special meaning, notes the mailbox
  // separators (',' outside quotes, comments and brackets) and the last angle-addr.
  std::string plain;       // the value with comments removed and quoted strings blanked
  int depth = 0;           // comment nesting
  bool quoted = false;
  bool in_angle = false;
  int mailboxes = 1;
  std::string angle;       // contents of the last <...>
  std::string current_angle;
  for (size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '\\' && (quoted || depth > 0) && i + 1 < value.size()) {
      ++i;  // an escaped character never ends a quote or comment
      continue;
    }
    if (quoted) {
      if (c == '"') quoted = false;
      continue;
    }
    if (depth > 0) {
      if (c == '(') ++depth;
      if (c == ')') --depth;
      continue;
    }
    if (c == '"') {
      quoted = true;
      continue;
    }
    if (c == '(') {
      depth = 1;
      continue;
    }
    if (in_angle) {
      if (c == '>') {
        in_angle = false;
        angle = current_angle;
      } else {
        current_angle.push_back(c);
      }
      continue;
    }
    if (c == '<') {
      in_angle = true;
      current_angle.clear();
      continue;
    }
    if (c == ',') ++mailboxes;
    if (c == ':' || c == ';') return Bad("From holds a group, not a mailbox");
    plain.push_back(c);
  }
  if (quoted || depth > 0 || in_angle) return Bad("From is malformed (an unclosed quote, comment or <)");
  if (mailboxes > 1) return Bad("From holds " + std::to_string(mailboxes) + " addresses");
  std::string addr = angle.empty() ? std::string(internal::TrimFws(plain)) : angle;
  std::string_view a = internal::TrimFws(addr);
  size_t at = a.rfind('@');
  if (at == std::string_view::npos) return Bad("From has no address with a domain");
  std::string domain;
  for (char c : a.substr(at + 1))
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') domain.push_back(internal::LowerAscii(c));
  while (!domain.empty() && domain.back() == '.') domain.pop_back();
  if (domain.empty()) return Bad("From's address has an empty domain");
  if (domain.front() == '[') return Bad("From's domain is an address literal");
  return domain;
}

bool DomainMatches(std::string_view domain, std::string_view configured, bool subdomains) {
  if (domain == configured) return true;
  return subdomains && domain.size() > configured.size() + 1 && domain.ends_with(configured) &&
         domain[domain.size() - configured.size() - 1] == '.';
}

}  // namespace dkimrotor::signer
