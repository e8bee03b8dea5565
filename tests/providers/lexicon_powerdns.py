#!/usr/bin/python3
"""contrib/hooks/lexicon against a real, private PowerDNS Authoritative and its HTTP API.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - pdns_server (gsqlite3 database from pdns-backend-sqlite3's schema, caches off), its API
    reached directly or through a small proxy in this script that can break it on demand
    (slow, 500, "204 to writes without forwarding them");
  - the hook itself, with the minimal environment the daemon gives it (no HOME);
  - `dkimrotor run` publishing through the hook, signing mail fed to its milter socket.

Checks:
  a. The hook: publish twice (idempotent), a second publish replaces (other values left by
     someone else too), an RSA-4096 record (> 512 bytes) served by DNS as one TXT with the
     joined value, revoke, a delegated record (DKIMROTOR_RECORD_NAME/_ZONE), a revoke that
     refuses to touch another key's record (DKIMROTOR_KEY_VALUE).
  b. The daemon: keys for example.test (RSA-2048), big.test (RSA-4096) and customer.example
     (CNAME-delegated to slots in keys.provider.test) published through the API and served
     by PowerDNS; mail signed through the milter verifies with dkimpy and Mail::DKIM asking
     PowerDNS; emergency rotations: the spare signs, PowerDNS serves p= (at the slot for the
     delegated domain).
  c. Faults: API down, slow (beyond DKIMROTOR_LEXICON_TIMEOUT), 401, 500, and an API that
     accepts writes and ignores them: the hook exits non-zero with one clear line and the
     served record is untouched; in the daemon the revocation stays due, the log says why,
     and signing goes on. The API key is in no process's argv during a slow call, and in no
     output of the hook or the daemon.

Needs root and the packages of scripts/install-deps; otherwise exits 77 (skipped).
Prints one line per failure and a final "N passed, M failed" line.
"""
import argparse
import http.server
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from email.utils import formatdate

SKIP = 77
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from dkim_lab import Checks, log  # noqa: E402
from mail_lab import free_ports, port_open, stop_process, tail, wait_for  # noqa: E402

SCHEMA = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"
HOOK_PREFIX = "dkimrotor lexicon hook: "
SLOTS = ("k1", "k2", "k3")

check = Checks()


def missing_requirements():
    if os.geteuid() != 0:
        return "needs root"
    for prog in ("pdns_server", "openssl", "perl"):
        if not shutil.which(prog):
            return f"{prog} is missing (scripts/install-deps)"
    if not os.path.exists(SCHEMA):
        return f"{SCHEMA} is missing (pdns-backend-sqlite3)"
    for module in ("lexicon", "dkim", "dns.resolver"):
        r = subprocess.run(["/usr/bin/python3", "-c", f"import {module}"], capture_output=True)
        if r.returncode != 0:
            return f"Python module {module} is missing (scripts/install-deps)"
    if subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e", "1"],
                      capture_output=True).returncode != 0:
        return "Mail::DKIM is missing (libmail-dkim-perl)"
    return None


# --- the API proxy ---------------------------------------------------------------------------
class Proxy(http.server.ThreadingHTTPServer):
    """Forwards to PowerDNS's API, or breaks: mode "pass", "slow" (answers after 30 s),
    "500", "echo-key" (500 with the API key in the reason phrase) or "ignore-writes" (204 to
    PATCH/PUT/POST/DELETE, nothing forwarded)."""
    daemon_threads = True

    def __init__(self, port, upstream):
        self.upstream = upstream
        self.mode = "pass"
        self.requests = []
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", port), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def relay(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv.requests.append((self.command, self.path))
        mode = srv.mode
        if mode == "slow":
            srv.stop.wait(30)
        if mode == "500":
            return self.answer(500, b'{"error": "Internal Server Error"}')
        if mode == "echo-key":  # an API that repeats the credential in its error's reason
            return self.answer(500, b"", f"key {self.headers.get('X-API-Key')} is no good")
        if mode == "ignore-writes" and self.command != "GET":
            return self.answer(204, b"")
        req = urllib.request.Request(srv.upstream + self.path, data=body or None,
                                     method=self.command)
        for h in ("X-API-Key", "Content-Type"):
            if self.headers.get(h):
                req.add_header(h, self.headers[h])
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                self.answer(r.status, r.read())
        except urllib.error.HTTPError as e:
            self.answer(e.code, e.read())

    def answer(self, code, body, reason=None):
        try:
            self.send_response(code, reason)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)
        except OSError:
            pass

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = relay


