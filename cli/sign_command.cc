// `dkimrotor sign`: signs one message from stdin. The body is streamed through the signer; to
// write the signature in front of the message without holding it in memory, stdin is read
// again when it is a regular file, and otherwise spooled to an unlinked temporary file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "conf/loader.h"
#include "cli/wiring.h"
#include "keystore/keystore_world.h"
#include "keystore/rotation/rotation_engine.h"
#include "keystore/storage/state_store.h"
#include "session/session.h"
#include "session/signing_service.h"
#include "signer/header_selector.h"
#include "signer/message_parser.h"
#include "signer/message_signer.h"
#include "signer/private_key.h"
#include "signer/signing_key.h"
#include "util/file.h"

namespace dkimrotor::cli {
namespace {

constexpr const char* kSignUsage =
    "usage: dkimrotor sign -c FILE [--domain D] < message > signed-message\n"
    "       dkimrotor sign --domain D --key FILE.pem --selector S [--key F2 --selector S2 ...]\n"
    "                      [--algorithm rsa-sha256|ed25519-sha256] [--canonicalization C]\n"
    "                      [--timestamp UNIX] [--expire SECONDS] [--headers a,b,c]\n"
    "                      [--oversign a,b,c] < message > signed-message\n"
    "\n"
    "Signs the message on stdin and writes it to stdout with one DKIM-Signature per key.\n"
    "  -c FILE              sign as the milter would: the From domain (or --domain) picks the\n"
    "                       configured domain, whose active keys sign, one per algorithm;\n"
    "                       canonicalization, headers and x= come from the configuration\n"
    "  --key, --selector    repeatable, in pairs; the algorithm follows the key type\n"
    "  --algorithm          checks every key is of this algorithm\n"
    "  --canonicalization   relaxed/relaxed (default), simple/simple, relaxed/simple, simple/relaxed\n"
    "  --timestamp          t= (default: now); --expire adds x= = t= + SECONDS\n"
    "  --headers            fields to sign instead of the default list ('list-*' matches a prefix)\n"
    "  --oversign           fields signed once more than they occur (default: from, subject,\n"
    "                       date, to, cc, reply-to, message-id); --oversign= for none\n"
    "Keys are PEM files of mode 0600. Exit: 0 signed, 1 not signed (reason on stderr), 2 usage.\n";

constexpr size_t kChunk = 64 * 1024;
constexpr size_t kMaxHeaderBytes = 64 * 1024 * 1024;

struct SignArgs {
  std::optional<std::string> config;
  std::string domain;
  std::vector<std::string> keys;
  std::vector<std::string> selectors;
  std::optional<std::string> algorithm;
  std::string canonicalization = "relaxed/relaxed";
  std::optional<int64_t> timestamp;
  std::optional<int64_t> expire;
  std::optional<std::vector<std::string>> headers;
  std::optional<std::vector<std::string>> oversign;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "dkimrotor sign: %s\n", message.c_str());
  return kExitFailure;
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "dkimrotor sign: %s\n\n%s", message.c_str(), kSignUsage);
  return kExitUsage;
}

