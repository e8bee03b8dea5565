// A test-side MTA: speaks the Sendmail milter protocol (version 6, offering what Postfix offers)
// to a milter at "inet:PORT@HOST", "inet6:PORT@HOST" or "unix:/path", one event per call, with
// a timeout on every call so a stuck milter fails the test instead of hanging it.
// Owns its socket; MilterProcess owns the child process it starts.
// Not thread-safe: one client per thread. Instances share nothing, so a benchmark runs one per
// thread; stats() and Options::on_reply are the measurement hooks.
#pragma once

#include <libmilter/mfdef.h>  // protocol constants only (SMFIC_*, SMFIR_*, SMFIF_*, SMFIP_*)
#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace dkimrotor::milter::testing {

using Duration = std::chrono::milliseconds;

// As a per-call timeout: use Options::timeout.
inline constexpr Duration kDefaultTimeout{-1};

// The SMFIF_* action bits. mfapi.h keeps them with libmilter's filter API, which this side of
// the protocol has no use for.
namespace smfif {
inline constexpr uint32_t kAddHeaders = 0x001;     // SMFIF_ADDHDRS: add and insert fields
inline constexpr uint32_t kChangeBody = 0x002;     // SMFIF_CHGBODY
inline constexpr uint32_t kAddRcpt = 0x004;        // SMFIF_ADDRCPT
inline constexpr uint32_t kDelRcpt = 0x008;        // SMFIF_DELRCPT
inline constexpr uint32_t kChangeHeaders = 0x010;  // SMFIF_CHGHDRS
inline constexpr uint32_t kQuarantine = 0x020;     // SMFIF_QUARANTINE
inline constexpr uint32_t kChangeFrom = 0x040;     // SMFIF_CHGFROM
inline constexpr uint32_t kAddRcptPar = 0x080;     // SMFIF_ADDRCPT_PAR
inline constexpr uint32_t kSetSymList = 0x100;     // SMFIF_SETSYMLIST
}  // namespace smfif

// What Postfix 3.x offers a version-6 milter (milter8.c): every action, and every protocol
// bit: skip events (SMFIP_NO*), no replies (SMFIP_NR_*), SMFIR_SKIP, rejected recipients and
// the header value's leading space. No SMFIP_MDS_*: packets stay at most 64 KiB.
inline constexpr uint32_t kPostfixVersion = 6;
inline constexpr uint32_t kPostfixActions = SMFI_CURR_ACTS;
inline constexpr uint32_t kPostfixProtocol = SMFI_CURR_PROT;

// Where a milter listens, in libmilter's syntax: "inet:PORT@HOST", "inet6:PORT@HOST",
// "unix:/path", "local:/path" or a bare "/path". Postfix's "inet:HOST:PORT" is accepted too.
// A missing host means the loopback address.
struct SocketAddress {
  enum class Kind { kInet, kInet6, kUnix };
  Kind kind = Kind::kInet;
  std::string host;  // kInet, kInet6: a name or a literal address, without brackets
  uint16_t port = 0;
  std::string path;  // kUnix
  std::string ToString() const;  // back in libmilter's syntax
};

util::Result<SocketAddress> ParseSocketAddress(std::string_view spec);

// Address family of SMFIC_CONNECT.
enum class Family : char {
  kUnknown = SMFIA_UNKNOWN,
  kUnix = SMFIA_UNIX,
  kInet = SMFIA_INET,
  kInet6 = SMFIA_INET6,
};

// Macro name ("{auth_authen}", "i", "j") to value, in the order sent.
using MacroList = std::vector<std::pair<std::string, std::string>>;

// What the milter answered in SMFIC_OPTNEG.
struct Negotiation {
  uint32_t version = 0;
  uint32_t actions = 0;   // smfif::*: what it may do at end of message
  uint32_t protocol = 0;  // SMFIP_*: what not to send, what it will not answer
  // SMFIR_SETSYMLIST: stage (SMFIM_CONNECT = 0 ... SMFIM_EOH = 6) to "{a} b" macro names.
  std::map<uint32_t, std::string> macro_lists;

