// dkimrotor_milter_load: a load generator for milters (dkimrotor, OpenDKIM, the null filter)
// that speaks the milter protocol to them as Postfix does. Each of --connections threads holds
// one milter connection and plays one SMTP session on it (CONNECT and HELO once, then MAIL,
// RCPT, DATA, headers, EOH, body in 65535-byte chunks, end of message per message): first
// --warmup messages that are not measured, then --messages messages, or as many as fit in
// --duration. It reports messages per second over the measured phase (all connections) and
// the end-of-message latency, from writing SMFIC_BODYEOB to the final reply, at p50, p90, p99
// and max.
//
// Only after the timed phase, so that the milter has the CPU to itself while it is measured,
// is every measured message checked: the final reply must be accept or continue, and with
// --expect signed every DKIM-Signature the milter inserted must verify with
// signer::MessageVerifier and the key records given by --key or --keys-file (no DNS; an
// unknown selector fails). With --expect header:NAME the field NAME must have been added.
// Any failure makes the run fail (exit 1).
//
//   dkimrotor_milter_load --socket inet:PORT@127.0.0.1 [--connections N]
//       [--messages M | --duration SECONDS] [--body-size BYTES[k|m]] [--mode mta|capacity]
//       [--from-domain DOMAIN] [--expect signed|header:NAME] [--key NAME=RECORD]...
//       [--keys-file FILE] [--messages-per-connection-reuse | --new-connection-per-message]
//       [--warmup N] [--latency-log FILE] [--timeout SECONDS] [--json]
//
// --mode mta (the default) is Postfix's socket: Nagle on, the kernel's delayed ACKs, packets
// that need no reply coalesced. --mode capacity sets TCP_NODELAY and acknowledges every read at
// once (TCP_QUICKACK), so that the figures show the milter's own cost, not the ACK timers.
// Defaults: 1 connection, 100 messages, 1k body, 2 warm-up messages, 10 s per reply, expect
// signed. A message that fails on the wire (timeout, closed connection) is counted as an error
// and its connection opened again, a new SMTP session, as Postfix would; a connection that
// cannot be opened again stops and is counted as an error too.
// Exit status: 0 every message passed, 1 some failed, 2 usage or setup error.
//
// The body is generated once, deterministically, and copied once into each connection's
// MessageSpec (which owns its body); messages differ only in their headers and queue id.
//
// Threads: one per connection; they share only read-only inputs (the configuration, the body)
// and a barrier that starts the measured phase. Each writes its own ConnectionRun, which the
// main thread reads after joining it. Verification afterwards runs on a small worker pool over
// the same read-only samples.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "signer/algorithm.h"
#include "signer/header_field.h"
#include "signer/public_key.h"
#include "signer/tag_list.h"
#include "signer/verifier.h"
#include "tests/milter/milter_client.h"
#include "util/result.h"

namespace dkimrotor::bench {
namespace {

using milter::testing::EndOfMessageResult;
using milter::testing::Header;
using milter::testing::MessageSpec;
using milter::testing::MilterClient;
using milter::testing::Modification;
using milter::testing::Reply;
using util::ErrorCode;
using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: dkimrotor_milter_load --socket inet:PORT@HOST [--connections N]\n"
    "    [--messages M | --duration SECONDS] [--body-size BYTES[k|m]] [--mode mta|capacity]\n"
    "    [--from-domain DOMAIN] [--expect signed|header:NAME] [--key NAME=RECORD]...\n"
    "    [--keys-file FILE] [--messages-per-connection-reuse | --new-connection-per-message]\n"
    "    [--warmup N] [--latency-log FILE] [--timeout SECONDS] [--json]\n"
    "NAME is sel._domainkey.domain, RECORD \"v=DKIM1; k=rsa; p=...\"; a keys file holds one\n"
    "\"NAME RECORD\" per line (zone-file lines as `dkimrotor dns` prints them also do).\n";

constexpr uint64_t kDefaultMessages = 100;
constexpr size_t kExamples = 5;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// --- Key records ---------------------------------------------------------------------------

// A TXT record as dig, kdig and zone files print it ("v=DKIM1; k=rsa; " "p=MIIB...") joined
// into one string; an unquoted record is taken as it is.
std::string JoinTxtStrings(std::string_view text) {
  text = Trim(text);
  if (text.empty() || text.front() != '"') return std::string(text);
  std::string out;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '"') {
      quoted = !quoted;
    } else if (quoted) {
      if (c == '\\' && i + 1 < text.size()) c = text[++i];
      out.push_back(c);
    }
  }
  return out;
}

