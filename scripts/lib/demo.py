#!/usr/bin/python3
"""The demo's driver, run by scripts/demo after it has installed and built: a private Knot for
the zone dkimrotor.test, `dkimrotor run` publishing its keys there, a private Postfix on
loopback whose smtpd hands mail to the milter and relays it to a mail sink in this process.
Sample messages go through Postfix; each delivered one is checked with dkimpy and Mail::DKIM
against the demo's Knot. Then one message every ~30 s until Ctrl-C, showing keys rotate.

It reuses the tests' lab (tests/lib) rather than a copy of it: the demo runs the same private
Knot and Postfix the end-to-end tests run, so a change there is tested once for both.

Output lines a program may parse (tests/e2e/demo_e2e.py does); everything else is prose:
  demo: work dir PATH
  demo: DNS 127.0.0.1:PORT zone ZONE
  mail #N <MESSAGE-ID> a=ALG s=SELECTOR dkimpy=V Mail::DKIM=V [a=... ...] => VERIFIED|FAILED
  mail #N <MESSAGE-ID> from 127.0.0.2 (outside signing.internal_hosts) unsigned => UNSIGNED
  mail #xN <MESSAGE-ID> ... (not the demo's: not counted)      (mail someone else sent)
  turns ALG: SEL SEL ...
  rotation: SELECTOR (ALG) STATE -> STATE
  audit: LINE
  demo: FAILED: WHY
  demo: removed PATH
V is pass, fail, or n/a (this Mail::DKIM cannot check ed25519). A message is VERIFIED when
every signature passes every verifier that supports its algorithm.

Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP, or the end of --for SECONDS, raise Stop once;
from then on those signals are ignored, so a second Ctrl-C cannot cut the cleanup short (the
old shell demo's INT trap did, leaving the keys in /tmp). Every child is started in its own
process group, so the terminal's Ctrl-C reaches this process alone and the children are
stopped in order: Postfix, then dkimrotor (its publish hook still has Knot to talk to), then
Knot. A child is registered with the signals blocked, so none can be started and forgotten.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from email.utils import formatdate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "tests", "lib"))
from dkim_lab import dkimpy_dnsfunc, signatures  # noqa: E402
from mail_lab import (SmtpSink, knot_serves, port_open, postfix_pids, stop_postfix, stop_process,  # noqa: E402
                      tail, wait_for, write_knot, write_postfix_config)

ZONE = "dkimrotor.test"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
OUTSIDE = "127.0.0.2"  # not in signing.internal_hosts (127.0.0.1/32 by default)


class Stop(Exception):
    """Ctrl-C, SIGTERM, SIGHUP or the end of --for: raised once, then the signals are ignored."""


class Failed(Exception):
    """A delivered message did not verify, or the demo could not start."""


def _on_signal(signum, _frame):
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # The spawning thread blocks the stop signals around fork (see Demo.spawn); the child must
    # not inherit that mask, or SIGTERM would never reach knotd or dkimrotor.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a SIGKILLed demo takes its children along


def say(line):
    print(line, flush=True)


class Demo:
    def __init__(self, args):
        self.args = args
        self.work = None
        self.procs = []  # (name, Popen), in start order
        self.sink = None
        self.pf_conf = None
        self.keys_seen = {}  # selector -> (algorithm, state)
        self.audit_pos = 0
        self.others_seen = set()  # indexes into the sink's messages
        self.queue_ids = {}  # Postfix queue id -> message number, for the audit lines
        self.started = time.monotonic()
        self.sent = 0
        self.turns = {}  # algorithm -> [selector per message, in order]
        self.dns = None
        self.perl_ed25519 = False

    # --- processes --------------------------------------------------------------------------
    def spawn(self, name, cmd, log, env=None):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                                 process_group=0, preexec_fn=_child_setup)
            self.procs.append((name, p))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return p

    def env(self):
        """Children's environment: the nsupdate hook's settings, and TMPDIR inside the work
        dir so that nothing they make lands elsewhere in /tmp."""
        return dict(os.environ, TMPDIR=f"{self.work}/tmp",
                    DKIMROTOR_NS_SERVER="127.0.0.1", DKIMROTOR_NS_PORT=str(self.args.dns_port),
                    DKIMROTOR_NS_TSIG=f"{self.work}/tsig.key",
                    DKIMROTOR_NS_CONFIG=f"{self.work}/none.env", DKIMROTOR_NS_TTL="60")

    def dkimrotor(self, *argv):
        return subprocess.run([self.args.dkimrotor, *argv, "-c", self.conf], capture_output=True,
                              text=True, env=self.env(), timeout=60)

    # --- setup -----------------------------------------------------------------------------
    def check_ports(self):
        a = self.args
        wanted = [("DEMO_DNS_PORT", a.dns_port, socket.SOCK_DGRAM),
                  ("DEMO_DNS_PORT", a.dns_port, socket.SOCK_STREAM),
                  ("DEMO_MILTER_PORT", a.milter_port, socket.SOCK_STREAM),
                  ("DEMO_SMTP_PORT", a.smtp_port, socket.SOCK_STREAM),
                  ("DEMO_SINK_PORT", a.sink_port, socket.SOCK_STREAM)]
        for var, port, kind in wanted:
            with socket.socket(socket.AF_INET, kind) as s:
                if kind == socket.SOCK_STREAM:  # as the servers bind: TIME_WAIT is no owner
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError as e:
                    raise Failed(f"127.0.0.1:{port} ({'udp' if kind == socket.SOCK_DGRAM else 'tcp'}) "
                                 f"is taken ({e.strerror}): set {var} to a free port")

    def start(self):
        self.check_ports()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.work = tempfile.mkdtemp(prefix="dkimrotor-demo.", dir="/tmp")
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.chmod(self.work, 0o755)
        os.mkdir(f"{self.work}/tmp")
        os.mkdir(f"{self.work}/mail")
        self.conf = f"{self.work}/dkimrotor.conf"
        self.audit = f"{self.work}/signed.log"
        say(f"demo: work dir {self.work}")
        self.start_knot()
        self.start_dkimrotor()
        self.sink = SmtpSink(self.args.sink_port)
        self.start_postfix()

    def start_knot(self):
        a = self.args
        cmd = write_knot(f"{self.work}/knot", a.dns_port, [ZONE], "dkimrotor-demo",
                         f"{self.work}/tsig.key")
        knot = self.spawn("knotd", cmd, f"{self.work}/knot.log")
        if not wait_for(lambda: knot_serves(a.dns_port, ZONE) or knot.poll() is not None, 15):
            raise Failed("Knot did not answer in 15 s:\n" + tail(f"{self.work}/knot.log"))
        if knot.poll() is not None:
            raise Failed(f"Knot exited {knot.returncode}:\n" + tail(f"{self.work}/knot.log"))
        self.dns = dkimpy_dnsfunc(a.dns_port)
        say(f"demo: DNS 127.0.0.1:{a.dns_port} zone {ZONE} (a private Knot, TSIG updates)")

    def start_dkimrotor(self):
        a = self.args
        with open(self.conf, "w") as f:
            f.write(f"""milter:   {{ socket = "inet:{a.milter_port}@127.0.0.1"; stop_timeout = "10s"; }};
