#include "milter/milter.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include <cstring>
#include <ctime>

#include <libmilter/mfapi.h>

#include "milter/internal/message_context.h"
#include "util/file.h"

namespace dkimrotor::milter {
namespace {

Milter* g_milter = nullptr;  // libmilter's callbacks are plain C functions with no user pointer

constexpr char kFilterName[] = "dkimrotor";

internal::ConnectionContext* Connection(SMFICTX* ctx) {
  return static_cast<internal::ConnectionContext*>(smfi_getpriv(ctx));
}

// libmilter calls close but does not negotiate again after SMFIC_QUIT_NC (Postfix never sends
// it): such a connection gets a fresh context with the flags we asked for.
internal::ConnectionContext* ConnectionOrNew(SMFICTX* ctx) {
  if (auto* conn = Connection(ctx)) return conn;
  auto conn = std::make_unique<internal::ConnectionContext>();
  conn->leading_space = conn->noreply_header = conn->noreply_body = conn->can_skip = true;
  if (smfi_setpriv(ctx, conn.get()) != MI_SUCCESS) return nullptr;
  return conn.release();
}

std::string Symbol(SMFICTX* ctx, const char* name) {
  const char* v = smfi_getsymval(ctx, const_cast<char*>(name));
  return v ? v : "";
}

// Replies for a verdict: the session decided what happens; this only speaks libmilter.
sfsistat Reply(SMFICTX* ctx, const session::Verdict& v) {
  using session::Outcome;
  using session::Refusal;
  switch (v.outcome) {
    case Outcome::kSigned:
    case Outcome::kUnsigned:
      return SMFIS_ACCEPT;
    case Outcome::kReject:
      smfi_setreply(ctx, const_cast<char*>("550"), const_cast<char*>("5.7.1"),
                    const_cast<char*>("message cannot be DKIM-signed"));
      return SMFIS_REJECT;
    case Outcome::kTempfail:
      if (v.refusal == Refusal::kStopping)
        smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.3.2"),
                      const_cast<char*>("DKIM signer restarting, try again"));
      else if (v.refusal == Refusal::kBadMessage)
        smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.7.1"),
                      const_cast<char*>("message cannot be DKIM-signed"));
      else
        smfi_setreply(ctx, const_cast<char*>("451"), const_cast<char*>("4.3.0"),
                      const_cast<char*>("DKIM signing temporarily unavailable, try again later"));
      return SMFIS_TEMPFAIL;
  }
  return SMFIS_ACCEPT;
}

// Runs a callback body; nothing may escape into libmilter. An unexpected failure ends the
// message with the configured on_error answer.
template <class Fn>
sfsistat Guard(SMFICTX* ctx, const char* stage, Fn&& fn) noexcept {
  std::string why;
  try {
    return fn();
  } catch (const std::exception& e) {
    why = std::string(stage) + ": unexpected failure: " + e.what();
  } catch (...) {
    why = std::string(stage) + ": unexpected failure";
  }
  try {
    if (!g_milter) return SMFIS_TEMPFAIL;
    auto* conn = Connection(ctx);
    if (conn) conn->session.reset();
    return Reply(ctx, g_milter->service().Fail(Symbol(ctx, "i"), std::move(why)));
  } catch (...) {
    return SMFIS_TEMPFAIL;
  }
}

