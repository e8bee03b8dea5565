"""A test-side MTA speaking the Sendmail milter protocol (version 6), as Postfix speaks it.

The Python twin of tests/milter/milter_client.h, for harnesses written in Python (the
differential fuzzer): one connection, many messages (SMFIC_ABORT between them is not needed,
end of message resets the milter's message state). It offers what Postfix 3.x offers
(every action and protocol bit except SMFIP_MDS_*), honours what the milter negotiates away
(SMFIP_NO* events are not sent, SMFIP_NR_* events are not answered) and hands header fields
over as Postfix does: name and value apart, folded lines joined by LF, without
SMFIP_HDR_LEADSPC one leading space dropped; the body in chunks of at most 65535 bytes with
CRLF line ends.

Not thread-safe: one MilterConnection per thread or process.
"""
import socket
import struct

SMFI_VERSION = 6
SMFI_CURR_ACTS = 0x1FF
SMFI_CURR_PROT = 0x1FFFFF
CHUNK = 65535

P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT = 0x1, 0x2, 0x4, 0x8
P_NOBODY, P_NOHDRS, P_NOEOH, P_NR_HDR = 0x10, 0x20, 0x40, 0x80
P_NODATA = 0x200
P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
P_NR_DATA, P_NR_EOH, P_NR_BODY = 0x10000, 0x40000, 0x80000
P_HDR_LEADSPC = 0x100000

# Replies that let the MTA go on with the message.
GOES_ON = {b"c", b"s"}


class MilterError(Exception):
    pass


class PacketTooLarge(MilterError):
    """A header field longer than a milter packet may be (65535 bytes without SMFIP_MDS_*):
    libmilter would close the connection; not sent."""


class Result:
    """The end of one transaction: the final reply and the modifications before it."""

    def __init__(self):
        self.reply = b""        # command byte of the final reply: a accept, c continue, t ...
        self.reply_data = b""
        self.stage = b"E"       # the command whose reply ended the transaction
        self.inserted = []      # (index, name, value) of SMFIR_INSHEADER
        self.added = []         # (name, value) of SMFIR_ADDHEADER
        self.other = []         # (command byte, data) of any other modification