// DKIM key records by owner name ("sel._domainkey.example.test": lower case, no final dot).
// Filled before the run; read-only, and so shared by the verifying threads, after.
class KeyTable {
 public:
  util::Status Add(std::string_view name, std::string_view record_text) {
    std::string owner = Lower(Trim(name));
    while (!owner.empty() && owner.back() == '.') owner.pop_back();
    if (owner.find("._domainkey.") == std::string::npos)
      return util::Err(ErrorCode::kInvalidArgument,
                       "key name \"" + std::string(name) +
                           "\" is not SELECTOR._domainkey.DOMAIN");
    const std::string record = JoinTxtStrings(record_text);
    auto bad = [&](const std::string& why) {
      return util::Err(ErrorCode::kInvalidArgument,
                       "key record for " + owner + " (\"" + record + "\"): " + why);
    };
    auto tags = signer::TagList::Parse(record);
    if (!tags) return bad(tags.error().message);
    if (auto v = tags->Get("v"); v && Trim(*v) != "DKIM1") return bad("v= is not DKIM1");
    std::string k = tags->Get("k") ? Lower(Trim(*tags->Get("k"))) : "rsa";
    Entry entry;
    if (k == "rsa") entry.algorithm = signer::Algorithm::kRsaSha256;
    else if (k == "ed25519") entry.algorithm = signer::Algorithm::kEd25519Sha256;
    else return bad("k=" + k + " is neither rsa nor ed25519");
    auto p = tags->Get("p");
    if (!p) return bad("no p= tag");
    const std::string key = signer::StripFws(*p);
    if (!key.empty()) {  // an empty p= is a revoked key: kept, so that it fails as such
      auto parsed = signer::PublicKey::FromDkim(entry.algorithm, key);
      if (!parsed) return bad(parsed.error().message);
      entry.key = std::move(*parsed);
    }
    entries_[owner].push_back(std::move(entry));
    return util::Ok();
  }

  // A "NAME RECORD" line, or a zone-file line "NAME [TTL] [IN] TXT \"...\"".
  util::Status AddLine(std::string_view line) {
    line = Trim(line);
    size_t space = line.find_first_of(" \t");
    if (space == std::string_view::npos)
      return util::Err(ErrorCode::kInvalidArgument, "no record after the name");
    std::string_view name = line.substr(0, space);
    std::string_view rest = Trim(line.substr(space));
    // Zone-file form: skip the TTL, class and type in front of the quoted strings.
    size_t quote = rest.find('"');
    std::string head = " " + Lower(rest.substr(0, quote)) + " ";
    if (quote != std::string_view::npos) {
      size_t txt = head.find(" txt ");
      if (txt != std::string::npos) rest = rest.substr(quote);
    }
    return Add(name, rest);
  }

  bool empty() const { return entries_.empty(); }

  util::Result<std::shared_ptr<const signer::PublicKey>> Find(std::string_view domain,
                                                              std::string_view selector,
                                                              signer::Algorithm algorithm) const {
    const std::string owner = Lower(selector) + "._domainkey." + Lower(domain);
    auto it = entries_.find(owner);
    if (it == entries_.end())
      return util::Err(ErrorCode::kNotFound, "no key record for " + owner +
                                                 ": give it with --key or --keys-file");
    bool revoked = false;
    for (const Entry& e : it->second) {
      if (e.algorithm != algorithm) continue;
      if (e.key) return e.key;
      revoked = true;
    }
    if (revoked)
      return util::Err(ErrorCode::kNotFound, "the key record for " + owner + " is revoked (p=)");
    return util::Err(ErrorCode::kInvalidArgument,
                     "the key record for " + owner + " is not k=" +
                         std::string(signer::KeyTypeName(algorithm)));
  }

 private:
  struct Entry {
    signer::Algorithm algorithm = signer::Algorithm::kRsaSha256;
    std::shared_ptr<const signer::PublicKey> key;  // null: revoked
  };
  std::map<std::string, std::vector<Entry>> entries_;
};

// --- Configuration -------------------------------------------------------------------------

enum class Mode { kMta, kCapacity };

struct Config {
  std::string socket;
  int connections = 1;
  uint64_t messages = 0;                 // per connection; 0 when running for a duration
  std::chrono::nanoseconds duration{0};  // 0 when counting messages
  size_t body_size = 1024;
  Mode mode = Mode::kMta;
  std::string from_domain = "example.test";
  std::string expect_header;  // --expect header:NAME; empty for --expect signed
  KeyTable keys;
  bool new_connection_per_message = false;
  uint64_t warmup = 2;
  std::string latency_log;
  std::chrono::milliseconds timeout{10000};
  bool json = false;
};

// "1024", "1k" (1024), "10m" (10 MiB).
std::optional<uint64_t> ParseSize(std::string_view text) {
  uint64_t multiplier = 1;
  if (!text.empty()) {
    char unit = static_cast<char>(std::tolower(static_cast<unsigned char>(text.back())));
    if (unit == 'k') multiplier = 1024;
    if (unit == 'm') multiplier = 1024 * 1024;
    if (multiplier != 1) text.remove_suffix(1);
  }
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      n > UINT64_MAX / multiplier)
    return std::nullopt;
  return n * multiplier;
}

std::optional<double> ParsePositive(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !(v > 0) || v > 1e9) return std::nullopt;
  return v;
}