std::vector<std::string> SplitList(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<int64_t> ParseInt(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9' || v > (INT64_MAX - 9) / 10) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// Returns a usage message on error, empty on success.
std::string ParseArgs(std::span<char*> args, SignArgs* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    std::string_view value;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    if (arg == "--help" || arg == "-h") return "help";
    auto take = [&]() -> bool {
      if (has_inline) return true;
      if (i + 1 >= args.size()) return false;
      value = args[++i];
      return true;
    };
    if (!take()) return std::string(arg) + " needs a value";
    if (arg == "--config" || arg == "-c") {
      out->config = std::string(value);
    } else if (arg == "--domain") {
      out->domain = value;
    } else if (arg == "--key") {
      out->keys.emplace_back(value);
    } else if (arg == "--selector") {
      out->selectors.emplace_back(value);
    } else if (arg == "--algorithm") {
      out->algorithm = std::string(value);
    } else if (arg == "--canonicalization" || arg == "-c") {
      out->canonicalization = value;
    } else if (arg == "--timestamp") {
      if (!(out->timestamp = ParseInt(value))) return "--timestamp takes seconds since the epoch";
    } else if (arg == "--expire") {
      if (!(out->expire = ParseInt(value)) || *out->expire == 0)
        return "--expire takes a positive number of seconds";
    } else if (arg == "--headers") {
      out->headers = SplitList(value);
    } else if (arg == "--oversign") {
      out->oversign = SplitList(value);
    } else {
      return "unknown option " + std::string(arg);
    }
  }
  if (out->config) {
    if (!out->keys.empty() || !out->selectors.empty())
      return "-c takes the keys from the keystore: give no --key or --selector";
    return {};
  }
  if (out->domain.empty()) return "--domain is required";
  if (out->keys.empty()) return "at least one --key and --selector are required";
  if (out->keys.size() != out->selectors.size())
    return "give one --selector for each --key (" + std::to_string(out->keys.size()) + " keys, " +
           std::to_string(out->selectors.size()) + " selectors)";
  return {};
}

// Where the message's bytes can be read again after signing.
class Replay {
 public:
  static util::Result<Replay> Open() {
    struct stat st {};
    if (::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
      off_t start = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
      if (start >= 0) return Replay(STDIN_FILENO, start, false);
    }
    const char* dir = std::getenv("TMPDIR");
    std::string tmpdir = dir && *dir ? dir : "/tmp";
    int fd = ::open(tmpdir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::string path = tmpdir + "/dkimrotor-sign.XXXXXX";
      fd = ::mkstemp(path.data());
      if (fd >= 0) ::unlink(path.c_str());
    }
    if (fd < 0)
      return util::Err(util::ErrorCode::kIo, "cannot create a spool file in " + tmpdir + ": " +
                                                 std::strerror(errno) + " (set TMPDIR)");
    return Replay(fd, 0, true);
  }

  Replay(Replay&& o) noexcept : fd_(o.fd_), start_(o.start_), owned_(o.owned_) { o.owned_ = false; }
  ~Replay() {
    if (owned_) ::close(fd_);
  }

  util::Status Keep(std::string_view data) {
    if (!owned_) return util::Ok();
    return WriteAll(fd_, data, "spool file");
  }

  static constexpr uint64_t kNoInsert = UINT64_MAX;
  // Copies the message to `out`, writing `insert` after `insert_at` bytes (kNoInsert: nowhere).
  util::Status CopyTo(int out, uint64_t insert_at, std::string_view insert) {
    if (::lseek(fd_, start_, SEEK_SET) < 0)
      return util::Err(util::ErrorCode::kIo, std::string("cannot rewind the message: ") + std::strerror(errno));
    std::unique_ptr<char[]> buf(new char[kChunk]);
    uint64_t copied = 0;
    while (true) {
      size_t want = kChunk;
      if (copied < insert_at) want = static_cast<size_t>(std::min<uint64_t>(want, insert_at - copied));
      ssize_t n = ::read(fd_, buf.get(), want);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return util::Err(util::ErrorCode::kIo, std::string("cannot re-read the message: ") + std::strerror(errno));
      if (n == 0) return util::Ok();
      RETURN_IF_ERROR(WriteAll(out, std::string_view(buf.get(), static_cast<size_t>(n)), "stdout"));
      copied += static_cast<uint64_t>(n);
      if (copied == insert_at) RETURN_IF_ERROR(WriteAll(out, insert, "stdout"));
    }
  }

  static util::Status WriteAll(int fd, std::string_view data, const char* what) {
    while (!data.empty()) {
      ssize_t n = ::write(fd, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return util::Err(util::ErrorCode::kIo, std::string("cannot write ") + what + ": " + std::strerror(errno));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return util::Ok();
  }

 private:
  Replay(int fd, off_t start, bool owned) : fd_(fd), start_(start), owned_(owned) {}
  int fd_;
  off_t start_;
  bool owned_;
};

util::Result<std::vector<std::shared_ptr<const signer::SigningKey>>> LoadKeys(const SignArgs& args) {
  ASSIGN_OR_RETURN(signer::Canonicalization canon, signer::ParseCanonicalization(args.canonicalization));
  std::optional<signer::Algorithm> want;
  if (args.algorithm) {
    ASSIGN_OR_RETURN(want, signer::ParseAlgorithm(*args.algorithm));
  }
  std::vector<std::shared_ptr<const signer::SigningKey>> keys;
  for (size_t i = 0; i < args.keys.size(); ++i) {
    ASSIGN_OR_RETURN(std::string pem, util::ReadSecretFile(args.keys[i]));
    auto key = signer::PrivateKey::FromPem(pem);
    if (!key)
      return util::Err(key.error().code, "key file " + args.keys[i] + ": " + key.error().message);
    if (want && (*key)->algorithm() != *want)
      return util::Err(util::ErrorCode::kInvalidArgument,
                       "key file " + args.keys[i] + " is an " +
                           std::string(signer::KeyTypeName((*key)->algorithm())) +
                           " key, not one for --algorithm " + *args.algorithm);
    ASSIGN_OR_RETURN(auto signing_key,
                     signer::SigningKey::Create({args.domain, args.selectors[i], std::move(*key), canon}));
    keys.push_back(std::move(signing_key));
  }
  return keys;
}

// What `sign` signs through: a signing session, exactly as the milter's (-c), or the keys on
// the command line. Either way a refusal is an error naming the reason.
class Signing {
 public:
  virtual ~Signing() = default;
  virtual void AddHeader(signer::HeaderField field) = 0;
  virtual util::Status EndOfHeaders() = 0;
  virtual void AddBody(std::string_view chunk) = 0;
  virtual util::Result<std::vector<std::string>> Finish() = 0;
};

class KeySigning final : public Signing {
 public:
  KeySigning(std::vector<std::shared_ptr<const signer::SigningKey>> keys, signer::HeaderPolicy policy,
             signer::MessageOptions options)
      : selector_(std::move(policy)), signer_(std::move(keys), &selector_, options) {}
  void AddHeader(signer::HeaderField field) override { signer_.AddHeader(std::move(field)); }
  util::Status EndOfHeaders() override { return signer_.EndOfHeaders(); }
  void AddBody(std::string_view chunk) override { signer_.AddBody(chunk); }
  util::Result<std::vector<std::string>> Finish() override { return signer_.Finish(); }

 private:
  signer::HeaderSelector selector_;
  signer::MessageSigner signer_;
};

// The milter's own path: the keystore's loader (the rotation engine's start-up, which checks
// each key file against the public key the state records) fills a snapshot, and one session
// of a SigningService decides and signs, as it would for a message from an internal host.
class SessionSigning final : public Signing {
 public:
  static util::Result<std::unique_ptr<SessionSigning>> Create(const conf::Config& config, const SignArgs& args) {
    std::unique_ptr<SessionSigning> s(new SessionSigning);
    ASSIGN_OR_RETURN(auto settings, SessionSettingsFrom(config));
    if (args.headers || args.oversign) {
      auto changed = std::make_shared<session::Settings>(*settings);
      signer::HeaderPolicy policy{config.signing.headers, config.signing.oversign};
      if (args.headers) policy.sign = *args.headers;
      if (args.oversign) policy.oversign = *args.oversign;
      changed->headers = signer::HeaderSelector(std::move(policy));
      settings = std::move(changed);
    }
    ASSIGN_OR_RETURN(auto rotation, RotationOptionsFrom(config));
    ASSIGN_OR_RETURN(auto state, keystore::LoadState(config.keystore.directory));
    auto world_options = WorldOptionsFrom(config);
    world_options.hooks.clear();  // nothing is published or changed from here
    world_options.log = [](keystore::LogLevel level, const std::string& m) {
      if (level == keystore::LogLevel::kWarning || level == keystore::LogLevel::kError)
        std::fprintf(stderr, "dkimrotor sign: %s\n", m.c_str());
    };
    keystore::KeystoreWorld world(std::move(world_options));
    keystore::RotationEngine engine(std::move(rotation), std::move(state), &world, &s->snapshots_);
    RETURN_IF_ERROR(engine.Start());
    s->service_ = std::make_unique<session::SigningService>(&s->snapshots_, std::move(settings), nullptr, nullptr);
    session::MessageOverrides overrides;
    if (!args.domain.empty()) overrides.domain = args.domain;
    overrides.timestamp = args.timestamp;
    overrides.lifetime = args.expire;
    auto start = s->service_->Begin(session::Client{}, std::move(overrides));
    if (!start.session) return util::Err(util::ErrorCode::kInvalidArgument, start.verdict.reason);
    s->session_ = std::move(start.session);
    return s;
  }

  void AddHeader(signer::HeaderField field) override { session_->AddHeader(field.name, field.value); }
  util::Status EndOfHeaders() override {
    if (auto refused = session_->EndOfHeaders()) return Refusal(*refused);
    return util::Ok();
  }
  void AddBody(std::string_view chunk) override { session_->AddBody(chunk); }
  util::Result<std::vector<std::string>> Finish() override {
    std::vector<std::string> out;
    session::Verdict v = session_->Finish([&](const std::vector<std::string>& signatures) {
      out = signatures;
      return util::Ok();
    });
    if (v.outcome != session::Outcome::kSigned) return Refusal(v);
    return out;
  }

 private:
  SessionSigning() = default;
  static util::Error Refusal(const session::Verdict& v) {
    return util::Error{v.refusal == session::Refusal::kError ? util::ErrorCode::kNotFound
                                                              : util::ErrorCode::kInvalidArgument,
                       v.reason + (v.refusal == session::Refusal::kError ? " (see dkimrotor keys)" : "")};
  }

  keystore::SnapshotHolder snapshots_;
  std::unique_ptr<session::SigningService> service_;  // after snapshots_, before session_
  std::unique_ptr<session::Session> session_;
};

}  // namespace

int RunSign(std::span<char*> argv) {
  SignArgs args;
  if (std::string err = ParseArgs(argv, &args); !err.empty()) {
    if (err == "help") {
      std::fputs(kSignUsage, stdout);
      return kExitOk;
    }
    return UsageError(err);
  }
  std::unique_ptr<Signing> message;
  if (args.config) {
    auto config = conf::LoadConfig(*args.config);
    if (!config) return Fail(config.error().message);
    auto signing = SessionSigning::Create(*config, args);
    if (!signing) return Fail(signing.error().message);
    message = std::move(*signing);
  } else {
    auto keys = LoadKeys(args);
    if (!keys) return Fail(keys.error().message);
    signer::HeaderPolicy policy = signer::HeaderPolicy::Default();
    if (args.headers) policy.sign = *args.headers;
    if (args.oversign) policy.oversign = *args.oversign;
    signer::MessageOptions options;
    options.timestamp = args.timestamp ? *args.timestamp : static_cast<int64_t>(std::time(nullptr));
    options.lifetime = args.expire;
    message = std::make_unique<KeySigning>(std::move(*keys), std::move(policy), options);
  }

  auto replay = Replay::Open();
  if (!replay) return Fail(replay.error().message);

  std::string header_buf;
  signer::HeaderScan scan;
  std::optional<signer::HeaderEnd> end;
  std::optional<bool> crlf;  // the message's line end, from its first line
  std::unique_ptr<char[]> buf(new char[kChunk]);
  auto start_body = [&](std::string_view block) -> util::Status {
    ASSIGN_OR_RETURN(auto fields, signer::ParseHeaderBlock(block));
    for (auto& f : fields) message->AddHeader(std::move(f));
    return message->EndOfHeaders();
  };
  while (true) {
    ssize_t n = ::read(STDIN_FILENO, buf.get(), kChunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail(std::string("cannot read stdin: ") + std::strerror(errno));
    if (n == 0) break;
    std::string_view chunk(buf.get(), static_cast<size_t>(n));
    if (auto st = replay->Keep(chunk); !st) return Fail(st.error().message);
    if (end) {
      message->AddBody(chunk);
      continue;
    }
    header_buf.append(chunk);
    if (!crlf) {
      if (size_t nl = header_buf.find('\n'); nl != std::string::npos)
        crlf = nl > 0 && header_buf[nl - 1] == '\r';
    }
    end = signer::FindEndOfHeaders(header_buf, &scan, /*at_eof=*/false);
    if (!end) {
      if (header_buf.size() > kMaxHeaderBytes)
        return Fail("the header block is larger than 64 MiB: not a message this tool signs");
      continue;
    }
    if (auto st = start_body(std::string_view(header_buf).substr(0, end->header_bytes)); !st)
      return Fail(st.error().message);
    message->AddBody(std::string_view(header_buf).substr(end->body_start));
    std::string().swap(header_buf);
  }
  if (!end) {
    end = signer::FindEndOfHeaders(header_buf, &scan, /*at_eof=*/true);
    const size_t header_bytes = end ? end->header_bytes : header_buf.size();
    if (auto st = start_body(std::string_view(header_buf).substr(0, header_bytes)); !st)
      return Fail(st.error().message);
    if (end) message->AddBody(std::string_view(header_buf).substr(end->body_start));
  }

  auto signatures = message->Finish();
  if (!signatures) return Fail(signatures.error().message);

  // Written in the message's own line ends, so a file with bare LF stays consistent.
  const std::string_view eol = crlf.value_or(true) ? "\r\n" : "\n";
  std::string out;
  for (const auto& sig : *signatures) {
    std::string_view rest = sig;
    for (size_t pos; (pos = rest.find("\r\n")) != std::string_view::npos; rest.remove_prefix(pos + 2)) {
      out.append(rest.substr(0, pos));
      out.append(eol);
    }
    out.append(rest);
    out.append(eol);
  }
  if (auto st = Replay::WriteAll(STDOUT_FILENO, out, "stdout"); !st) return Fail(st.error().message);
  // A header that ended at a line that is no field gets the empty line an MTA would insert, so
  // verifiers see the header that was signed.
  const uint64_t separator = end && end->separator_missing ? end->header_bytes : Replay::kNoInsert;
  if (auto st = replay->CopyTo(STDOUT_FILENO, separator, eol); !st) return Fail(st.error().message);
  return kExitOk;
}

}  // namespace dkimrotor::cli
