#!/usr/bin/python3
"""The parts of the performance lab, each started on 127.0.0.1 and free ports in one temporary
directory, and all stopped and removed again (also on Ctrl-C, SIGTERM or an exception):

  Knot          an authoritative server for the test zone, accepting TSIG-signed updates;
  Dkimrotor     `dkimrotor run`: rsa-sha256 only, 2048 bits, active_keys = 1 (comparable with
                OpenDKIM's single key), min_propagation 0, keys made active first with
                `dkimrotor rotate` and published to Knot through contrib/hooks/nsupdate;
                audit log on;
  OpenDkim      `opendkim -f -x CONF`: one 2048-bit key from opendkim-genkey, relaxed/relaxed,
                rsa-sha256, and the same signed and oversigned header fields as dkimrotor;
  NullFilter    tests/milter/dkimrotor_null_filter: adds "X-Null-Filter: yes" and accepts;
  SmtpSink      Postfix's smtp-sink, optionally dumping every message to a folder;
  Postfix       a private Postfix instance (own main.cf and master.cf, no chroot, a loopback
                port) with smtpd_milters pointing at one milter, or none, relaying to a sink.

Every milter part has .socket (libmilter syntax, inet:PORT@127.0.0.1), .pid (for /proc CPU
and memory readings) and .keys ({"sel._domainkey.domain": TXT value}, empty for the null
filter), so signatures can be verified without DNS.

`perf_lab.py --build DIR --selftest` starts every part, sends one message through Postfix to
each milter with smtp-source and verifies what arrives with dkimpy.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from mail_lab import (free_ports, knot_serves, port_open, stop_postfix, tail, wait_for,  # noqa: E402
                      write_knot, write_postfix_config)

DOMAIN = "perf.test"
SOURCE_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# dkimrotor's defaults (conf/config.h, SigningConfig::headers and ::oversign). OpenDKIM gets
# the same lists; its header lists accept the same '*' wildcards.
SIGNED_HEADERS = ["from", "reply-to", "subject", "date", "to", "cc", "resent-*", "in-reply-to",
                  "references", "message-id", "mime-version", "content-type",
                  "content-transfer-encoding", "list-id", "list-*"]
OVERSIGNED_HEADERS = ["from", "subject", "date", "to", "cc", "reply-to", "message-id"]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def postfix_milter(socket_spec):
    """libmilter's inet:PORT@HOST as Postfix writes it: inet:HOST:PORT."""
    m = re.fullmatch(r"inet:(\d+)@(.+)", socket_spec)
    return f"inet:{m.group(2)}:{m.group(1)}" if m else socket_spec


def zone_txt(text):
    """The concatenated quoted strings of a zone-file TXT record (or kdig +short output)."""
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))


# --- /proc readings --------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def status_kib(pid, field):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0); False when the kernel refuses."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- DKIM verification with known key records ------------------------------------------------
def verify_dkim(message, keys):
    """(number of DKIM-Signature fields, all of them verify with dkimpy against keys)."""
    import dkim  # Debian's python3-dkim; only the verifying parts need it

    message = re.sub(rb"\r?\n", b"\r\n", message)
    count = len(re.findall(rb"^DKIM-Signature:", message, re.I | re.M))

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        return keys.get(name.rstrip("."), "").encode()

    if count == 0:
        return 0, False
    d = dkim.DKIM(message)
    try:
        ok = all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(count))
    except Exception:  # dkimpy raises on malformed input
        ok = False
    return count, ok