// Fills `config` from argv; returns a usage error naming the argument.
util::Status ParseArgs(int argc, char** argv, Config& config) {
  auto bad = [](std::string why) { return util::Err(ErrorCode::kInvalidArgument, why); };
  bool expect_signed = true;
  std::vector<std::string> key_files;
  std::vector<std::string> key_args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::optional<std::string> inline_value;
    if (size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg.resize(eq);
    }
    auto value = [&]() -> std::optional<std::string> {
      if (inline_value) return inline_value;
      if (i + 1 < argc) return std::string(argv[++i]);
      return std::nullopt;
    };
    auto need = [&](std::optional<std::string>& v, const char* what) -> util::Status {
      v = value();
      if (!v) return bad(arg + " needs " + what);
      return util::Ok();
    };
    std::optional<std::string> v;
    if (arg == "--socket") {
      RETURN_IF_ERROR(need(v, "a milter socket, inet:PORT@HOST"));
      config.socket = *v;
    } else if (arg == "--connections") {
      RETURN_IF_ERROR(need(v, "a number"));
      auto n = ParseSize(*v);
      if (!n || *n == 0 || *n > 10000) return bad("--connections " + *v + ": want 1..10000");
      config.connections = static_cast<int>(*n);
    } else if (arg == "--messages") {
      RETURN_IF_ERROR(need(v, "a number of messages per connection"));
      auto n = ParseSize(*v);
      if (!n || *n == 0) return bad("--messages " + *v + ": want a positive number");
      config.messages = *n;
    } else if (arg == "--duration") {
      RETURN_IF_ERROR(need(v, "seconds"));
      auto s = ParsePositive(*v);
      if (!s) return bad("--duration " + *v + ": want a positive number of seconds");
      config.duration = std::chrono::nanoseconds(static_cast<int64_t>(*s * 1e9));
    } else if (arg == "--body-size") {
      RETURN_IF_ERROR(need(v, "a size in bytes (1k = 1024, 10m = 10 MiB)"));
      auto n = ParseSize(*v);
      if (!n || *n > (uint64_t{1} << 30))
        return bad("--body-size " + *v + ": want BYTES, BYTESk or BYTESm, at most 1024m");
      config.body_size = static_cast<size_t>(*n);
    } else if (arg == "--mode") {
      RETURN_IF_ERROR(need(v, "mta or capacity"));
      if (*v == "mta") config.mode = Mode::kMta;
      else if (*v == "capacity") config.mode = Mode::kCapacity;
      else return bad("--mode " + *v + ": want mta or capacity");
    } else if (arg == "--from-domain") {
      RETURN_IF_ERROR(need(v, "a domain"));
      if (v->empty() || v->find_first_of(" <>@\t") != std::string::npos)
        return bad("--from-domain \"" + *v + "\" is not a domain name");
      config.from_domain = *v;
    } else if (arg == "--expect") {
      RETURN_IF_ERROR(need(v, "signed or header:NAME"));
      if (*v == "signed") {
        expect_signed = true;
        config.expect_header.clear();
      } else if (v->starts_with("header:") && v->size() > 7) {
        expect_signed = false;
        config.expect_header = v->substr(7);
      } else {
        return bad("--expect " + *v + ": want signed or header:NAME");
      }
    } else if (arg == "--key") {
      RETURN_IF_ERROR(need(v, "NAME=RECORD"));
      key_args.push_back(*v);
    } else if (arg == "--keys-file") {
      RETURN_IF_ERROR(need(v, "a file of \"NAME RECORD\" lines"));
      key_files.push_back(*v);
    } else if (arg == "--messages-per-connection-reuse") {
      config.new_connection_per_message = false;  // the default, named for scripts
    } else if (arg == "--new-connection-per-message") {
      config.new_connection_per_message = true;
    } else if (arg == "--warmup") {
      RETURN_IF_ERROR(need(v, "a number of messages per connection"));
      auto n = ParseSize(*v);
      if (!n) return bad("--warmup " + *v + ": want a number");
      config.warmup = *n;
    } else if (arg == "--latency-log") {
      RETURN_IF_ERROR(need(v, "a file name"));
      config.latency_log = *v;
    } else if (arg == "--timeout") {
      RETURN_IF_ERROR(need(v, "seconds"));
      auto s = ParsePositive(*v);
      if (!s) return bad("--timeout " + *v + ": want a positive number of seconds");
      config.timeout = std::chrono::milliseconds(static_cast<int64_t>(*s * 1000));
    } else if (arg == "--json") {
      config.json = true;
    } else if (arg == "--help" || arg == "-h") {
      return bad("");
    } else {
      return bad("unknown argument " + arg);
    }
  }
  if (config.socket.empty()) return bad("--socket is required");
  if (auto address = milter::testing::ParseSocketAddress(config.socket); !address)
    return bad(address.error().message);
  if (config.messages > 0 && config.duration.count() > 0)
    return bad("give --messages or --duration, not both");
  if (config.messages == 0 && config.duration.count() == 0) config.messages = kDefaultMessages;

  for (const std::string& k : key_args) {
    size_t eq = k.find('=');
    if (eq == std::string::npos || eq == 0)
      return bad("--key " + k + ": want NAME=RECORD, as sel._domainkey.example.test=\"v=DKIM1; "
                 "k=rsa; p=...\"");
    RETURN_IF_ERROR(config.keys.Add(k.substr(0, eq), k.substr(eq + 1)));
  }
  for (const std::string& file : key_files) {
    std::ifstream in(file);
    if (!in) return bad("--keys-file " + file + ": cannot read it");
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      std::string_view l = Trim(line);
      if (l.empty() || l.front() == '#' || l.front() == ';') continue;
      if (auto st = config.keys.AddLine(l); !st)
        return bad(file + ":" + std::to_string(number) + ": " + st.error().message);
    }
  }
  if (expect_signed && config.keys.empty())
    return bad("--expect signed needs the key records to verify with: give --key "
               "NAME=RECORD or --keys-file FILE (`dkimrotor dns -c CONF` prints them), or "
               "--expect header:NAME");
  return util::Ok();
}

