#!/usr/bin/python3
"""End-to-end test: dkimrotor as the milter of a real Sendmail, configured from contrib/.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - Knot DNS serving example.test, accepting TSIG-signed updates;
  - `dkimrotor run` with 3 active keys, publishing them through contrib/hooks/nsupdate;
  - Sendmail from Debian 12's packages (sendmail-bin, sendmail-base, sendmail-cf, m4 and the
    libraries the machine lacks), downloaded with `apt-get download` into --cache when missing
    and unpacked with `dpkg -x` into the test's folder: Debian's sendmail and postfix packages
    conflict, and the machine keeps its Postfix. sendmail.cf is built with the unpacked m4 and
    cf macros from a .mc that includes contrib/sendmail/dkimrotor.mc as shipped, only its port
    changed. Sendmail runs in its own UTS and mount namespace (host name mta.test, a private
    /etc/hosts bind-mounted) and relays everything to
  - a mail sink (tests/lib/mail_lab.py) that keeps every message byte for byte.

Checks:
  1. sendmail.cf carries the snippet's X line and {auth_authen} among the envfrom macros.
  2. 60 messages sent to Sendmail over SMTP all arrive, each with one DKIM-Signature
     (d=example.test) that dkimpy and Perl's Mail::DKIM verify against Knot; the 3 active
     selectors take turns; each message's Sendmail queue id ({i}) is in dkimrotor's audit log
     with the selector that signed it.
  3. Reload under load: 2 SMTP senders for ~8 s while dkimrotor gets SIGHUP 4 times; no SMTP
     error, every accepted message arrives signed and verifying.
  4. Mail from 127.0.0.2 (outside signing.internal_hosts) arrives unsigned.
  5. Sendmail adds a missing Date and Message-Id after the milter; with the default
     configuration (absent Date and Message-ID are not oversigned) such a message verifies.

Needs root (namespaces, Sendmail); as another user it exits 77 (skipped). Prints one line
per failure and "N passed, M failed". --break-milter points the milter line at a dead port
without F=T (Sendmail then delivers unsigned): the test must fail.
"""
import argparse
import json
import os
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks, log, run_lab, signatures, verify as verify_mail  # noqa: E402
from mail_lab import (SmtpSink, free_ports, knot_serves, make_message, port_open, send_batch,  # noqa: E402
                      stop_process, tail, wait_delivered, wait_for, write_knot)

SKIP = 77
DOMAIN = "example.test"
SENDER = f"user@{DOMAIN}"
HOSTNAME = "mta.test"
# What `apt-get download` fetches first; libraries that ldd then finds missing are added from
# LIBRARIES (sendmail-bin's Depends, by soname).
PACKAGES = ["sendmail-bin", "sendmail-base", "sendmail-cf", "m4", "liblockfile1", "libwrap0"]
LIBRARIES = {"libwrap.so.0": "libwrap0", "liblockfile.so.1": "liblockfile1",
             "libdb-5.3.so": "libdb5.3", "libldap-2.5.so.0": "libldap-2.5-0",
             "liblber-2.5.so.0": "libldap-2.5-0", "libnsl.so.2": "libnsl2",
             "libtirpc.so.3": "libtirpc3", "libsasl2.so.2": "libsasl2-2",
             "libssl.so.3": "libssl3", "libcrypto.so.3": "libssl3"}
SNIPPET_SOCKET = "S=inet:8891@127.0.0.1"

check = Checks()


# --- Sendmail from Debian's packages ------------------------------------------------------
def apt_download(cache, packages):
    """Downloads the .debs of `packages` into `cache` (skipping those already there). On a
    machine that never ran `apt-get update` the package lists are empty: update once, retry."""
    have = {f.split("_")[0] for f in os.listdir(cache) if f.endswith(".deb")}
    want = [p for p in packages if p not in have]
    if not want:
        return
    part = tempfile.mkdtemp(prefix="download.", dir=cache)
    os.chmod(part, 0o755)  # apt's _apt user writes there when it can
    try:
        for attempt in range(2):
            r = subprocess.run(["apt-get", "download", *want], cwd=part, capture_output=True,
                               text=True, timeout=300)
            if r.returncode == 0:
                break
            if attempt == 0:
                log(f"apt-get download failed ({r.stderr.strip()[-200:]}); apt-get update")
                subprocess.run(["apt-get", "update"], capture_output=True, timeout=300)
        else:
            raise RuntimeError(f"apt-get download {' '.join(want)} failed: {r.stderr[-800:]}")
        for f in os.listdir(part):  # rename: a concurrent run never sees half a file
            os.replace(os.path.join(part, f), os.path.join(cache, f))
        log(f"downloaded {', '.join(want)} into {cache}")
    finally:
        shutil.rmtree(part, ignore_errors=True)


