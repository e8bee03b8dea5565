#include "tests/milter/milter_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <thread>

namespace dkimrotor::milter::testing {
namespace {

using Clock = std::chrono::steady_clock;
using util::ErrorCode;

// Postfix refuses larger packets too (milter8.c XXX_MAX_DATA is smaller still).
constexpr size_t kMaxPacket = 64 << 20;
constexpr size_t kFlushAt = 64 << 10;

// std::strerror may share a buffer between threads; this does not.
std::string Errno(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

std::string CommandName(char command) {
  switch (command) {
    case SMFIC_ABORT: return "SMFIC_ABORT";
    case SMFIC_BODY: return "SMFIC_BODY";
    case SMFIC_CONNECT: return "SMFIC_CONNECT";
    case SMFIC_MACRO: return "SMFIC_MACRO";
    case SMFIC_BODYEOB: return "SMFIC_BODYEOB";
    case SMFIC_HELO: return "SMFIC_HELO";
    case SMFIC_QUIT_NC: return "SMFIC_QUIT_NC";
    case SMFIC_HEADER: return "SMFIC_HEADER";
    case SMFIC_MAIL: return "SMFIC_MAIL";
    case SMFIC_EOH: return "SMFIC_EOH";
    case SMFIC_OPTNEG: return "SMFIC_OPTNEG";
    case SMFIC_QUIT: return "SMFIC_QUIT";
    case SMFIC_RCPT: return "SMFIC_RCPT";
    case SMFIC_DATA: return "SMFIC_DATA";
    case SMFIC_UNKNOWN: return "SMFIC_UNKNOWN";
  }
  return std::string("command '") + command + "'";
}

void PutU32(std::string& out, uint32_t v) {
  uint32_t n = htonl(v);
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
}

void PutString(std::string& out, std::string_view s) {
  out.append(s);
  out.push_back('\0');
}

// Reads the fields of one packet's data.
class FieldReader {
 public:
  explicit FieldReader(std::string_view data) : data_(data) {}
  bool U32(uint32_t& v) {
    if (data_.size() < 4) return false;
    uint32_t n;
    std::memcpy(&n, data_.data(), 4);
    v = ntohl(n);
    data_.remove_prefix(4);
    return true;
  }
  bool String(std::string& s) {
    size_t nul = data_.find('\0');
    if (nul == std::string_view::npos) return false;
    s.assign(data_.substr(0, nul));
    data_.remove_prefix(nul + 1);
    return true;
  }
  bool empty() const { return data_.empty(); }

 private:
  std::string_view data_;
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Lone LF (and CRLF) to CRLF.
std::string ToCrlf(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 32);
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) out.push_back('\r');
    out.push_back(s[i]);
  }
  return out;
}

std::string StripAngles(std::string_view address) {
  if (address.size() >= 2 && address.front() == '<' && address.back() == '>')
    address = address.substr(1, address.size() - 2);
  return std::string(address);
}

int PollMillis(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Waits for `events` on `fd` until the deadline: 1 ready, 0 timed out, -1 error (errno set).
int WaitFd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, PollMillis(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n;
    return 1;
  }
}

util::Status ConnectFd(int fd, const sockaddr* addr, socklen_t len, Clock::time_point deadline,
                       const std::string& what) {
  for (;;) {
    if (::connect(fd, addr, len) == 0) return util::Ok();
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) {  // a unix socket's backlog is full: try again
      if (Clock::now() >= deadline)
        return util::Err(ErrorCode::kIo, "connect to milter " + what +
                                             ": its listen queue stayed full (is it accepting?)");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    if (err != EINPROGRESS)
      return util::Err(ErrorCode::kIo, "connect to milter " + what + ": " + Errno(err) +
                                           " (is the milter running and listening there?)");
    int ready = WaitFd(fd, POLLOUT, deadline);
    if (ready == 0)
      return util::Err(ErrorCode::kIo, "connect to milter " + what + ": timed out");
    if (ready < 0)
      return util::Err(ErrorCode::kIo, "connect to milter " + what + ": " + Errno(errno));
    int so_error = 0;
    socklen_t so_len = sizeof so_error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &so_len) != 0) so_error = errno;
    if (so_error != 0)
      return util::Err(ErrorCode::kIo, "connect to milter " + what + ": " + Errno(so_error) +
                                           " (is the milter running and listening there?)");
    return util::Ok();
  }
}

bool ValidReplyCode(std::string_view text) {
  // What Postfix accepts: "4xy 4.a.b ..." or "5xy 5.a.b ...", possibly multi-line ('-').
  auto digit = [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; };
  return text.size() >= 5 && (text[0] == '4' || text[0] == '5') && digit(text[1]) &&
         digit(text[2]) && (text[3] == ' ' || text[3] == '-') && text[4] == text[0];
}

}  // namespace

// --- SocketAddress -------------------------------------------------------------------------

std::string SocketAddress::ToString() const {
  switch (kind) {
    case Kind::kInet: return "inet:" + std::to_string(port) + "@" + host;
    case Kind::kInet6: return "inet6:" + std::to_string(port) + "@" + host;
    case Kind::kUnix: return "unix:" + path;
  }
  return {};
}

