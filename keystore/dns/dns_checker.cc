#include "keystore/dns/dns_checker.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>

#include "keystore/dns/internal/ares_channel.h"
#include "keystore/dns/internal/ares_response.h"

namespace dkimrotor::keystore {
namespace {

using internal::AresChannel;
using internal::DnsResponse;
using internal::PendingQuery;
using Clock = std::chrono::steady_clock;

// RFC 1034 allows longer chains, but a DKIM record behind more than this is a mistake.
constexpr int kMaxCnameHops = 8;
constexpr int kMaxZoneWalk = 64;

// The outcome of one query: a parsed NOERROR or NXDOMAIN answer, or why there is none.
struct QueryOutcome {
  bool ok = false;
  DnsResponse response;
  std::string error;  // for !ok: what went wrong, e.g. "timed out"
};

std::string AresStatusText(int status) {
  switch (status) {
    case ARES_ETIMEOUT: return "timed out";
    case ARES_ECANCELLED: return "no answer within the check's timeout";
    case ARES_ESERVFAIL: return "SERVFAIL";
    case ARES_EREFUSED: return "REFUSED";
    case ARES_ENOTIMP: return "NOTIMP";
    // c-ares 1.18 also says this when every server answered SERVFAIL, REFUSED or NOTIMP.
    case ARES_ECONNREFUSED:
      return "connection refused, or every server answered SERVFAIL or REFUSED";
    default: return ares_strerror(status);
  }
}

QueryOutcome Outcome(const PendingQuery& q) {
  QueryOutcome out;
  if (!q.done) {
    out.error = "no answer within the check's timeout";
    return out;
  }
  if (q.status != ARES_SUCCESS) {
    out.error = AresStatusText(q.status);
    return out;
  }
  auto parsed = internal::ParseDnsResponse(q.response);
  if (!parsed) {
    out.error = parsed.error().message;
    return out;
  }
  // Only NOERROR and NXDOMAIN say anything about the record.
  switch (parsed->rcode) {
    case ns_r_noerror:
    case ns_r_nxdomain: break;
    case ns_r_servfail: out.error = "SERVFAIL"; return out;
    case ns_r_refused: out.error = "REFUSED"; return out;
    case ns_r_notimpl: out.error = "NOTIMP"; return out;
    case ns_r_formerr: out.error = "FORMERR"; return out;
    default: out.error = "RCODE " + std::to_string(parsed->rcode); return out;
  }
  out.ok = true;
  out.response = std::move(*parsed);
  return out;
}

QueryOutcome QueryOne(AresChannel& channel, const std::string& name, int type, bool rd,
                      Clock::time_point deadline) {
  PendingQuery q;
  if (auto sent = channel.Send(name, type, rd, &q); !sent)
    return QueryOutcome{false, {}, sent.error().message};
  AresChannel* channels[] = {&channel};
  PendingQuery* queries[] = {&q};
  internal::RunQueries(channels, queries, deadline);
  return Outcome(q);
}

std::string Parent(const std::string& name) {
  size_t dot = name.find('.');
  return dot == std::string::npos ? std::string() : name.substr(dot + 1);
}

bool IsSubdomainOf(const std::string& name, const std::string& zone) {
  return name.size() > zone.size() && name.ends_with(zone) &&
         name[name.size() - zone.size() - 1] == '.';
}

// Letters, digits, '-', '_' and dots between non-empty labels of at most 63 bytes.
bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return label > 0;
}

std::vector<std::string> JoinedTxt(const std::vector<const internal::ResourceRecord*>& records) {
  std::vector<std::string> out;
  for (const auto* rr : records) {
    std::string joined;
    for (const auto& s : rr->strings) joined += s;
    out.push_back(std::move(joined));
  }
  return out;
}

DnsVerdict FromKeyRecord(KeyRecordVerdict v) {
  switch (v) {
    case KeyRecordVerdict::kMatches: return DnsVerdict::kMatches;
    case KeyRecordVerdict::kRevoked: return DnsVerdict::kRevoked;
    case KeyRecordVerdict::kWrongKey: return DnsVerdict::kWrongKey;
    case KeyRecordVerdict::kMalformed: return DnsVerdict::kMalformed;
    case KeyRecordVerdict::kKeyTooShort: return DnsVerdict::kKeyTooShort;
  }
  return DnsVerdict::kMalformed;
}

std::string AmbiguousDetail(const std::string& name, size_t count) {
  return std::to_string(count) + " TXT records at " + name +
         ": verifiers cannot tell which one is the key: delete all but the one dkimrotor "
         "publishes";
}

// The TXT record at `name` as a resolver serves it, following CNAMEs.
struct TxtLookup {
  bool found = false;
  DnsVerdict failure = DnsVerdict::kTemporaryFailure;  // when !found
  std::string detail;                                  // when !found
  std::vector<std::string> cnames;
  std::string final_name;
  std::vector<std::string> records;  // each TXT RR's strings joined
};

TxtLookup ResolveTxt(AresChannel& resolver, const std::string& name, Clock::time_point deadline) {
  TxtLookup out;
  out.final_name = name;
  std::vector<std::string> seen{name};
  auto fail = [&](DnsVerdict v, std::string detail) {
    out.failure = v;
    out.detail = std::move(detail);
    return out;
  };
  for (int hop = 0; hop <= kMaxCnameHops; ++hop) {
    QueryOutcome q = QueryOne(resolver, out.final_name, ns_t_txt, true, deadline);
    if (!q.ok)
      return fail(DnsVerdict::kTemporaryFailure,
                  "TXT query for " + out.final_name + " failed: " + q.error +
                      " (a temporary failure: check the resolvers if it persists)");
    internal::AnswerChain chain = internal::FollowAnswer(q.response, out.final_name, ns_t_txt);
    for (const auto& target : chain.cnames) {
      if (std::find(seen.begin(), seen.end(), target) != seen.end()) chain.loop = true;
      seen.push_back(target);
      out.cnames.push_back(target);
    }
    if (chain.loop)
      return fail(DnsVerdict::kMalformed, "the CNAMEs from " + name + " form a loop: fix them");
    out.final_name = chain.final_name;
    if (!chain.records.empty()) {
      out.found = true;
      out.records = JoinedTxt(chain.records);
      return out;
    }
    if (q.response.rcode == ns_r_nxdomain)
      return fail(DnsVerdict::kMissing, out.final_name + " does not exist (NXDOMAIN)");
    if (chain.cnames.empty())
      return fail(DnsVerdict::kMissing, out.final_name + " has no TXT record");
    // An authoritative server stops at a CNAME leaving its zones: ask for the target.
  }
  return fail(DnsVerdict::kMalformed, name + " is behind more than " +
                                          std::to_string(kMaxCnameHops) +
                                          " CNAMEs: point it at the record directly");
}

struct Zone {
  bool ok = false;
  std::string name;
  std::vector<std::string> name_servers;
  std::string error;
};

// Walks up from `name` asking for NS records until a zone apex answers; a negative answer's
// SOA (authority section) lets the walk jump straight to the apex.
Zone FindZone(AresChannel& resolver, const std::string& name, Clock::time_point deadline) {
  Zone zone;
  std::string candidate = name;
  for (int i = 0; i < kMaxZoneWalk && !candidate.empty(); ++i) {
    QueryOutcome q = QueryOne(resolver, candidate, ns_t_ns, true, deadline);
    if (!q.ok) {
      zone.error = "NS query for " + candidate + " failed: " + q.error;
      return zone;
    }
    for (const auto& rr : q.response.answers)
      if (rr.type == ns_t_ns && rr.name == candidate) zone.name_servers.push_back(rr.target);
    if (!zone.name_servers.empty()) {
      zone.ok = true;
      zone.name = candidate;
      return zone;
    }
    std::string next = Parent(candidate);
    for (const auto& rr : q.response.authority)
      if (rr.type == ns_t_soa && IsSubdomainOf(candidate, rr.name) && rr.name.size() > next.size())
        next = rr.name;
    candidate = next;
  }
  zone.error = "found no NS records for " + name + " or any name above it";
  return zone;
}

// Why this host cannot send to `address` at all, or "" when it can (or cannot tell). connect()
// on a UDP socket sends nothing; it only looks up the route, and fails at once on a host
// without that address family or without a route to the network, where a query would only
// time out.
std::string NoRoute(const util::ServerAddress& address) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (address.family == AF_INET6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&storage);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(address.port);
    if (::inet_pton(AF_INET6, address.ip.c_str(), &s->sin6_addr) != 1) return "";
    length = sizeof *s;
  } else {
    auto* s = reinterpret_cast<sockaddr_in*>(&storage);
    s->sin_family = AF_INET;
    s->sin_port = htons(address.port);
    if (::inet_pton(AF_INET, address.ip.c_str(), &s->sin_addr) != 1) return "";
    length = sizeof *s;
  }
  const char* family = address.family == AF_INET6 ? "IPv6" : "IPv4";
  int fd = ::socket(address.family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    const int err = errno;
    if (err == EAFNOSUPPORT || err == EPROTONOSUPPORT)
      return std::string("this host has no ") + family + " (" + std::strerror(err) + ")";
    return "";  // out of descriptors and the like: let the query itself fail
  }
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&storage), length);
  const int err = errno;
  ::close(fd);
  if (rc == 0) return "";
  if (err == ENETUNREACH || err == EHOSTUNREACH || err == EADDRNOTAVAIL || err == EAFNOSUPPORT)
    return std::string("this host has no ") + family + " route to it (" + std::strerror(err) + ")";
  return "";
}