  bool Has(uint32_t smfip) const { return (protocol & smfip) == smfip; }
  bool Allows(uint32_t action) const { return (actions & action) == action; }
};

// The milter's answer to one command.
struct Reply {
  enum class Kind {
    kContinue,   // SMFIR_CONTINUE
    kAccept,     // SMFIR_ACCEPT
    kReject,     // SMFIR_REJECT
    kTempfail,   // SMFIR_TEMPFAIL
    kDiscard,    // SMFIR_DISCARD
    kReplyCode,  // SMFIR_REPLYCODE: `text` holds "550 5.7.1 why"
    kSkip,       // SMFIR_SKIP: send no more of this event (body chunks)
    kShutdown,   // SMFIR_SHUTDOWN
    kConnFail,   // SMFIR_CONN_FAIL
    kNoReply,    // sent; the milter negotiated SMFIP_NR_* for it and does not answer
    kNotSent,    // not sent: the milter negotiated SMFIP_NO* for it (or skipped the body)
  };
  Kind kind = Kind::kContinue;
  std::string text;

  // Continue, no reply, not sent, skip: the MTA goes on with this message.
  bool GoesOn() const {
    return kind == Kind::kContinue || kind == Kind::kNoReply || kind == Kind::kNotSent ||
           kind == Kind::kSkip;
  }
  std::string ToString() const;  // "accept", "replycode 550 5.7.1 why", for test messages
};

std::string_view ReplyKindName(Reply::Kind kind);

// A modification request received before the final reply to end of message.
struct Modification {
  enum class Kind : char {
    kAddHeader = SMFIR_ADDHEADER,     // name, value
    kInsertHeader = SMFIR_INSHEADER,  // index (0: first), name, value
    kChangeHeader = SMFIR_CHGHEADER,  // index (1: first of that name), name, value ("" deletes)
    kAddRcpt = SMFIR_ADDRCPT,         // name = recipient
    kAddRcptPar = SMFIR_ADDRCPT_PAR,  // name = recipient, value = ESMTP arguments
    kDelRcpt = SMFIR_DELRCPT,         // name = recipient
    kChangeFrom = SMFIR_CHGFROM,      // name = sender, value = ESMTP arguments
    kReplaceBody = SMFIR_REPLBODY,    // value = one chunk of the new body
    kQuarantine = SMFIR_QUARANTINE,   // value = reason
  };
  Kind kind = Kind::kAddHeader;
  uint32_t index = 0;
  std::string name;
  std::string value;  // exactly as the milter sent it
};

struct EndOfMessageResult {
  std::vector<Modification> modifications;
  Reply reply;
  // The command the reply answers: SMFIC_BODYEOB, or the earlier command whose reply ended
  // the transaction (SendMessage stops there, as an MTA does).
  char command = SMFIC_BODYEOB;
  int progress = 0;  // SMFIR_PROGRESS packets seen while waiting
  std::chrono::nanoseconds elapsed{0};  // for SendMessage: the whole transaction

  // The modifications of `kind`, in order.
  std::vector<Modification> Find(Modification::Kind kind) const;
};

// A header field as a message carries it: `value` is everything after the colon, leading
// space included; a folded field keeps its line breaks (LF, as Postfix and Sendmail send them,
// or CRLF).
struct Header {
  std::string name;
  std::string value;
};

struct ParsedMessage {
  std::vector<Header> headers;  // folds joined with "\n"
  std::string body;             // with CRLF line ends, as the MTA sends it
};

// Splits an RFC 5322 message (CRLF or LF line ends) at the first empty line.
util::Result<ParsedMessage> ParseMessage(std::string_view message);

// The message the MTA would deliver: the header and body modifications in `result` applied to
// the message it sent, as Postfix's cleanup does (insert at index 0 = before the first field;
// change/delete by the n-th field of that name; add at the end; replace the body), with CRLF
// line ends. Without SMFIP_HDR_LEADSPC (`header_leading_space` false) the MTA writes "Name: "
// before a value the milter sent; with it, "Name:" and the value's own leading space.
std::string BuildMessage(const std::vector<Header>& headers, std::string_view body,
                         const EndOfMessageResult& result, bool header_leading_space);