util::Result<SocketAddress> ParseSocketAddress(std::string_view spec) {
  auto bad = [&](std::string why) {
    return util::Err(ErrorCode::kInvalidArgument,
                     "milter socket \"" + std::string(spec) + "\": " + why +
                         "; write inet:PORT@HOST, inet6:PORT@HOST or unix:/path");
  };
  SocketAddress out;
  if (!spec.empty() && spec.front() == '/') {
    out.kind = SocketAddress::Kind::kUnix;
    out.path = std::string(spec);
  } else {
    size_t colon = spec.find(':');
    if (colon == std::string_view::npos) return bad("no transport");
    std::string_view proto = spec.substr(0, colon);
    std::string_view rest = spec.substr(colon + 1);
    if (proto == "unix" || proto == "local") {
      out.kind = SocketAddress::Kind::kUnix;
      out.path = std::string(rest);
    } else if (proto == "inet" || proto == "inet6") {
      std::string_view port_text;
      std::string_view host;
      if (size_t at = rest.find('@'); at != std::string_view::npos) {  // libmilter
        port_text = rest.substr(0, at);
        host = rest.substr(at + 1);
      } else if (size_t last = rest.rfind(':'); last != std::string_view::npos) {  // Postfix
        host = rest.substr(0, last);
        port_text = rest.substr(last + 1);
      } else {
        port_text = rest;
      }
      if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      bool v6 = proto == "inet6" || host.find(':') != std::string_view::npos;
      out.kind = v6 ? SocketAddress::Kind::kInet6 : SocketAddress::Kind::kInet;
      out.host = host.empty() ? (v6 ? "::1" : "127.0.0.1") : std::string(host);
      if (port_text.empty() || port_text.size() > 5 ||
          !std::all_of(port_text.begin(), port_text.end(),
                       [](char c) { return c >= '0' && c <= '9'; }))
        return bad("no port number");
      unsigned long port = std::stoul(std::string(port_text));
      if (port == 0 || port > 65535) return bad("port out of range");
      out.port = static_cast<uint16_t>(port);
    } else {
      return bad("unknown transport \"" + std::string(proto) + "\"");
    }
  }
  if (out.kind == SocketAddress::Kind::kUnix) {
    if (out.path.empty()) return bad("no path");
    if (out.path.size() >= sizeof(sockaddr_un{}.sun_path)) return bad("path too long for a socket");
  }
  return out;
}

// --- Reply, results, messages --------------------------------------------------------------

std::string_view ReplyKindName(Reply::Kind kind) {
  switch (kind) {
    case Reply::Kind::kContinue: return "continue";
    case Reply::Kind::kAccept: return "accept";
    case Reply::Kind::kReject: return "reject";
    case Reply::Kind::kTempfail: return "tempfail";
    case Reply::Kind::kDiscard: return "discard";
    case Reply::Kind::kReplyCode: return "replycode";
    case Reply::Kind::kSkip: return "skip";
    case Reply::Kind::kShutdown: return "shutdown";
    case Reply::Kind::kConnFail: return "connfail";
    case Reply::Kind::kNoReply: return "noreply";
    case Reply::Kind::kNotSent: return "notsent";
  }
  return "?";
}

std::string Reply::ToString() const {
  std::string out(ReplyKindName(kind));
  if (!text.empty()) out += " " + text;
  return out;
}

std::vector<Modification> EndOfMessageResult::Find(Modification::Kind kind) const {
  std::vector<Modification> out;
  for (const auto& m : modifications)
    if (m.kind == kind) out.push_back(m);
  return out;
}

util::Result<ParsedMessage> ParseMessage(std::string_view message) {
  ParsedMessage out;
  size_t pos = 0;
  bool in_body = false;
  while (pos < message.size()) {
    size_t nl = message.find('\n', pos);
    size_t end = nl == std::string_view::npos ? message.size() : nl;
    std::string_view line = message.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = nl == std::string_view::npos ? message.size() : nl + 1;
    if (line.empty()) {
      in_body = true;
      break;
    }
    if (line.front() == ' ' || line.front() == '\t') {
      if (out.headers.empty())
        return util::Err(ErrorCode::kInvalidArgument,
                         "message starts with a continuation line: \"" + std::string(line) + "\"");
      out.headers.back().value += "\n";
      out.headers.back().value += line;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return util::Err(ErrorCode::kInvalidArgument,
                       "header line without a field name and colon: \"" + std::string(line) +
                           "\" (separate the body with an empty line)");
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    out.headers.push_back({std::string(name), std::string(line.substr(colon + 1))});
  }
  if (in_body) out.body = ToCrlf(message.substr(pos));
  return out;
}

std::string BuildMessage(const std::vector<Header>& headers, std::string_view body,
                         const EndOfMessageResult& result, bool header_leading_space) {
  std::vector<Header> fields = headers;
  const std::string space = header_leading_space ? "" : " ";
  std::string new_body;
  bool body_replaced = false;
  for (const auto& m : result.modifications) {
    switch (m.kind) {
      case Modification::Kind::kAddHeader:
        fields.push_back({m.name, space + m.value});
        break;
      case Modification::Kind::kInsertHeader: {
        size_t at = std::min<size_t>(m.index, fields.size());
        fields.insert(fields.begin() + static_cast<std::ptrdiff_t>(at), {m.name, space + m.value});
        break;
      }
      case Modification::Kind::kChangeHeader: {
        uint32_t wanted = m.index == 0 ? 1 : m.index;  // Sendmail compatibility, as Postfix
        uint32_t seen = 0;
        auto it = std::find_if(fields.begin(), fields.end(), [&](const Header& h) {
          return EqualsIgnoreCase(h.name, m.name) && ++seen == wanted;
        });
        if (it == fields.end()) {
          if (!m.value.empty()) fields.push_back({m.name, space + m.value});
        } else if (m.value.empty()) {
          fields.erase(it);
        } else {
          it->value = space + m.value;
        }
        break;
      }
      case Modification::Kind::kReplaceBody:
        new_body += m.value;
        body_replaced = true;
        break;
      default:
        break;  // envelope and quarantine: not part of the message bytes
    }
  }
  std::string out;
  for (const auto& h : fields) {
    out += h.name;
    out += ':';
    out += ToCrlf(h.value);
    out += "\r\n";
  }
  out += "\r\n";
  out += body_replaced ? std::string_view(new_body) : body;
  return out;
}

// --- MilterClient: connection --------------------------------------------------------------

util::Result<MilterClient> MilterClient::Connect(Options options) {
  ASSIGN_OR_RETURN(SocketAddress address, ParseSocketAddress(options.socket));
  if (options.timeout < Duration::zero() || options.connect_timeout < Duration::zero())
    return util::Err(ErrorCode::kInvalidArgument, "milter client timeouts must not be negative");
  MilterClient client(std::move(options));
  client.address_ = std::move(address);
  RETURN_IF_ERROR(client.Open());
  if (client.options_.negotiate) RETURN_IF_ERROR(client.Negotiate());
  return client;
}

MilterClient::MilterClient(MilterClient&& other) noexcept { *this = std::move(other); }

MilterClient& MilterClient::operator=(MilterClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    options_ = std::move(other.options_);
    address_ = std::move(other.address_);
    fd_ = std::exchange(other.fd_, -1);
    broken_ = std::move(other.broken_);
    negotiation_ = std::move(other.negotiation_);
    stats_ = other.stats_;
    out_ = std::move(other.out_);
    in_ = std::move(other.in_);
    in_pos_ = other.in_pos_;
    sent_at_ = other.sent_at_;
    connect_sent_ = other.connect_sent_;
    body_skipped_ = other.body_skipped_;
    messages_ = other.messages_;
  }
  return *this;
}

