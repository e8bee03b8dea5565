// Looks up a selector's DKIM key record in DNS (through the configured resolvers and,
// optionally, directly at every authoritative server of its zone) and judges it against the
// key dkimrotor expects there. A timeout, SERVFAIL or REFUSED is a temporary failure, never
// "missing": a flaky resolver must not make the rotation engine think a record vanished.
// Owns its c-ares channels (internal::AresChannel). Not thread-safe: c-ares 1.18 channels are
// not, so each thread that checks DNS creates its own DnsChecker.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "keystore/dns/key_record.h"
#include "signer/algorithm.h"
#include "util/result.h"
#include "util/server_address.h"

namespace dkimrotor::keystore {

namespace internal {
class AresChannel;
}  // namespace internal

struct DnsCheckOptions {
  // Empty uses the system's /etc/resolv.conf.
  std::vector<util::ServerAddress> resolvers;
  // Once the resolvers serve the expected record, also ask every authoritative server of the
  // zone of each name on its CNAME chain (found through the resolvers) and require each of them
  // to serve the same: publication is then complete everywhere, not only where we looked.
  // Each server must answer on at least one of its addresses; an address this host has no
  // route to (an IPv6 address on an IPv4-only host) is skipped, one that times out is ignored
  // when another address of the same server answered.
  bool check_authoritative = false;
  // The port authoritative servers are asked on (dns.authoritative_port).
  uint16_t authoritative_port = 53;
  // Also ask the servers' IPv6 addresses (AAAA). Hosts without IPv6 skip them anyway.
  bool authoritative_ipv6 = true;
  // The most one Check() may take, all its queries together.
  std::chrono::milliseconds timeout{5000};
  // Attempts per query and server; each attempt waits timeout / tries.
  int tries = 2;
};

enum class DnsVerdict {
  kMatches,           // the expected key is served (see DnsCheckResult::as_expected)
  kRevoked,           // "p=" is served: the key is revoked
  kWrongKey,          // another key (or key type) is served
  kMalformed,         // an unusable or ambiguous record (several TXT RRs), a CNAME loop, or a
                      // selector or domain that is no DNS name
  kKeyTooShort,       // an RSA key below 1024 bits is served
  kMissing,           // NXDOMAIN, or the name has no TXT record
  kTemporaryFailure,  // timeout, SERVFAIL, REFUSED, unreachable or lame server: try again later
  kInconsistent,      // the resolvers serve the expected record but an authoritative server not
};

std::string_view DnsVerdictName(DnsVerdict v);  // "matches", "missing", ...

// One authoritative server asked for one name of the record's CNAME chain.
struct AuthoritativeCheck {
  std::string zone;         // the zone the name is in
  std::string name_server;  // the NS target, e.g. "ns1.example.com"
  std::string address;      // "192.0.2.1:53"
  std::string name;         // the name asked
  DnsVerdict verdict = DnsVerdict::kTemporaryFailure;
  bool agrees = false;  // serves what the resolvers served
  // Not asked: this host has no route to the address (no such address family, no route to
  // the network). It counts neither way, as long as another address of the server answers.
  bool unreachable = false;
  // Gave no answer, but the same server answered on another address: does not count.
  bool ignored = false;
  std::string detail;
};

struct DnsCheckResult {
  DnsVerdict verdict = DnsVerdict::kTemporaryFailure;
  // True when DNS serves what the caller asked for: its key (kMatches) or, when it passed an
  // empty expected key, the revocation "p=" (kRevoked); and, with check_authoritative, every
  // authoritative server agrees.
  bool as_expected = false;
  std::string record_name;          // "SELECTOR._domainkey.DOMAIN"
  std::vector<std::string> cnames;  // CNAME targets followed from record_name, in order
  std::string txt;                  // the record's strings joined, as the resolvers serve it
  std::string detail;               // the problem and the fix; empty when as_expected
  std::vector<std::string> warnings;
  int key_bits = 0;
  std::vector<AuthoritativeCheck> authoritative;  // empty unless check_authoritative

  // The "name_server (address)" of each authoritative server that did not agree (addresses
  // ignored because the server answered on another are left out).
  std::vector<std::string> Disagreeing() const;
};

class DnsChecker {
 public:
  // Fails on a timeout that is not positive or when c-ares cannot start.
  static util::Result<std::unique_ptr<DnsChecker>> Create(DnsCheckOptions options);
  ~DnsChecker();

  DnsChecker(const DnsChecker&) = delete;
  DnsChecker& operator=(const DnsChecker&) = delete;

  // `expected_p` is the p= value we publish, or empty when we published a revocation.
  DnsCheckResult Check(std::string_view domain, std::string_view selector, signer::Algorithm alg,
                       std::string_view expected_p);

 private:
  DnsChecker(DnsCheckOptions options, std::unique_ptr<internal::AresChannel> resolver);

  DnsCheckOptions options_;
  std::unique_ptr<internal::AresChannel> resolver_;
};

}  // namespace dkimrotor::keystore