// Everything SendMessage does in one transaction. The defaults are a plausible submission.
struct MessageSpec {
  std::string client_ip = "192.0.2.10";  // IPv4, IPv6 (has ':'), or "" for SMFIA_UNKNOWN
  std::string client_name = "client.example";
  uint16_t client_port = 49152;
  std::string helo = "client.example";
  std::string auth;  // {auth_authen}; empty: not authenticated
  std::string mail_from = "<sender@example.com>";
  std::vector<std::string> rcpt_to = {"<rcpt@example.net>"};
  std::vector<Header> headers;
  std::string body;  // CRLF line ends
  size_t chunk_size = MILTER_CHUNK_SIZE;  // body chunk size, at most 65535
  std::string queue_id;                   // macro "i"; empty: a fresh one per message
  Duration timeout = kDefaultTimeout;     // per command
};

class MilterClient {
 public:
  struct Options {
    std::string socket;  // see ParseSocketAddress
    Duration connect_timeout{5000};
    Duration timeout{10000};  // default per-call timeout: how long to wait for one reply
    uint32_t version = kPostfixVersion;
    uint32_t actions = kPostfixActions;
    uint32_t protocol = kPostfixProtocol;
    bool tcp_nodelay = true;
    // Acknowledge the milter's packets at once: TCP_QUICKACK after connecting and after every
    // read (Linux, TCP only; ignored on unix sockets). Linux leaves quick-ACK mode by itself
    // as soon as the exchange looks interactive, hence after every read rather than once.
    // Postfix does not do this: its ACKs are delayed (up to 40 ms) in the hope of riding on
    // its next packet. A benchmark turns it on, with tcp_nodelay, to measure the milter
    // rather than the MTA's ACK timers.
    bool tcp_quickack = false;
    // Like Postfix, keep packets that need no reply (macros, headers and body chunks under
    // SMFIP_NR_*) in a buffer until the client next waits for a reply, the buffer holds
    // 64 KiB, or Abort/Quit/Close; false writes every packet at once.
    bool coalesce_writes = true;
    // false: Connect() only opens the socket; speak with SendPacket/ReadPacket.
    bool negotiate = true;
    // Called after each reply with the command and the time from writing it to its final
    // reply (progress packets included). Runs on the calling thread.
    std::function<void(char command, std::chrono::nanoseconds round_trip)> on_reply;
  };

  struct Stats {
    uint64_t packets_sent = 0;
    uint64_t packets_received = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    uint64_t replies = 0;                    // commands answered
    uint64_t writes = 0;                     // send() calls: shows the coalescing
    std::chrono::nanoseconds reply_wait{0};  // time spent waiting for replies
  };

  // Opens the socket and, unless told not to, negotiates. Fails if the milter answers with a
  // higher version or asks for actions not offered, as Postfix does.
  static util::Result<MilterClient> Connect(Options options);

  MilterClient(MilterClient&& other) noexcept;
  MilterClient& operator=(MilterClient&& other) noexcept;
  MilterClient(const MilterClient&) = delete;
  MilterClient& operator=(const MilterClient&) = delete;
  ~MilterClient();  // closes the socket without QUIT

  const Options& options() const { return options_; }
  const Negotiation& negotiation() const { return negotiation_; }
  const Stats& stats() const { return stats_; }
  void ResetStats() { stats_ = Stats{}; }
  bool is_open() const { return fd_ >= 0; }
  // The socket, for tests that inspect its options; -1 once closed.
  int FdForTesting() const { return fd_; }

  // SMFIC_MACRO for the command `command` (SMFIC_CONNECT, SMFIC_MAIL...). No reply: it goes
  // out with the next packet that waits for one.
  util::Status Macros(char command, const MacroList& macros);