MilterClient::~MilterClient() {
  if (fd_ >= 0) ::close(fd_);
}

util::Status MilterClient::Open() {
  const std::string what = address_.ToString();
  Clock::time_point deadline = Clock::now() + options_.connect_timeout;
  if (address_.kind == SocketAddress::Kind::kUnix) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return util::Err(ErrorCode::kIo, "socket(AF_UNIX): " + Errno(errno));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, address_.path.data(), address_.path.size());
    util::Status st =
        ConnectFd(fd, reinterpret_cast<const sockaddr*>(&sun), sizeof sun, deadline, what);
    if (!st) {
      ::close(fd);
      return st;
    }
    fd_ = fd;
    return util::Ok();
  }

  addrinfo hints{};
  hints.ai_family = address_.kind == SocketAddress::Kind::kInet6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  int gai = ::getaddrinfo(address_.host.c_str(), std::to_string(address_.port).c_str(), &hints,
                          &list);
  if (gai != 0)
    return util::Err(ErrorCode::kIo, "milter " + what + ": cannot resolve " + address_.host +
                                         ": " + ::gai_strerror(gai));
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(list, &::freeaddrinfo);
  util::Status last = util::Err(ErrorCode::kIo, "milter " + what + ": no address");
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
    if (fd < 0) {
      last = util::Err(ErrorCode::kIo, "socket: " + Errno(errno));
      continue;
    }
    last = ConnectFd(fd, ai->ai_addr, ai->ai_addrlen, deadline, what);
    if (!last) {
      ::close(fd);
      continue;
    }
    if (options_.tcp_nodelay) {
      int one = 1;
      if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
        int err = errno;
        ::close(fd);
        return util::Err(ErrorCode::kIo, "setsockopt(TCP_NODELAY): " + Errno(err));
      }
    }
    fd_ = fd;
    return QuickAck();
  }
  return last;
}

util::Status MilterClient::Negotiate() {
  std::string data;
  PutU32(data, options_.version);
  PutU32(data, options_.actions);
  PutU32(data, options_.protocol);
  RETURN_IF_ERROR(Queue(SMFIC_OPTNEG, data));
  Clock::time_point start = Clock::now();
  Clock::time_point deadline = DeadlineFor(kDefaultTimeout);
  RETURN_IF_ERROR(Flush(deadline));
  auto packet = ReadPacketUntil(deadline);
  if (!packet) return util::Err(packet.error().code, "negotiation: " + packet.error().message);
  auto& [command, reply] = *packet;
  if (command != SMFIC_OPTNEG)
    return Fail(ErrorCode::kIo, "negotiation: the milter at " + address_.ToString() +
                                    " answered SMFIC_OPTNEG with '" + std::string(1, command) +
                                    "' (is it a milter?)");
  FieldReader r(reply);
  Negotiation n;
  if (!r.U32(n.version) || !r.U32(n.actions) || !r.U32(n.protocol))
    return Fail(ErrorCode::kIo, "negotiation: SMFIC_OPTNEG reply of " +
                                    std::to_string(reply.size()) + " bytes, want at least 12");
  while (!r.empty()) {
    uint32_t stage;
    std::string names;
    if (!r.U32(stage) || !r.String(names))
      return Fail(ErrorCode::kIo, "negotiation: malformed macro list after the options");
    n.macro_lists[stage] = names;
  }
  if (n.version > options_.version || n.version < 2)
    return Fail(ErrorCode::kIo, "negotiation: the milter answered protocol version " +
                                    std::to_string(n.version) + " to our offer of " +
                                    std::to_string(options_.version));
  if ((n.actions & options_.actions) != n.actions)
    return Fail(ErrorCode::kIo, "negotiation: the milter asks for actions " + Hex(n.actions) +
                                    " beyond those offered, " + Hex(options_.actions));
  negotiation_ = std::move(n);
  stats_.replies++;
  auto took = Clock::now() - start;
  stats_.reply_wait += took;
  if (options_.on_reply) options_.on_reply(SMFIC_OPTNEG, took);
  return util::Ok();
}

// --- MilterClient: I/O ---------------------------------------------------------------------

