#include "conf/internal/syntax.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>

namespace dkimrotor::conf::internal {
namespace {

util::Unexpected Invalid(std::string message) {
  return util::Err(util::ErrorCode::kInvalidArgument, std::move(message));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsLdh(char c) { return IsAlpha(c) || IsDigit(c) || c == '-'; }
char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string LowerCopy(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit);
}

// A decimal number in [lo, hi]; false for anything else, including a sign or overflow.
bool ParseNumber(std::string_view s, unsigned lo, unsigned hi, unsigned& out) {
  if (!AllDigits(s) || s.size() > 9) return false;
  unsigned v = 0;
  for (char c : s) v = v * 10 + static_cast<unsigned>(c - '0');
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

bool IsIpv4(std::string_view s) {
  in_addr a;
  return s.size() < INET6_ADDRSTRLEN && ::inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

bool IsIpv6(std::string_view s) {
  in6_addr a;
  return s.size() < INET6_ADDRSTRLEN && ::inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

// LDH labels separated by dots; says why not in `why`.
bool IsHostName(std::string_view name, std::string& why) {
  if (name.empty()) {
    why = "the name is empty";
    return false;
  }
  if (name.size() > 253) {
    why = "the name is longer than 253 characters";
    return false;
  }
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    std::string_view label = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (label.empty()) {
      why = "it has an empty label (two dots in a row, or a dot at the start)";
      return false;
    }
    if (label.size() > 63) {
      why = "label '" + std::string(label) + "' is longer than 63 characters";
      return false;
    }
    for (char c : label) {
      if (!IsLdh(c)) {
        why = std::string("'") + c + "' is not allowed: use letters, digits, '-' and '.'";
        return false;
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      why = "label '" + std::string(label) + "' starts or ends with '-'";
      return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

constexpr std::string_view kSocketForms =
    "use inet:PORT@HOST, inet6:PORT@HOST, unix:/path or local:/path "
    "(e.g. \"inet:8891@127.0.0.1\")";

util::Status CheckInetSocket(std::string_view proto, std::string_view rest) {
  bool v6 = proto == "inet6";
  size_t at = rest.find('@');
  std::string_view port = rest.substr(0, at);
  unsigned port_number = 0;
  if (!ParseNumber(port, 1, 65535, port_number)) {
    if (port.empty()) return Invalid("the port is missing: " + std::string(kSocketForms));
    return Invalid("port '" + std::string(port) + "' is not a number from 1 to 65535");
  }
  if (at == std::string_view::npos) return util::Ok();  // libmilter listens on every address
  std::string_view host = rest.substr(at + 1);
  if (host.empty())
    return Invalid("the host after '@' is missing: write " + std::string(proto) + ":" +
                   std::string(port) + (v6 ? "@::1" : "@127.0.0.1") +
                   ", or leave out '@' to listen on every address");
  bool bracketed = host.front() == '[';
  if (bracketed) {
    if (host.back() != ']') return Invalid("'" + std::string(host) + "' lacks its closing ']'");
    host = host.substr(1, host.size() - 2);
  }
  if (IsIpv4(host)) {
    if (v6)
      return Invalid(std::string(host) + " is an IPv4 address: use inet:" + std::string(port) +
                     "@" + std::string(host));
    return util::Ok();
  }
  if (IsIpv6(host)) {
    if (!v6)
      return Invalid(std::string(host) + " is an IPv6 address: use inet6:" + std::string(port) +
                     "@" + std::string(host));
    return util::Ok();
  }
  if (bracketed) return Invalid("'[" + std::string(host) + "]' is not an IP address");
  std::string why;
  if (!IsHostName(host, why))
    return Invalid("'" + std::string(host) + "' is neither an IP address nor a host name: " + why);
  return util::Ok();
}

}  // namespace

util::Status CheckMilterSocket(std::string_view spec) {
  size_t colon = spec.find(':');
  if (colon == std::string_view::npos) {
    if (!spec.empty() && spec.front() == '/')
      return Invalid("name the protocol: write \"unix:" + std::string(spec) + "\"");
    return Invalid(std::string(kSocketForms));
  }
  std::string_view proto = spec.substr(0, colon);
  std::string_view rest = spec.substr(colon + 1);
  if (proto == "unix" || proto == "local") {
    if (rest.empty() || rest.front() != '/')
      return Invalid("the socket path must be absolute, e.g. \"" + std::string(proto) +
                     ":/run/dkimrotor/dkimrotor.sock\"");
    if (rest.size() >= sizeof(sockaddr_un{}.sun_path))
      return Invalid("the socket path is " + std::to_string(rest.size()) +
                     " characters long; a unix socket path must be shorter than " +
                     std::to_string(sizeof(sockaddr_un{}.sun_path)));
    return util::Ok();
  }
  if (proto == "inet" || proto == "inet6") return CheckInetSocket(proto, rest);
  std::string lower = LowerCopy(proto);
  if (lower == "inet" || lower == "inet6" || lower == "unix" || lower == "local")
    return Invalid("write the protocol in lowercase: \"" + lower + ":" + std::string(rest) + "\"");
  return Invalid("unknown protocol '" + std::string(proto) + "': " + std::string(kSocketForms));
}

util::Result<std::string> NormalizeDomainName(std::string_view text) {
  if (!text.empty() && text.back() == '.')
    return Invalid("write it without the trailing dot: \"" +
                   std::string(text.substr(0, text.size() - 1)) + "\"");
  std::string why;
  if (!IsHostName(text, why)) return Invalid("not a domain name: " + why);
  if (text.find('.') == std::string_view::npos)
    return Invalid("not a fully qualified domain name: write the whole name, e.g. example.com");
  return LowerCopy(text);
}

util::Status CheckStream(std::string_view stream) {
  for (char c : stream) {
    if (!IsLdh(c) && c != '.')
      return Invalid(std::string("'") + c +
                     "' is not allowed in a stream name: it becomes part of DNS names; use "
                     "letters, digits, '-' and '.'");
  }
  return util::Ok();
}

util::Status CheckSelector(std::string_view selector, std::string_view domain) {
  std::string why;
  if (!IsHostName(selector, why))
    return Invalid("it makes selectors like \"" + std::string(selector) +
                   "\", which is not a valid DNS name: " + why);
  size_t full = selector.size() + std::string_view("._domainkey.").size() + domain.size();
  if (full > 253)
    return Invalid("it makes selectors like \"" + std::string(selector) + "\", and \"" +
                   std::string(selector) + "._domainkey." + std::string(domain) + "\" is " +
                   std::to_string(full) + " characters long, over DNS's 253: shorten it");
  return util::Ok();
}

util::Result<unsigned> ParseSocketMode(std::string_view text) {
  bool octal = (text.size() == 3 || text.size() == 4) &&
               std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
  if (!octal)
    return Invalid("must be octal permission bits such as \"0660\" (owner and group read-write)");
  unsigned mode = 0;
  for (char c : text) mode = mode * 8 + static_cast<unsigned>(c - '0');
  if (mode > 0777)
    return Invalid(
        "setuid, setgid and sticky bits make no sense on a socket: use at most \"0777\"");
  return mode;
}

util::Result<std::string> NormalizeHeaderName(std::string_view text) {
  if (text.empty()) return Invalid("a header name must not be empty");
  if (text == "*")
    return Invalid("\"*\" would sign every header, including the ones relays add or rewrite: "
                   "list the names");
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '*' && i + 1 == text.size()) break;
    if (c == ':')
      return Invalid("write the field name without the colon: \"" +
                     std::string(text.substr(0, i)) + "\"");
    if (c == '*') return Invalid("'*' may only end a name, as a prefix match (\"list-*\")");
    if (c == ';')
      return Invalid("a name with ';' cannot be written in the signature's h= tag, where ';' "
                     "ends the tag (RFC 6376 3.2)");
    if (c < 33 || c > 126)
      return Invalid("a header field name is printable ASCII without spaces or ':'");
  }
  return LowerCopy(text);
}

util::Status CheckAbsolutePath(std::string_view path) {
  if (path.empty() || path.front() != '/')
    return Invalid("must be an absolute path, starting with '/'");
  return util::Ok();
}

util::Status CheckAccountName(std::string_view name) {
  if (AllDigits(name)) return util::Ok();
  auto allowed = [](char c) {
    return IsAlpha(c) || IsDigit(c) || c == '.' || c == '_' || c == '-';
  };
  if (name.empty() || name.size() > 32 || name.front() == '-' ||
      !std::all_of(name.begin(), name.end(), allowed))
    return Invalid("not a valid user or group name (letters, digits, '.', '_', '-', at most 32 "
                   "characters, not starting with '-') or number");
  return util::Ok();
}

std::string_view ClosestMatch(std::string_view word,
                              const std::vector<std::string_view>& candidates) {
  // Optimal string alignment distance: Levenshtein plus adjacent transpositions.
  auto distance = [](std::string_view a, std::string_view b) {
    std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
    for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t cost = Lower(a[i - 1]) == Lower(b[j - 1]) ? 0 : 1;
        d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
          d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
    return d[a.size()][b.size()];
  };
  // A truncated or extended name ("warning" for "warn", "ed25519" for "ed25519-sha256").
  if (word.size() >= 3) {
    for (std::string_view c : candidates) {
      if (c.size() >= 3 && (c.starts_with(word) || word.starts_with(c))) return c;
    }
  }
  std::string_view best;
  size_t best_distance = 0;
  for (std::string_view c : candidates) {
    size_t dist = distance(word, c);
    if (best.empty() || dist < best_distance) {
      best = c;
      best_distance = dist;
    }
  }
  // Short names are close to everything; allow one edit per three characters, at most 3.
  size_t allowed = std::min<size_t>(3, std::max<size_t>(1, word.size() / 3));
  if (best.empty() || best_distance > allowed) return {};
  return best;
}

}  // namespace dkimrotor::conf::internal