// What one authoritative server says about link `index` of the chain `names`.
void JudgeServer(const QueryOutcome& q, const std::vector<std::string>& names, size_t index,
                 signer::Algorithm alg, std::string_view expected_p, AuthoritativeCheck* check) {
  if (!q.ok) {
    check->verdict = DnsVerdict::kTemporaryFailure;
    check->detail = "TXT query failed: " + q.error;
    return;
  }
  if (!q.response.authoritative) {
    check->verdict = DnsVerdict::kTemporaryFailure;
    check->detail = "answered without the AA flag: it is not authoritative for " + check->zone +
                    " (lame delegation): fix the zone's NS records or the server's zone list";
    return;
  }
  const std::string& name = names[index];
  internal::AnswerChain chain = internal::FollowAnswer(q.response, name, ns_t_txt);
  bool last = index + 1 == names.size();
  if (!chain.cnames.empty()) {
    check->agrees = !last && chain.cnames.front() == names[index + 1];
    check->verdict = check->agrees ? DnsVerdict::kMatches : DnsVerdict::kWrongKey;
    check->detail = "serves a CNAME to " + chain.cnames.front() +
                    (check->agrees ? std::string()
                     : last        ? ", where the resolvers see the TXT record"
                                   : ", where the resolvers follow it to " + names[index + 1]);
    return;
  }
  if (!last) {
    check->agrees = false;
    check->verdict = chain.records.empty() ? DnsVerdict::kMissing : DnsVerdict::kWrongKey;
    check->detail =
        "serves no CNAME at " + name + ", where the resolvers follow one to " + names[index + 1];
    return;
  }
  if (chain.records.empty()) {
    check->verdict = DnsVerdict::kMissing;
    check->detail = q.response.rcode == ns_r_nxdomain ? name + " does not exist (NXDOMAIN)"
                                                      : name + " has no TXT record";
    return;
  }
  std::vector<std::string> records = JoinedTxt(chain.records);
  if (records.size() > 1) {
    check->verdict = DnsVerdict::kMalformed;
    check->detail = AmbiguousDetail(chain.final_name, records.size());
    return;
  }
  KeyRecordCheck kr = CheckKeyRecord(records.front(), alg, expected_p);
  check->verdict = FromKeyRecord(kr.verdict);
  check->agrees = kr.as_expected && chain.cnames.empty();
  if (!kr.as_expected) check->detail = kr.detail;
}