keystore: {{ directory = "{self.work}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{a.dns_port}"]; check_authoritative = true;
            authoritative_port = {a.dns_port};
            min_propagation = "10s"; poll = "5s"; timeout = "2s"; }};
log:      {{ level = "info"; audit = "{self.audit}"; }};
domains = (
  {{ domain = "{ZONE}"; stream = "demo";
    algorithms = ["rsa-sha256", "ed25519-sha256"]; bits = 2048;
    active_keys = 2; key_lifetime = "2m"; prepublish = 1; grace = "1m";
    publish_hook = "{a.source}/contrib/hooks/nsupdate"; }} );
""")
        log = f"{self.work}/dkimrotor.log"
        daemon = self.spawn("dkimrotor", [a.dkimrotor, "run", "-c", self.conf], log, self.env())
        say(f"demo: dkimrotor run -c {self.conf} (milter inet:{a.milter_port}@127.0.0.1); "
            "keys rotate every 2 min, 1 min of grace")
        say("waiting for keys to be generated, published, verified in DNS and activated...")
        t0 = time.monotonic()
        if not wait_for(lambda: self.active() >= 4 or daemon.poll() is not None, 120, 1):
            raise Failed("fewer than 4 active keys after 120 s:\n" + tail(log))
        if daemon.poll() is not None:
            raise Failed(f"dkimrotor run exited {daemon.returncode}:\n" + tail(log))
        say(f"demo: {self.active()} keys active after {time.monotonic() - t0:.0f} s")
        say(self.dkimrotor("keys").stdout.rstrip())
        self.poll_keys(quiet=True)

    def keys(self):
        r = self.dkimrotor("keys", "--json")
        try:
            report = json.loads(r.stdout)
        except ValueError:
            return {}
        return {k["selector"]: (k.get("algorithm", "?"), k.get("state", "?"))
                for d in report.get("domains", []) for k in d.get("keys", [])}

    def active(self):
        return sum(1 for _, state in self.keys().values() if state == "active")

    def start_postfix(self):
        a = self.args
        self.pf_conf = c = f"{self.work}/postfix"
        for d in ("postfix", "spool", "data"):
            os.mkdir(f"{self.work}/{d}")
        shutil.chown(f"{self.work}/data", "postfix")
        write_postfix_config(c, f"{self.work}/spool", f"{self.work}/data", domain=ZONE,
                             smtp_port=a.smtp_port, sink_port=a.sink_port,
                             milters=f"inet:127.0.0.1:{a.milter_port}", default_action="tempfail",
                             log_file=f"{self.work}/postfix.log", log_prefix=self.work)
        env = dict(os.environ, MAIL_CONFIG=c)
        for step in ("check", "start"):
            r = subprocess.run(["postfix", "-c", c, step], capture_output=True, text=True,
                               env=env, timeout=60)
            if r.returncode != 0:
                raise Failed(f"postfix {step} failed:\n{r.stdout}{r.stderr}")
        if not wait_for(lambda: port_open(a.smtp_port), 30):
            raise Failed("Postfix did not listen in 30 s:\n" + tail(f"{self.work}/postfix.log"))
        say(f"demo: Postfix (private, {c}) on 127.0.0.1:{a.smtp_port}: smtpd_milters = "
            f"inet:127.0.0.1:{a.milter_port}, relayhost = the sink on 127.0.0.1:{a.sink_port}")

    # --- mail ------------------------------------------------------------------------------
    def sample(self, n, kind):
        """Message n (bytes): From someone@dkimrotor.test, with one of the awkward bits."""
        mid = f"<demo.{n}.{os.getpid()}@{ZONE}>"
        head = [f"From: Someone <someone@{ZONE}>", "To: Friend <friend@example.net>",
                f"Date: {formatdate()}", f"Message-ID: {mid}", f"X-Demo-Seq: {n}"]
        body = [f"Message #{n} of the dkimrotor demo."]
        if kind == 1:  # folded header, several recipients, odd spacing, lower-case names
            head[1] = "To: Friend <friend@example.net>,\r\n\tOther  Friend <other@example.org>"
            head += ["cc:   third@example.com   ",
                     "subject: a long subject that an MUA folds over two lines,\r\n"
                     " as mail clients do past 78 characters"]
        elif kind == 2:  # 8-bit UTF-8 body, RFC 2047 subject, quoted display name
            head[0] = f'From: "Some, One (Ünïcode)" <someone@{ZONE}>'
            head += ["Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_dem_Demo?=", "MIME-Version: 1.0",
                     "Content-Type: text/plain; charset=utf-8",
                     "Content-Transfer-Encoding: 8bit"]
            body += ["Grüße, ¡hola!, 你好 — en dash, “quotes”."]
        elif kind == 3:  # dot-stuffing, trailing blanks, empty lines at the end
            head.append(f"Subject: demo #{n}: dots and whitespace")
            body += [".a line starting with a dot", "..two dots", "trailing spaces   ",
                     "tab\tand trailing tab\t", "", "", ""]
        elif kind == 4:  # multipart with a base64 attachment
            head += [f"Subject: demo #{n}: an attachment", "MIME-Version: 1.0",
                     'Content-Type: multipart/mixed; boundary="=-demo-boundary"']
            body = ["--=-demo-boundary", "Content-Type: text/plain; charset=us-ascii", "",
                    f"Message #{n} with a file.", "--=-demo-boundary",
                    'Content-Type: application/octet-stream; name="key.bin"',
                    "Content-Transfer-Encoding: base64", "",
                    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
                    "MDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f",
                    "--=-demo-boundary--"]
        else:
            head.append(f"Subject: demo #{n}")
        return mid, ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()

    def send(self, kinds, source=None):
        """Sends one message per kind through Postfix; returns [(n, message id)]."""
        out = []
        kw = {"source_address": (source, 0)} if source else {}
        with smtplib.SMTP("127.0.0.1", self.args.smtp_port, timeout=30, **kw) as s:
            s.ehlo("client.demo.test")
            for kind in kinds:
                self.sent += 1
                mid, data = self.sample(self.sent, kind)
                s.sendmail(f"someone@{ZONE}", ["friend@example.net"], data,
                           mail_options=["BODY=8BITMIME"])
                out.append((self.sent, mid))
        return out

    def others(self):
        """Mail that reached the sink but was not the demo's (swaks, say): checked and shown
        once each."""
        items = []
        for i, m in enumerate(self.sink.messages()):
            if i in self.others_seen or b"\nX-Demo-Seq: " in m:
                continue
            self.others_seen.add(i)
            mid = re.search(rb"^Message-ID:[ \t]*(.*?)\r?$", m, re.I | re.M)
            items.append((f"x{len(self.others_seen)}",
                          mid.group(1).decode(errors="replace") if mid else "<no Message-ID>", m))
        if items:
            self.check(items, ours=False)

    def delivered(self, n):
        want = f"\nX-Demo-Seq: {n}\r\n".encode()
        for m in self.sink.messages():
            if want in m:
                return m
        return None

    def await_delivery(self, sent, timeout=60):
        if not wait_for(lambda: all(self.delivered(n) for n, _ in sent), timeout, 0.2):
            missing = [n for n, _ in sent if not self.delivered(n)]
            raise Failed(f"messages {missing} did not reach the sink in {timeout} s:\n"
                         + tail(f"{self.work}/postfix.log"))
        out = [(n, mid, self.delivered(n)) for n, mid in sent]
        for n, _, msg in out:
            m = re.search(rb"\(Postfix\) with E?SMTP id ([0-9A-Za-z]+)", msg)
            if m:
                self.queue_ids[m.group(1).decode()] = n
        return out

    def mail_dkim(self, items):
        """Mail::DKIM's verdicts: {(n, signature index): result}, asking the demo's Knot."""
        paths = {}
        for n, _, msg in items:
            path = f"{self.work}/mail/{n}.eml"
            with open(path, "wb") as f:
                f.write(msg)
            paths[path] = n
        script = os.path.join(self.args.source, "tests", "interop", "verify_mail_dkim.pl")
        r = subprocess.run(["perl", script, "--dns", f"127.0.0.1:{self.args.dns_port}",
                            *paths], capture_output=True, text=True, timeout=120, env=self.env())
        if r.returncode != 0:
            raise Failed(f"verify_mail_dkim.pl exited {r.returncode}: {r.stderr[-500:]}")
        out = {}
        for line in r.stdout.splitlines():
            f = line.split("\t")
            if len(f) > 5 and f[1].isdigit():
                out[(paths.get(f[0]), int(f[1]))] = f[5]
        return out

    def check(self, items, ours=True):
        """Prints one line per delivered message; raises Failed after the batch if one of the
        demo's own fails. Mail someone else sent through the demo's Postfix (`ours` false) is
        shown but not counted, and unsigned mail is just that."""
        import dkim
        perl = self.mail_dkim(items)
        failures = []
        for n, mid, msg in items:
            sigs = signatures(msg)
            parts, ok = [], bool(sigs)
            for i, tags in enumerate(sigs):
                alg, sel = tags.get("a", "?"), tags.get("s", "?")
                try:
                    py = "pass" if dkim.DKIM(msg).verify(idx=i, dnsfunc=self.dns) else "fail"
                except Exception as e:  # dkimpy raises on malformed input
                    py = f"fail({type(e).__name__})"
                md = perl.get((n, i), "?")
                if md == "invalid" and alg.startswith("ed25519") and not self.perl_ed25519:
                    md = "n/a"
                ok = ok and py == "pass" and md in ("pass", "n/a") and tags.get("d") == ZONE
                parts.append(f"a={alg} s={sel} dkimpy={py} Mail::DKIM={md}")
                if ours:
                    self.turns.setdefault(alg, []).append(sel)
            verdict = "VERIFIED" if ok else "FAILED" if sigs or ours else "UNSIGNED"
            say(f"mail #{n} {mid} " + (" ".join(parts) or "no DKIM-Signature") + f" => {verdict}"
                + ("" if ours else " (not the demo's: not counted)"))
            if not ok and ours:
                failures.append(n)
        if failures:
            say(f"!!! VERIFICATION FAILED for mail {', '.join(f'#{n}' for n in failures)} !!!")
            raise Failed(f"messages {failures} did not verify (see the lines above)")

    def external(self):
        """One message from 127.0.0.2: Postfix relays it (mynetworks is 127.0.0.0/8), but the
        milter sees a client outside signing.internal_hosts and leaves it unsigned."""
        [(n, mid)] = self.send([0], source=OUTSIDE)
        [(_, _, msg)] = self.await_delivery([(n, mid)])
        count = len(signatures(msg))
        if count:
            say(f"mail #{n} {mid} from {OUTSIDE} has {count} DKIM-Signature(s) => FAILED")
            raise Failed(f"mail from {OUTSIDE} (outside signing.internal_hosts) was signed")
        say(f"mail #{n} {mid} from {OUTSIDE} (outside signing.internal_hosts) unsigned "
            "=> UNSIGNED")

    def show_turns(self):
        for alg, sels in sorted(self.turns.items()):
            say(f"turns {alg}: " + " ".join(sels[-12:]))

    def show_audit(self):
        try:
            with open(self.audit, errors="replace") as f:
                f.seek(self.audit_pos)
                lines = f.read()
                self.audit_pos = f.tell()
        except OSError:
            return
        for line in lines.splitlines():
            m = re.search(r" signed (\S+) ", line)
            n = self.queue_ids.get(m.group(1)) if m else None
            say(f"audit: {line}" + (f"  (mail #{n})" if n else ""))

    def poll_keys(self, quiet=False):
        for sel, (alg, state) in sorted(self.keys().items()):
            old = self.keys_seen.get(sel, (alg, None))[1]
            if old != state and not quiet:
                say(f"rotation: {sel} ({alg}) {old or 'new'} -> {state}")
            self.keys_seen[sel] = (alg, state)

    # --- the show --------------------------------------------------------------------------
    def run(self):
        self.perl_ed25519 = subprocess.run(
            ["perl", os.path.join(self.args.source, "tests", "interop", "verify_mail_dkim.pl"),
             "--supports", "ed25519-sha256"], capture_output=True).returncode == 0
        self.start()
        t0 = time.monotonic()
        say(f"=== {self.args.batch} sample messages From: someone@{ZONE} through Postfix "
            "into the milter")
        items = self.await_delivery(self.send([i % 5 for i in range(self.args.batch)]))
        self.check(items)
        say(f"demo: first batch verified {time.monotonic() - self.started:.0f} s after the demo "
            f"started ({time.monotonic() - t0:.1f} s after Postfix did)")
        if not self.perl_ed25519:
            say("(Mail::DKIM=n/a: this Mail::DKIM predates ed25519 support; dkimpy checks those)")
        self.show_turns()
        time.sleep(0.5)  # the audit line is written by spdlog's async thread
        self.show_audit()
        say("=== mail from outside")
        self.external()
        say(f"=== one message every {self.args.every:g} s; keys rotate every 2 minutes. "
            "Ctrl-C stops and removes every file")
        say(f"    (try: swaks --server 127.0.0.1:{self.args.smtp_port} --from someone@{ZONE} "
            f"--to x@example.net; kdig @127.0.0.1 -p {self.args.dns_port} TXT "
            f"SELECTOR._domainkey.{ZONE})")
        kind = 0
        while True:
            deadline = time.monotonic() + self.args.every
            while time.monotonic() < deadline:
                self.poll_keys()
                self.others()
                time.sleep(min(3, max(0.0, deadline - time.monotonic())))
            kind += 1
            self.check(self.await_delivery(self.send([kind % 5])))
            time.sleep(0.5)
            self.show_audit()

    # --- cleanup ---------------------------------------------------------------------------
    def ours(self):
        """Pids of processes that still name the work dir in their command line or
        environment: children of children the known list does not hold (a hook's knsupdate,
        Postfix's daemons)."""
        me, found = os.getpid(), []
        key = self.work.encode()
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == me:
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{p}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if key + b"/" in cmd or key + b"/" in env:
                found.append(int(p))
        return found

    def cleanup(self):
        """Runs once, with the stop signals ignored: stops everything, then removes the work
        dir. Returns whether it is all gone."""
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        signal.alarm(0)
        if not self.work:
            return True
        say("demo: stopping Postfix, dkimrotor and Knot; removing every file the demo made")
        if self.pf_conf and os.path.isdir(self.pf_conf):
            stop_postfix(self.pf_conf)
        for name, p in reversed(self.procs):
            if not stop_process(p, 30):
                say(f"demo: {name} did not stop in 30 s: killed with SIGKILL")
        if self.sink:
            self.sink.close()
        for pid in self.ours():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        wait_for(lambda: not self.ours(), 10, 0.2)
        shutil.rmtree(self.work, ignore_errors=True)
        if os.path.exists(self.work):  # something wrote into it while it went: once more
            time.sleep(1)
            shutil.rmtree(self.work, ignore_errors=True)
        gone = not os.path.exists(self.work)
        left = self.ours() + (postfix_pids(self.pf_conf) if self.pf_conf else [])
        if gone and not left:
            say(f"demo: removed {self.work}")
        else:
            say(f"demo: FAILED: cleanup left {self.work if not gone else ''} "
                f"{'pids ' + str(left) if left else ''}")
        return gone and not left


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True, help="the source tree (contrib/hooks, tests/)")
    ap.add_argument("--for", dest="duration", type=float,
                    default=float(os.environ.get("DEMO_DURATION", 0) or 0),
                    help="stop as if Ctrl-C came after SECONDS (env DEMO_DURATION); "
                         "0: run until Ctrl-C")
    ap.add_argument("--batch", type=int, default=int(os.environ.get("DEMO_BATCH", 6)))
    ap.add_argument("--every", type=float, default=float(os.environ.get("DEMO_EVERY", 30)))
    args = ap.parse_args()
    env_port = lambda name, default: int(os.environ.get(name) or default)  # noqa: E731
    args.dns_port = env_port("DEMO_DNS_PORT", 5353)
    args.milter_port = env_port("DEMO_MILTER_PORT", 8891)
    args.smtp_port = env_port("DEMO_SMTP_PORT", 2525)
    args.sink_port = env_port("DEMO_SINK_PORT", 2526)
    args.dkimrotor = os.path.abspath(args.dkimrotor)
    args.source = os.path.abspath(args.source)

    for s in STOP_SIGNALS:
        signal.signal(s, _on_signal)
    if args.duration > 0:
        signal.setitimer(signal.ITIMER_REAL, args.duration)
    demo = Demo(args)
    status = 0
    try:
        demo.run()
    except Stop as e:
        say(f"demo: --for {args.duration:g} s elapsed: stopping as on Ctrl-C" if str(e) == "SIGALRM"
            else f"demo: {e} received")
        status = 0 if str(e) == "SIGALRM" else 128 + signal.Signals[str(e)].value
    except Failed as e:
        say(f"demo: FAILED: {e}")
        status = 1
    except Exception as e:  # anything else still cleans up and says so
        say(f"demo: FAILED: {type(e).__name__}: {e}")
        status = 1
    finally:
        if not demo.cleanup():
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