// --- Messages ------------------------------------------------------------------------------

// splitmix64: a tiny generator whose sequence is the same everywhere, unlike the standard
// distributions.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }

 private:
  uint64_t state_;
};

constexpr std::string_view kWords[] = {
    "the",       "meeting",  "schedule", "report",   "for",      "quarter",  "and",
    "please",    "review",   "attached", "invoice",  "before",   "Friday,",  "thanks",
    "we",        "will",     "discuss",  "budget",   "project",  "update.",  "our",
    "team",      "has",      "finished", "the",      "migration", "of",      "mail",
    "servers",   "to",       "new",      "hardware", "in",       "March;",   "customers",
    "reported",  "no",       "problems", "so",       "far.",     "Let",      "me",
    "know",      "if",       "you",      "need",     "anything", "else",     "via",
    "accounting", "regards", "delivery", "address",  "changed",  "2024",     "order",
    "number",    "12345",    "shipped",  "today",    "tracking", "details",  "below",
    "(see",      "notes)",   "a",        "with",     "is",       "that",     "on",
    "office",    "closed",   "Monday",   "holiday",  "support",  "ticket",   "resolved",
};

// Text lines of 60 to 76 characters with CRLF, words drawn from kWords by a generator seeded
// with `seed`, paragraphs parted by an empty line; exactly `size` bytes, ending in CRLF when
// size >= 2. The same size and seed always give the same body.
std::string MakeBody(size_t size, uint64_t seed) {
  if (size < 2) return std::string(size, 'x');
  Random random(seed);
  std::string body;
  body.reserve(size);
  std::string line;
  size_t lines_left_in_paragraph = 4 + random.Below(8);
  while (body.size() < size) {
    const size_t left = size - body.size();  // never 1: see below
    size_t want = 0;                          // characters before the CRLF
    bool starts_paragraph = false;
    if (lines_left_in_paragraph == 0) {
      lines_left_in_paragraph = 4 + random.Below(8);
      starts_paragraph = true;  // this line is the empty one between paragraphs
    } else {
      want = 60 + random.Below(17);
      --lines_left_in_paragraph;
    }
    if (want + 2 > left) want = left - 2;
    else if (left - (want + 2) == 1) want += 1;  // a lone byte cannot end in CRLF
    line.clear();
    while (line.size() < want) {
      if (!line.empty()) line.push_back(' ');
      line.append(kWords[random.Below(std::size(kWords))]);
    }
    line.resize(want);
    if (!line.empty() && line.back() == ' ') line.back() = '.';  // no trailing white space
    if (!starts_paragraph && !line.empty())
      line[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(line[0])));
    body.append(line);
    body.append("\r\n");
  }
  return body;
}