// Asks every authoritative server of each name on the chain (record name, then CNAME targets)
// and downgrades `result` when one of them does not serve what the resolvers served.
void CheckAuthoritative(AresChannel& resolver, const DnsCheckOptions& options,
                        Clock::time_point deadline, signer::Algorithm alg,
                        std::string_view expected_p, DnsCheckResult* result) {
  // Every name of the chain, each asked at the servers of its own zone.
  std::vector<std::string> names{result->record_name};
  names.insert(names.end(), result->cnames.begin(), result->cnames.end());
  std::map<std::string, Zone> zones;  // by the name they were found for
  std::map<std::string, std::vector<util::ServerAddress>> addresses;  // by NS name
  std::vector<std::string> failures;
  for (const auto& name : names) {
    Zone zone = FindZone(resolver, name, deadline);
    if (!zone.ok) {
      failures.push_back(zone.error);
      continue;
    }
    zones[name] = zone;
    for (const auto& ns : zone.name_servers) addresses.try_emplace(ns);
  }

  // The name servers' addresses, all asked at once.
  std::vector<std::pair<std::string, int>> address_keys;
  std::vector<PendingQuery> address_queries;
  for (const auto& [ns, unused] : addresses) {
    address_keys.emplace_back(ns, ns_t_a);
    if (options.authoritative_ipv6) address_keys.emplace_back(ns, ns_t_aaaa);
  }
  address_queries.resize(address_keys.size());
  std::vector<PendingQuery*> pending;
  for (size_t i = 0; i < address_keys.size(); ++i)
    if (resolver.Send(address_keys[i].first, address_keys[i].second, true, &address_queries[i]))
      pending.push_back(&address_queries[i]);
  AresChannel* resolver_channels[] = {&resolver};
  internal::RunQueries(resolver_channels, pending, deadline);
  std::map<std::string, std::string> address_errors;
  for (size_t i = 0; i < address_keys.size(); ++i) {
    const std::string& ns = address_keys[i].first;
    QueryOutcome q = Outcome(address_queries[i]);
    if (!q.ok) {
      address_errors[ns] = "address query failed: " + q.error;
      continue;
    }
    internal::AnswerChain chain =
        internal::FollowAnswer(q.response, ns, static_cast<uint16_t>(address_keys[i].second));
    for (const auto* rr : chain.records)
      if (auto a = util::ServerAddress::Parse(rr->address, options.authoritative_port))
        addresses[ns].push_back(*a);
  }

  // One channel per server address and name, all run together.
  struct Ask {
    AuthoritativeCheck check;
    size_t index = 0;
    std::unique_ptr<AresChannel> channel;
    PendingQuery query;
  };
  std::vector<std::unique_ptr<Ask>> asks;
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = zones.find(names[i]);
    if (it == zones.end()) continue;
    for (const auto& ns : it->second.name_servers) {
      // Each ask starts as a temporary failure; JudgeServer() replaces that with the answer.
      auto new_ask = [&](std::string address, std::string detail) {
        auto ask = std::make_unique<Ask>();
        ask->check.zone = it->second.name;
        ask->check.name_server = ns;
        ask->check.address = std::move(address);
        ask->check.name = names[i];
        ask->check.detail = std::move(detail);
        asks.push_back(std::move(ask));
        return asks.back().get();
      };
      if (addresses[ns].empty()) {
        auto err = address_errors.find(ns);
        std::string why = err != address_errors.end()
                              ? err->second
                              : "no A or AAAA record: fix the NS records of " + it->second.name;
        new_ask("", std::move(why));
        continue;
      }
      for (const auto& address : addresses[ns]) {
        if (std::string why = NoRoute(address); !why.empty()) {
          new_ask(address.ToString(), "not asked: " + why)->check.unreachable = true;
          continue;
        }
        AresChannel::Options direct;
        direct.servers = {address};
        direct.tries = options.tries;
        direct.try_timeout = options.timeout / options.tries;
        auto channel = AresChannel::Create(direct);
        if (!channel) {
          new_ask(address.ToString(), channel.error().message);
          continue;
        }
        Ask* ask = new_ask(address.ToString(), "");
        ask->index = i;
        ask->channel = std::move(*channel);
        if (auto sent = ask->channel->Send(names[i], ns_t_txt, false, &ask->query); !sent)
          ask->check.detail = sent.error().message;
      }
    }
  }
  std::vector<AresChannel*> channels;
  std::vector<PendingQuery*> queries;
  for (auto& ask : asks) {
    if (!ask->channel) continue;
    channels.push_back(ask->channel.get());
    queries.push_back(&ask->query);
  }
  internal::RunQueries(channels, queries, deadline);

  // A server that answered on one of its addresses has answered: its other addresses may be
  // unreachable from here or time out. Every address that answered must agree.
  for (auto& ask : asks)
    if (ask->channel && ask->check.detail.empty())
      JudgeServer(Outcome(ask->query), names, ask->index, alg, expected_p, &ask->check);
  std::set<std::pair<std::string, std::string>> answered;  // (name server, name)
  for (const auto& ask : asks)
    if (ask->check.verdict != DnsVerdict::kTemporaryFailure)
      answered.emplace(ask->check.name_server, ask->check.name);
  bool disagree = false;
  bool temporary = !failures.empty();
  std::string problems;
  for (auto& ask : asks) {
    const bool silent = ask->check.verdict == DnsVerdict::kTemporaryFailure;
    const bool counts = !silent || !answered.count({ask->check.name_server, ask->check.name});
    if (!ask->check.agrees && counts) {
      (silent ? temporary : disagree) = true;
      problems += "; " + ask->check.name_server + " (" + ask->check.address + ") for " +
                  ask->check.name + ": " + std::string(DnsVerdictName(ask->check.verdict)) +
                  (ask->check.detail.empty() ? "" : ", " + ask->check.detail);
    } else if (!ask->check.agrees) {
      ask->check.ignored = true;
      // A host without IPv6 is normal; a server address that does not answer is worth a word.
      if (!ask->check.unreachable)
        result->warnings.push_back(ask->check.name_server + " (" + ask->check.address + ") for " +
                                 ask->check.name + ": " + ask->check.detail +
                                 "; it answered on another address");
    }
    result->authoritative.push_back(std::move(ask->check));
  }
  for (const auto& f : failures) problems += "; " + f;
  if (disagree) {
    result->verdict = DnsVerdict::kInconsistent;
    result->as_expected = false;
    result->detail =
        "the resolvers serve the expected record but not every authoritative server "
        "does (publication or zone transfer incomplete: check the secondaries' SOA "
        "serials)" +
        problems;
  } else if (temporary) {
    result->verdict = DnsVerdict::kTemporaryFailure;
    result->as_expected = false;
    result->detail = "could not ask every authoritative server" + problems;
  }
}

}  // namespace