sfsistat OnNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                     unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
  return Guard(ctx, "negotiate", [&] {
    *pf0 = SMFIF_ADDHDRS & f0;  // we only ever insert header fields
    // Ask only for what signing needs: exact header bytes, and no reply to each header or
    // body chunk (one round trip fewer per field and per chunk). Skip what we never use.
    //
    // DATA is NOT skipped although we have nothing to say to it. Postfix sends its DATA
    // macros anyway and, without an answer, sends the first header right behind them. Its
    // milter socket uses Nagle, so that header waits for our kernel's delayed ACK (40 ms):
    // with SMFIP_NODATA a 1 KiB message took 48 ms behind Postfix, without it 4.5 ms
    // (smtp-source -s 1 -m 200 through Postfix 3.7 and a do-nothing filter; README,
    // "Performance"). libmilter answers "continue" itself when there is no xxfi_data.
    unsigned long want = SMFIP_HDR_LEADSPC | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_NOHELO |
                         SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_SKIP;
    *pf1 = want & f1;
    *pf2 = *pf3 = 0;
    auto conn = std::make_unique<internal::ConnectionContext>();
    conn->leading_space = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
    conn->noreply_header = (*pf1 & SMFIP_NR_HDR) != 0;
    conn->noreply_body = (*pf1 & SMFIP_NR_BODY) != 0;
    conn->can_skip = (*pf1 & SMFIP_SKIP) != 0;
    if (smfi_setpriv(ctx, conn.get()) != MI_SUCCESS) return SMFIS_TEMPFAIL;
    conn.release();  // xxfi_close takes it back
    return SMFIS_CONTINUE;
  });
}

sfsistat OnConnect(SMFICTX* ctx, char*, _SOCK_ADDR* addr) {
  return Guard(ctx, "connect", [&] {
    auto* conn = ConnectionOrNew(ctx);
    if (!conn) return SMFIS_TEMPFAIL;
    conn->has_address = addr != nullptr;
    if (addr) {
      socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
                      : addr->sa_family == AF_INET ? sizeof(sockaddr_in) : 0;
      std::memset(&conn->address, 0, sizeof conn->address);
      if (len) std::memcpy(&conn->address, addr, len);
      else conn->address.ss_family = addr->sa_family;
    }
    return SMFIS_CONTINUE;
  });
}

sfsistat OnEnvFrom(SMFICTX* ctx, char**) {
  return Guard(ctx, "envfrom", [&] {
    auto* conn = ConnectionOrNew(ctx);
    if (!conn) return SMFIS_TEMPFAIL;
    conn->session.reset();
    const std::string auth = Symbol(ctx, "{auth_authen}");
    session::Client client;
    client.address = conn->has_address ? reinterpret_cast<const sockaddr*>(&conn->address) : nullptr;
    client.auth_authen = auth;
    auto start = g_milter->service().Begin(client);
    if (!start.session) return Reply(ctx, start.verdict);
    conn->session = std::move(start.session);
    return SMFIS_CONTINUE;
  });
}

sfsistat OnHeader(SMFICTX* ctx, char* name, char* value) {
  return Guard(ctx, "header", [&] {
    auto* conn = Connection(ctx);
    if (conn && conn->session)
      conn->session->AddHeader(name, internal::SessionHeaderValue(value, conn->leading_space));
    return conn && conn->noreply_header ? SMFIS_NOREPLY : SMFIS_CONTINUE;
  });
}

sfsistat OnEndOfHeaders(SMFICTX* ctx) {
  return Guard(ctx, "eoh", [&] {
    auto* conn = Connection(ctx);
    if (!conn || !conn->session) return SMFIS_ACCEPT;
    conn->session->SetId(Symbol(ctx, "i"));
    if (auto refused = conn->session->EndOfHeaders()) {
      conn->session.reset();
      return Reply(ctx, *refused);
    }
    return SMFIS_CONTINUE;
  });
}

sfsistat OnBody(SMFICTX* ctx, unsigned char* data, size_t len) {
  return Guard(ctx, "body", [&] {
    auto* conn = Connection(ctx);
    if (!conn || !conn->session) {
      if (conn && conn->can_skip && !conn->noreply_body) return SMFIS_SKIP;
      return conn && conn->noreply_body ? SMFIS_NOREPLY : SMFIS_CONTINUE;
    }
    conn->session->AddBody(std::string_view(reinterpret_cast<const char*>(data), len));
    return conn->noreply_body ? SMFIS_NOREPLY : SMFIS_CONTINUE;
  });
}