// The header fields of message `seq` of connection `connection`, written over `headers` so
// that a reused vector keeps its strings' capacity from message to message.
void FillHeaders(const Config& config, int connection, uint64_t seq, std::time_t date,
                 std::vector<Header>& headers) {
  static const pid_t pid = ::getpid();
  headers.resize(7);
  char buf[512];
  auto set = [&](size_t i, const char* name, int n) {  // n: what snprintf returned
    headers[i].name = name;
    headers[i].value.assign(buf, n < 0 ? 0 : std::min(static_cast<size_t>(n), sizeof buf - 1));
  };
  const char* domain = config.from_domain.c_str();
  set(0, "From", std::snprintf(buf, sizeof buf, " Load <user@%s>", domain));
  set(1, "To", std::snprintf(buf, sizeof buf, " Receiver <rcpt@example.net>"));
  set(2, "Subject",
      std::snprintf(buf, sizeof buf, " load test message %d.%" PRIu64, connection, seq));
  std::tm tm{};
  ::gmtime_r(&date, &tm);
  buf[0] = ' ';
  size_t n = std::strftime(buf + 1, sizeof buf - 1, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  set(3, "Date", static_cast<int>(n + 1));
  set(4, "Message-ID", std::snprintf(buf, sizeof buf, " <%d.%" PRIu64 ".%d@%s>", connection, seq,
                                     static_cast<int>(pid), domain));
  set(5, "MIME-Version", std::snprintf(buf, sizeof buf, " 1.0"));
  set(6, "Content-Type", std::snprintf(buf, sizeof buf, " text/plain; charset=us-ascii"));
}

// --- The timed phase -----------------------------------------------------------------------

// One measured message, as it went: checked after the run.
struct Sample {
  int connection = 0;
  uint64_t seq = 0;             // within the connection, warm-up messages included
  std::time_t date = 0;         // of the Date field, to rebuild the headers
  bool leading_space = false;   // the connection negotiated SMFIP_HDR_LEADSPC
  bool eom_answered = false;    // the latency fields are valid
  int64_t eom_sent_unix_ns = 0;
  int64_t latency_ns = 0;
  std::string error;            // the client's error (I/O, timeout, protocol); empty if none
  EndOfMessageResult result;    // the reply and the modifications, when there was no error
};

// What one connection's thread produced. Written only by that thread until it is joined.
struct ConnectionRun {
  std::vector<Sample> samples;         // the measured messages, in order
  std::vector<std::string> failures;   // the connection could not be (re)opened
  Clock::time_point finished{};        // when its last measured message was answered
};

// The measured phase's start, set by the barrier's completion step once every connection is
// done with its warm-up; read by the connections after the barrier, which orders the two.
struct Phase {
  Clock::time_point start{};
  Clock::time_point deadline = Clock::time_point::max();
};

struct StartPhase {
  Phase* phase;
  std::chrono::nanoseconds duration;
  void operator()() noexcept {
    phase->start = Clock::now();
    if (duration.count() > 0) phase->deadline = phase->start + duration;
  }
};

using StartBarrier = std::barrier<StartPhase>;

// One connection: its MilterClient, the message it sends (only the headers and queue id
// change between messages; the body is copied into it once) and the latency hook.
// Not thread-safe: lives on its own thread's stack (the reply hook points at it).
class LoadConnection {
 public:
  LoadConnection(const Config& config, const std::string& body, int index, StartBarrier& barrier,
                 const Phase& phase, ConnectionRun& out)
      : config_(config), index_(index), barrier_(barrier), phase_(phase), out_(out) {
    spec_.client_ip = "127.0.0.1";  // an internal host, so that signers sign
    spec_.client_name = "localhost";
    spec_.client_port = static_cast<uint16_t>(20000 + index % 40000);
    spec_.helo = "load-" + std::to_string(index) + "." + config.from_domain;
    spec_.mail_from = "<user@" + config.from_domain + ">";
    spec_.rcpt_to = {"<rcpt@example.net>"};
    spec_.body = body;
  }

  void Run() {
    bool alive = Open();
    for (uint64_t i = 0; alive && i < config_.warmup; ++i) alive = Send(nullptr);
    barrier_.arrive_and_wait();
    if (alive) {
      if (config_.messages > 0) out_.samples.reserve(config_.messages);
      for (uint64_t i = 0; alive; ++i) {
        if (config_.messages > 0 ? i >= config_.messages : Clock::now() >= phase_.deadline)
          break;
        Sample sample;
        alive = Send(&sample);
        out_.samples.push_back(std::move(sample));
      }
    }
    out_.finished = Clock::now();
    // Outside the measurement. A milter slow to close after QUIT is not this tool's concern.
    if (client_ && client_->is_open()) (void)client_->Quit(std::chrono::milliseconds(2000));
  }

 private:
  // A new milter connection (and so a new SMTP session). False, with the reason in
  // out_.failures, when it cannot be had.
  bool Open() {
    MilterClient::Options options;
    options.socket = config_.socket;
    options.timeout = config_.timeout;
    options.coalesce_writes = true;  // as Postfix does, in both modes
    options.tcp_nodelay = config_.mode == Mode::kCapacity;
    options.tcp_quickack = config_.mode == Mode::kCapacity;
    options.on_reply = [this](char command, std::chrono::nanoseconds took) {
      if (command != SMFIC_BODYEOB) return;
      eom_answered_ = true;
      eom_took_ = took;
      eom_answered_unix_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
    };
    client_.reset();
    auto client = MilterClient::Connect(std::move(options));
    if (!client) {
      out_.failures.push_back("connection " + std::to_string(index_) + ": " +
                              client.error().message);
      return false;
    }
    client_.emplace(std::move(*client));
    return true;
  }

  // Sends the next message and, when `sample` is given, records how it went. False when the
  // connection was lost and could not be opened again.
  bool Send(Sample* sample) {
    ++seq_;
    const std::time_t date = std::time(nullptr);
    FillHeaders(config_, index_, seq_, date, spec_.headers);
    char queue_id[32];
    std::snprintf(queue_id, sizeof queue_id, "4L%XQ%" PRIX64, static_cast<unsigned>(index_),
                  seq_);
    spec_.queue_id = queue_id;
    eom_answered_ = false;
    auto result = client_->SendMessage(spec_);
    if (sample) {
      sample->connection = index_;
      sample->seq = seq_;
      sample->date = date;
      sample->leading_space = client_->negotiation().Has(SMFIP_HDR_LEADSPC);
      if (eom_answered_) {
        sample->eom_answered = true;
        sample->latency_ns = eom_took_.count();
        sample->eom_sent_unix_ns = eom_answered_unix_ns_ - eom_took_.count();
      }
      if (result) sample->result = std::move(*result);
      else sample->error = result.error().message;
    }
    if (!result) return Open();  // the stream is out of step: a new one, as Postfix would
    if (config_.new_connection_per_message) {
      (void)client_->Quit();  // a QUIT the milter mishandles shows in the next message
      return Open();
    }
    return true;
  }

  const Config& config_;
  const int index_;
  StartBarrier& barrier_;
  const Phase& phase_;
  ConnectionRun& out_;
  std::optional<MilterClient> client_;
  MessageSpec spec_;
  uint64_t seq_ = 0;
  // Set by the reply hook when end of message is answered.
  bool eom_answered_ = false;
  std::chrono::nanoseconds eom_took_{0};
  int64_t eom_answered_unix_ns_ = 0;
};

// --- Checking ------------------------------------------------------------------------------

enum class Outcome { kOk, kUnsigned, kTempfailed, kBadSignature, kError };

struct Verdict {
  Outcome outcome = Outcome::kOk;
  std::string reason;                  // for a failure
  std::vector<std::string> selectors;  // "d=... s=... a=..." of each DKIM-Signature
};

std::string StageName(char command) {
  switch (command) {
    case SMFIC_CONNECT: return "CONNECT";
    case SMFIC_HELO: return "HELO";
    case SMFIC_MAIL: return "MAIL";
    case SMFIC_RCPT: return "RCPT";
    case SMFIC_DATA: return "DATA";
    case SMFIC_HEADER: return "a header";
    case SMFIC_EOH: return "end of headers";
    case SMFIC_BODY: return "the body";
    case SMFIC_BODYEOB: return "end of message";
  }
  return std::string("command '") + command + "'";
}

bool AddsField(const Modification& m, std::string_view key) {
  using Kind = Modification::Kind;
  bool adds = m.kind == Kind::kAddHeader || m.kind == Kind::kInsertHeader ||
              (m.kind == Kind::kChangeHeader && !m.value.empty());
  return adds && signer::FieldKey(m.name) == key;
}

// LF (ParseMessage joins folded lines with it) to CRLF, as signer::HeaderField wants.
std::string FoldsWithCrlf(std::string_view value) {
  std::string out;
  out.reserve(value.size() + 8);
  for (char c : value) {
    if (c == '\n') out.push_back('\r');
    out.push_back(c);
  }
  return out;
}

Verdict Check(const Sample& s, const Config& config, const std::string& body) {
  Verdict v;
  const std::string which =
      "message " + std::to_string(s.connection) + "." + std::to_string(s.seq) + ": ";
  auto fail = [&](Outcome outcome, std::string why) {
    v.outcome = outcome;
    v.reason = which + why;
    return v;
  };
  if (!s.error.empty()) return fail(Outcome::kError, s.error);
  const Reply& reply = s.result.reply;
  if (s.result.command != SMFIC_BODYEOB || (reply.kind != Reply::Kind::kAccept &&
                                            reply.kind != Reply::Kind::kContinue)) {
    bool temporary = reply.kind == Reply::Kind::kTempfail ||
                     (reply.kind == Reply::Kind::kReplyCode && reply.text.starts_with('4'));
    return fail(temporary ? Outcome::kTempfailed : Outcome::kError,
                "the milter answered " + StageName(s.result.command) + " with " +
                    reply.ToString());
  }
  const auto& mods = s.result.modifications;

  if (!config.expect_header.empty()) {
    const std::string key = signer::FieldKey(config.expect_header);
    for (const Modification& m : mods)
      if (AddsField(m, key)) return v;
    return fail(Outcome::kUnsigned, "no " + config.expect_header + " field was added");
  }

  if (std::none_of(mods.begin(), mods.end(),
                   [](const Modification& m) { return AddsField(m, "dkim-signature"); }))
    return fail(Outcome::kUnsigned, "no DKIM-Signature was inserted");
  // The message as the MTA would deliver it: the milter's header edits applied to the fields
  // sent, as Postfix's cleanup applies them; the body as sent unless the milter replaced it.
  std::vector<Header> sent;
  FillHeaders(config, s.connection, s.seq, s.date, sent);
  auto delivered = milter::testing::ParseMessage(
      milter::testing::BuildMessage(sent, {}, s.result, s.leading_space));
  if (!delivered) return fail(Outcome::kError, "the edited header: " + delivered.error().message);
  std::string replaced_body;
  bool body_replaced = false;
  for (const Modification& m : mods) {
    if (m.kind != Modification::Kind::kReplaceBody) continue;
    replaced_body += m.value;
    body_replaced = true;
  }
  // MessageVerifier takes no precomputed body hash, so every message's body is hashed again:
  // after the run, that costs only time.
  signer::MessageVerifier verifier(
      [&config](std::string_view domain, std::string_view selector, signer::Algorithm a) {
        return config.keys.Find(domain, selector, a);
      });
  for (const Header& h : delivered->headers)
    verifier.AddHeader(signer::HeaderField{h.name, FoldsWithCrlf(h.value)});
  verifier.EndOfHeaders();
  verifier.AddBody(body_replaced ? std::string_view(replaced_body) : std::string_view(body));
  for (const signer::SignatureVerdict& sig : verifier.Finish()) {
    std::string name = "d=" + sig.domain + " s=" + sig.selector + " a=" + sig.algorithm;
    if (!sig.status && v.outcome == Outcome::kOk) {
      v.outcome = Outcome::kBadSignature;
      v.reason =
          which + "the signature " + name + " does not verify: " + sig.status.error().message;
    }
    v.selectors.push_back(std::move(name));
  }
  return v;
}

// Checks every sample on a few threads: after the run, the CPU is free again.
std::vector<Verdict> CheckAll(const std::vector<const Sample*>& samples, const Config& config,
                              const std::string& body) {
  std::vector<Verdict> verdicts(samples.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < samples.size();)
      verdicts[i] = Check(*samples[i], config, body);
  };
  size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  threads = std::min(threads, std::max<size_t>(samples.size(), 1));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return verdicts;
}