util::Unexpected MilterClient::Fail(ErrorCode code, std::string message) {
  // After an I/O error, a timeout or a protocol error the stream is out of step: refuse to
  // go on rather than read one command's reply as the next's.
  if (code == ErrorCode::kIo && broken_.empty()) broken_ = message;
  return util::Err(code, std::move(message));
}

util::Status MilterClient::Usable() const {
  if (fd_ < 0) return util::Err(ErrorCode::kInvalidArgument, "the milter connection is closed");
  if (!broken_.empty())
    return util::Err(ErrorCode::kIo, "the milter connection is unusable after an earlier error: " +
                                         broken_);
  return util::Ok();
}

Clock::time_point MilterClient::DeadlineFor(Duration timeout) const {
  return Clock::now() + (timeout < Duration::zero() ? options_.timeout : timeout);
}

util::Status MilterClient::Queue(char command, std::string_view data) {
  RETURN_IF_ERROR(Usable());
  if (data.size() + 1 > kMaxPacket)
    return util::Err(ErrorCode::kInvalidArgument,
                     CommandName(command) + " of " + std::to_string(data.size()) +
                         " bytes is larger than a milter packet may be");
  PutU32(out_, static_cast<uint32_t>(data.size() + 1));
  out_.push_back(command);
  out_.append(data);
  stats_.packets_sent++;
  stats_.bytes_sent += data.size() + 5;
  if (!options_.coalesce_writes || out_.size() >= kFlushAt)
    return Flush(DeadlineFor(kDefaultTimeout));
  return util::Ok();
}

util::Status MilterClient::Flush(Clock::time_point deadline) {
  size_t done = 0;
  while (done < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + done, out_.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      stats_.writes++;
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = errno;
      out_.clear();
      return Fail(ErrorCode::kIo, "write to milter " + address_.ToString() + ": " + Errno(err));
    }
    int ready = WaitFd(fd_, POLLOUT, deadline);
    if (ready <= 0) {
      out_.clear();
      return Fail(ErrorCode::kIo, "write to milter " + address_.ToString() +
                                      (ready == 0 ? ": timed out (the milter does not read)"
                                                  : ": " + Errno(errno)));
    }
  }
  if (done > 0) sent_at_ = Clock::now();
  out_.clear();
  return util::Ok();
}

util::Status MilterClient::ReadExact(char* out, size_t n, Clock::time_point deadline) {
  while (in_.size() - in_pos_ < n) {
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    int ready = WaitFd(fd_, POLLIN, deadline);
    if (ready == 0)
      return Fail(ErrorCode::kIo,
                  "timed out: the milter at " + address_.ToString() + " did not answer in time");
    if (ready < 0) return Fail(ErrorCode::kIo, "poll: " + Errno(errno));
    char buf[64 << 10];
    ssize_t got = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return Fail(ErrorCode::kIo, "read from milter " + address_.ToString() + ": " + Errno(errno));
    }
    if (got == 0)
      return Fail(ErrorCode::kIo,
                  "the milter at " + address_.ToString() + " closed the connection");
    stats_.bytes_received += static_cast<uint64_t>(got);
    in_.append(buf, static_cast<size_t>(got));
    RETURN_IF_ERROR(QuickAck());
  }
  std::memcpy(out, in_.data() + in_pos_, n);
  in_pos_ += n;
  return util::Ok();
}

util::Status MilterClient::QuickAck() {
  if (!options_.tcp_quickack || address_.kind == SocketAddress::Kind::kUnix) return util::Ok();
  // Also sends an ACK that is pending now; the kernel clears the flag again by itself.
  int one = 1;
  if (::setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one) != 0)
    return Fail(ErrorCode::kIo, "setsockopt(TCP_QUICKACK) on the connection to milter " +
                                    address_.ToString() + ": " + Errno(errno) +
                                    " (turn off tcp_quickack)");
  return util::Ok();
}

util::Status MilterClient::SendPacket(char command, std::string_view data, Duration timeout) {
  RETURN_IF_ERROR(Queue(command, data));
  return Flush(DeadlineFor(timeout));
}

util::Result<std::pair<char, std::string>> MilterClient::ReadPacket(Duration timeout) {
  return ReadPacketUntil(DeadlineFor(timeout));
}

util::Result<std::pair<char, std::string>> MilterClient::ReadPacketUntil(
    Clock::time_point deadline) {
  RETURN_IF_ERROR(Usable());
  RETURN_IF_ERROR(Flush(deadline));
  char head[5];
  RETURN_IF_ERROR(ReadExact(head, sizeof head, deadline));
  uint32_t len;
  std::memcpy(&len, head, 4);
  len = ntohl(len);
  if (len < 1 || len > kMaxPacket)
    return Fail(ErrorCode::kIo, "the milter sent a packet of length " + std::to_string(len));
  std::string data(len - 1, '\0');
  if (len > 1) RETURN_IF_ERROR(ReadExact(data.data(), data.size(), deadline));
  stats_.packets_received++;
  return std::pair<char, std::string>(head[4], std::move(data));
}

