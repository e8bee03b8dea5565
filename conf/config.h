// The daemon's whole configuration as plain typed values, with the documented defaults as member
// initializers: a default-constructed Config is what an empty configuration file means.
// Values with a type of their own arrive parsed (signer::Algorithm, signer::Canonicalization,
// signer::SelectorFormat, util::Cidr, util::ServerAddress): nothing downstream parses
// configuration text again.
// Built and validated by LoadConfig/ParseConfig (loader.h); owns all its strings.
// Immutable once built: share it as shared_ptr<const Config>; a reload builds a new one.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "signer/algorithm.h"
#include "signer/canonicalization.h"
#include "signer/selector_format.h"
#include "util/cidr.h"
#include "util/server_address.h"

namespace dkimrotor::conf {

using std::chrono::seconds;

// The largest value each duration setting accepts (README, "Configuration reference"). Each is
// far beyond any sensible setting yet small enough that adding it to a clock cannot overflow.
inline constexpr seconds kMaxStopTimeout{3600};             // milter.stop_timeout: 1h
inline constexpr seconds kMaxSignatureLifetime{366 * 86400};  // signing.signature_lifetime
inline constexpr seconds kMaxMinPropagation{7 * 86400};      // dns.min_propagation: 1w
inline constexpr seconds kMaxPoll{86400};                    // dns.poll: 1d
inline constexpr seconds kMaxDnsTimeout{300};                // dns.timeout: 5m
inline constexpr seconds kMaxKeyLifetime{3650 * 86400};      // key_lifetime: ten years
inline constexpr seconds kMaxGrace{365 * 86400};             // grace: a year
inline constexpr seconds kMaxHookTimeout{3600};              // hook_timeout: 1h

// What the milter answers when it cannot sign a message it should sign (no key, internal error).
enum class OnError { kTempfail, kAccept };
// What the milter answers for a message it refuses to sign (no From, two From headers, ...).
enum class OnBadMessage { kAccept, kReject, kTempfail };
enum class LogTarget { kStderr, kSyslog };
// spdlog's levels, without a dependency on spdlog.
enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// The configuration file's spelling of each value ("tempfail", "syslog", "warn", ...).
std::string_view OnErrorName(OnError v);
std::string_view OnBadMessageName(OnBadMessage v);
std::string_view LogTargetName(LogTarget v);
std::string_view LogLevelName(LogLevel v);

// signing.internal_hosts when the file sets none: 127.0.0.1/32 and ::1/128.
std::vector<util::Cidr> DefaultInternalHosts();

struct MilterConfig {
  // libmilter's syntax: inet:PORT@HOST, inet6:PORT@HOST, unix:/path or local:/path.
  std::string socket = "inet:8891@127.0.0.1";
  OnError on_error = OnError::kTempfail;
  OnBadMessage on_bad_message = OnBadMessage::kAccept;
  std::string user;   // empty: keep the user the daemon was started as
  std::string group;  // empty: the user's primary group
  unsigned socket_mode = 0660;  // permission bits of a unix socket
  // On SIGTERM, how long messages already being signed may take to finish before the daemon
  // exits anyway. New messages get a 4xx meanwhile.
  std::chrono::seconds stop_timeout{30};

  bool operator==(const MilterConfig&) const = default;
};

struct SigningConfig {
  // Messages from these networks are signed. The file writes "ADDRESS/PREFIX" with the host
  // bits clear, or a bare address for its full-length prefix.
  std::vector<util::Cidr> internal_hosts = DefaultInternalHosts();
  // Also sign messages whose client authenticated (SMTP AUTH), wherever it connects from.
  bool sign_authenticated = true;
  // The file writes "header/body", each "relaxed" or "simple".
  signer::Canonicalization canonicalization;  // relaxed/relaxed
  // Header field names to sign, lowercase; a trailing '*' matches a prefix ("list-*"). The
  // signer always signs From. Same default as signer::HeaderPolicy::Default().
  std::vector<std::string> headers = {
      "from",       "reply-to",     "subject",      "date",
      "to",         "cc",           "resent-*",     "in-reply-to",
      "references", "message-id",   "mime-version", "content-type",
      "content-transfer-encoding",  "list-id",      "list-*"};
  // Names signed once more than they occur, so no instance can be added in transit.
  std::vector<std::string> oversign = {"from", "subject", "date",      "to",
                                       "cc",   "reply-to", "message-id"};
  // x= is t= plus this; 0 means no x= tag.
  seconds signature_lifetime{0};
  // A message with more header fields, or more header bytes (names, values, line ends), is
  // refused as on_bad_message says, and the signer stops keeping its fields. Real mail has tens
  // of fields and a few KiB; Sendmail's MaxHeadersLength is 32 KiB, Exchange Online takes
  // 256 KiB. The limits bound the memory a message can take while its header arrives.
  int max_header_fields = 10000;
  int max_header_bytes = 1024 * 1024;