# --- the lab ---------------------------------------------------------------------------------
class Lab:
    """Owns the temporary directory and every process started in it. Use as a context manager;
    leaving it (normally, by an exception, Ctrl-C or SIGTERM) stops everything and removes the
    directory (unless keep)."""

    def __init__(self, build, source=SOURCE_DIR, keep=False):
        self.build = os.path.abspath(build)
        self.source = os.path.abspath(source)
        self.keep = keep
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-perf.")
        os.chmod(self.tmp, 0o755)
        self.procs = []       # (name, Popen), stopped in reverse order
        self.stoppers = []    # callables, run before the processes are stopped
        self.closed = False
        self.dirs = [self.tmp]  # removed on close
        self._old_handlers = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        self.close()
        for sig, h in self._old_handlers.items():
            signal.signal(sig, h)
        return False

    @staticmethod
    def _on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def private_dir(self, name):
        """A folder whose every parent is writable by root alone: OpenDKIM refuses a
        configuration or key file below a world-writable folder such as /tmp."""
        base = next(b for b in ("/run", "/var/lib", "/root") if os.path.isdir(b)
                    and not os.stat(b).st_mode & 0o022)
        d = tempfile.mkdtemp(prefix=f"dkimrotor-perf-{name}.", dir=base)
        self.dirs.append(d)
        return d

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def binary(self, rel):
        p = os.path.join(self.build, rel)
        if not os.access(p, os.X_OK):
            raise RuntimeError(f"{p} is missing: build with scripts/perf (or cmake --build {self.build})")
        return p

    def spawn(self, name, argv, env=None, log_path=None):
        """Starts a process in its own session (so a terminal's Ctrl-C reaches only us and we
        stop it in order); its stdout and stderr go to log_path."""
        log_path = log_path or self.path(f"{name}.log")
        out = open(log_path, "ab")
        try:
            p = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        self.procs.append((name, p))
        return p

    def stop_process(self, p, timeout=10):
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except OSError:
            p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                p.kill()
            p.wait()

    def close(self):
        if self.closed:
            return
        self.closed = True
        # A second Ctrl-C or SIGTERM during cleanup must not leave things behind.
        old = {sig: signal.signal(sig, signal.SIG_IGN)
               for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for stop in reversed(self.stoppers):
                try:
                    stop()
                except Exception as e:
                    log(f"cleanup: {e}")
            for name, p in reversed(self.procs):
                self.stop_process(p)
            if self.keep:
                log(f"kept {' '.join(self.dirs)}")
            else:
                for d in self.dirs:
                    shutil.rmtree(d, ignore_errors=True)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)


class Knot:
    def __init__(self, lab, zones=(DOMAIN,)):
        self.lab, self.zones = lab, list(zones)
        (self.port,) = free_ports(1)
        self.tsig = lab.path("tsig.key")
        cmd = write_knot(lab.path("knot"), self.port, self.zones, "perf", self.tsig)
        self.proc = lab.spawn("knot", cmd)
        self.pid = self.proc.pid
        if not wait_for(lambda: all(knot_serves(self.port, z) for z in self.zones), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(lab.path("knot.log")))
        log(f"Knot serving {', '.join(self.zones)} on 127.0.0.1:{self.port}")

    def query(self, rtype, name):
        return subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), "+short", rtype, name],
                              capture_output=True, text=True, timeout=10).stdout

    def txt(self, name):
        return zone_txt(self.query("TXT", name))