util::Result<Reply> MilterClient::AwaitReply(char command, Duration timeout,
                                             EndOfMessageResult* eom) {
  Clock::time_point deadline = DeadlineFor(timeout);
  RETURN_IF_ERROR(Flush(deadline));
  const Clock::time_point start = sent_at_;
  const std::string context = "reply to " + CommandName(command);
  auto violation = [&](std::string what) {
    return Fail(ErrorCode::kIo, context + ": " + what);
  };
  for (;;) {
    auto packet = ReadPacketUntil(deadline);
    if (!packet) return util::Err(packet.error().code, context + ": " + packet.error().message);
    auto& [code, data] = *packet;
    Reply reply;
    switch (code) {
      case SMFIR_PROGRESS:
        if (!data.empty()) return violation("SMFIR_PROGRESS with data");
        if (eom) eom->progress++;
        deadline = DeadlineFor(timeout);
        continue;
      case SMFIR_CONTINUE: reply.kind = Reply::Kind::kContinue; break;
      case SMFIR_ACCEPT: reply.kind = Reply::Kind::kAccept; break;
      case SMFIR_REJECT: reply.kind = Reply::Kind::kReject; break;
      case SMFIR_TEMPFAIL: reply.kind = Reply::Kind::kTempfail; break;
      case SMFIR_DISCARD: reply.kind = Reply::Kind::kDiscard; break;
      case SMFIR_SKIP: reply.kind = Reply::Kind::kSkip; break;
      case SMFIR_SHUTDOWN: reply.kind = Reply::Kind::kShutdown; break;
      case SMFIR_CONN_FAIL: reply.kind = Reply::Kind::kConnFail; break;
      case SMFIR_REPLYCODE:
        reply.kind = Reply::Kind::kReplyCode;
        reply.text = data;
        if (!reply.text.empty() && reply.text.back() == '\0') reply.text.pop_back();
        if (!ValidReplyCode(reply.text))
          return violation("malformed SMFIR_REPLYCODE \"" + reply.text +
                           "\" (Postfix wants \"4xy 4.a.b text\" or \"5xy 5.a.b text\")");
        break;
      default: {
        if (eom == nullptr)
          return violation("unexpected packet '" + std::string(1, code) +
                           "' (modifications come only at end of message)");
        Modification m;
        m.kind = static_cast<Modification::Kind>(code);
        uint32_t needs = 0;
        FieldReader r(data);
        bool ok = true;
        switch (code) {
          case SMFIR_ADDHEADER:
            needs = smfif::kAddHeaders;
            ok = r.String(m.name) && r.String(m.value) && r.empty();
            break;
          case SMFIR_INSHEADER:
            needs = smfif::kAddHeaders;
            ok = r.U32(m.index) && r.String(m.name) && r.String(m.value) && r.empty();
            break;
          case SMFIR_CHGHEADER:
            needs = smfif::kChangeHeaders;
            ok = r.U32(m.index) && r.String(m.name) && r.String(m.value) && r.empty();
            break;
          case SMFIR_ADDRCPT:
            needs = smfif::kAddRcpt;
            ok = r.String(m.name) && r.empty();
            break;
          case SMFIR_DELRCPT:
            needs = smfif::kDelRcpt;
            ok = r.String(m.name) && r.empty();
            break;
          case SMFIR_ADDRCPT_PAR:
            needs = smfif::kAddRcptPar;
            ok = r.String(m.name) && (r.empty() || (r.String(m.value) && r.empty()));
            break;
          case SMFIR_CHGFROM:
            needs = smfif::kChangeFrom;
            ok = r.String(m.name) && (r.empty() || (r.String(m.value) && r.empty()));
            break;
          case SMFIR_REPLBODY:
            needs = smfif::kChangeBody;
            m.value = data;
            break;
          case SMFIR_QUARANTINE:
            needs = smfif::kQuarantine;
            m.value = data;
            if (!m.value.empty() && m.value.back() == '\0') m.value.pop_back();
            break;
          default:
            return violation("unknown packet '" + std::string(1, code) + "'");
        }
        if (!ok) return violation("malformed '" + std::string(1, code) + "' packet");
        if (options_.negotiate && !negotiation_.Allows(needs))
          return violation("'" + std::string(1, code) + "' needs action " + Hex(needs) +
                           ", which the milter did not negotiate (it asked for " +
                           Hex(negotiation_.actions) + ")");
        eom->modifications.push_back(std::move(m));
        continue;
      }
    }
    if (reply.kind != Reply::Kind::kReplyCode && !data.empty())
      return violation("'" + std::string(1, code) + "' followed by " +
                       std::to_string(data.size()) + " data bytes");
    auto took = Clock::now() - start;
    stats_.replies++;
    stats_.reply_wait += took;
    if (eom) eom->elapsed = took;
    if (options_.on_reply) options_.on_reply(command, took);
    return reply;
  }
}

util::Status MilterClient::WaitForClose(Clock::time_point deadline) {
  for (;;) {
    if (in_pos_ < in_.size())
      return Fail(ErrorCode::kIo, "the milter sent " + std::to_string(in_.size() - in_pos_) +
                                      " bytes after QUIT");
    int ready = WaitFd(fd_, POLLIN, deadline);
    if (ready == 0)
      return Fail(ErrorCode::kIo, "the milter at " + address_.ToString() +
                                      " did not close the connection after QUIT");
    if (ready < 0) return Fail(ErrorCode::kIo, "poll: " + Errno(errno));
    char buf[4096];
    ssize_t got = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (got == 0) return util::Ok();
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) return util::Ok();
      return Fail(ErrorCode::kIo, "read after QUIT: " + Errno(errno));
    }
    in_.append(buf, static_cast<size_t>(got));
  }
}

// --- MilterClient: events ------------------------------------------------------------------

util::Result<Reply> MilterClient::Event(char command, uint32_t skip_flag, uint32_t no_reply_flag,
                                        std::string_view data, Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (skip_flag != 0 && negotiation_.Has(skip_flag)) return Reply{Reply::Kind::kNotSent, {}};
  RETURN_IF_ERROR(Queue(command, data));
  if (no_reply_flag != 0 && negotiation_.Has(no_reply_flag))
    return Reply{Reply::Kind::kNoReply, {}};
  return AwaitReply(command, timeout, nullptr);
}