  bool operator==(const SigningConfig&) const = default;
};

struct KeystoreConfig {
  std::string directory = "/var/lib/dkimrotor";  // absolute

  bool operator==(const KeystoreConfig&) const = default;
};

struct DnsConfig {
  // The file writes "IP", "IPv4:PORT" or "[IPv6]:PORT" (port 53 unless given); empty means the
  // system's /etc/resolv.conf.
  std::vector<util::ServerAddress> resolvers;
  // Before a new key signs, ask the domain's authoritative servers that they all serve it.
  bool check_authoritative = true;
  // The port the authoritative servers are asked on: 53 on real networks, another in a lab.
  uint16_t authoritative_port = 53;
  // And wait at least this long after it first appeared.
  seconds min_propagation{3600};
  seconds poll{60};
  seconds timeout{5};

  bool operator==(const DnsConfig&) const = default;
};

struct LogConfig {
  LogTarget target = LogTarget::kStderr;
  LogLevel level = LogLevel::kInfo;
  std::string audit;  // absolute path of the audit log (which selector signed what); empty: none

  bool operator==(const LogConfig&) const = default;
};

struct MetricsConfig {
  // Where `GET /metrics` is served (Prometheus text format); empty: no endpoint. The file
  // writes "IPv4:PORT" or "[IPv6]:PORT" (port 9795 when it names none).
  std::optional<util::ServerAddress> listen;

  bool operator==(const MetricsConfig&) const = default;
};

// CNAME delegation (M3AAWG 3.1.3): the domain's owner points SLOT._domainkey.DOMAIN at
// SLOT._domainkey.ZONE once, for each slot; the records live in ZONE, which the publish hook
// writes, and keys take turns in the slots forever without another change at the domain.
struct Delegation {
  std::string zone;                // lowercase, no trailing dot
  std::vector<std::string> slots;  // the selectors, e.g. {"k1", "k2", "k3", "k4"}; no duplicates

  bool operator==(const Delegation&) const = default;
};

// One signing domain and how its keys rotate.
struct DomainConfig {
  std::string domain;  // lowercase, no trailing dot
  std::string stream;  // names this mail stream in selectors ({stream})
  // No duplicates; one signature per algorithm. The file writes "rsa-sha256"/"ed25519-sha256".
  std::vector<signer::Algorithm> algorithms = {signer::Algorithm::kRsaSha256};
  int bits = 2048;  // RSA modulus, 1024..4096
  int active_keys = 2;  // keys that sign in turn (round-robin), 1..3
  seconds key_lifetime{120 * 86400};  // how long a key signs
  int prepublish = 1;  // keys published in DNS ahead of use (spares for emergencies), 0..3
  seconds grace{14 * 86400};  // how long a retired key stays in DNS before it is revoked
  // Placeholders: {stream}, {yyyymmdd}, {yyyymm} (the key's creation date, UTC), {alg} ("rsa"
  // or "ed25519"), {bits} (the RSA size; empty for ed25519), {n} (a sequence number). Always
  // holds {yyyymmdd}, {yyyymm} or {n}; holds {alg} when there is more than one algorithm; with
  // this domain, stream and bits, makes selectors that fit in DNS.
  signer::SelectorFormat selector_format;  // "{stream}-{yyyymmdd}-{alg}{bits}"
  std::string publish_hook;  // absolute path of a program run to publish records; empty: none
  seconds hook_timeout{30};
  bool subdomains = false;  // also sign mail from subdomains of `domain`
  // Set: selectors are the slots, records live in the delegation zone; selector_format unused.
  // Needs at least SlotsNeeded() slots.
  std::optional<Delegation> delegation;

  // Slots a delegated domain needs: every algorithm's active and prepublished keys, plus one
  // so that a new key has somewhere to go while the key it replaces is retiring.
  int SlotsNeeded() const { return static_cast<int>(algorithms.size()) * (active_keys + prepublish) + 1; }

  bool operator==(const DomainConfig&) const = default;
};

struct Config {
  MilterConfig milter;
  SigningConfig signing;
  KeystoreConfig keystore;
  DnsConfig dns;
  LogConfig log;
  MetricsConfig metrics;
  std::vector<DomainConfig> domains;  // may be empty: then nothing is signed

  bool operator==(const Config&) const = default;
};

}  // namespace dkimrotor::conf