def unpack_sendmail(cache, root):
    """Unpacks Sendmail into `root`; returns (sendmail binary, m4 binary, library folder)."""
    os.makedirs(cache, exist_ok=True)
    packages = list(PACKAGES)
    libdir = os.path.join(root, "usr/lib/x86_64-linux-gnu")
    binary = os.path.join(root, "usr/libexec/sendmail/sendmail")
    for _ in range(4):
        apt_download(cache, packages)
        for f in sorted(os.listdir(cache)):
            if f.endswith(".deb") and f.split("_")[0] in packages:
                subprocess.run(["dpkg", "-x", os.path.join(cache, f), root], check=True)
        # setgid: the loader would ignore LD_LIBRARY_PATH.
        os.chmod(binary, os.stat(binary).st_mode & 0o1777)
        out = subprocess.run(["ldd", binary], capture_output=True, text=True,
                             env=dict(os.environ, LD_LIBRARY_PATH=libdir)).stdout
        missing = re.findall(r"^\s*(\S+) => not found", out, re.M)
        if not missing:
            return binary, os.path.join(root, "usr/bin/m4"), libdir
        unknown = [so for so in missing if so not in LIBRARIES]
        if unknown:
            raise RuntimeError(f"sendmail needs {', '.join(unknown)}: add its package to "
                               f"LIBRARIES in {__file__}")
        packages += [LIBRARIES[so] for so in missing if LIBRARIES[so] not in packages]
    raise RuntimeError(f"sendmail still misses libraries: {out}")


def mount_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def pids_in_ns(ns):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit() and mount_ns(p) == ns:
            out.append(int(p))
    return out