// --- Report --------------------------------------------------------------------------------

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

struct Summary {
  uint64_t messages = 0, ok = 0, unsigned_ = 0, tempfailed = 0, bad_signature = 0, errors = 0;
  double seconds = 0, msgs_per_s = 0;
  double p50_us = 0, p90_us = 0, p99_us = 0, max_us = 0, mean_us = 0;
  std::vector<std::string> examples;
  std::map<std::string, uint64_t> selectors;
  bool passed() const {
    return messages > 0 && unsigned_ + tempfailed + bad_signature + errors == 0;
  }
};

// The nearest-rank percentile of sorted values, in microseconds.
double PercentileUs(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1]) / 1000.0;
}

const char* ModeName(Mode mode) { return mode == Mode::kMta ? "mta" : "capacity"; }

void PrintJson(const Config& config, const Summary& s) {
  std::printf("{\"ok\": %s, \"mode\": \"%s\", \"socket\": %s, \"connections\": %d, "
              "\"body_size\": %zu, \"warmup\": %" PRIu64 ", \"expect\": %s, "
              "\"messages\": %" PRIu64 ", \"seconds\": %.6f, \"msgs_per_s\": %.2f, "
              "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f, "
              "\"mean_us\": %.1f, \"ok_messages\": %" PRIu64 ", \"unsigned\": %" PRIu64
              ", \"tempfailed\": %" PRIu64 ", \"bad_signature\": %" PRIu64
              ", \"errors\": %" PRIu64 ", \"examples\": [",
              s.passed() ? "true" : "false", ModeName(config.mode),
              JsonString(config.socket).c_str(), config.connections, config.body_size,
              config.warmup,
              JsonString(config.expect_header.empty() ? "signed"
                                                      : "header:" + config.expect_header)
                  .c_str(),
              s.messages, s.seconds, s.msgs_per_s, s.p50_us, s.p90_us, s.p99_us, s.max_us,
              s.mean_us, s.ok, s.unsigned_, s.tempfailed, s.bad_signature, s.errors);
  for (size_t i = 0; i < s.examples.size(); ++i)
    std::printf("%s%s", i ? ", " : "", JsonString(s.examples[i]).c_str());
  std::printf("], \"selectors\": {");
  bool first = true;
  for (const auto& [name, count] : s.selectors) {
    std::printf("%s%s: %" PRIu64, first ? "" : ", ", JsonString(name).c_str(), count);
    first = false;
  }
  std::printf("}}\n");
}