util::Status MilterClient::Macros(char command, const MacroList& macros) {
  std::string data(1, command);
  for (const auto& [name, value] : macros) {
    PutString(data, name);
    PutString(data, value);
  }
  return Queue(SMFIC_MACRO, data);
}

util::Result<Reply> MilterClient::Connect(std::string_view hostname, Family family, uint16_t port,
                                          std::string_view address, const MacroList& macros,
                                          Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_CONNECT, macros));
  std::string data;
  PutString(data, hostname);
  data.push_back(static_cast<char>(family));
  if (family != Family::kUnknown) {
    uint16_t n = htons(port);
    data.append(reinterpret_cast<const char*>(&n), sizeof n);
    PutString(data, address);
  }
  connect_sent_ = true;
  ResetMessage();
  return Event(SMFIC_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN, data, timeout);
}

util::Result<Reply> MilterClient::Helo(std::string_view name, const MacroList& macros,
                                       Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_HELO, macros));
  std::string data;
  PutString(data, name);
  return Event(SMFIC_HELO, SMFIP_NOHELO, SMFIP_NR_HELO, data, timeout);
}

util::Result<Reply> MilterClient::MailFrom(const std::vector<std::string>& args,
                                           const MacroList& macros, Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (args.empty())
    return util::Err(ErrorCode::kInvalidArgument, "MailFrom needs the sender: {\"<a@b>\"}");
  ResetMessage();
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_MAIL, macros));
  std::string data;
  for (const auto& a : args) PutString(data, a);
  return Event(SMFIC_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL, data, timeout);
}

util::Result<Reply> MilterClient::RcptTo(const std::vector<std::string>& args,
                                         const MacroList& macros, Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (args.empty())
    return util::Err(ErrorCode::kInvalidArgument, "RcptTo needs the recipient: {\"<a@b>\"}");
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_RCPT, macros));
  std::string data;
  for (const auto& a : args) PutString(data, a);
  return Event(SMFIC_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT, data, timeout);
}

util::Result<Reply> MilterClient::Data(const MacroList& macros, Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_DATA, macros));
  return Event(SMFIC_DATA, SMFIP_NODATA, SMFIP_NR_DATA, {}, timeout);
}

util::Result<Reply> MilterClient::Unknown(std::string_view command, Duration timeout) {
  std::string data;
  PutString(data, command);
  return Event(SMFIC_UNKNOWN, SMFIP_NOUNKNOWN, SMFIP_NR_UNKN, data, timeout);
}

util::Result<Reply> MilterClient::Header(std::string_view name, std::string_view value,
                                         Duration timeout) {
  // Sendmail, and Postfix after it, eat one space (not a tab) after the colon unless the
  // milter asked for the value as it is, and separate folded lines with LF.
  if (!negotiation_.Has(SMFIP_HDR_LEADSPC) && !value.empty() && value.front() == ' ')
    value.remove_prefix(1);
  std::string data;
  PutString(data, name);
  for (size_t i = 0; i < value.size(); ++i)
    if (!(value[i] == '\r' && i + 1 < value.size() && value[i + 1] == '\n')) data += value[i];
  data.push_back('\0');
  return Event(SMFIC_HEADER, SMFIP_NOHDRS, SMFIP_NR_HDR, data, timeout);
}

util::Result<Reply> MilterClient::EndOfHeaders(const MacroList& macros, Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_EOH, macros));
  return Event(SMFIC_EOH, SMFIP_NOEOH, SMFIP_NR_EOH, {}, timeout);
}

util::Result<Reply> MilterClient::Body(std::string_view data, size_t chunk_size,
                                       Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (chunk_size == 0 || chunk_size > MILTER_CHUNK_SIZE)
    return util::Err(ErrorCode::kInvalidArgument,
                     "body chunk size " + std::to_string(chunk_size) + " is not in 1..65535");
  Reply last{Reply::Kind::kNotSent, {}};
  while (!data.empty()) {
    if (body_skipped_) return Reply{Reply::Kind::kNotSent, {}};
    std::string_view chunk = data.substr(0, chunk_size);
    data.remove_prefix(chunk.size());
    ASSIGN_OR_RETURN(last, Event(SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY, chunk, timeout));
    if (last.kind == Reply::Kind::kNotSent) return last;
    if (last.kind == Reply::Kind::kSkip) {
      body_skipped_ = true;
      return last;
    }
    if (!last.GoesOn()) return last;
  }
  return last;
}

util::Result<EndOfMessageResult> MilterClient::EndOfMessage(const MacroList& macros,
                                                            Duration timeout) {
  RETURN_IF_ERROR(Usable());
  if (!macros.empty()) RETURN_IF_ERROR(Macros(SMFIC_BODYEOB, macros));
  RETURN_IF_ERROR(Queue(SMFIC_BODYEOB, {}));
  EndOfMessageResult result;
  ASSIGN_OR_RETURN(result.reply, AwaitReply(SMFIC_BODYEOB, timeout, &result));
  ResetMessage();
  return result;
}

util::Status MilterClient::Abort(Duration timeout) {
  RETURN_IF_ERROR(Queue(SMFIC_ABORT, {}));
  ResetMessage();
  return Flush(DeadlineFor(timeout));
}

util::Status MilterClient::Quit(Duration timeout) {
  Clock::time_point deadline = DeadlineFor(timeout);
  util::Status st = Queue(SMFIC_QUIT, {});
  if (st) st = Flush(deadline);
  if (st) st = WaitForClose(deadline);
  ::close(fd_);
  fd_ = -1;
  return st;
}

util::Status MilterClient::QuitNewConnection(Duration timeout) {
  RETURN_IF_ERROR(Queue(SMFIC_QUIT_NC, {}));
  connect_sent_ = false;
  ResetMessage();
  return Flush(DeadlineFor(timeout));
}

