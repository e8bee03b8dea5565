"""Shared by the end-to-end tests (tests/e2e), the performance lab (tests/bench) and the
differential fuzzer (tests/fuzz/diff): loopback ports, waiting, a private Knot's files, a
private Unbound (a recursive resolver in front of it), and a private Postfix instance's files
and processes.

A private Postfix here has its own main.cf and master.cf in a folder of its own, no chroot (it
would need copies of system files), SMTP on a loopback port, and relays everything to a sink.
Its processes are found by MAIL_CONFIG in their environment, so several instances and the
system's own Postfix never get in each other's way.
"""
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import time
from email.utils import formatdate


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_for(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def write_knot(folder, port, zones, key_id, tsig_path):
    """Writes the files of a private Knot under `folder`: it serves `zones` on 127.0.0.1:`port`
    (each with an SOA, "NS ns1" and "ns1 A 127.0.0.1") and accepts updates signed with the
    TSIG key `key_id`, whose secret goes to `tsig_path` (0600, knsupdate's -k format).
    Returns the knotd command line; the caller runs it and waits for knot_serves()."""
    for d in ("run", "db", "zones"):
        os.makedirs(os.path.join(folder, d))
    secret = subprocess.run(["openssl", "rand", "-base64", "32"], capture_output=True,
                            text=True, check=True).stdout.strip()
    fd = os.open(tsig_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, f"hmac-sha256:{key_id}:{secret}\n".encode())
    os.close(fd)
    with open(os.path.join(folder, "knot.conf"), "w") as f:
        f.write(f"""server:
    rundir: "{folder}/run"
    listen: 127.0.0.1@{port}
log:
  - target: stderr
    any: warning
database:
    storage: "{folder}/db"
key:
  - id: {key_id}
    algorithm: hmac-sha256
    secret: {secret}
acl:
  - id: update
    key: {key_id}
    action: update
template:
  - id: default
    storage: "{folder}/zones"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
    acl: update
zone:
""" + "".join(f"  - domain: {z}\n" for z in zones))
    for zone in zones:
        with open(os.path.join(folder, "zones", f"{zone}.zone"), "w") as f:
            f.write(f"""$ORIGIN {zone}.
$TTL 60
@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60
@ NS ns1
ns1 A 127.0.0.1
""")
    knotd = shutil.which("knotd") or "/usr/sbin/knotd"
    return [knotd, "-c", f"{folder}/knot.conf", "-s", f"{folder}/run/knot.sock"]


def knot_serves(port, zone):
    """Whether the Knot on 127.0.0.1:`port` answers the SOA of `zone` written by write_knot."""
    return "ns1" in subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+short", "SOA", zone],
                                   capture_output=True, text=True).stdout


def write_unbound(folder, port, stubs):
    """Writes the configuration of a private Unbound, a real recursive resolver, under
    `folder`: it answers on 127.0.0.1:`port` and resolves each zone of `stubs` ({zone: port})
    at the name server on 127.0.0.1:that port, following CNAMEs from one zone into another as a
    receiver's resolver does (an authoritative server answers a CNAME into another zone with
    the CNAME alone). No cache worth the name (changes are seen at once), no DNSSEC. Ask it
    only for names in those zones: for any other, Unbound would go out to the root servers; Unbound's built-in empty zones for the zones' top-level names (test.,
    invalid., ...) are turned off. Returns the unbound command line (foreground); wait for
    unbound_serves()."""
    os.makedirs(folder, exist_ok=True)
    conf = os.path.join(folder, "unbound.conf")
    with open(conf, "w") as f:
        f.write(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{folder}"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    module-config: "iterator"
    cache-max-ttl: 0
    cache-max-negative-ttl: 0
    infra-host-ttl: 1
    harden-referral-path: no
    qname-minimisation: no
    root-hints: ""
""" + "".join(f"""    domain-insecure: "{zone}"
""" for zone in stubs) + "".join(f"""    local-zone: "{tld}." nodefault
""" for tld in sorted({z.rsplit(".", 1)[-1] for z in stubs})) + "".join(f"""stub-zone:
    name: "{zone}"
    stub-addr: 127.0.0.1@{p}
    stub-first: no
""" for zone, p in stubs.items()))
    unbound = shutil.which("unbound") or "/usr/sbin/unbound"
    return [unbound, "-d", "-c", conf]


def unbound_serves(port, name, rtype="SOA"):
    """Whether the resolver on 127.0.0.1:`port` answers `name` `rtype` with something."""
    return subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+short", rtype, name],
                          capture_output=True, text=True).stdout.strip() != ""


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return f"({e})\n"


# The services of master.cf, with smtpd on 127.0.0.1:{port} instead of port 25.
_SERVICES = [
    "pickup unix n - n 60 1 pickup",
    "cleanup unix n - n - 0 cleanup",
    "qmgr unix n - n 300 1 qmgr",
    "rewrite unix - - n - - trivial-rewrite",
    "bounce unix - - n - 0 bounce",
    "defer unix - - n - 0 bounce",
    "trace unix - - n - 0 bounce",
    "verify unix - - n - 1 verify",
    "flush unix n - n 1000? 0 flush",
    "proxymap unix - - n - - proxymap",
    "proxywrite unix - - n - 1 proxymap",
    "smtp unix - - n - - smtp",
    "relay unix - - n - - smtp",
    "showq unix n - n - - showq",
    "error unix - - n - - error",
    "retry unix - - n - - error",
    "discard unix - - n - - discard",
    "anvil unix - - n - 1 anvil",
    "scache unix - - n - 1 scache",
    "postlog unix-dgram n - n - 1 postlogd",
]


def write_postfix_config(conf, queue, data, *, domain, smtp_port, sink_port, milters,
                         default_action, log_file, log_prefix, extra=""):
    """Writes main.cf and master.cf into `conf`. `milters` is smtpd_milters' value ("" for
    none); `extra` is appended to main.cf as it is."""
    with open(os.path.join(conf, "main.cf"), "w") as f:
        f.write(f"""compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_milters = {milters}