std::string_view DnsVerdictName(DnsVerdict v) {
  switch (v) {
    case DnsVerdict::kMatches: return "matches";
    case DnsVerdict::kRevoked: return "revoked";
    case DnsVerdict::kWrongKey: return "wrong key";
    case DnsVerdict::kMalformed: return "malformed";
    case DnsVerdict::kKeyTooShort: return "key too short";
    case DnsVerdict::kMissing: return "missing";
    case DnsVerdict::kTemporaryFailure: return "temporary failure";
    case DnsVerdict::kInconsistent: return "inconsistent";
  }
  return "unknown";
}

std::vector<std::string> DnsCheckResult::Disagreeing() const {
  std::vector<std::string> out;
  for (const auto& a : authoritative)
    if (!a.agrees && !a.ignored) out.push_back(a.name_server + " (" + a.address + ")");
  return out;
}

util::Result<std::unique_ptr<DnsChecker>> DnsChecker::Create(DnsCheckOptions options) {
  if (options.tries < 1) options.tries = 1;
  if (options.timeout.count() < 1)
    return util::Err(util::ErrorCode::kInvalidArgument, "DNS timeout must be positive");
  AresChannel::Options channel;
  channel.servers = options.resolvers;
  channel.tries = options.tries;
  channel.try_timeout = options.timeout / options.tries;
  ASSIGN_OR_RETURN(auto resolver, AresChannel::Create(channel));
  return std::unique_ptr<DnsChecker>(new DnsChecker(std::move(options), std::move(resolver)));
}

