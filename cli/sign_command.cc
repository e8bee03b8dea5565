// `dkimrotor sign`: signs one message from stdin, or with --output-dir a batch of files (one
// start-up, keystore load and key check for all of them: a fuzzer or a re-signing job pays it
// once). The body is streamed through the signer; to write the signature in front of the
// message without holding it in memory, the input is read again when it is a regular file, and
// otherwise spooled to an unlinked temporary file.
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <set>
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
    "       dkimrotor sign (-c FILE | --domain D --key ...) --output-dir DIR MESSAGE...\n"
    "\n"
    "Signs the message on stdin and writes it to stdout with one DKIM-Signature per key.\n"
    "With --output-dir, signs each MESSAGE file into DIR under its own base name (mode 0600)\n"
    "and prints one line per file: 'FILE<TAB>signed' or 'FILE<TAB>not signed<TAB>REASON';\n"
    "an unsigned message leaves no file in DIR. Exit 1 if any was not signed.\n"
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
  std::optional<std::string> output_dir;
  std::vector<std::string> files;  // with --output-dir
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
    if (!arg.starts_with("-")) {
      out->files.emplace_back(arg);
      continue;
    }
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
    } else if (arg == "--output-dir") {
      if (value.empty()) return "--output-dir needs a directory";
      out->output_dir = std::string(value);
    } else {
      return "unknown option " + std::string(arg);
    }
  }
  if (out->output_dir && out->files.empty()) return "--output-dir needs at least one MESSAGE file";
  if (!out->output_dir && !out->files.empty())
    return "message files are signed with --output-dir DIR; without it, the message comes on stdin";
  std::set<std::string> names;
  for (const auto& f : out->files) {
    std::string copy = f;
    if (!names.insert(::basename(copy.data())).second)
      return "two message files named " + std::string(::basename(copy.data())) +
             ": they would be written to the same file in --output-dir";
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
  static util::Result<Replay> Open(int in) {
    struct stat st {};
    if (::fstat(in, &st) == 0 && S_ISREG(st.st_mode)) {
      off_t start = ::lseek(in, 0, SEEK_CUR);
      if (start >= 0) return Replay(in, start, false);
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
      RETURN_IF_ERROR(WriteAll(out, std::string_view(buf.get(), static_cast<size_t>(n)), "the output"));
      copied += static_cast<uint64_t>(n);
      if (copied == insert_at) RETURN_IF_ERROR(WriteAll(out, insert, "the output"));
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

// One message through a session of the milter's SigningService (below).
class SessionSigning final : public Signing {
 public:
  explicit SessionSigning(std::unique_ptr<session::Session> session) : session_(std::move(session)) {}
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

  static util::Error Refusal(const session::Verdict& v) {
    return util::Error{v.refusal == session::Refusal::kError ? util::ErrorCode::kNotFound
                                                              : util::ErrorCode::kInvalidArgument,
                       v.reason + (v.refusal == session::Refusal::kError ? " (see dkimrotor keys)" : "")};
  }

 private:
  std::unique_ptr<session::Session> session_;
};

// The milter's own path: the keystore's loader (the rotation engine's start-up, which checks
// each key file against the public key the state records) fills a snapshot once, and each
// message is one session of a SigningService, as it would be for a message from an internal
// host. Owns the snapshot and the service, which outlive every session Begin() returns.
class SessionSource {
 public:
  static util::Result<std::unique_ptr<SessionSource>> Create(const conf::Config& config, const SignArgs& args) {
    std::unique_ptr<SessionSource> s(new SessionSource);
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
    if (!args.domain.empty()) s->overrides_.domain = args.domain;
    s->overrides_.timestamp = args.timestamp;
    s->overrides_.lifetime = args.expire;
    return s;
  }

  util::Result<std::unique_ptr<Signing>> Begin() {
    auto start = service_->Begin(session::Client{}, overrides_);
    if (!start.session) return util::Err(util::ErrorCode::kInvalidArgument, start.verdict.reason);
    return std::unique_ptr<Signing>(new SessionSigning(std::move(start.session)));
  }

 private:
  SessionSource() = default;

  keystore::SnapshotHolder snapshots_;
  std::unique_ptr<session::SigningService> service_;  // after snapshots_
  session::MessageOverrides overrides_;
};

// Reads one message from `in`, writes it signed to `out`. Nothing is written to `out` unless
// the message is signed.
util::Status SignStream(Signing* message, int in, int out) {
  ASSIGN_OR_RETURN(Replay replay, Replay::Open(in));

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
    ssize_t n = ::read(in, buf.get(), kChunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return util::Err(util::ErrorCode::kIo, std::string("cannot read the message: ") + std::strerror(errno));
    if (n == 0) break;
    std::string_view chunk(buf.get(), static_cast<size_t>(n));
    RETURN_IF_ERROR(replay.Keep(chunk));
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
        return util::Err(util::ErrorCode::kInvalidArgument,
                         "the header block is larger than 64 MiB: not a message this tool signs");
      continue;
    }
    RETURN_IF_ERROR(start_body(std::string_view(header_buf).substr(0, end->header_bytes)));
    message->AddBody(std::string_view(header_buf).substr(end->body_start));
    std::string().swap(header_buf);
  }
  if (!end) {
    end = signer::FindEndOfHeaders(header_buf, &scan, /*at_eof=*/true);
    const size_t header_bytes = end ? end->header_bytes : header_buf.size();
    RETURN_IF_ERROR(start_body(std::string_view(header_buf).substr(0, header_bytes)));
    if (end) message->AddBody(std::string_view(header_buf).substr(end->body_start));
  }

  ASSIGN_OR_RETURN(auto signatures, message->Finish());

  // Written in the message's own line ends, so a file with bare LF stays consistent.
  const std::string_view eol = crlf.value_or(true) ? "\r\n" : "\n";
  std::string text;
  for (const auto& sig : signatures) {
    std::string_view rest = sig;
    for (size_t pos; (pos = rest.find("\r\n")) != std::string_view::npos; rest.remove_prefix(pos + 2)) {
      text.append(rest.substr(0, pos));
      text.append(eol);
    }
    text.append(rest);
    text.append(eol);
  }
  RETURN_IF_ERROR(Replay::WriteAll(out, text, "the output"));
  // A header that ended at a line that is no field gets the empty line an MTA would insert, so
  // verifiers see the header that was signed.
  const uint64_t separator = end && end->separator_missing ? end->header_bytes : Replay::kNoInsert;
  return replay.CopyTo(out, separator, eol);
}

// A reason on one status line: control bytes (a From domain may carry them) become '?'.
std::string OneLine(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

// --output-dir: each file signed into `dir`; a status line per file on stdout.
int SignFiles(const SignArgs& args, const std::function<util::Result<std::unique_ptr<Signing>>()>& next) {
  struct stat st {};
  if (::stat(args.output_dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Fail("--output-dir " + *args.output_dir + " is not a directory: create it first");
  int unsigned_count = 0;
  for (const auto& file : args.files) {
    std::string copy = file;
    const std::string target = *args.output_dir + "/" + ::basename(copy.data());
    util::Status done = [&]() -> util::Status {
      ASSIGN_OR_RETURN(auto message, next());
      int in = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (in < 0) return util::Err(util::ErrorCode::kIo, "cannot open " + file + ": " + std::strerror(errno));
      struct stat in_st {}, out_st {};
      if (::fstat(in, &in_st) == 0 && ::stat(target.c_str(), &out_st) == 0 && in_st.st_dev == out_st.st_dev &&
          in_st.st_ino == out_st.st_ino) {
        ::close(in);
        return util::Err(util::ErrorCode::kInvalidArgument,
                         file + " is in --output-dir: signing would overwrite it; give another directory");
      }
      int out = ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (out < 0) {
        ::close(in);
        return util::Err(util::ErrorCode::kIo, "cannot create " + target + ": " + std::strerror(errno));
      }
      util::Status st = SignStream(message.get(), in, out);
      ::close(in);
      if (::close(out) != 0 && st)
        st = util::Err(util::ErrorCode::kIo, "cannot write " + target + ": " + std::strerror(errno));
      if (!st) ::unlink(target.c_str());
      return st;
    }();
    std::string line = file + (done ? "\tsigned\n" : "\tnot signed\t" + OneLine(done.error().message) + "\n");
    if (!done) ++unsigned_count;
    if (auto w = Replay::WriteAll(STDOUT_FILENO, line, "stdout"); !w) return Fail(w.error().message);
  }
  return unsigned_count == 0 ? kExitOk : kExitFailure;
}

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
  std::function<util::Result<std::unique_ptr<Signing>>()> next;
  std::unique_ptr<SessionSource> sessions;
  if (args.config) {
    auto config = conf::LoadConfig(*args.config);
    if (!config) return Fail(config.error().message);
    auto source = SessionSource::Create(*config, args);
    if (!source) return Fail(source.error().message);
    sessions = std::move(*source);
    next = [&] { return sessions->Begin(); };
  } else {
    auto keys = LoadKeys(args);
    if (!keys) return Fail(keys.error().message);
    signer::HeaderPolicy policy = signer::HeaderPolicy::Default();
    if (args.headers) policy.sign = *args.headers;
    if (args.oversign) policy.oversign = *args.oversign;
    next = [&args, keys = std::move(*keys), policy = std::move(policy)]() -> util::Result<std::unique_ptr<Signing>> {
      signer::MessageOptions options;
      options.timestamp = args.timestamp ? *args.timestamp : static_cast<int64_t>(std::time(nullptr));
      options.lifetime = args.expire;
      return std::unique_ptr<Signing>(new KeySigning(keys, policy, options));
    };
  }
  if (args.output_dir) return SignFiles(args, next);

  auto message = next();
  if (!message) return Fail(message.error().message);
  if (auto st = SignStream(message->get(), STDIN_FILENO, STDOUT_FILENO); !st) return Fail(st.error().message);
  return kExitOk;
}

}  // namespace dkimrotor::cli