void MilterClient::Close() {
  if (fd_ < 0) return;
  if (broken_.empty() && !out_.empty())
    (void)Flush(Clock::now() + std::min(options_.timeout, Duration{1000}));
  ::close(fd_);
  fd_ = -1;
  out_.clear();
  in_.clear();
  in_pos_ = 0;
}

util::Result<EndOfMessageResult> MilterClient::SendMessage(const MessageSpec& spec) {
  if (spec.rcpt_to.empty())
    return util::Err(ErrorCode::kInvalidArgument, "SendMessage: the message needs a recipient");
  const Clock::time_point start = Clock::now();
  const Duration timeout = spec.timeout;
  auto ended = [&](char command, Reply reply, bool abort) -> util::Result<EndOfMessageResult> {
    // An MTA tells the milter the transaction is over (Postfix's milter8_abort).
    if (abort) RETURN_IF_ERROR(Abort(timeout));
    EndOfMessageResult result;
    result.reply = std::move(reply);
    result.command = command;
    result.elapsed = Clock::now() - start;
    return result;
  };
  char qid[32];
  if (spec.queue_id.empty())
    std::snprintf(qid, sizeof qid, "4T%06lXQ%X", static_cast<unsigned long>(++messages_),
                  static_cast<unsigned>(::getpid()) & 0xFFFFu);
  else
    std::snprintf(qid, sizeof qid, "%s", spec.queue_id.c_str());
  const std::string queue_id = qid;

  if (!connect_sent_) {
    Family family = spec.client_ip.empty()                              ? Family::kUnknown
                    : spec.client_ip.find(':') != std::string::npos ? Family::kInet6
                                                                        : Family::kInet;
    std::string hostname =
        !spec.client_name.empty() ? spec.client_name : "[" + spec.client_ip + "]";
    // Postfix's default milter_connect_macros: j {daemon_name} {daemon_addr} v _
    MacroList macros = {{"j", "mx.example"},
                        {"{daemon_name}", "dkimrotor-test"},
                        {"{daemon_addr}", "127.0.0.1"},
                        {"v", "Postfix 3.7"},
                        {"_", hostname + " [" + spec.client_ip + "]"}};
    ASSIGN_OR_RETURN(Reply r, Connect(hostname, family, spec.client_port, spec.client_ip,
                                      macros, timeout));
    if (!r.GoesOn()) return ended(SMFIC_CONNECT, std::move(r), false);
    ASSIGN_OR_RETURN(r, Helo(spec.helo, {}, timeout));
    if (!r.GoesOn()) return ended(SMFIC_HELO, std::move(r), false);
  }

  // Postfix's default milter_mail_macros: i {auth_type} {auth_authen} {auth_author}
  // {mail_addr} {mail_host} {mail_mailer}; only those it has values for are sent.
  MacroList mail_macros = {{"i", queue_id}, {"{mail_addr}", StripAngles(spec.mail_from)}};
  if (!spec.auth.empty()) {
    mail_macros.emplace_back("{auth_type}", "PLAIN");
    mail_macros.emplace_back("{auth_authen}", spec.auth);
  }
  ASSIGN_OR_RETURN(Reply r, MailFrom({spec.mail_from}, mail_macros, timeout));
  if (!r.GoesOn()) return ended(SMFIC_MAIL, std::move(r), true);

  size_t accepted = 0;
  for (const auto& rcpt : spec.rcpt_to) {
    ASSIGN_OR_RETURN(r, RcptTo({rcpt}, {{"i", queue_id}, {"{rcpt_addr}", StripAngles(rcpt)}},
                               timeout));
    if (r.GoesOn()) {
      ++accepted;
    } else if (r.kind != Reply::Kind::kReject && r.kind != Reply::Kind::kTempfail &&
               r.kind != Reply::Kind::kReplyCode) {
      return ended(SMFIC_RCPT, std::move(r), true);  // accept, discard: done with the message
    }
  }
  if (accepted == 0) return ended(SMFIC_RCPT, std::move(r), true);

  ASSIGN_OR_RETURN(r, Data({{"i", queue_id}}, timeout));
  if (!r.GoesOn()) return ended(SMFIC_DATA, std::move(r), true);
  for (const auto& h : spec.headers) {
    ASSIGN_OR_RETURN(r, Header(h.name, h.value, timeout));
    if (!r.GoesOn()) return ended(SMFIC_HEADER, std::move(r), true);
  }
  ASSIGN_OR_RETURN(r, EndOfHeaders({{"i", queue_id}}, timeout));
  if (!r.GoesOn()) return ended(SMFIC_EOH, std::move(r), true);
  if (!spec.body.empty()) {
    ASSIGN_OR_RETURN(r, Body(spec.body, spec.chunk_size, timeout));
    if (!r.GoesOn()) return ended(SMFIC_BODY, std::move(r), true);
  }
  ASSIGN_OR_RETURN(EndOfMessageResult result, EndOfMessage({{"i", queue_id}}, timeout));
  result.elapsed = Clock::now() - start;
  return result;
}

util::Result<EndOfMessageResult> MilterClient::SendMessage(
    std::string_view client_ip, std::string_view auth, const std::vector<testing::Header>& headers,
    std::string_view body, size_t chunk_size) {
  MessageSpec spec;
  spec.client_ip = std::string(client_ip);
  spec.auth = std::string(auth);
  spec.headers = headers;
  spec.body = std::string(body);
  spec.chunk_size = chunk_size;
  return SendMessage(spec);
}

std::string MilterClient::ApplyModifications(const std::vector<testing::Header>& headers,
                                             std::string_view body,
                                             const EndOfMessageResult& result) const {
  return BuildMessage(headers, body, result, negotiation_.Has(SMFIP_HDR_LEADSPC));
}

