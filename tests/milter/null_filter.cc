// dkimrotor_null_filter: a libmilter filter that does nothing but what every signer must: it
// negotiates like a minimal signer, takes the message, and at end of message inserts one fixed
// header field ("X-Null-Filter: yes") as the first field and accepts. It is the peer of
// MilterClient's tests and the do-nothing ceiling of the milter benchmarks.
// Owns nothing beyond libmilter's process-global state; a ConnectionState per SMTP connection
// (libmilter's private pointer, freed in close). Callbacks run on libmilter's threads, one
// connection per thread; the options are read-only once smfi_main starts, the negotiated
// flags are kept under a mutex.
//
//   dkimrotor_null_filter --socket inet:PORT@127.0.0.1 [--protocol HEX] [--progress]
//       [--skip-body] [--mail-reply KIND] [--eom-reply KIND] [--no-nodelay] [--backlog N]
//       [--debug LEVEL]
//   KIND: continue accept reject tempfail discard replycode
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace {

// What a minimal signer asks for: header values as they are (SMFIP_HDR_LEADSPC), no reply to
// each header field and body chunk, no events it has no use for. The real milter also keeps
// CONNECT (for its client-address policy); --protocol can ask for exactly what it asks for.
// DATA is kept, as the real milter keeps it: left unanswered, Postfix's DATA macros and the
// first header meet Nagle and a delayed ACK, 40 ms per message (milter/milter.cc).
constexpr unsigned long kDefaultProtocol = SMFIP_HDR_LEADSPC | SMFIP_NOCONNECT | SMFIP_NOHELO |
                                           SMFIP_NORCPT | SMFIP_NOUNKNOWN | SMFIP_NR_HDR |
                                           SMFIP_NR_BODY | SMFIP_SKIP;

struct Options {
  std::string socket;
  unsigned long protocol = kDefaultProtocol;
  bool progress = false;   // send SMFIR_PROGRESS before the end-of-message reply
  bool skip_body = false;  // answer the first body chunk with SMFIR_SKIP
  sfsistat mail_reply = SMFIS_CONTINUE;
  sfsistat eom_reply = SMFIS_ACCEPT;
  bool mail_replycode = false;
  bool eom_replycode = false;
  bool nodelay = true;
  int backlog = 128;
  int debug = 0;  // libmilter's debug level (smfi_setdbg), printed on stdout
};

Options g_options;  // set before smfi_main, read-only after

struct ConnectionState {
  unsigned long protocol = 0;  // as negotiated
};

// The negotiated flags by libmilter context, one per socket. SMFIC_QUIT_NC makes libmilter call
// close (which frees the private data) and go on with the next SMTP connection on the same
// socket without negotiating again; the state is rebuilt from here then. A context address
// that libmilter reuses for a new socket is negotiated, and so overwritten, first.
std::mutex g_negotiated_mu;
std::unordered_map<SMFICTX*, unsigned long> g_negotiated;  // guarded by g_negotiated_mu

ConnectionState* State(SMFICTX* ctx) {
  if (auto* s = static_cast<ConnectionState*>(smfi_getpriv(ctx))) return s;
  auto state = std::make_unique<ConnectionState>();
  {
    std::lock_guard<std::mutex> lock(g_negotiated_mu);
    auto it = g_negotiated.find(ctx);
    if (it == g_negotiated.end()) return nullptr;
    state->protocol = it->second;
  }
  if (smfi_setpriv(ctx, state.get()) != MI_SUCCESS) return nullptr;
  return state.release();  // OnClose takes it back
}

// What to return for an event the filter has no use for: nothing at all when it negotiated no
// reply for it (libmilter would otherwise log that the filter "lied").
sfsistat Quiet(SMFICTX* ctx, unsigned long no_reply_flag) {
  ConnectionState* s = State(ctx);
  return s && (s->protocol & no_reply_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

sfsistat OnNegotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long,
                     unsigned long, unsigned long* pf0, unsigned long* pf1, unsigned long* pf2,
                     unsigned long* pf3) noexcept {
  *pf0 = SMFIF_ADDHDRS & f0;
  unsigned long want = g_options.protocol;
  if (g_options.skip_body) want &= ~static_cast<unsigned long>(SMFIP_NR_BODY);  // SKIP is a reply
  if (g_options.mail_reply != SMFIS_CONTINUE || g_options.mail_replycode)
    want &= ~static_cast<unsigned long>(SMFIP_NOMAIL | SMFIP_NR_MAIL);
  *pf1 = want & f1;
  *pf2 = *pf3 = 0;
  {
    std::lock_guard<std::mutex> lock(g_negotiated_mu);
    g_negotiated[ctx] = *pf1;
  }
  std::unique_ptr<ConnectionState> old(static_cast<ConnectionState*>(smfi_getpriv(ctx)));
  auto state = std::make_unique<ConnectionState>();
  state->protocol = *pf1;
  if (smfi_setpriv(ctx, state.get()) != MI_SUCCESS) return SMFIS_REJECT;
  state.release();  // OnClose takes it back
  return SMFIS_CONTINUE;
}

sfsistat OnConnect(SMFICTX* ctx, char*, _SOCK_ADDR*) noexcept { return Quiet(ctx, SMFIP_NR_CONN); }
sfsistat OnHelo(SMFICTX* ctx, char*) noexcept { return Quiet(ctx, SMFIP_NR_HELO); }
sfsistat OnRcpt(SMFICTX* ctx, char**) noexcept { return Quiet(ctx, SMFIP_NR_RCPT); }
sfsistat OnData(SMFICTX* ctx) noexcept { return Quiet(ctx, SMFIP_NR_DATA); }
sfsistat OnUnknown(SMFICTX* ctx, const char*) noexcept { return Quiet(ctx, SMFIP_NR_UNKN); }
sfsistat OnHeader(SMFICTX* ctx, char*, char*) noexcept { return Quiet(ctx, SMFIP_NR_HDR); }
sfsistat OnEoh(SMFICTX* ctx) noexcept { return Quiet(ctx, SMFIP_NR_EOH); }

sfsistat Decide(SMFICTX* ctx, sfsistat reply, bool replycode) {
  if (replycode) {
    smfi_setreply(ctx, const_cast<char*>("550"), const_cast<char*>("5.7.1"),
                  const_cast<char*>("null filter says no"));
    return SMFIS_REJECT;
  }
  return reply;
}

sfsistat OnMail(SMFICTX* ctx, char**) noexcept {
  if (g_options.mail_reply != SMFIS_CONTINUE || g_options.mail_replycode)
    return Decide(ctx, g_options.mail_reply, g_options.mail_replycode);
  return Quiet(ctx, SMFIP_NR_MAIL);
}

sfsistat OnBody(SMFICTX* ctx, unsigned char*, size_t) noexcept {
  ConnectionState* s = State(ctx);
  if (g_options.skip_body && s && (s->protocol & SMFIP_SKIP)) return SMFIS_SKIP;
  return Quiet(ctx, SMFIP_NR_BODY);
}

sfsistat OnEom(SMFICTX* ctx) noexcept {
  if (g_options.progress) smfi_progress(ctx);
  ConnectionState* s = State(ctx);
  // With SMFIP_HDR_LEADSPC the MTA writes "Name:" and the value as given; without it, "Name: ".
  bool leading_space = s && (s->protocol & SMFIP_HDR_LEADSPC);
  smfi_insheader(ctx, 0, const_cast<char*>("X-Null-Filter"),
                 const_cast<char*>(leading_space ? " yes" : "yes"));
  return Decide(ctx, g_options.eom_reply, g_options.eom_replycode);
}

sfsistat OnAbort(SMFICTX*) noexcept { return SMFIS_CONTINUE; }

sfsistat OnClose(SMFICTX* ctx) noexcept {
  // May be none: libmilter calls close without negotiate when the MTA went away early.
  std::unique_ptr<ConnectionState> state(static_cast<ConnectionState*>(smfi_getpriv(ctx)));
  smfi_setpriv(ctx, nullptr);
  return SMFIS_CONTINUE;
}

// libmilter accepts connections itself and offers no hook to set TCP_NODELAY on them, but
// Linux copies TCP_NODELAY from a listening socket to the sockets it accepts: set it on the
// listener (libmilter's only listening socket) so that the insert-header packet and the final
// reply do not wait for the MTA's delayed ACK. The real milter does the same.
void SetNoDelayOnListener() {
  for (int fd = 3; fd < 1024; ++fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) continue;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

bool ParseReply(std::string_view s, sfsistat& reply, bool& replycode) {
  replycode = false;
  if (s == "continue") reply = SMFIS_CONTINUE;
  else if (s == "accept") reply = SMFIS_ACCEPT;
  else if (s == "reject") reply = SMFIS_REJECT;
  else if (s == "tempfail") reply = SMFIS_TEMPFAIL;
  else if (s == "discard") reply = SMFIS_DISCARD;
  else if (s == "replycode") replycode = true;
  else return false;
  return true;
}

int Usage(const char* why) {
  std::fprintf(stderr,
               "dkimrotor_null_filter: %s\n"
               "usage: dkimrotor_null_filter --socket inet:PORT@HOST|unix:/path [--protocol HEX]\n"
               "       [--progress] [--skip-body] [--mail-reply KIND] [--eom-reply KIND]\n"
               "       [--no-nodelay] [--backlog N] [--debug LEVEL]\n"
               "KIND: continue accept reject tempfail discard replycode\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (arg == "--socket") {
      const char* v = value();
      if (!v) return Usage("--socket needs a value");
      g_options.socket = v;
    } else if (arg == "--protocol") {
      const char* v = value();
      char* end = nullptr;
      if (!v || (g_options.protocol = std::strtoul(v, &end, 16), *end != '\0'))
        return Usage("--protocol needs a hexadecimal SMFIP_* mask");
    } else if (arg == "--progress") {
      g_options.progress = true;
    } else if (arg == "--skip-body") {
      g_options.skip_body = true;
    } else if (arg == "--mail-reply") {
      const char* v = value();
      if (!v || !ParseReply(v, g_options.mail_reply, g_options.mail_replycode))
        return Usage("--mail-reply needs a KIND");
    } else if (arg == "--eom-reply") {
      const char* v = value();
      if (!v || !ParseReply(v, g_options.eom_reply, g_options.eom_replycode))
        return Usage("--eom-reply needs a KIND");
    } else if (arg == "--no-nodelay") {
      g_options.nodelay = false;
    } else if (arg == "--debug") {
      const char* v = value();
      if (!v || (g_options.debug = std::atoi(v)) <= 0) return Usage("--debug needs a level");
    } else if (arg == "--backlog") {
      const char* v = value();
      if (!v || (g_options.backlog = std::atoi(v)) <= 0) return Usage("--backlog needs a number");
    } else {
      return Usage(("unknown argument " + std::string(arg)).c_str());
    }
  }
  if (g_options.socket.empty()) return Usage("--socket is required");

  smfiDesc desc{};
  desc.xxfi_name = const_cast<char*>("dkimrotor_null_filter");
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS;
  desc.xxfi_connect = OnConnect;
  desc.xxfi_helo = OnHelo;
  desc.xxfi_envfrom = OnMail;
  desc.xxfi_envrcpt = OnRcpt;
  desc.xxfi_header = OnHeader;
  desc.xxfi_eoh = OnEoh;
  desc.xxfi_body = OnBody;
  desc.xxfi_eom = OnEom;
  desc.xxfi_abort = OnAbort;
  desc.xxfi_close = OnClose;
  desc.xxfi_unknown = OnUnknown;
  desc.xxfi_data = OnData;
  desc.xxfi_negotiate = OnNegotiate;

  if (smfi_setconn(g_options.socket.data()) != MI_SUCCESS)
    return Usage(("bad --socket " + g_options.socket).c_str());
  if (smfi_register(desc) != MI_SUCCESS) {
    std::fprintf(stderr, "dkimrotor_null_filter: smfi_register failed\n");
    return 1;
  }
  smfi_setbacklog(g_options.backlog);
  if (g_options.debug > 0) smfi_setdbg(g_options.debug);
  if (smfi_opensocket(true) != MI_SUCCESS) {
    std::fprintf(stderr, "dkimrotor_null_filter: cannot listen on %s (in use?)\n",
                 g_options.socket.c_str());
    return 1;
  }
  if (g_options.nodelay) SetNoDelayOnListener();
  // libmilter handles SIGTERM, SIGINT and SIGHUP itself: smfi_main returns after them.
  int rc = smfi_main();
  return rc == MI_SUCCESS ? 0 : 1;
}