void PrintText(const Config& config, const Summary& s) {
  std::printf("milter %s, mode %s, %d connection%s, body %zu bytes, warm-up %" PRIu64
              " per connection\n",
              config.socket.c_str(), ModeName(config.mode), config.connections,
              config.connections == 1 ? "" : "s", config.body_size, config.warmup);
  std::printf("measured %" PRIu64 " messages in %.3f s: %.1f messages/s\n", s.messages,
              s.seconds, s.msgs_per_s);
  std::printf("end-of-message latency (us): p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.1f\n",
              s.p50_us, s.p90_us, s.p99_us, s.max_us, s.mean_us);
  std::printf("checked: %" PRIu64 " messages, %" PRIu64 " ok, %" PRIu64 " unsigned, %" PRIu64
              " tempfailed, %" PRIu64 " bad_signature, %" PRIu64 " errors\n",
              s.messages, s.ok, s.unsigned_, s.tempfailed, s.bad_signature, s.errors);
  for (const auto& [name, count] : s.selectors)
    std::printf("  %s: %" PRIu64 "\n", name.c_str(), count);
  if (!s.passed()) {
    std::printf("FAILED%s\n", s.messages == 0 ? ": no message was measured" : "");
    for (const auto& e : s.examples) std::printf("  %s\n", e.c_str());
  } else {
    std::printf("OK\n");
  }
}