class Dkimrotor:
    """`dkimrotor run` signing DOMAIN with one active RSA-2048 key."""

    name = "dkimrotor"

    def __init__(self, lab, knot, domain=DOMAIN, log_level="info"):
        self.lab, self.knot, self.domain, self.log_level = lab, knot, domain, log_level
        (port,) = free_ports(1)
        self.socket = f"inet:{port}@127.0.0.1"
        self.port = port
        self.binary = lab.binary("dkimrotor")
        self.conf = lab.path("dkimrotor.conf")
        self.log_path = lab.path("dkimrotor.log")
        self.audit = lab.path("signed.log")
        self.keystore = lab.path("keystore")
        self.extra_domains = []
        self.write_config()
        r = subprocess.run([self.binary, "rotate", "-c", self.conf, "--domain", domain],
                           capture_output=True, text=True, env=self.env(), timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"dkimrotor rotate failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        self.proc = lab.spawn("dkimrotor", [self.binary, "run", "-c", self.conf], env=self.env(),
                              log_path=self.log_path)
        self.pid = self.proc.pid
        if not wait_for(lambda: port_open(port) or self.proc.poll() is not None, 30):
            raise RuntimeError("dkimrotor did not listen in 30 s:\n" + tail(self.log_path))
        if self.proc.poll() is not None:
            raise RuntimeError(f"dkimrotor run exited {self.proc.returncode}:\n" + tail(self.log_path))
        self.keys = self.read_keys()
        if not self.active_selectors() or not all(self.keys.values()):
            raise RuntimeError("dkimrotor has no active key:\n" + self.keys_text())
        log(f"dkimrotor (pid {self.pid}) on {self.socket}, active: {', '.join(self.active_selectors())}")

    def env(self):
        env = dict(os.environ)
        env.update(DKIMROTOR_NS_SERVER="127.0.0.1", DKIMROTOR_NS_PORT=str(self.knot.port),
                   DKIMROTOR_NS_TSIG=self.knot.tsig,
                   DKIMROTOR_NS_CONFIG=self.lab.path("none.env"), DKIMROTOR_NS_TTL="60")
        return env

    def domain_entry(self, domain, bits, prepublish, stream):
        hook = os.path.join(self.lab.source, "contrib", "hooks", "nsupdate")
        return (f'  {{ domain = "{domain}"; stream = "{stream}"; algorithms = ["rsa-sha256"];\n'
                f'    bits = {bits}; active_keys = 1; prepublish = {prepublish};'
                f' key_lifetime = "30d"; grace = "7d";\n'
                f'    publish_hook = "{hook}"; }}')

    def config_text(self):
        entries = [self.domain_entry(self.domain, 2048, 1, "perf")]
        entries += [self.domain_entry(d, bits, 1, "gen") for d, bits in self.extra_domains]
        return f"""milter:   {{ socket = "{self.socket}"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; sign_authenticated = true; }};
keystore: {{ directory = "{self.keystore}"; }};
dns:      {{ resolvers = ["127.0.0.1:{self.knot.port}"]; check_authoritative = true;
            authoritative_port = {self.knot.port};
            min_propagation = "0s"; poll = "30s"; timeout = "2s"; }};
log:      {{ level = "{self.log_level}"; audit = "{self.audit}"; }};
{self.metrics_text()}domains = (
{(',' + chr(10)).join(entries)} );
"""

    def metrics_text(self):
        """DKIMROTOR_PERF_METRICS=IP:PORT turns the /metrics endpoint on, to measure its cost."""
        listen = os.environ.get("DKIMROTOR_PERF_METRICS", "")
        return f'metrics:  {{ listen = "{listen}"; }};\n' if listen else ""

    def write_config(self):
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(self.config_text())
        os.replace(tmp, self.conf)

    def add_domain(self, domain, bits):
        """Adds a domain to the configuration file and reloads (SIGHUP): the engine then
        generates its keys on the rotation thread."""
        self.extra_domains.append((domain, bits))
        self.write_config()
        os.kill(self.pid, signal.SIGHUP)

    def keys_json(self):
        r = subprocess.run([self.binary, "keys", "-c", self.conf, "--json"], capture_output=True,
                           text=True, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def keys_text(self):
        return subprocess.run([self.binary, "keys", "-c", self.conf], capture_output=True,
                              text=True, timeout=60).stdout

    def read_keys(self):
        """{name: TXT} of the domain's active and ready keys, as Knot serves them."""
        keys = {}
        for d in (self.keys_json() or {}).get("domains", []):
            if d.get("domain") != self.domain:
                continue
            for k in d.get("keys", []):
                if k.get("state") in ("active", "ready"):
                    name = f"{k['selector']}._domainkey.{self.domain}"
                    keys[name] = self.knot.txt(name)
        return keys

    def active_selectors(self):
        return [k["selector"] for d in (self.keys_json() or {}).get("domains", [])
                if d.get("domain") == self.domain
                for k in d.get("keys", []) if k.get("state") == "active"]

    def audit_lines(self):
        try:
            with open(self.audit, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return 0


class OpenDkim:
    """OpenDKIM 2.11 signing DOMAIN with one 2048-bit key, configured like dkimrotor."""

    name = "opendkim"
    selector = "odkim"

    def __init__(self, lab, domain=DOMAIN):
        self.lab, self.domain = lab, domain
        (port,) = free_ports(1)
        self.port = port
        self.socket = f"inet:{port}@127.0.0.1"
        d = lab.private_dir("opendkim")
        subprocess.run(["opendkim-genkey", "-b", "2048", "-a", "-d", domain, "-s", self.selector,
                        "-D", d], check=True, capture_output=True, timeout=120)
        key = os.path.join(d, f"{self.selector}.private")
        os.chmod(key, 0o600)
        with open(os.path.join(d, f"{self.selector}.txt")) as f:
            record = zone_txt(f.read())
        self.keys = {f"{self.selector}._domainkey.{domain}": record}
        self.conf = os.path.join(d, "opendkim.conf")
        self.log_path = lab.path("opendkim.log")
        with open(self.conf, "w") as f:
            f.write(f"""Mode                    s
Domain                  {domain}
Selector                {self.selector}
KeyFile                 {key}
Canonicalization        relaxed/relaxed
SignatureAlgorithm      rsa-sha256
SignHeaders             {','.join(SIGNED_HEADERS)}
OversignHeaders         {','.join(OVERSIGNED_HEADERS)}
InternalHosts           127.0.0.1
Socket                  {self.socket}
UserID                  root
Syslog                  no
AutoRestart             no
Background              no
""")
        self.proc = lab.spawn("opendkim", ["opendkim", "-f", "-x", self.conf],
                              log_path=self.log_path)
        self.pid = self.proc.pid
        if not wait_for(lambda: port_open(port) or self.proc.poll() is not None, 30):
            raise RuntimeError("opendkim did not listen in 30 s:\n" + tail(self.log_path))
        if self.proc.poll() is not None:
            raise RuntimeError(f"opendkim exited {self.proc.returncode}:\n" + tail(self.log_path))
        log(f"OpenDKIM (pid {self.pid}) on {self.socket}, key {self.selector}._domainkey.{domain}")


class NullFilter:
    """The do-nothing libmilter filter: the ceiling any signer built on libmilter can reach."""

    name = "null"
    keys = {}

    def __init__(self, lab):
        (port,) = free_ports(1)
        self.port = port
        self.socket = f"inet:{port}@127.0.0.1"
        self.log_path = lab.path("null_filter.log")
        binary = lab.binary("tests/milter/dkimrotor_null_filter")
        self.proc = lab.spawn("null_filter", [binary, "--socket", self.socket],
                              log_path=self.log_path)
        self.pid = self.proc.pid
        if not wait_for(lambda: port_open(port) or self.proc.poll() is not None, 30):
            raise RuntimeError("the null filter did not listen in 30 s:\n" + tail(self.log_path))
        if self.proc.poll() is not None:
            raise RuntimeError(f"the null filter exited {self.proc.returncode}:\n" +
                               tail(self.log_path))
        log(f"null filter (pid {self.pid}) on {self.socket}")


class SmtpSink:
    """Postfix's smtp-sink; with dump, every message is written to its own file in dump_dir."""

    def __init__(self, lab, name="sink", dump=True):
        (self.port,) = free_ports(1)
        self.dump_dir = lab.path(f"{name}-mail") if dump else None
        argv = ["smtp-sink", "-u", "postfix"]
        if dump:
            os.makedirs(self.dump_dir)
            shutil.chown(self.dump_dir, "postfix")
            argv += ["-d", os.path.join(self.dump_dir, "m.")]
        argv += [f"127.0.0.1:{self.port}", "256"]
        self.proc = lab.spawn(name, argv)
        self.pid = self.proc.pid
        if not wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, 15):
            raise RuntimeError("smtp-sink did not listen:\n" + tail(lab.path(f"{name}.log")))
        if self.proc.poll() is not None:
            raise RuntimeError(f"smtp-sink exited {self.proc.returncode}:\n" +
                               tail(lab.path(f"{name}.log")))

    def files(self):
        if not self.dump_dir:
            return []
        return [os.path.join(self.dump_dir, n) for n in os.listdir(self.dump_dir)]

    def count(self):
        return len(self.files())

    def clear(self):
        for p in self.files():
            os.unlink(p)


class Postfix:
    """A private Postfix instance listening on 127.0.0.1:PORT with smtpd_milters = milter
    (a libmilter socket string, or None for no milter), relaying everything to the sink."""

    def __init__(self, lab, name, milter, sink_port):
        self.lab, self.name = lab, name
        (self.port,) = free_ports(1)
        self.conf = lab.path(f"{name}-conf")
        self.log_path = lab.path(f"{name}.log")
        queue, data = lab.path(f"{name}-spool"), lab.path(f"{name}-data")
        for d in (self.conf, queue, data):
            os.makedirs(d)
        shutil.chown(data, "postfix")
        milters = postfix_milter(milter) if milter else ""
        write_postfix_config(self.conf, queue, data, domain=DOMAIN, smtp_port=self.port,
                             sink_port=sink_port, milters=milters, default_action="tempfail",
                             log_file=self.log_path, log_prefix=lab.tmp,
                             extra="smtpd_client_connection_rate_limit = 0\n"
                                   "smtpd_client_message_rate_limit = 0\n"
                                   "smtpd_client_connection_count_limit = 0\n")
        self.env = dict(os.environ, MAIL_CONFIG=self.conf)
        # `postfix start` checks what it needs; a separate `postfix check` costs 8 s here.
        lab.stoppers.append(self.stop)
        r = subprocess.run(["postfix", "-c", self.conf, "start"], capture_output=True, text=True,
                           env=self.env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{r.stdout}{r.stderr}")
        if not wait_for(lambda: port_open(self.port), 30):
            raise RuntimeError("Postfix did not listen in 30 s:\n" + tail(self.log_path))
        log(f"Postfix '{name}' on 127.0.0.1:{self.port}, smtpd_milters = {milters or '(none)'}")

    def queue_empty(self):
        r = subprocess.run(["postqueue", "-c", self.conf, "-j"], capture_output=True, text=True,
                           env=self.env, timeout=30)
        return r.returncode == 0 and not r.stdout.strip()

    def stop(self):
        stop_postfix(self.conf)


def smtp_source(port, messages, sessions=1, length=1024, sender=f"user@{DOMAIN}",
                recipient="rcpt@example.net", timeout=600):
    """Runs smtp-source; returns (seconds, exit status, output)."""
    argv = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(length),
            "-f", sender, "-t", recipient, f"127.0.0.1:{port}"]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return time.monotonic() - t0, r.returncode, (r.stdout + r.stderr).strip(), argv


def selftest(args):
    """Starts every part and sends one message through Postfix to each milter."""
    failures = 0
    with Lab(args.build, keep=args.keep) as lab:
        knot = Knot(lab)
        milters = [Dkimrotor(lab, knot), OpenDkim(lab), NullFilter(lab), None]
        for m in milters:
            name = m.name if m else "none"
            sink = SmtpSink(lab, f"sink-{name}")
            pf = Postfix(lab, f"postfix-{name}", m.socket if m else None, sink.port)
            secs, rc, out, _ = smtp_source(pf.port, 1)
            if rc != 0 or out:
                print(f"FAIL {name}: smtp-source exit {rc}: {out}")
                failures += 1
                continue
            if not wait_for(lambda: sink.count() >= 1, 30):
                print(f"FAIL {name}: nothing reached the sink\n" + tail(pf.log_path))
                failures += 1
                continue
            msg = open(sink.files()[0], "rb").read()
            n, ok = verify_dkim(msg, m.keys if m else {})
            if m is None or m.name == "null":
                want = b"X-Null-Filter: yes" in msg if m else True
                good = n == 0 and want
            else:
                good = n == 1 and ok
            h = re.search(rb"^DKIM-Signature:.*?(?=^\S)", msg, re.M | re.S)
            print(f"{'ok  ' if good else 'FAIL'} {name}: {n} signature(s), verifies: {ok}"
                  + (f"\n{h.group(0).decode(errors='replace')}" if h and args.verbose else ""))
            failures += 0 if good else 1
            if args.verbose:
                print(msg.decode(errors="replace"))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True, help="the build directory")
    ap.add_argument("--selftest", action="store_true", help="start each part, sign one message")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        return selftest(args)
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