  // Each event sends its macros first (even when the milter skips the event itself, as
  // Postfix does, so a milter that skips MAIL still sees {auth_authen}), then the command
  // unless negotiated away (Reply kNotSent), then waits for the reply unless the milter
  // negotiated not to answer (kNoReply).
  util::Result<Reply> Connect(std::string_view hostname, Family family, uint16_t port,
                              std::string_view address, const MacroList& macros = {},
                              Duration timeout = kDefaultTimeout);
  util::Result<Reply> Helo(std::string_view name, const MacroList& macros = {},
                           Duration timeout = kDefaultTimeout);
  // args: {"<sender@example.com>", "SIZE=1000", ...}
  util::Result<Reply> MailFrom(const std::vector<std::string>& args, const MacroList& macros = {},
                               Duration timeout = kDefaultTimeout);
  util::Result<Reply> RcptTo(const std::vector<std::string>& args, const MacroList& macros = {},
                             Duration timeout = kDefaultTimeout);
  util::Result<Reply> Data(const MacroList& macros = {}, Duration timeout = kDefaultTimeout);
  util::Result<Reply> Unknown(std::string_view command, Duration timeout = kDefaultTimeout);
  // `value` as in the message, after the colon. Sent as Sendmail and Postfix send it: folded
  // lines separated by LF (a CRLF becomes LF), and without SMFIP_HDR_LEADSPC one leading space
  // dropped. SendPacket sends anything else.
  util::Result<Reply> Header(std::string_view name, std::string_view value,
                             Duration timeout = kDefaultTimeout);
  util::Result<Reply> EndOfHeaders(const MacroList& macros = {},
                                   Duration timeout = kDefaultTimeout);
  // Sent in packets of at most `chunk_size` (<= 65535) bytes. Returns the first reply that
  // is not continue/no-reply, or the last one. After SMFIR_SKIP the rest of this message's
  // body is not sent (kNotSent), as in Postfix.
  util::Result<Reply> Body(std::string_view data, size_t chunk_size = MILTER_CHUNK_SIZE,
                           Duration timeout = kDefaultTimeout);
  // Collects the modification requests up to the final reply; SMFIR_PROGRESS restarts the
  // timeout.
  util::Result<EndOfMessageResult> EndOfMessage(const MacroList& macros = {},
                                                Duration timeout = kDefaultTimeout);
  // SMFIC_ABORT: forget the current message; the connection stays. No reply; the timeout
  // bounds the write.
  util::Status Abort(Duration timeout = kDefaultTimeout);
  // SMFIC_QUIT, then waits (up to `timeout`) for the milter to close its end, so that its
  // close callback has run when this returns; then closes the socket.
  util::Status Quit(Duration timeout = kDefaultTimeout);
  // SMFIC_QUIT_NC: the next SMTP connection follows on this socket (Connect event again).
  util::Status QuitNewConnection(Duration timeout = kDefaultTimeout);
  // Drops the socket without QUIT, as a crashed MTA would. Pending packets are written first
  // (best effort) so a test closes at the stage it means to.
  void Close();

  // The whole transaction: CONNECT and HELO (once per SMTP connection), MAIL, RCPT, DATA,
  // headers, EOH, body, end of message, with Postfix's default macros. Stops at a reply that
  // ends the transaction (accept, reject...) and sends SMFIC_ABORT then, as the MTA does.
  util::Result<EndOfMessageResult> SendMessage(const MessageSpec& spec);
  util::Result<EndOfMessageResult> SendMessage(std::string_view client_ip, std::string_view auth,
                                               const std::vector<testing::Header>& headers,
                                               std::string_view body,
                                               size_t chunk_size = MILTER_CHUNK_SIZE);

  // BuildMessage with this connection's SMFIP_HDR_LEADSPC.
  std::string ApplyModifications(const std::vector<testing::Header>& headers,
                                 std::string_view body, const EndOfMessageResult& result) const;