DnsChecker::DnsChecker(DnsCheckOptions options, std::unique_ptr<internal::AresChannel> resolver)
    : options_(std::move(options)), resolver_(std::move(resolver)) {}

DnsChecker::~DnsChecker() = default;

DnsCheckResult DnsChecker::Check(std::string_view domain, std::string_view selector,
                                 signer::Algorithm alg, std::string_view expected_p) {
  DnsCheckResult result;
  std::string domain_name = internal::NormalizeName(domain);
  if (!ValidName(selector) || !ValidName(domain_name)) {
    result.verdict = DnsVerdict::kMalformed;
    result.detail = "selector '" + std::string(selector) + "' or domain '" + std::string(domain) +
                    "' is not a valid DNS name (letters, digits, '-', '_' and dots only)";
    return result;
  }
  result.record_name =
      internal::NormalizeName(std::string(selector) + "._domainkey." + domain_name);
  const Clock::time_point deadline = Clock::now() + options_.timeout;

  TxtLookup lookup = ResolveTxt(*resolver_, result.record_name, deadline);
  result.cnames = lookup.cnames;
  if (!lookup.found) {
    result.verdict = lookup.failure;
    result.detail = lookup.detail;
    return result;
  }
  if (lookup.records.size() > 1) {
    result.verdict = DnsVerdict::kMalformed;
    result.detail = AmbiguousDetail(lookup.final_name, lookup.records.size());
    return result;
  }
  result.txt = lookup.records.front();
  KeyRecordCheck kr = CheckKeyRecord(result.txt, alg, expected_p);
  result.verdict = FromKeyRecord(kr.verdict);
  result.as_expected = kr.as_expected;
  result.detail = kr.detail;
  result.warnings = kr.warnings;
  result.key_bits = kr.key_bits;
  if (!options_.check_authoritative || !result.as_expected) return result;

  CheckAuthoritative(*resolver_, options_, deadline, alg, expected_p, &result);
  return result;
}

}  // namespace dkimrotor::keystore