# --- the lab ---------------------------------------------------------------------------------
class Lab:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-lexicon.")
        os.chmod(self.tmp, 0o755)
        (self.dns_port, self.api_port, self.proxy_port, self.milter_port,
         self.dead_port) = free_ports(5)
        self.api_key = "pdns-" + secrets.token_hex(16)
        self.procs = []
        self.proxy = None
        self.daemon = None
        self.dr_log = os.path.join(self.tmp, "dkimrotor.log")
        self.pdns_log = os.path.join(self.tmp, "pdns.log")
        self.conf = os.path.join(self.tmp, "dkimrotor.conf")
        self.lexicon_env = os.path.join(self.tmp, "lexicon.env")
        self.hook_outputs = []   # every stderr/stdout of the hook, for the secret check
        self.hook = os.path.join(args.source, "contrib", "hooks", "lexicon")

    def start_pdns(self):
        folder = os.path.join(self.tmp, "pdns")
        os.makedirs(folder)
        db = os.path.join(folder, "pdns.sqlite3")
        with open(SCHEMA) as f, sqlite3.connect(db) as c:
            c.executescript(f.read())
        with open(os.path.join(folder, "pdns.conf"), "w") as f:
            f.write(f"""launch=gsqlite3
gsqlite3-database={db}
api=yes
api-key={self.api_key}
webserver=yes
webserver-address=127.0.0.1
webserver-port={self.api_port}
webserver-allow-from=127.0.0.0/8
local-address=127.0.0.1
local-port={self.dns_port}
security-poll-suffix=
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
daemon=no
guardian=no
disable-syslog=yes
loglevel=4
socket-dir={folder}
""")
        p = subprocess.Popen(["pdns_server", f"--config-dir={folder}"],
                             stdout=open(self.pdns_log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.pdns = p
        if not wait_for(lambda: port_open(self.api_port) or p.poll() is not None, 20):
            raise RuntimeError("PowerDNS's API did not listen in 20 s:\n" + tail(self.pdns_log))
        if p.poll() is not None:
            raise RuntimeError(f"pdns_server exited {p.returncode}:\n" + tail(self.pdns_log))
        for zone in ("example.test", "big.test", "keys.provider.test", "customer.example"):
            self.api("POST", "/zones", {"name": zone + ".", "kind": "Native",
                                       "nameservers": [f"ns1.{zone}."]})
            self.api("PATCH", f"/zones/{zone}.", {"rrsets": [{
                "name": f"ns1.{zone}.", "type": "A", "ttl": 60, "changetype": "REPLACE",
                "records": [{"content": "127.0.0.1", "disabled": False}]}]})
        # customer.example delegates its DKIM records to keys.provider.test (slots k1-k3)
        self.api("PATCH", "/zones/customer.example.", {"rrsets": [{
            "name": f"{slot}._domainkey.customer.example.", "type": "CNAME", "ttl": 60,
            "changetype": "REPLACE", "records": [{
                "content": f"{slot}._domainkey.keys.provider.test.", "disabled": False}]}
            for slot in SLOTS]})
        if not wait_for(lambda: self.served_raw("ns1.example.test", "A") == ["127.0.0.1"], 10):
            raise RuntimeError("PowerDNS does not serve example.test:\n" + tail(self.pdns_log))
        log(f"PowerDNS: DNS on 127.0.0.1:{self.dns_port}, API on 127.0.0.1:{self.api_port}")

    def start_proxy(self):
        self.proxy = Proxy(self.proxy_port, f"http://127.0.0.1:{self.api_port}")
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()

    def api(self, method, path, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}/api/v1/servers/localhost{path}",
            data=json.dumps(body).encode() if body is not None else None, method=method,
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return json.loads(data) if data else None

    # DNS as PowerDNS serves it, through dnspython
    def served_raw(self, name, rtype="TXT"):
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype
        q = dns.message.make_query(name, rtype)
        try:
            r = dns.query.tcp(q, "127.0.0.1", port=self.dns_port, timeout=3)
        except (dns.exception.DNSException, OSError):
            return None
        out = []
        for rrset in r.answer:
            if dns.rdatatype.to_text(rrset.rdtype) != rtype:
                continue  # the CNAME of a delegated record
            for rd in rrset:
                if rtype == "TXT":
                    out.append(b"".join(rd.strings).decode())
                else:
                    out.append(rd.to_text())
        return out

    def served(self, name):
        """The TXT values PowerDNS serves for name, each with its strings joined."""
        return self.served_raw(name, "TXT")

    def txt_for_dkim(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        vals = self.served(name.rstrip(".")) or []
        return vals[0].encode() if len(vals) == 1 else b""

    # the hook, run as the daemon runs it: PATH and DKIMROTOR_* only
    def write_lexicon_env(self, server_port, api_key=None, timeout=5, path=None):
        path = path or self.lexicon_env
        text = (f"# test config\nDKIMROTOR_LEXICON_PROVIDER=powerdns\n"
                f"LEXICON_POWERDNS_PDNS_SERVER=http://127.0.0.1:{server_port}\n"
                f"LEXICON_POWERDNS_AUTH_TOKEN=\"{api_key or self.api_key}\"\n"
                f"DKIMROTOR_LEXICON_TIMEOUT={timeout}\n")
        fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, text.encode())
        os.close(fd)
        os.replace(path + ".new", path)
        return path

    def hook_env(self, config=None, **extra):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
               "DKIMROTOR_LEXICON_CONFIG": config or self.lexicon_env}
        env.update(extra)
        return env

    def run_hook(self, args, config=None, watch=None, **extra):
        p = subprocess.Popen([self.hook] + args, env=self.hook_env(config, **extra),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if watch:
            watch(p)
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += "(killed by the test after 30 s)"
        self.hook_outputs.append(out + err)
        return p.returncode, out, err

    def cleanup(self):
        if self.proxy:
            self.proxy.stop.set()
            self.proxy.shutdown()
            self.proxy.server_close()
        for p in reversed(self.procs):
            stop_process(p)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept {self.tmp}")


def rsa_record(bits):
    """A real RSA public key's DKIM record ("v=DKIM1; k=rsa; p=..."), and nothing kept."""
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                          f"rsa_keygen_bits:{bits}"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=key,
                         capture_output=True, check=True).stdout
    import base64
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def one_line_failure(rc, err, what, expect):
    lines = err.splitlines()
    check(rc != 0, f"{what}: the hook exited 0")
    check(len(lines) == 1 and lines[0].startswith(HOOK_PREFIX),
          f"{what}: stderr is not one '{HOOK_PREFIX}...' line: {err!r}")
    check(re.search(expect, err) is not None, f"{what}: stderr does not say /{expect}/: {err!r}")


# --- a. the hook ---------------------------------------------------------------------------
def test_hook(lab):
    log("a. the hook against PowerDNS's API")
    lab.write_lexicon_env(lab.api_port)
    name = "s1._domainkey.example.test"
    v1 = "v=DKIM1; k=rsa; p=" + "A" * 40
    for i in (1, 2):
        rc, out, err = lab.run_hook(["publish", "example.test", "s1", v1])
        check(rc == 0 and err == "", f"publish #{i}: exit {rc}, {err!r}")
    check(lab.served(name) == [v1], f"after publishing twice PowerDNS serves {lab.served(name)}")

    # Values someone else left, then a new value: one value remains.
    lab.api("PATCH", "/zones/example.test.", {"rrsets": [{
        "name": name + ".", "type": "TXT", "ttl": 60, "changetype": "REPLACE",
        "records": [{"content": f'"{v1}"', "disabled": False},
                    {"content": '"left by someone"', "disabled": False}]}]})
    v2 = "v=DKIM1; k=rsa; p=" + "B" * 40
    rc, out, err = lab.run_hook(["publish", "example.test", "s1", v2])
    check(rc == 0, f"publish over two values: exit {rc}, {err!r}")
    check(lab.served(name) == [v2], f"publish over two values: PowerDNS serves {lab.served(name)}")

    big = rsa_record(4096)
    check(len(big) > 512, f"the RSA-4096 record is only {len(big)} bytes")
    for i in (1, 2):
        rc, out, err = lab.run_hook(["publish", "example.test", "big", big])
        check(rc == 0, f"publish RSA-4096 #{i}: exit {rc}, {err!r}")
    raw = lab.served_raw("big._domainkey.example.test")
    check(raw == [big], "the RSA-4096 record is not served as one TXT with the joined value: "
          f"{[len(v) for v in raw or []]} bytes")
    # and dkimpy reads that record as a key
    import dkim
    try:
        parsed = dkim.util.parse_tag_value(lab.txt_for_dkim("big._domainkey.example.test"))
        check(len(parsed.get(b"p", b"")) > 700, "dkimpy reads no p= from the RSA-4096 record")
    except Exception as e:
        check(False, f"dkimpy cannot parse the RSA-4096 record: {e}")

    rc, out, err = lab.run_hook(["revoke", "example.test", "s1", "v=DKIM1; p="])
    check(rc == 0, f"revoke: exit {rc}, {err!r}")
    check(lab.served(name) == ["v=DKIM1; p="], f"after revoke PowerDNS serves {lab.served(name)}")
    rc, out, err = lab.run_hook(["revoke", "example.test", "s1", "v=DKIM1; p="])
    check(rc == 0, f"revoke again: exit {rc}, {err!r}")

    # A delegated domain: the record and the zone come from the daemon.
    slot = "slot1._domainkey.keys.provider.test"
    rc, out, err = lab.run_hook(["publish", "customer.example", "slot1", v1],
                                DKIMROTOR_RECORD_NAME=slot,
                                DKIMROTOR_RECORD_ZONE="keys.provider.test", DKIMROTOR_KEY_VALUE=v1)
    check(rc == 0, f"publish delegated: exit {rc}, {err!r}")
    check(lab.served(slot) == [v1], f"delegated: PowerDNS serves {lab.served(slot)} at {slot}")
    check(lab.served("slot1._domainkey.customer.example") in ([], None),
          "delegated: something was written under the customer's own name")
    # A revoke of a key the slot no longer holds is refused and leaves the new key alone.
    rc, out, err = lab.run_hook(["publish", "customer.example", "slot1", v2],
                                DKIMROTOR_RECORD_NAME=slot, DKIMROTOR_RECORD_ZONE="keys.provider.test")
    rc, out, err = lab.run_hook(["revoke", "customer.example", "slot1", "v=DKIM1; p="],
                                DKIMROTOR_RECORD_NAME=slot,
                                DKIMROTOR_RECORD_ZONE="keys.provider.test", DKIMROTOR_KEY_VALUE=v1)
    check(rc == 1 and "another key is at" in err and lab.served(slot) == [v2],
          f"revoking the slot's old key: exit {rc}, {err!r}, PowerDNS serves {lab.served(slot)}")
    rc, out, err = lab.run_hook(["revoke", "customer.example", "slot1", "v=DKIM1; p="],
                                DKIMROTOR_RECORD_NAME=slot,
                                DKIMROTOR_RECORD_ZONE="keys.provider.test", DKIMROTOR_KEY_VALUE=v2)
    check(rc == 0 and lab.served(slot) == ["v=DKIM1; p="],
          f"revoking the slot's key: exit {rc}, {err!r}, PowerDNS serves {lab.served(slot)}")

    # Untrusted arguments never reach the API.
    before = len(lab.proxy.requests)
    lab.write_lexicon_env(lab.proxy_port)
    for args, expect in ((["publish", "example.test", "s1;x", v1], "selector"),
                         (["publish", "example.test", "s1", 'v=DKIM1; p="x'], "must not contain"),
                         (["revoke", "example.test", "s1", v1], "empty p="),
                         (["delete", "example.test", "s1", v1], "unknown action")):
        rc, out, err = lab.run_hook(args)
        one_line_failure(rc, err, f"bad arguments {args[:3]}", expect)
        check(rc == 2, f"bad arguments {args[:3]}: exit {rc}, not 2")
    check(len(lab.proxy.requests) == before, "the hook called the API with bad arguments")
    # Only LEXICON_* and DKIMROTOR_LEXICON_* in the file.
    bad = os.path.join(lab.tmp, "bad.env")
    with open(bad, "w") as f:
        f.write("PYTHONPATH=/tmp\n")
    rc, out, err = lab.run_hook(["publish", "example.test", "s1", v1], config=bad)
    one_line_failure(rc, err, "a config file setting PYTHONPATH", "unknown setting PYTHONPATH")


# --- c. faults -----------------------------------------------------------------------------
def test_faults(lab):
    log("c. the hook against a broken API")
    name = "s2._domainkey.example.test"
    old = "v=DKIM1; k=rsa; p=" + "C" * 40
    new = "v=DKIM1; k=rsa; p=" + "D" * 40
    lab.write_lexicon_env(lab.api_port)
    rc, _, err = lab.run_hook(["publish", "example.test", "s2", old])
    check(rc == 0 and lab.served(name) == [old], f"fault setup: exit {rc}, {err!r}")

    def attempt(what, expect, server_port, api_key=None, mode="pass", watch=None):
        lab.proxy.mode = mode
        lab.write_lexicon_env(server_port, api_key=api_key, timeout=2)
        start = time.monotonic()
        rc, out, err = lab.run_hook(["publish", "example.test", "s2", new], watch=watch)
        took = time.monotonic() - start
        lab.proxy.mode = "pass"
        one_line_failure(rc, err, what, expect)
        check(lab.secret_free(out + err), f"{what}: the API key is in the hook's output")
        check(lab.served(name) == [old], f"{what}: the record changed to {lab.served(name)}")
        return took

    attempt("API down", r"Connection refused.*API is up", lab.dead_port)
    seen_argv = []

    def watch(p):  # while the hook waits for the slow API: every process's argv
        time.sleep(1.0)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        seen_argv.append(f.read().decode(errors="replace"))
                except OSError:
                    pass
    took = attempt("slow API", r"no answer within 2 s", lab.proxy_port, mode="slow", watch=watch)
    check(took < 8, f"slow API: the hook took {took:.1f} s with DKIMROTOR_LEXICON_TIMEOUT=2")
    check(any("contrib/hooks/lexicon" in a for a in seen_argv),
          "slow API: the hook's process was not seen in /proc (the argv check saw nothing)")
    check(not any(lab.api_key in a for a in seen_argv), "slow API: the API key is in some argv")
    attempt("wrong API key", r"401.*credentials", lab.proxy_port, api_key="wrong-" + lab.api_key[5:])
    check("wrong-" not in " ".join(lab.hook_outputs[-1:]),
          "wrong API key: the (wrong) key is in the hook's output")
    attempt("API answering 500", r"500", lab.proxy_port, mode="500")
    attempt("API echoing the key in its error", r"500.*key \*\*\* is no good", lab.proxy_port,
            mode="echo-key")
    attempt("API that accepts writes and ignores them", r"accepted the change but lists 'v=DKIM1; "
            r"k=rsa; p=CCC", lab.proxy_port, mode="ignore-writes")
    lab.write_lexicon_env(lab.proxy_port)
    rc, _, err = lab.run_hook(["publish", "example.test", "s2", new])
    check(rc == 0 and lab.served(name) == [new],
          f"after the faults, through the proxy: exit {rc}, {err!r}, served {lab.served(name)}")


# --- b. the daemon -------------------------------------------------------------------------
DOMAINS = ("example.test", "big.test", "customer.example")


def write_config(lab):
    hook = lab.hook
    with open(lab.conf, "w") as f:
        f.write(f"""milter:   {{ socket = "inet:{lab.milter_port}@127.0.0.1"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; }};
keystore: {{ directory = "{lab.tmp}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{lab.dns_port}"]; check_authoritative = true;
            authoritative_port = {lab.dns_port};
            min_propagation = "0s"; poll = "1s"; timeout = "2s"; }};
log:      {{ level = "info"; }};
domains = (
  {{ domain = "example.test"; stream = "lx"; algorithms = ["rsa-sha256"]; bits = 2048;
    active_keys = 1; prepublish = 1; key_lifetime = "30d"; hook_timeout = "15s";
    selector_format = "{{stream}}-{{yyyymmdd}}-{{alg}}{{bits}}-{{n}}";
    publish_hook = "{hook}"; }},
  {{ domain = "big.test"; stream = "lx"; algorithms = ["rsa-sha256"]; bits = 4096;
    active_keys = 1; prepublish = 1; key_lifetime = "30d"; hook_timeout = "15s";
    selector_format = "{{stream}}-{{yyyymmdd}}-{{alg}}{{bits}}-{{n}}";
    publish_hook = "{hook}"; }},
  {{ domain = "customer.example"; stream = "lx"; algorithms = ["rsa-sha256"]; bits = 2048;
    active_keys = 1; prepublish = 1; key_lifetime = "30d"; hook_timeout = "15s";
    delegation = {{ zone = "keys.provider.test"; slots = {json.dumps(list(SLOTS))}; }};
    publish_hook = "{hook}"; }} );
""")


def dr(lab, *args, timeout=60):
    return subprocess.run([lab.args.dkimrotor, *args, "-c", lab.conf], capture_output=True,
                          text=True, timeout=timeout, env=lab.dr_env())


def keys(lab):
    r = dr(lab, "keys", "--json")
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def key_list(lab, domain):
    data = keys(lab)
    out = []
    for d in data.get("domains", []) if isinstance(data, dict) else []:
        if d.get("domain") == domain:
            out.extend(d.get("keys", []))
    return out


def by_state(lab, domain, state):
    return [k["selector"] for k in key_list(lab, domain) if k.get("state") == state]


def make_message(domain, n):
    body = "".join(f"Line {i} of message {n}.\r\n" for i in range(5))
    return (f"From: User <user@{domain}>\r\nTo: Someone <someone@example.net>\r\n"
            f"Subject: lexicon {n}\r\nDate: {formatdate()}\r\n"
            f"Message-ID: <{n}.{os.getpid()}@{domain}>\r\n\r\n{body}").encode()


def sign(lab, domain, n):
    """Signs one message through the milter; returns (delivered bytes, selector) or (None, why)."""
    from milter_wire import MilterConnection, delivered, split_as_postfix
    headers, body = split_as_postfix(make_message(domain, n))
    c = MilterConnection("127.0.0.1", lab.milter_port)
    try:
        res = c.send_message(headers, body)
    finally:
        c.close()
    msg = delivered(headers, body, res, bool(c.protocol & 0x100000))
    sigs = [v for _, name, v in res.inserted if name == b"DKIM-Signature"] + \
        [v for name, v in res.added if name == b"DKIM-Signature"]
    if res.reply not in (b"a", b"c") or len(sigs) != 1:
        return None, f"reply {res.reply!r}, {len(sigs)} signatures"
    m = re.search(rb"\bs=([A-Za-z0-9._-]+)", sigs[0])
    return msg, m.group(1).decode() if m else "?"


def verify_both(lab, messages, label):
    """dkimpy and Mail::DKIM, both asking PowerDNS."""
    import dkim
    for i, msg in enumerate(messages):
        try:
            ok = dkim.DKIM(msg).verify(dnsfunc=lab.txt_for_dkim)
        except Exception as e:
            ok = False
            print(f"  dkimpy: {e}")
        check(ok, f"{label}: message {i} does not verify with dkimpy")
    folder = tempfile.mkdtemp(prefix="eml.", dir=lab.tmp)
    paths = []
    for i, msg in enumerate(messages):
        paths.append(os.path.join(folder, f"{i}.eml"))
        with open(paths[-1], "wb") as f:
            f.write(msg)
    script = os.path.join(lab.args.source, "tests", "interop", "verify_mail_dkim.pl")
    r = subprocess.run(["perl", script, "--dns", f"127.0.0.1:{lab.dns_port}", *paths],
                       capture_output=True, text=True, timeout=120)
    results = [line.split("\t") for line in r.stdout.splitlines()]
    passes = sum(1 for p in results if len(p) == 7 and p[5] == "pass")
    check(r.returncode == 0 and passes == len(messages),
          f"{label}: Mail::DKIM passes {passes} of {len(messages)}: {r.stdout[-600:]}{r.stderr[-300:]}")


def test_daemon(lab):
    log("b. dkimrotor run, publishing through the hook")
    lab.write_lexicon_env(lab.proxy_port, timeout=5)
    write_config(lab)
    lab.dr_env = lambda: dict(os.environ, DKIMROTOR_LEXICON_CONFIG=lab.lexicon_env)
    lab.daemon = subprocess.Popen([lab.args.dkimrotor, "run", "-c", lab.conf], env=lab.dr_env(),
                                  stdout=open(lab.dr_log, "w"), stderr=subprocess.STDOUT)
    lab.procs.append(lab.daemon)
    if not wait_for(lambda: port_open(lab.milter_port) or lab.daemon.poll() is not None, 60):
        raise RuntimeError("dkimrotor did not listen in 60 s:\n" + tail(lab.dr_log))
    if lab.daemon.poll() is not None:
        raise RuntimeError(f"dkimrotor run exited {lab.daemon.returncode}:\n" + tail(lab.dr_log))

    def settled():
        return all(len(by_state(lab, d, "active")) == 1 and len(by_state(lab, d, "ready")) == 1
                   for d in DOMAINS)
    if not check(wait_for(settled, 90, 0.5), "keys not active and ready in 90 s:\n"
                 + dr(lab, "keys").stdout + tail(lab.dr_log)):
        return
    log("keys published through the API and verified in DNS: " + ", ".join(
        f"{d}: {by_state(lab, d, 'active')[0]}" for d in DOMAINS))
    for d in DOMAINS:
        for k in key_list(lab, d):
            # a delegated domain's record is at the slot in the zone, and through the CNAME
            if d == "customer.example":
                at_zone = lab.served(f"{k['selector']}._domainkey.keys.provider.test")
                check(at_zone == lab.served(f"{k['selector']}._domainkey.{d}"),
                      f"{d} {k['selector']}: the zone serves {at_zone}, the CNAME something else")
            served = lab.served(f"{k['selector']}._domainkey.{d}")
            check(served and len(served) == 1 and served[0].startswith("v=DKIM1; k=rsa; p=")
                  and len(served[0]) > (700 if d == "big.test" else 380),
                  f"{d} {k['selector']} ({k['state']}): PowerDNS serves {served}")

    msgs = []
    for d in DOMAINS:
        active = by_state(lab, d, "active")[0]
        for n in range(3):
            msg, sel = sign(lab, d, f"{d}-{n}")
            if check(msg is not None and sel == active, f"{d}: signed with {sel}, not {active}"):
                msgs.append(msg)
    verify_both(lab, msgs, "before the rotation")

    # An emergency rotation: the spare takes over, p= is published through the API.
    old = by_state(lab, "example.test", "active")[0]
    spare = by_state(lab, "example.test", "ready")[0]
    r = dr(lab, "rotate", "--domain", "example.test", "--emergency", "--selector", old)
    check(r.returncode == 0, f"rotate --emergency: exit {r.returncode}: {r.stdout}{r.stderr}")
    check(wait_for(lambda: lab.served(f"{old}._domainkey.example.test") == ["v=DKIM1; p="], 30),
          f"revoked {old}: PowerDNS serves {lab.served(f'{old}._domainkey.example.test')}")
    msg, sel = sign(lab, "example.test", "after-rotation")
    check(sel == spare, f"after the emergency rotation signed with {sel}, not the spare {spare}")
    if msg:
        verify_both(lab, [msg], "after the rotation")
    check(wait_for(lambda: len(by_state(lab, "example.test", "ready")) == 1, 60, 0.5),
          "no new spare for example.test in 60 s:\n" + dr(lab, "keys").stdout)

    # The delegated domain: its revocation lands at the slot, in the delegation zone.
    old = by_state(lab, "customer.example", "active")[0]
    spare = by_state(lab, "customer.example", "ready")[0]
    r = dr(lab, "rotate", "--domain", "customer.example", "--emergency", "--selector", old)
    check(r.returncode == 0, f"rotate --emergency customer.example: {r.stdout}{r.stderr}")
    slot = f"{old}._domainkey.keys.provider.test"
    check(wait_for(lambda: lab.served(slot) == ["v=DKIM1; p="], 30),
          f"revoked slot {slot}: PowerDNS serves {lab.served(slot)}")
    msg, sel = sign(lab, "customer.example", "after-rotation")
    check(sel == spare, f"customer.example after the rotation signed with {sel}, not {spare}")
    if msg:
        verify_both(lab, [msg], "customer.example after the rotation")

    # The API accepts writes and ignores them: the revocation stays due, the log says why, the
    # record is untouched and signing goes on.
    log("c. the daemon against an API that accepts writes and ignores them")
    lab.proxy.mode = "ignore-writes"
    old = by_state(lab, "big.test", "active")[0]
    spare = by_state(lab, "big.test", "ready")[0]
    record = f"{old}._domainkey.big.test"
    before = lab.served(record)
    r = dr(lab, "rotate", "--domain", "big.test", "--emergency", "--selector", old)
    check(r.returncode == 0, f"rotate --emergency big.test: exit {r.returncode}: {r.stdout}{r.stderr}")
    why = re.compile(rf"revoke hook failed for {re.escape(record)} .*{re.escape(HOOK_PREFIX)}"
                     rf"revoke {re.escape(record)} at powerdns: the API accepted the change but "
                     r"lists 'v=DKIM1; k=rsa; p=")

    def logged():
        with open(lab.dr_log, errors="replace") as f:
            return why.search(f.read()) is not None
    check(wait_for(logged, 40, 0.5),
          "the daemon's log does not show why the revocation failed:\n" + tail(lab.dr_log))
    check(lab.served(record) == before, f"the ignored revocation changed {record}")
    states = {k["selector"]: k.get("state") for k in key_list(lab, "big.test")}
    check(states.get(old) == "retiring",
          f"{old} is {states.get(old)}, not retiring, although its revocation was never served")
    # The new spare's record was "accepted" too, and is not served: it stays pending.
    pending = by_state(lab, "big.test", "pending")
    check(len(pending) == 1 and not lab.served(f"{pending[0]}._domainkey.big.test"),
          f"big.test's new spare: pending {pending}:\n" + dr(lab, "keys").stdout)
    msgs = []
    for n in range(3):
        msg, sel = sign(lab, "big.test", f"during-fault-{n}")
        if check(msg is not None and sel == spare, f"during the fault signed with {sel}, not {spare}"):
            msgs.append(msg)
    verify_both(lab, msgs, "during the API fault")
    lab.proxy.mode = "pass"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    why = missing_requirements()
    if why:
        print(f"SKIP: {why}")
        return SKIP
    started = time.monotonic()
    lab = Lab(args)
    lab.secret_free = lambda text: lab.api_key not in text
    lab.dr_env = lambda: dict(os.environ, DKIMROTOR_LEXICON_CONFIG=lab.lexicon_env)
    try:
        lab.start_pdns()
        lab.start_proxy()
        test_hook(lab)
        test_faults(lab)
        test_daemon(lab)
        outputs = "".join(lab.hook_outputs)
        check(lab.api_key not in outputs, "the API key is in the hook's output")
        with open(lab.dr_log, errors="replace") as f:
            daemon_log = f.read()
        check("lexicon hook" in daemon_log, "the daemon's log shows no hook message at all")
        check(lab.api_key not in daemon_log, "the API key is in the daemon's log")
    except Exception as e:
        check(False, f"{type(e).__name__}: {e}")
    finally:
        if check.failed:
            print(f"--- tail of {lab.dr_log}")
            print(tail(lab.dr_log), end="")
            print(f"--- tail of {lab.pdns_log}")
            print(tail(lab.pdns_log), end="", flush=True)
        lab.cleanup()
    print(f"{check.summary()} ({time.monotonic() - started:.0f} s)")
    return 1 if check.failed or not check.passed else 0


if __name__ == "__main__":
    sys.exit(main())
