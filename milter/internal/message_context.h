// Per-connection state of the milter, owned through libmilter's private pointer from negotiate
// to close, and the conversions between the MTA's header bytes and the session's.
// Not thread-safe: libmilter runs one connection's callbacks on one thread at a time.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <string>
#include <string_view>

#include "session/session.h"

namespace dkimrotor::milter::internal {

struct ConnectionContext {
  sockaddr_storage address{};
  bool has_address = false;
  bool leading_space = false;
  bool noreply_header = false;
  bool noreply_body = false;
  bool can_skip = false;
  std::unique_ptr<session::Session> session;  // from MAIL FROM to end of message or abort
};

// A header value as the MTA sent it (with its leading space only when negotiated, folds as LF)
// in the session's form: every byte after the colon, folds as CRLF. Postfix and Sendmail strip
// the CR of each line's CRLF and join folded lines with LF, so a CR before an LF is a bare CR
// the sender left there, delivered "\r\r\n": it stays, for signer::CheckField to see.
std::string SessionHeaderValue(std::string_view value, bool leading_space);

// A complete "DKIM-Signature: v=1; ..." field as the value smfi_insheader takes: folds as LF
// (the MTA writes its own line ends), with the leading space only when negotiated.
std::string MilterHeaderValue(const std::string& field, bool leading_space);

}  // namespace dkimrotor::milter::internal
