"""Shared by the end-to-end tests that run `dkimrotor run` daemons against a private DNS
server (tests/e2e: fleet, delegation, sendmail, opendkim_migrate): their main(), checks counted as they pass or
fail, DNS answers read with kdig, mail sent through a daemon's milter as Postfix would, and
every signature verified by the two independent verifiers, dkimpy and Perl's Mail::DKIM, both
asking a real DNS server (the private Knot, or a private Unbound in front of it).
"""
import os
import re
import shutil
import subprocess
import tempfile
import time
from email.utils import formatdate

from milter_wire import MilterConnection, P_HDR_LEADSPC, delivered


class Checks:
    """Counts checks; prints one line per failure. `checks(ok, what)` returns ok."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}", flush=True)
        return ok

    def summary(self):
        return f"{self.passed} passed, {self.failed} failed"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_lab(checks, skip_unless_root, tools, make_lab, run):
    """An end-to-end test's main() after its arguments: exits 77 (skipped) with the message
    `skip_unless_root` when not root, fails when one of `tools` (on PATH or in /usr/sbin) or
    dkimpy is missing, then runs `run(lab)` on `make_lab()`. An exception counts as a failed
    check; after a failure the lab's diagnostics() print; its cleanup() always runs. Returns
    the exit status and prints the checks' summary."""
    if os.geteuid() != 0:
        print(f"SKIP: {skip_unless_root}")
        return 77
    missing = [p for p in tools if not shutil.which(p) and not os.path.exists(f"/usr/sbin/{p}")]
    try:
        import dkim  # noqa: F401
    except ImportError:
        missing.append("python3-dkim")
    if missing:
        print(f"FAIL: missing {', '.join(missing)}: run scripts/install-deps")
        print("0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    lab = make_lab()
    try:
        run(lab)
    except Exception as e:
        checks(False, f"{type(e).__name__}: {e}")
    finally:
        try:
            if checks.failed:
                lab.diagnostics()
        finally:
            lab.cleanup()
    log(f"done in {time.monotonic() - t0:.1f} s")
    print(checks.summary(), flush=True)
    return 1 if checks.failed else 0


def dns_answer(port, name, rtype="TXT"):
    """The answer lines for `name` `rtype` from the server on 127.0.0.1:`port`, as kdig prints
    them (TTL included), sorted: what "byte-identical" compares. A resolver's answer to a name
    that is a CNAME holds the CNAME line and the target's records."""
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+bufsize=4096", "+noall",
                          "+answer", rtype, name], capture_output=True, text=True,
                         timeout=10).stdout
    return sorted(line for line in out.splitlines() if line.strip())


def txt_values(port, name):
    """The joined strings of each TXT record in the answer for `name`."""
    return ["".join(re.findall(r'"((?:[^"\\]|\\.)*)"', line)) for line in dns_answer(port, name)
            if "\tTXT\t" in line]


def dkimpy_dnsfunc(port):
    """A dnsfunc for dkimpy that asks the server on 127.0.0.1:`port`."""
    def dnsfunc(name, timeout=5):
        name = (name.decode() if isinstance(name, bytes) else name).rstrip(".")
        values = txt_values(port, name)
        return values[0].encode() if len(values) == 1 else b""
    return dnsfunc


def send(milter_port, domain, tag, n, note=""):
    """Sends n messages From: user@`domain` through the milter on 127.0.0.1:`milter_port` as
    Postfix would. Returns [(reply byte, delivered message bytes, reply data)]."""
    out = []
    conn = MilterConnection("127.0.0.1", milter_port)
    try:
        for i in range(n):
            headers = [(b"From", f" User <user@{domain}>".encode()),
                       (b"To", b" Someone <someone@example.net>"),
                       (b"Subject", f" {tag} {i}".encode()),
                       (b"Date", f" {formatdate()}".encode()),
                       (b"Message-ID", f" <{tag}.{i}.{os.getpid()}@{domain}>".encode())]
            body = f"Test {tag} {i} {note}.\r\n".encode() * 3
            res = conn.send_message(headers, body)
            out.append((res.reply, delivered(headers, body, res,
                                             bool(conn.protocol & P_HDR_LEADSPC)),
                        res.reply_data))
    finally:
        conn.close()
    return out


def tempfail(reply):
    """SMFIR_TEMPFAIL, or SMFIR_REPLYCODE with a 4xx code; `reply` is (code, data)."""
    code, data = reply
    return code == b"t" or (code == b"y" and data[:1] == b"4")


def signatures(msg):
    """The tags of each DKIM-Signature in `msg`, top first."""
    sigs = []
    head = re.split(rb"\r\n\r\n", msg, 1)[0]
    for m in re.finditer(rb"^DKIM-Signature[ \t]*:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head,
                         re.I | re.M):
        value = re.sub(rb"\r\n", b"", m.group(1)).decode(errors="replace")
        sigs.append(dict((k.strip(), v.strip()) for k, _, v in
                         (t.partition("=") for t in value.split(";") if "=" in t)))
    return sigs


def verify(checks, source, dns_port, workdir, label, messages, domain, selector_ok):
    """Every message: accepted, one DKIM-Signature with d=`domain` and an s= that
    `selector_ok(s)` accepts, verified by dkimpy and by Mail::DKIM, both asking the DNS server
    on 127.0.0.1:`dns_port`. Returns the selectors seen."""
    import dkim
    folder = tempfile.mkdtemp(prefix=f"{label.replace(' ', '-')}.", dir=workdir)
    dnsfunc = dkimpy_dnsfunc(dns_port)
    paths, selectors = [], set()
    for i, (reply, msg, _) in enumerate(messages):
        sigs = signatures(msg)
        checks(reply in (b"c", b"a") and len(sigs) == 1,
               f"{label}: message {i}: reply {reply!r}, {len(sigs)} DKIM-Signatures; want one")
        if len(sigs) != 1:
            continue
        sel = sigs[0].get("s", "")
        selectors.add(sel)
        checks(sigs[0].get("d") == domain and selector_ok(sel),
               f"{label}: message {i} signed d={sigs[0].get('d')} s={sel}")
        try:
            ok = dkim.DKIM(msg).verify(idx=0, dnsfunc=dnsfunc)
        except Exception as e:  # dkimpy raises on malformed input
            ok = False
            print(f"  dkimpy: {e}")
        checks(ok, f"{label}: message {i} (s={sel}) does not verify with dkimpy")
        path = os.path.join(folder, f"{i}.eml")
        with open(path, "wb") as f:
            f.write(msg)
        paths.append(path)
    if paths:
        script = os.path.join(source, "tests", "interop", "verify_mail_dkim.pl")
        r = subprocess.run(["perl", script, "--dns", f"127.0.0.1:{dns_port}"] + paths,
                           capture_output=True, text=True, timeout=120)
        results = {}
        for line in r.stdout.splitlines():
            f = line.split("\t")
            results.setdefault(f[0], []).append(f[5] if len(f) > 5 else "?")
        bad = [(os.path.basename(p), results.get(p)) for p in paths if results.get(p) != ["pass"]]
        checks(r.returncode == 0 and not bad, f"{label}: Mail::DKIM: exit {r.returncode}, "
               f"{len(bad)} of {len(paths)} do not pass: {bad[:3]} {r.stderr[-300:]}")
    log(f"{label}: {len(paths)} signed by {sorted(selectors)}, checked with dkimpy and Mail::DKIM")
    return selectors