sfsistat OnEndOfMessage(SMFICTX* ctx) {
  return Guard(ctx, "eom", [&] {
    auto* conn = Connection(ctx);
    if (!conn || !conn->session) return SMFIS_ACCEPT;
    std::unique_ptr<session::Session> s = std::move(conn->session);
    if (s->id().empty()) s->SetId(Symbol(ctx, "i"));
    const bool leading_space = conn->leading_space;
    session::Verdict v = s->Finish([&](const std::vector<std::string>& signatures) -> util::Status {
      // Inserted at index 0 in reverse, so they end up first and in key order.
      for (auto it = signatures.rbegin(); it != signatures.rend(); ++it) {
        std::string value = internal::MilterHeaderValue(*it, leading_space);
        if (smfi_insheader(ctx, 0, const_cast<char*>("DKIM-Signature"), value.data()) != MI_SUCCESS)
          return util::Err(util::ErrorCode::kIo, "the MTA refused the DKIM-Signature header");
      }
      return util::Ok();
    });
    return Reply(ctx, v);
  });
}

sfsistat OnAbort(SMFICTX* ctx) {
  return Guard(ctx, "abort", [&] {
    if (auto* conn = Connection(ctx)) conn->session.reset();
    return SMFIS_CONTINUE;
  });
}

sfsistat OnClose(SMFICTX* ctx) {
  return Guard(ctx, "close", [&] {
    // Takes the connection context back; libmilter may call close without negotiate.
    std::unique_ptr<internal::ConnectionContext> conn(Connection(ctx));
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
  });
}

// TCP_NODELAY on the inet listener: Linux copies it to every accepted socket. libmilter keeps
// the descriptor to itself and calls listen() only later, in smfi_main(), so the socket is
// found by type and bound port rather than by SO_ACCEPTCONN.
void SetNoDelayOnListener(uint16_t port) {
  for (int fd = 3; fd < 1024; ++fd) {
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    uint16_t bound = 0;
    if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    else if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    else continue;
    if (bound != port) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

// The port of an "inet:PORT@HOST" or "inet6:PORT@HOST" socket; 0 for unix sockets.
uint16_t InetPort(const std::string& socket) {
  for (const char* prefix : {"inet:", "inet6:"}) {
    if (socket.rfind(prefix, 0) != 0) continue;
    std::string rest = socket.substr(std::strlen(prefix));
    try {
      return static_cast<uint16_t>(std::stoi(rest.substr(0, rest.find('@'))));
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

}  // namespace

std::string UnixSocketPath(const std::string& socket) {
  for (const char* prefix : {"unix:", "local:"})
    if (socket.rfind(prefix, 0) == 0) return socket.substr(std::strlen(prefix));
  return "";
}

util::Status CheckUnixSocketPath(const std::string& path) {
  // Whoever can write the folder can replace the socket with one of their own (and read the
  // mail the MTA sends) or with a link that our chmod and chown would follow. The sticky bit
  // keeps them from renaming or removing our entry, as in /tmp; a group-writable folder is
  // accepted, since sharing it with the MTA's group is the usual set-up.
  const std::string folder = util::FolderOf(path);
  struct stat st {};
  if (::stat(folder.c_str(), &st) != 0)
    return util::Err(util::ErrorCode::kIo, "cannot use milter socket " + path + ": folder " + folder + ": " +
                                               std::strerror(errno));
  if ((st.st_mode & S_IWOTH) != 0 && (st.st_mode & S_ISVTX) == 0)
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "the folder " + folder + " of milter socket " + path + " is writable by everyone (mode " +
                         util::ModeText(st.st_mode) + "): anyone could replace the socket; chmod o-w " + folder +
                         " (or +t), or put the socket in a folder of its own");
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return util::Ok();
    return util::Err(util::ErrorCode::kIo, "cannot use milter socket " + path + ": " + std::strerror(errno));
  }
  if (S_ISLNK(st.st_mode))
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "milter socket " + path + " is a symbolic link: remove it; dkimrotor creates the socket itself");
  if (!S_ISSOCK(st.st_mode))
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "milter socket " + path + " exists and is not a socket: remove it or choose another milter.socket");
  // libmilter removes whatever socket is there before it binds: only a stale one may go.
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path)
    return util::Err(util::ErrorCode::kInvalidArgument, "milter socket path " + path + " is too long");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return util::Err(util::ErrorCode::kIo, std::string("socket: ") + std::strerror(errno));
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err == ECONNREFUSED) return util::Ok();  // nobody listens: stale
  if (rc == 0 || err == EAGAIN)                           // EAGAIN: listening, backlog full
    return util::Err(util::ErrorCode::kInvalidArgument,
                     "another process listens on milter socket " + path +
                         " (is dkimrotor already running?): stop it first, or give this one another "
                         "milter.socket; the socket was left alone");
  return util::Err(util::ErrorCode::kIo, "cannot tell whether a process listens on milter socket " + path + " (" +
                                             std::strerror(err) + "): the socket was left alone; remove it if it is stale");
}

