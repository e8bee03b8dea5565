#include "conf/practices.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

#include "conf/duration.h"
#include "util/file.h"

namespace dkimrotor::conf {
namespace {

constexpr seconds kDay{86400};

std::string Setting(const DomainConfig& d, std::string_view name, std::string_view value) {
  return "domain " + d.domain + ": " + std::string(name) + " = " + std::string(value);
}

std::string Quoted(seconds d) { return "\"" + FormatDuration(d) + "\""; }

bool Has(const std::vector<signer::Algorithm>& v, signer::Algorithm a) {
  return std::find(v.begin(), v.end(), a) != v.end();
}

void CheckDomain(const DomainConfig& d, std::vector<std::string>& out) {
  if (d.key_lifetime > 183 * kDay)
    out.push_back(Setting(d, "key_lifetime", Quoted(d.key_lifetime)) +
                  " is over six months (183d): M3AAWG recommends rotating keys at least every "
                  "six months; use \"120d\"");
  if (d.key_lifetime < 5 * kDay)
    out.push_back(Setting(d, "key_lifetime", Quoted(d.key_lifetime)) +
                  " is under 5 days: every rotation is a DNS change that must propagate first, "
                  "and receivers re-check delayed mail; use weeks to months");
  if (d.grace < 7 * kDay)
    out.push_back(Setting(d, "grace", Quoted(d.grace)) +
                  " is under 7 days: mail still queued or being re-verified when the retired "
                  "key is revoked fails DKIM; M3AAWG keeps retired keys in DNS 7 to 30 days");
  if (d.grace > 30 * kDay)
    out.push_back(Setting(d, "grace", Quoted(d.grace)) +
                  " is over 30 days: a retired key stays usable for forgeries longer than "
                  "needed; M3AAWG keeps retired keys in DNS 7 to 30 days");
  if (Has(d.algorithms, signer::Algorithm::kRsaSha256)) {
    if (d.bits < 2048)
      out.push_back(Setting(d, "bits", std::to_string(d.bits)) +
                    ": RSA keys under 2048 bits are being phased out (RFC 8301: signers "
                    "SHOULD use at least 2048 bits); use bits = 2048");
    if (d.bits > 3072)
      out.push_back(Setting(d, "bits", std::to_string(d.bits)) +
                    ": the key's TXT record grows past 700 characters, beyond the 512-byte DNS "
                    "UDP limit and some DNS providers' record limits; some receivers fail to "
                    "fetch it; 2048 is the usual choice");
  } else {
    out.push_back(Setting(d, "algorithms", "[\"ed25519-sha256\"]") +
                  ": many receivers cannot verify Ed25519 signatures yet (RFC 8463); add "
                  "\"rsa-sha256\" to sign with both");
  }
  if (d.prepublish == 0)
    out.push_back(Setting(d, "prepublish", "0") +
                  ": no spare key waits in DNS for emergencies, so replacing a compromised key "
                  "must first wait for DNS propagation; use prepublish = 1");
}

bool IsLoopback(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;  // another name: it may resolve to anything
}

}  // namespace

std::vector<std::string> MilterSocketWarnings(const MilterConfig& milter) {
  std::vector<std::string> out;
  const std::string& socket = milter.socket;
  const std::string quoted = "milter.socket = \"" + socket + "\"";
  for (std::string_view prefix : {"inet:", "inet6:"}) {
    if (socket.rfind(prefix, 0) != 0) continue;
    const size_t at = socket.find('@');
    const std::string host = at == std::string::npos ? "" : socket.substr(at + 1);
    if (!IsLoopback(host))
      out.push_back(quoted + " listens beyond loopback" +
                    (host.empty() ? " (no address: every interface)" : "") +
                    ": anyone who can connect to it can have mail signed for your domains; listen on "
                    "127.0.0.1 or a unix socket, or firewall the port to your MTAs");
  }
  if ((socket.rfind("unix:", 0) == 0 || socket.rfind("local:", 0) == 0) && (milter.socket_mode & 0002) != 0) {
    out.push_back("milter.socket_mode = \"" + util::ModeText(static_cast<unsigned>(milter.socket_mode)) +
                  "\" lets every local user connect to the milter socket and have mail signed for "
                  "your domains; use \"0660\" with milter.group set to the MTA's group");
  }
  return out;
}

std::vector<std::string> CheckPractices(const Config& config) {
  std::vector<std::string> out = MilterSocketWarnings(config.milter);
  if (!config.dns.check_authoritative && config.dns.min_propagation < seconds(3600))
    out.push_back("dns.min_propagation = " + Quoted(config.dns.min_propagation) +
                  " with check_authoritative = false: a new key may sign before receivers' "
                  "resolvers can see it; wait at least \"1h\", or set check_authoritative = true");
  for (const util::Cidr& cidr : config.signing.internal_hosts) {
    if (cidr.prefix() == 0)
      out.push_back("signing.internal_hosts contains \"" + cidr.ToString() +
                    "\": every client counts as internal, so mail from anyone is signed; list "
                    "your own networks");
  }
  if (config.signing.internal_hosts.empty() && !config.signing.sign_authenticated &&
      !config.domains.empty())
    out.push_back("signing.internal_hosts = [] with sign_authenticated = false: no message "
                  "will be signed; list the networks your mail comes from");
  for (const DomainConfig& d : config.domains) CheckDomain(d, out);
  return out;
}

}  // namespace dkimrotor::conf