int Main(int argc, char** argv) {
  Config config;
  if (auto st = ParseArgs(argc, argv, config); !st) {
    if (!st.error().message.empty())
      std::fprintf(stderr, "dkimrotor_milter_load: %s\n", st.error().message.c_str());
    std::fputs(kUsage, stderr);
    return 2;
  }
  // Opened now, to fail before the run rather than after it.
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> latency_log(nullptr, &std::fclose);
  if (!config.latency_log.empty()) {
    latency_log.reset(std::fopen(config.latency_log.c_str(), "w"));
    if (!latency_log) {
      std::perror(("dkimrotor_milter_load: --latency-log " + config.latency_log).c_str());
      return 2;
    }
  }
  const std::string body = MakeBody(config.body_size, 0x6b646d6c6f6164ull);

  // The timed phase.
  Phase phase;
  StartBarrier barrier(config.connections, StartPhase{&phase, config.duration});
  std::vector<ConnectionRun> runs(static_cast<size_t>(config.connections));
  std::vector<std::thread> threads;
  for (int i = 0; i < config.connections; ++i)
    threads.emplace_back([&, i] {
      LoadConnection connection(config, body, i, barrier, phase, runs[static_cast<size_t>(i)]);
      connection.Run();
    });
  for (auto& t : threads) t.join();

  // Figures, then the checks.
  Summary s;
  Clock::time_point end = phase.start;
  std::vector<const Sample*> samples;
  std::vector<int64_t> latencies;
  std::vector<std::pair<int64_t, int64_t>> log_lines;
  for (const ConnectionRun& run : runs) {
    end = std::max(end, run.finished);
    for (const Sample& sample : run.samples) {
      samples.push_back(&sample);
      if (!sample.eom_answered) continue;
      latencies.push_back(sample.latency_ns);
      if (latency_log) log_lines.emplace_back(sample.eom_sent_unix_ns, sample.latency_ns);
    }
  }
  s.messages = samples.size();
  s.seconds = std::chrono::duration<double>(end - phase.start).count();
  s.msgs_per_s = s.seconds > 0 ? static_cast<double>(s.messages) / s.seconds : 0;
  std::sort(latencies.begin(), latencies.end());
  s.p50_us = PercentileUs(latencies, 0.50);
  s.p90_us = PercentileUs(latencies, 0.90);
  s.p99_us = PercentileUs(latencies, 0.99);
  s.max_us = PercentileUs(latencies, 1.0);
  if (!latencies.empty()) {
    double total = 0;
    for (int64_t l : latencies) total += static_cast<double>(l);
    s.mean_us = total / static_cast<double>(latencies.size()) / 1000.0;
  }

  std::vector<Verdict> verdicts = CheckAll(samples, config, body);
  for (const ConnectionRun& run : runs)
    for (const std::string& failure : run.failures) {
      ++s.errors;
      if (s.examples.size() < kExamples) s.examples.push_back(failure);
    }
  for (Verdict& v : verdicts) {
    for (std::string& name : v.selectors) ++s.selectors[std::move(name)];
    switch (v.outcome) {
      case Outcome::kOk: ++s.ok; break;
      case Outcome::kUnsigned: ++s.unsigned_; break;
      case Outcome::kTempfailed: ++s.tempfailed; break;
      case Outcome::kBadSignature: ++s.bad_signature; break;
      case Outcome::kError: ++s.errors; break;
    }
    if (v.outcome != Outcome::kOk && s.examples.size() < kExamples)
      s.examples.push_back(std::move(v.reason));
  }

  if (latency_log) {
    std::sort(log_lines.begin(), log_lines.end());
    for (const auto& [at, latency] : log_lines)
      std::fprintf(latency_log.get(), "%" PRId64 " %" PRId64 "\n", at, latency);
    if (std::fflush(latency_log.get()) != 0)
      std::perror(("dkimrotor_milter_load: writing " + config.latency_log).c_str());
  }
  if (config.json) PrintJson(config, s);
  else PrintText(config, s);
  return s.passed() ? 0 : 1;
}

}  // namespace
}  // namespace dkimrotor::bench

int main(int argc, char** argv) { return dkimrotor::bench::Main(argc, argv); }