non_smtpd_milters =
milter_default_action = {default_action}
maillog_file = {log_file}
maillog_file_prefixes = {log_prefix}
smtputf8_enable = no
smtpd_peername_lookup = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
disable_dns_lookups = yes
smtp_host_lookup = native
append_dot_mydomain = no
""" + extra)
    with open(os.path.join(conf, "master.cf"), "w") as f:
        f.write("\n".join([f"127.0.0.1:{smtp_port} inet n - n - - smtpd"] + _SERVICES) + "\n")


def postfix_pids(conf):
    """Processes of the instance whose configuration folder is `conf`."""
    pids = []
    want = f"MAIL_CONFIG={conf}".encode()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    pids.append(int(p))
        except OSError:
            pass
    return pids


def stop_postfix(conf):
    """`postfix stop`, then SIGKILL whatever of the instance is still there after 10 s."""
    try:
        subprocess.run(["postfix", "-c", conf, "stop"], capture_output=True,
                       env=dict(os.environ, MAIL_CONFIG=conf), timeout=30)
    except subprocess.TimeoutExpired:
        pass
    wait_for(lambda: not postfix_pids(conf), 10, 0.2)
    for pid in postfix_pids(conf):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass



def stop_process(p, timeout=10):
    """Stops a child (subprocess.Popen) still running: SIGTERM, then SIGKILL after `timeout`
    seconds. Returns False when it had to be killed."""
    if p is None or p.poll() is not None:
        return True
    p.terminate()
    try:
        p.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False

class SmtpSink:
    """A mail sink on 127.0.0.1:`port`, served by a thread: answers any SMTP transaction with
    success and keeps each message exactly as it came after DATA (dot-unstuffed, line endings
    as sent). `messages()` returns a copy; `close()` stops it."""

    def __init__(self, port):
        import socketserver
        import threading
        sink = self
        self._lock = threading.Lock()
        self._messages = []

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text):
                self.wfile.write(text.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self):
                self.reply("220 sink.test ESMTP e2e sink")
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line.strip().upper().split(b" ")[0]
                    if verb == b"EHLO":
                        self.reply("250-sink.test\r\n250 8BITMIME")
                    elif verb == b"HELO":
                        self.reply("250 sink.test")
                    elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                        self.reply("250 2.0.0 ok")
                    elif verb == b"DATA":
                        self.reply("354 go ahead")
                        lines = []
                        while True:
                            l = self.rfile.readline()
                            if not l:
                                return
                            if l in (b".\r\n", b".\n"):
                                break
                            lines.append(l[1:] if l.startswith(b".") else l)
                        with sink._lock:
                            sink._messages.append(b"".join(lines))
                        self.reply("250 2.0.0 stored")
                    elif verb == b"QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("502 5.5.2 not implemented")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def messages(self):
        with self._lock:
            return list(self._messages)

    def close(self):
        self._server.shutdown()
        self._server.server_close()


# --- test mail: made, sent over SMTP, found in a sink --------------------------------------
def make_message(domain, tag, n, subject="e2e"):
    """A plain message From: user@`domain`, its Message-ID unique to this process: (mid, text)."""
    mid = f"<{tag}.{n}.{os.getpid()}@{domain}>"
    body = "".join(f"Line {i} of message {tag}.{n}.\r\n" for i in range(5))
    return mid, (f"From: User <user@{domain}>\r\n"
                 f"To: Someone <someone@example.net>\r\n"
                 f"Subject: {subject} {tag} {n}\r\n"
                 f"Date: {formatdate()}\r\n"
                 f"Message-ID: {mid}\r\n"
                 f"MIME-Version: 1.0\r\n"
                 f"Content-Type: text/plain; charset=us-ascii\r\n"
                 f"\r\n{body}")


def send_batch(port, messages, sender, source=None, timeout=60):
    """Sends (mid, text) pairs from `sender` over one SMTP connection to 127.0.0.1:`port`
    (from the address `source` if given); returns the errors, one line each."""
    errors = []
    kw = {"source_address": (source, 0)} if source else {}
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout, **kw) as s:
        s.ehlo("client.e2e.test")
        for mid, text in messages:
            try:
                refused = s.sendmail(sender, ["someone@example.net"], text)
                if refused:
                    errors.append(f"{mid}: refused {refused}")
            except smtplib.SMTPException as e:
                errors.append(f"{mid}: {e}")
                s.rset()
    return errors


def message_id(msg):
    """The first Message-ID of a raw message (bytes), unfolded, or None."""
    m = re.search(rb"^Message-ID:((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)", msg, re.I | re.M)
    return re.sub(rb"\s+", b"", m.group(1)).decode(errors="replace") if m else None


def wait_delivered(sink, mids, timeout):
    """Waits until every Message-ID of `mids` is in `sink` (an SmtpSink); returns
    {mid: [messages]}, with what arrived by then."""
    mids = set(mids)

    def found():
        got = {}
        for m in sink.messages():
            i = message_id(m)
            if i in mids:
                got.setdefault(i, []).append(m)
        return got
    wait_for(lambda: len(found()) >= len(mids), timeout, 0.25)
    return found()