class MilterConnection:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.out = bytearray()
        self.inbuf = bytearray()
        self.messages = 0
        self._send(b"O", struct.pack(">III", SMFI_VERSION, SMFI_CURR_ACTS, SMFI_CURR_PROT))
        cmd, data = self._read()
        if cmd != b"O" or len(data) < 12:
            raise MilterError(f"bad negotiation reply {cmd!r}")
        self.version, self.actions, self.protocol = struct.unpack(">III", data[:12])
        self.connected = False

    def close(self):
        try:
            self._send(b"Q", b"")
            self._flush()
        except OSError:
            pass
        self.sock.close()

    # -- the wire ----------------------------------------------------------------------------
    def _send(self, cmd, data):
        self.out += struct.pack(">I", len(data) + 1) + cmd + data

    def _flush(self):
        if self.out:
            self.sock.sendall(self.out)
            self.out.clear()

    def _recv_exact(self, n):
        while len(self.inbuf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MilterError("the milter closed the connection")
            self.inbuf += chunk
        data = bytes(self.inbuf[:n])
        del self.inbuf[:n]
        return data

    def _read(self):
        self._flush()
        (length,) = struct.unpack(">I", self._recv_exact(4))
        if length < 1 or length > 1 << 20:
            raise MilterError(f"bad packet length {length}")
        packet = self._recv_exact(length)
        return packet[:1], packet[1:]

    def _event(self, cmd, data, skip_flag, nr_flag, macros=None):
        """Sends one event; returns its reply (b'-' when none is due)."""
        if macros:
            self._send(b"D", cmd + b"".join(k + b"\0" + v + b"\0" for k, v in macros))
        if self.protocol & skip_flag:
            return b"-", b""
        self._send(cmd, data)
        if self.protocol & nr_flag:
            return b"-", b""
        while True:
            rcmd, rdata = self._read()
            if rcmd != b"p":  # progress
                return rcmd, rdata

    # -- one message -------------------------------------------------------------------------
    def send_message(self, headers, body, client_ip="127.0.0.1", queue_id=None):
        """headers: [(name bytes, value bytes)] with the value after the colon, as in the
        message; body: bytes with CRLF line ends. Returns a Result."""
        self.messages += 1
        qid = queue_id or f"F{self.messages:08X}".encode()
        res = Result()

        def ended(stage, reply):
            res.stage, res.reply, res.reply_data = stage, reply[0], reply[1]
            if stage != b"C" and stage != b"H":
                self._send(b"A", b"")  # abort the transaction, as the MTA does
            return res

        if not self.connected:
            self.connected = True
            r = self._event(b"C", b"client.example\0" + b"4" + struct.pack(">H", 49152) +
                            client_ip.encode() + b"\0", P_NOCONNECT, P_NR_CONN,
                            [(b"j", b"mx.example"), (b"{daemon_name}", b"difffuzz"),
                             (b"v", b"Postfix 3.7")])
            if r[0] not in GOES_ON and r[0] != b"-":
                return ended(b"C", r)
            r = self._event(b"H", b"client.example\0", P_NOHELO, P_NR_HELO)
            if r[0] not in GOES_ON and r[0] != b"-":
                return ended(b"H", r)
        for cmd, data, skip, nr, macros in (
                (b"M", b"<sender@example.com>\0", P_NOMAIL, P_NR_MAIL,
                 [(b"i", qid), (b"{mail_addr}", b"sender@example.com")]),
                (b"R", b"<rcpt@example.net>\0", P_NORCPT, P_NR_RCPT,
                 [(b"i", qid), (b"{rcpt_addr}", b"rcpt@example.net")]),
                (b"T", b"", P_NODATA, P_NR_DATA, [(b"i", qid)])):
            r = self._event(cmd, data, skip, nr, macros)
            if r[0] not in GOES_ON and r[0] != b"-":
                return ended(cmd, r)
        for name, value in headers:
            if not self.protocol & P_HDR_LEADSPC and value.startswith(b" "):
                value = value[1:]
            # Folds are LF already (split_as_postfix); a CR before one is a bare CR that
            # Postfix keeps ("\r\r\n" on the wire gives "X\r" + LF), so nothing is replaced.
            if len(name) + len(value) + 3 > CHUNK:
                self._send(b"A", b"")
                raise PacketTooLarge(f"header field {name[:40]!r} of {len(value)} bytes is larger "
                                     "than a milter packet (65535 bytes)")
            r = self._event(b"L", name + b"\0" + value + b"\0", P_NOHDRS, P_NR_HDR)
            if r[0] not in GOES_ON and r[0] != b"-":
                return ended(b"L", r)
        r = self._event(b"N", b"", P_NOEOH, P_NR_EOH, [(b"i", qid)])
        if r[0] not in GOES_ON and r[0] != b"-":
            return ended(b"N", r)
        if r[0] != b"s":
            for i in range(0, len(body), CHUNK):
                r = self._event(b"B", body[i:i + CHUNK], P_NOBODY, P_NR_BODY)
                if r[0] == b"s":
                    break
                if r[0] not in GOES_ON and r[0] != b"-":
                    return ended(b"B", r)
        self._send(b"D", b"E" + b"i\0" + qid + b"\0")
        self._send(b"E", b"")
        while True:
            cmd, data = self._read()
            if cmd == b"p":
                continue
            if cmd == b"i":
                (index,) = struct.unpack(">I", data[:4])
                name, value = data[4:].split(b"\0")[:2]
                res.inserted.append((index, name, value))
            elif cmd == b"h":
                name, value = data.split(b"\0")[:2]
                res.added.append((name, value))
            elif cmd in (b"m", b"+", b"-", b"2", b"e", b"b", b"q"):
                res.other.append((cmd, data))
            else:
                res.reply, res.reply_data = cmd, data
                return res


def split_as_postfix(message):
    """Splits a message as Postfix's cleanup hands it to a milter: lines end at LF (a CR
    before it is dropped, any other CR stays); the header ends at an empty line or at the
    first line that is neither a field nor a continuation, which then begins the body.
    Returns ([(name, value)], body with CRLF line ends)."""
    lines = message.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
        final_eol = True
    else:
        final_eol = False
    lines = [l[:-1] if l.endswith(b"\r") else l for l in lines]
    headers = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == b"":
            i += 1
            break
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\n" + line)
            i += 1
            continue
        colon = line.find(b":")
        name = line[:colon] if colon > 0 else b""
        if not name or any(c <= 32 or c >= 127 for c in name.rstrip(b" \t")) or \
                name.rstrip(b" \t") == b"":
            break
        headers.append((name, line[colon + 1:]))
        i += 1
    body_lines = lines[i:]
    body = b"\r\n".join(body_lines)
    if body_lines and final_eol:
        body += b"\r\n"
    return headers, body


def delivered(headers, body, result, leading_space):
    """The message as Postfix delivers it: inserted fields at their index, added ones at
    the end, folded lines with CRLF. Without SMFIP_HDR_LEADSPC the MTA writes "Name: " before
    a value the milter sent; with it, "Name:" and the value's own leading space."""
    # Postfix writes each line of a field with CRLF after it: a CR that was left before an LF
    # (a bare CR) stays, "X\r" + LF is delivered "X\r\r\n". The milter's own fields may fold
    # with CRLF or LF.
    def from_milter(value):
        return value.replace(b"\r\n", b"\n")
    fields = [(n, v) for n, v in headers]
    for index, name, value in result.inserted:
        if not leading_space:
            value = b" " + value
        fields.insert(min(index, len(fields)), (name, from_milter(value)))
    for name, value in result.added:
        fields.append((name, from_milter(value if leading_space else b" " + value)))
    out = bytearray()
    for name, value in fields:
        out += name + b":" + value.replace(b"\n", b"\r\n") + b"\r\n"
    return bytes(out) + b"\r\n" + body