class Sendmail:
    """One Sendmail daemon (`sendmail -bD`) in a UTS and mount namespace of its own."""

    def __init__(self, tmp, root_bin, m4, libdir, cf_dir, snippet, smtp_port, sink_port):
        self.dir = os.path.join(tmp, "sendmail")
        self.port = smtp_port
        self.out = os.path.join(self.dir, "sendmail.out")
        self.proc = None
        self.ns = None
        d = self.dir
        for sub in ("etc", "queue"):
            os.makedirs(os.path.join(d, sub), 0o700)
        for name in ("local-host-names", "aliases", "trusted-users", "statistics"):
            open(os.path.join(d, "etc", name), "w").close()
        with open(os.path.join(d, "etc", "service.switch"), "w") as f:
            f.write("hosts files\naliases files\n")
        self.hosts = os.path.join(d, "hosts")
        with open(self.hosts, "w") as f:
            f.write(f"127.0.0.1 {HOSTNAME} mta localhost\n")
        with open(os.path.join(d, "dkimrotor.mc"), "w") as f:
            f.write(snippet)
        mc = os.path.join(d, "sendmail.mc")
        with open(mc, "w") as f:
            f.write(f"""divert(0)dnl
VERSIONID(`dkimrotor sendmail e2e')dnl
OSTYPE(`linux')dnl
define(`MAIL_SETTINGS_DIR', `{d}/etc/')dnl
define(`QUEUE_DIR', `{d}/queue')dnl
define(`STATUS_FILE', `{d}/etc/statistics')dnl
define(`ALIAS_FILE', `{d}/etc/aliases')dnl
define(`confPID_FILE', `{d}/sendmail.pid')dnl
define(`confHOSTS_FILE', `{self.hosts}')dnl
define(`confSERVICE_SWITCH_FILE', `{d}/etc/service.switch')dnl
define(`confCONTROL_SOCKET_NAME', `{d}/control')dnl
define(`confDOMAIN_NAME', `{HOSTNAME}')dnl
define(`confDELIVERY_MODE', `background')dnl
define(`SMART_HOST', `relay:[sink.test]')dnl
define(`RELAY_MAILER_ARGS', `TCP [127.0.0.1] {sink_port}')dnl
FEATURE(`nocanonify')dnl
FEATURE(`promiscuous_relay')dnl
FEATURE(`accept_unresolvable_domains')dnl
FEATURE(`accept_unqualified_senders')dnl
FEATURE(`no_default_msa')dnl
DAEMON_OPTIONS(`Port={smtp_port}, Addr=127.0.0.1, Name=MTA')dnl
include(`{d}/dkimrotor.mc')dnl
MAILER(`smtp')dnl
""")
        self.cf = os.path.join(d, "sendmail.cf")
        with open(self.cf, "w") as f:
            r = subprocess.run([m4, f"-D_CF_DIR_={cf_dir}/", f"{cf_dir}/m4/cf.m4", mc],
                               stdout=f, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"m4 failed ({r.returncode}): {r.stderr}")
        self.cmd = ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c",
                    f'hostname {HOSTNAME} && mount --bind "$1" /etc/hosts && '
                    f'exec env LD_LIBRARY_PATH="$2" "$3" -bD -C "$4"', "sh",
                    self.hosts, libdir, root_bin, self.cf]

    def cf_text(self):
        with open(self.cf) as f:
            return f.read()

    def start(self):
        ours = mount_ns("self")
        self.proc = subprocess.Popen(self.cmd, stdout=open(self.out, "w"),
                                     stderr=subprocess.STDOUT)
        # The namespace is known once unshare made it; every process of it is ended at stop.
        wait_for(lambda: mount_ns(self.proc.pid) not in (None, ours)
                 or self.proc.poll() is not None, 10, 0.05)
        ns = mount_ns(self.proc.pid)
        self.ns = ns if ns != ours else None
        if not wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 90, 0.2):
            raise RuntimeError(f"Sendmail did not listen in 90 s:\n{tail(self.out)}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"Sendmail exited {self.proc.returncode}:\n{tail(self.out)}")

    def stop(self):
        if not self.proc:
            return
        stop_process(self.proc)
        # Delivery children outlive the daemon for a moment; the namespace ends with the last.
        if self.ns:
            for pid in pids_in_ns(self.ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            wait_for(lambda: not pids_in_ns(self.ns), 10, 0.1)


# --- the lab ------------------------------------------------------------------------------
class Lab:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-sendmail.")
        os.chmod(self.tmp, 0o755)
        (self.dns_port, self.milter_port, self.smtp_port, self.sink_port,
         self.dead_port) = free_ports(5)
        self.procs = []
        self.sink = self.sendmail = self.daemon = None
        self.conf = os.path.join(self.tmp, "dkimrotor.conf")
        self.dr_log = os.path.join(self.tmp, "dkimrotor.log")
        self.audit = os.path.join(self.tmp, "signed.log")

    def start_knot(self):
        self.tsig = os.path.join(self.tmp, "tsig.key")
        self.knot_log = os.path.join(self.tmp, "knot.log")
        cmd = write_knot(os.path.join(self.tmp, "knot"), self.dns_port, [DOMAIN], "e2e",
                         self.tsig)
        self.procs.append(subprocess.Popen(cmd, stdout=open(self.knot_log, "w"),
                                           stderr=subprocess.STDOUT))
        if not wait_for(lambda: knot_serves(self.dns_port, DOMAIN), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(self.knot_log))
        log(f"Knot serving {DOMAIN} on 127.0.0.1:{self.dns_port}")

    def config(self):
        return f"""milter:   {{ socket = "inet:{self.milter_port}@127.0.0.1"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; sign_authenticated = true; }};
keystore: {{ directory = "{self.tmp}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{self.dns_port}"]; check_authoritative = true;
            authoritative_port = {self.dns_port};
            min_propagation = "0s"; poll = "1s"; timeout = "2s"; }};
log:      {{ level = "info"; audit = "{self.audit}"; }};
domains = (
  {{ domain = "{DOMAIN}"; stream = "sm";
    algorithms = ["rsa-sha256"]; bits = 2048;
    active_keys = 3; prepublish = 1; key_lifetime = "30d";
    selector_format = "{{stream}}-{{yyyymmdd}}-{{alg}}{{bits}}-{{n}}";
    publish_hook = "{self.hook}"; }} );
"""

    def dkimrotor(self, *args, timeout=60):
        return subprocess.run([self.args.dkimrotor, *args, "-c", self.conf], capture_output=True,
                              text=True, timeout=timeout)

    def active(self):
        try:
            data = json.loads(self.dkimrotor("keys", "--json").stdout)
        except ValueError:
            return []
        return [k.get("selector") for d in data.get("domains", []) for k in d.get("keys", [])
                if k.get("state") == "active"]

    def start_dkimrotor(self):
        # The daemon runs only a hook owned by root (or its user) and not writable by others.
        hooks = os.path.join(self.tmp, "hooks")
        os.makedirs(hooks, 0o755)
        self.hook = os.path.join(hooks, "nsupdate")
        shutil.copyfile(os.path.join(self.args.source, "contrib/hooks/nsupdate"), self.hook)
        os.chmod(self.hook, 0o755)
        ns_env = os.path.join(self.tmp, "nsupdate.env")
        with open(ns_env, "w") as f:
            f.write(f"DKIMROTOR_NS_SERVER=127.0.0.1\nDKIMROTOR_NS_PORT={self.dns_port}\n"
                    f"DKIMROTOR_NS_ZONE={DOMAIN}\nDKIMROTOR_NS_TSIG={self.tsig}\n"
                    "DKIMROTOR_NS_TTL=60\nDKIMROTOR_NS_TIMEOUT=5\n")
        os.chmod(ns_env, 0o600)
        with open(self.conf, "w") as f:
            f.write(self.config())
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "DKIMROTOR_NS_CONFIG": ns_env}
        self.daemon = subprocess.Popen([self.args.dkimrotor, "run", "-c", self.conf], env=env,
                                       stdout=open(self.dr_log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(self.daemon)
        if not wait_for(lambda: port_open(self.milter_port) or self.daemon.poll() is not None,
                        30):
            raise RuntimeError("dkimrotor did not listen in 30 s")
        if self.daemon.poll() is not None:
            raise RuntimeError(f"dkimrotor exited {self.daemon.returncode}:\n{tail(self.dr_log)}")
        t0 = time.monotonic()
        wait_for(lambda: len(self.active()) >= 3, 90, 0.5)
        active = self.active()
        log(f"dkimrotor on inet:{self.milter_port}@127.0.0.1: active {active} after "
            f"{time.monotonic() - t0:.1f} s")
        if len(active) < 3:
            raise RuntimeError("fewer than 3 active keys after 90 s:\n"
                               + self.dkimrotor("keys").stdout)

    def start_sendmail(self):
        cache = self.args.cache
        root = os.path.join(self.tmp, "root")
        t0 = time.monotonic()
        binary, m4, libdir = unpack_sendmail(cache, root)
        with open(os.path.join(self.args.source, "contrib/sendmail/dkimrotor.mc")) as f:
            snippet = f.read()
        if not check(snippet.count(SNIPPET_SOCKET) == 1,
                     f"contrib/sendmail/dkimrotor.mc should name {SNIPPET_SOCKET} once"):
            raise RuntimeError("cannot point the contrib snippet at the test's milter")
        if self.args.break_milter:
            snippet = snippet.replace(SNIPPET_SOCKET, f"S=inet:{self.dead_port}@127.0.0.1")
            snippet = snippet.replace("F=T, ", "")
        else:
            snippet = snippet.replace(SNIPPET_SOCKET, f"S=inet:{self.milter_port}@127.0.0.1")
        self.sink = SmtpSink(self.sink_port)
        self.sendmail = Sendmail(self.tmp, binary, m4, libdir,
                                 os.path.join(root, "usr/share/sendmail/cf"), snippet,
                                 self.smtp_port, self.sink_port)
        cf = self.sendmail.cf_text()
        x_lines = [l for l in cf.splitlines() if l.startswith("Xdkimrotor")]
        check(len(x_lines) == 1 and "F=T" in x_lines[0] and "T=C:10s;S:30s;R:60s;E:5m"
              in x_lines[0] or self.args.break_milter,
              f"sendmail.cf: want one Xdkimrotor line with F=T and the snippet's timeouts: "
              f"{x_lines}")
        envfrom = [l for l in cf.splitlines() if l.startswith("O Milter.macros.envfrom=")]
        check(len(envfrom) == 1 and "{auth_authen}" in envfrom[0] and
              envfrom[0].startswith("O Milter.macros.envfrom=i, "),
              f"sendmail.cf: want Sendmail's envfrom macros and {{auth_authen}}: {envfrom}")
        self.sendmail.start()
        log(f"Sendmail {HOSTNAME} on 127.0.0.1:{self.smtp_port} ({x_lines[0] if x_lines else '?'})"
            f", relaying to the sink on 127.0.0.1:{self.sink_port}; ready in "
            f"{time.monotonic() - t0:.1f} s")

    def cleanup(self):
        if self.sendmail:
            self.sendmail.stop()
        if self.sink:
            self.sink.close()
        for p in reversed(self.procs):
            stop_process(p)
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def diagnostics(self):
        if self.sendmail:
            print(f"--- tail of {self.sendmail.out}")
            print(tail(self.sendmail.out, 20), end="")
        print(f"--- tail of {self.dr_log}")
        print(tail(self.dr_log, 30), end="", flush=True)


# --- mail ---------------------------------------------------------------------------------
def queue_id(msg):
    """Sendmail's queue id from the Received field it added (`id 5B3...`), or None."""
    m = re.search(rb"^Received:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", msg, re.I | re.M)
    m = m and re.search(rb"\bid ([0-9A-Za-z]+)", m.group(1))
    return m.group(1).decode() if m else None


def verify(lab, label, got, want_selectors):
    """Each Message-ID delivered once, with one signature by an active key, verifying with
    dkimpy and Mail::DKIM. Returns {selector: count}."""
    check(all(len(v) == 1 for v in got.values()),
          f"{label}: {sum(len(v) > 1 for v in got.values())} messages delivered more than once")
    msgs = [v[0] for v in got.values()]
    verify_mail(check, lab.args.source, lab.dns_port, lab.tmp, label,
                [(b"a", m, b"") for m in msgs], DOMAIN, lambda s: s in want_selectors)
    counts = {}
    for m in msgs:
        sigs = signatures(m)
        if sigs:
            counts[sigs[0].get("s")] = counts.get(sigs[0].get("s"), 0) + 1
    return counts


def test_basic(lab, active):
    n = 60
    msgs = [make_message(DOMAIN, "basic", i, "sendmail e2e") for i in range(n)]
    t0 = time.monotonic()
    errors = (send_batch(lab.smtp_port, msgs[:30], SENDER)
              + send_batch(lab.smtp_port, msgs[30:], SENDER))
    check(not errors, f"basic: {len(errors)} of {n} sends failed: {errors[:3]}")
    got = wait_delivered(lab.sink, [m for m, _ in msgs], 60)
    log(f"basic: sent {n}, {len(got)} delivered in {time.monotonic() - t0:.1f} s")
    check(len(got) == n, f"basic: only {len(got)} of {n} messages reached the sink")
    counts = verify(lab, "basic", got, set(active))
    log(f"basic: selectors {counts}")
    check(set(counts) == set(active) and all(10 <= c <= 30 for c in counts.values()),
          f"basic: want the 3 active selectors {active} taking turns (20 +- 10 each): {counts}")
    # Sendmail hands dkimrotor its queue id as {i}: the audit line names the message.
    try:
        with open(lab.audit, errors="replace") as f:
            audit = f.read().splitlines()
    except OSError:
        audit = []
    missing = []
    for mid, (m, *_) in got.items():
        qid, sigs = queue_id(m), signatures(m)
        want = sigs and f" s={sigs[0].get('s')} "
        if not qid or not want or not any(f"signed {qid} " in l and want in l for l in audit):
            missing.append((mid, qid))
    check(not missing, f"basic: {len(missing)} messages' Sendmail queue ids are not in the "
          f"audit log with their selector, e.g. {missing[:2]}; audit: {audit[:2]}")


def test_reload(lab, active):
    stop = threading.Event()
    lock = threading.Lock()
    accepted, errors = [], []

    def sender(k):
        i = 0
        try:
            with smtplib.SMTP("127.0.0.1", lab.smtp_port, timeout=60) as s:
                s.ehlo("client.e2e.test")
                while not stop.is_set():
                    mid, text = make_message(DOMAIN, f"reload{k}", i, "sendmail e2e")
                    i += 1
                    try:
                        refused = s.sendmail(SENDER, ["someone@example.net"], text)
                        with lock:
                            (errors if refused else accepted).append(mid)
                    except smtplib.SMTPException as e:
                        with lock:
                            errors.append(f"{mid}: {e}")
                        s.rset()
                    time.sleep(0.05)
        except Exception as e:  # connection-level failure
            with lock:
                errors.append(f"sender {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    try:
        time.sleep(1)
        for _ in range(4):
            lab.daemon.send_signal(signal.SIGHUP)
            time.sleep(1.5)
        time.sleep(max(0.0, 8 - (time.monotonic() - t0)))
    finally:
        stop.set()
        for t in threads:
            t.join(90)
    log(f"reload: {len(accepted)} accepted, {len(errors)} errors in "
        f"{time.monotonic() - t0:.1f} s with 4 SIGHUPs")
    check(not errors, f"reload: {len(errors)} SMTP errors: {errors[:3]}")
    check(len(accepted) >= 20, f"reload: only {len(accepted)} messages accepted under load")
    check(lab.daemon.poll() is None, "reload: dkimrotor exited during the reloads")
    got = wait_delivered(lab.sink, accepted, 60)
    check(len(got) == len(accepted), f"reload: {len(accepted) - len(got)} of {len(accepted)} "
          "accepted messages did not reach the sink")
    log(f"reload: selectors {verify(lab, 'reload', got, set(active))}")


def test_external(lab):
    mid, text = make_message(DOMAIN, "external", 0, "sendmail e2e")
    errors = send_batch(lab.smtp_port, [(mid, text)], SENDER, source="127.0.0.2")
    check(not errors, f"external: send from 127.0.0.2 failed: {errors}")
    got = wait_delivered(lab.sink, [mid], 30)
    if check(mid in got, "external: the message from 127.0.0.2 did not reach the sink"):
        n = len(signatures(got[mid][0]))
        check(n == 0, f"external: the message from 127.0.0.2 (outside internal_hosts) has {n} "
              "DKIM-Signature fields, want none")
        log(f"external: the message from 127.0.0.2 arrived with {n} DKIM-Signatures")


def test_added_fields(lab, active):
    """Sendmail adds a missing Date and Message-Id after the milter has signed: with the
    default configuration (an absent Date or Message-ID is not oversigned) the message still
    verifies."""
    subject = f"no date, no message-id {os.getpid()}"
    text = (f"From: User <user@{DOMAIN}>\r\nTo: Someone <someone@example.net>\r\n"
            f"Subject: {subject}\r\n\r\nSent without Date and Message-ID.\r\n")
    errors = send_batch(lab.smtp_port, [("(no Message-ID)", text)], SENDER)
    check(not errors, f"added fields: send failed: {errors}")

    def found():
        return [m for m in lab.sink.messages() if subject.encode() in m]
    wait_for(found, 30, 0.25)
    got = found()
    if check(len(got) == 1, f"added fields: {len(got)} deliveries of the message, want 1"):
        m = got[0]
        check(re.search(rb"^Date:", m, re.M | re.I) and re.search(rb"^Message-Id:", m, re.M | re.I),
              "added fields: Sendmail should have added Date and Message-Id")
        verify_mail(check, lab.args.source, lab.dns_port, lab.tmp, "added fields",
                    [(b"a", m, b"")], DOMAIN, lambda s: s in set(active))


def run(lab):
    lab.start_knot()
    lab.start_dkimrotor()
    active = lab.active()
    lab.start_sendmail()
    test_basic(lab, active)
    test_reload(lab, active)
    test_external(lab)
    test_added_fields(lab, active)
    check(lab.daemon.poll() is None, f"dkimrotor exited ({lab.daemon.returncode})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True, help="the source tree (contrib/)")
    ap.add_argument("--cache", help="where the Sendmail .debs are kept "
                                    "(default: sendmail-debs next to the dkimrotor binary)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--break-milter", action="store_true",
                    help="self-test: a dead milter port without F=T; the test must fail")
    args = ap.parse_args()
    args.dkimrotor = os.path.abspath(args.dkimrotor)
    args.source = os.path.abspath(args.source)
    args.cache = os.path.abspath(args.cache or os.path.join(os.path.dirname(args.dkimrotor),
                                                            "sendmail-debs"))
    return run_lab(check, "the Sendmail end-to-end test needs root (namespaces, Sendmail)",
                   ("knotd", "kdig", "knsupdate", "perl", "unshare", "apt-get", "dpkg", "ldd"),
                   lambda: Lab(args), run)

if __name__ == "__main__":
    sys.exit(main())