// --- MilterProcess -------------------------------------------------------------------------

util::Result<std::unique_ptr<MilterProcess>> MilterProcess::Start(std::vector<std::string> argv,
                                                                  std::string socket,
                                                                  Duration ready_timeout) {
  if (argv.empty())
    return util::Err(ErrorCode::kInvalidArgument, "MilterProcess::Start: no program");
  if (::access(argv[0].c_str(), X_OK) != 0)
    return util::Err(ErrorCode::kNotFound, "milter program " + argv[0] + " is not executable: " +
                                               Errno(errno) + " (is it built?)");
  std::unique_ptr<MilterProcess> p(new MilterProcess);
  p->argv_ = std::move(argv);
  p->socket_ = std::move(socket);

  char log_template[] = "/tmp/dkimrotor-milter-XXXXXX.log";
  int log_fd = ::mkstemps(log_template, 4);
  if (log_fd < 0) return util::Err(ErrorCode::kIo, "mkstemps in /tmp: " + Errno(errno));
  p->log_path_ = log_template;

  // Everything the child needs is made before fork: only async-signal-safe calls after it.
  std::vector<char*> args;
  for (auto& a : p->argv_) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(log_fd);
    return util::Err(ErrorCode::kIo, "fork: " + Errno(err));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(126);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    static const char kMsg[] = "exec failed\n";
    (void)!::write(2, kMsg, sizeof kMsg - 1);
    ::_exit(127);
  }
  ::close(log_fd);
  p->pid_ = pid;

  // Ready once a whole negotiation succeeds: then libmilter is accepting and serving.
  const Clock::time_point deadline = Clock::now() + ready_timeout;
  std::string last_error = "no attempt";
  while (Clock::now() < deadline) {
    if (p->Reap(WNOHANG))
      return util::Err(ErrorCode::kIo, "milter " + p->argv_[0] + " ended (" + p->status_ +
                                           ") before serving " + p->socket_ + "; its output:\n" +
                                           p->Log());
    MilterClient::Options probe;
    probe.socket = p->socket_;
    probe.connect_timeout = Duration{250};
    probe.timeout = Duration{2000};
    auto client = MilterClient::Connect(probe);
    if (client) {
      if (auto st = client->Quit(); !st) last_error = st.error().message;
      else return p;
    } else {
      last_error = client.error().message;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string status = p->Stop();
  return util::Err(ErrorCode::kIo, "milter " + p->argv_[0] + " did not serve " + p->socket_ +
                                       " within " + std::to_string(ready_timeout.count()) +
                                       " ms (" + last_error + "; stopped: " + status +
                                       "); its output:\n" + p->Log());
}

MilterProcess::~MilterProcess() {
  Stop();
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

bool MilterProcess::Reap(int options) {
  if (!status_.empty()) return true;
  if (pid_ <= 0) return true;
  int st = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &st, options);
  } while (r < 0 && errno == EINTR);
  if (r != pid_) return false;
  if (WIFEXITED(st)) status_ = "exit " + std::to_string(WEXITSTATUS(st));
  else if (WIFSIGNALED(st)) status_ = "signal " + std::to_string(WTERMSIG(st));
  else status_ = "status " + std::to_string(st);
  return true;
}

bool MilterProcess::Running() { return !Reap(WNOHANG); }

bool MilterProcess::Pause() {
  if (Reap(WNOHANG) || ::kill(pid_, SIGSTOP) != 0) return false;
  // kill() returns before the signal takes effect; the parent can wait for the stop.
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WUNTRACED);
    if (r < 0 && errno == EINTR) continue;
    if (r != pid_) return false;
    if (WIFSTOPPED(st)) {
      paused_ = true;
      return true;
    }
    if (WIFEXITED(st)) status_ = "exit " + std::to_string(WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) status_ = "signal " + std::to_string(WTERMSIG(st));
    if (!status_.empty()) return false;
  }
}

void MilterProcess::Resume() {
  if (paused_ && status_.empty()) ::kill(pid_, SIGCONT);
  paused_ = false;
}

std::string MilterProcess::Stop(Duration grace) {
  if (Reap(WNOHANG)) return status_;
  ::kill(pid_, SIGTERM);
  Resume();
  const Clock::time_point deadline = Clock::now() + grace;
  Clock::time_point next_poke = Clock::now() + std::chrono::milliseconds(20);
  while (Clock::now() < deadline) {
    if (Reap(WNOHANG)) return status_;
    if (Clock::now() >= next_poke) {
      // libmilter's listener looks at its stop flag only every 5 s (MI_CHK_TIME) or when a
      // connection arrives: bring one.
      MilterClient::Options poke;
      poke.socket = socket_;
      poke.connect_timeout = Duration{100};
      poke.negotiate = false;
      if (auto client = MilterClient::Connect(poke)) client->Close();
      next_poke = Clock::now() + std::chrono::milliseconds(100);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid_, SIGKILL);
  Reap(0);
  return status_ + " (after SIGKILL: it ignored SIGTERM for " + std::to_string(grace.count()) +
         " ms)";
}

std::string MilterProcess::Log() const {
  std::ifstream in(log_path_, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

util::Result<uint16_t> FreeTcpPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return util::Err(ErrorCode::kIo, "socket: " + Errno(errno));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sin;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) {
    int err = errno;
    ::close(fd);
    return util::Err(ErrorCode::kIo, "finding a free port on 127.0.0.1: " + Errno(err));
  }
  ::close(fd);
  return static_cast<uint16_t>(ntohs(sin.sin_port));
}

}  // namespace dkimrotor::milter::testing