  // Raw protocol access for robustness tests: one packet out (written at once), one in.
  util::Status SendPacket(char command, std::string_view data,
                          Duration timeout = kDefaultTimeout);
  util::Result<std::pair<char, std::string>> ReadPacket(Duration timeout = kDefaultTimeout);

 private:
  explicit MilterClient(Options options) : options_(std::move(options)) {}

  util::Status Open();
  util::Status Negotiate();
  // Sends `data` as `command` unless `skip_flag` was negotiated; waits for a reply unless
  // `no_reply_flag` was.
  util::Result<Reply> Event(char command, uint32_t skip_flag, uint32_t no_reply_flag,
                            std::string_view data, Duration timeout);
  util::Status Queue(char command, std::string_view data);
  util::Status Flush(std::chrono::steady_clock::time_point deadline);
  util::Result<std::pair<char, std::string>> ReadPacketUntil(
      std::chrono::steady_clock::time_point deadline);
  util::Result<Reply> AwaitReply(char command, Duration timeout, EndOfMessageResult* eom);
  util::Status ReadExact(char* out, size_t n, std::chrono::steady_clock::time_point deadline);
  util::Status QuickAck();  // Options::tcp_quickack
  util::Status WaitForClose(std::chrono::steady_clock::time_point deadline);
  util::Unexpected Fail(util::ErrorCode code, std::string message);
  util::Status Usable() const;
  std::chrono::steady_clock::time_point DeadlineFor(Duration timeout) const;
  void ResetMessage() { body_skipped_ = false; }

  Options options_;
  SocketAddress address_;
  int fd_ = -1;
  std::string broken_;  // why the connection is out of sync; calls fail once set
  Negotiation negotiation_;
  Stats stats_;
  std::string out_;   // packets not yet written
  std::string in_;    // bytes read but not consumed
  size_t in_pos_ = 0;
  std::chrono::steady_clock::time_point sent_at_{};  // when the awaited command was flushed
  bool connect_sent_ = false;  // SMTP connection events (CONNECT, HELO) sent on this socket
  bool body_skipped_ = false;  // SMFIR_SKIP received for this message's body
  uint64_t messages_ = 0;      // for fresh queue ids
};

// A milter program run for a test or a benchmark: started, probed until it negotiates on
// `socket`, and stopped (SIGTERM, then SIGKILL) by Stop() or the destructor. The child gets
// PR_SET_PDEATHSIG, so it also dies with the test if the test crashes; its stdout and stderr
// go to a log file read by Log().
// Owns the process and the log file. Not thread-safe; start it from the thread that stops it
// (PR_SET_PDEATHSIG follows the starting thread).
class MilterProcess {
 public:
  // argv[0] is a path; `socket` is where it will listen (also given in argv as it expects).
  static util::Result<std::unique_ptr<MilterProcess>> Start(
      std::vector<std::string> argv, std::string socket, Duration ready_timeout = Duration{10000});
  ~MilterProcess();
  MilterProcess(const MilterProcess&) = delete;
  MilterProcess& operator=(const MilterProcess&) = delete;

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  bool Running();  // false once it has exited (reaps it)
  // SIGSTOP, returning once the process has stopped (so a test's next call meets a milter
  // that cannot answer); SIGCONT. Stop() resumes a paused process first.
  bool Pause();
  void Resume();
  // SIGTERM, wait up to `grace`, then SIGKILL. Meanwhile it connects to the socket now and
  // then: libmilter notices a stop request only when a connection arrives or every 5 s.
  // Returns the exit status as a string for test messages ("exit 0", "signal 9"); "exit 0"
  // is a clean stop.
  std::string Stop(Duration grace = Duration{5000});
  std::string Log() const;

 private:
  MilterProcess() = default;
  // Reaps the child if it has exited; returns true then.
  bool Reap(int options);

  std::vector<std::string> argv_;
  std::string socket_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool paused_ = false;
  std::string status_;  // set once reaped
};

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0). Another
// process may take it before the milter binds it: start with retries.
util::Result<uint16_t> FreeTcpPort();

}  // namespace dkimrotor::milter::testing