Milter::Milter(MilterOptions options) : options_(std::move(options)) {}

Milter::~Milter() {
  if (g_milter == this) g_milter = nullptr;
}

util::Result<std::unique_ptr<Milter>> Milter::Create(MilterOptions options) {
  if (g_milter != nullptr)
    return util::Err(util::ErrorCode::kInternal, "only one milter can run in a process");
  if (!options.service)
    return util::Err(util::ErrorCode::kInvalidArgument, "the milter needs a signing service");
  std::unique_ptr<Milter> m(new Milter(std::move(options)));
  g_milter = m.get();
  return m;
}

util::Status Milter::Listen() {
  static smfiDesc desc{};
  desc.xxfi_name = const_cast<char*>(kFilterName);
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS;
  desc.xxfi_connect = OnConnect;
  desc.xxfi_envfrom = OnEnvFrom;
  desc.xxfi_header = OnHeader;
  desc.xxfi_eoh = OnEndOfHeaders;
  desc.xxfi_body = OnBody;
  desc.xxfi_eom = OnEndOfMessage;
  desc.xxfi_abort = OnAbort;
  desc.xxfi_close = OnClose;
  desc.xxfi_negotiate = OnNegotiate;
  if (smfi_setconn(const_cast<char*>(options_.socket.c_str())) != MI_SUCCESS)
    return util::Err(util::ErrorCode::kInvalidArgument, "milter socket '" + options_.socket + "' is not valid");
  if (smfi_setbacklog(options_.backlog) != MI_SUCCESS)
    return util::Err(util::ErrorCode::kInvalidArgument, "bad milter backlog");
  if (smfi_register(desc) != MI_SUCCESS)
    return util::Err(util::ErrorCode::kInternal, "libmilter refused to register the filter");
  const std::string path = UnixSocketPath(options_.socket);
  if (!path.empty()) RETURN_IF_ERROR(CheckUnixSocketPath(path));
  if (smfi_opensocket(true) != MI_SUCCESS)
    return util::Err(util::ErrorCode::kIo, "cannot listen on " + options_.socket +
                                               " (in use, or no permission to bind it)");
  if (uint16_t port = InetPort(options_.socket)) SetNoDelayOnListener(port);
  // libmilter creates the socket itself, so there is no descriptor to fchmod: AT_SYMLINK_NOFOLLOW
  // makes sure it is the socket that gets the mode, never what a link put in its place points to.
  if (!path.empty() && ::fchmodat(AT_FDCWD, path.c_str(), options_.socket_mode, AT_SYMLINK_NOFOLLOW) != 0)
    return util::Err(util::ErrorCode::kIo, "cannot chmod " + path + ": " + std::strerror(errno));
  return util::Ok();
}

util::Status Milter::Run() {
  if (smfi_main() != MI_SUCCESS) return util::Err(util::ErrorCode::kIo, "the milter stopped with an error");
  return util::Ok();
}

void Milter::Stop() {
  stop_requested_.store(true, std::memory_order_release);
  smfi_stop();
}

}  // namespace dkimrotor::milter
