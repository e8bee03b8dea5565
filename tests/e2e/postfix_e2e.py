#!/usr/bin/python3
"""End-to-end test: dkimrotor as the milter of a real, private Postfix instance.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - Knot DNS serving example.test, with TSIG-signed updates allowed;
  - dkimrotor (`rotate` once, then `run`), publishing its keys through contrib/hooks/nsupdate;
  - a private Postfix instance (own config, queue and data directories; the system's Postfix
    and port 25 are never touched), relaying everything to
  - a mail sink (mail_lab.SmtpSink) that keeps every message it receives.

Checks:
  1. 300 messages From: user@example.test sent through Postfix all arrive, each with exactly
     one DKIM-Signature that dkimpy verifies against Knot; the 3 active selectors take turns.
  2. Reload under load: 4 senders for ~20 s while dkimrotor gets SIGHUP 10 times (once with a
     broken config); no SMTP error, every accepted message arrives signed and verifying, and
     Postfix logs no milter error.
  3. Mail from 127.0.0.2 (outside signing.internal_hosts) arrives unsigned.

Needs root (Postfix runs as its mail_owner); as another user it exits 77 (skipped).
Prints one line per failure and a final "N passed, M failed" line.
--break-milter points smtpd_milters at a dead port with milter_default_action = accept, to show
that the checks catch unsigned mail (the test must then fail).
"""
import argparse
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

import dkim

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks, log  # noqa: E402
from mail_lab import (SmtpSink, free_ports, knot_serves, make_message, port_open, send_batch,  # noqa: E402
                      stop_postfix, stop_process, tail, wait_delivered, wait_for,
                      write_knot, write_postfix_config)

SKIP = 77
DOMAIN = "example.test"
SENDER = f"user@{DOMAIN}"

check = Checks()


# --- DKIM checks -----------------------------------------------------------------------------
class Dns:
    def __init__(self, port):
        self.port = port
        self.cache = {}
        self.lock = threading.Lock()

    def txt(self, name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        name = name.rstrip(".")
        with self.lock:
            if name in self.cache:
                return self.cache[name]
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), "+short", "TXT", name],
                             capture_output=True, text=True, timeout=10).stdout
        value = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', out)).encode()
        if value:
            with self.lock:
                self.cache[name] = value
        return value


def header_block(msg):
    m = re.search(rb"\r?\n\r?\n", msg)
    return msg[:m.start()] if m else msg


def headers(msg, name):
    """Unfolded values of every header field called name."""
    out = []
    for m in re.finditer(rb"^" + re.escape(name) + rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)",
                         header_block(msg), re.I | re.M):
        out.append(re.sub(rb"\r?\n", b"", m.group(1)).decode(errors="replace").strip())
    return out


def examine(msg, dns):
    """(number of DKIM-Signatures, selector or None, verified?)"""
    sigs = headers(msg, b"DKIM-Signature")
    if len(sigs) != 1:
        return len(sigs), None, False
    tags = dict((k.strip(), v.strip()) for k, _, v in
                (t.partition("=") for t in sigs[0].split(";") if "=" in t))
    sel = tags.get("s")
    try:
        ok = dkim.DKIM(msg).verify(idx=0, dnsfunc=dns.txt) and tags.get("d") == DOMAIN
    except Exception as e:  # dkimpy raises on malformed input
        print(f"  dkimpy error: {e}", flush=True)
        ok = False
    return 1, sel, ok


# --- the test --------------------------------------------------------------------------------
class Env:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-e2e.")
        os.chmod(self.tmp, 0o755)
        (self.dns_port, self.milter_port, self.smtp_port, self.sink_port,
         self.dead_port) = free_ports(5)
        self.procs = []
        self.knot = self.daemon = self.sink = None
        self.pf_conf = os.path.join(self.tmp, "postfix")
        self.pf_log = os.path.join(self.tmp, "postfix.log")
        self.dr_log = os.path.join(self.tmp, "dkimrotor.log")
        self.conf = os.path.join(self.tmp, "dkimrotor.conf")
        self.postfix_started = False
        self.dns = Dns(self.dns_port)

    # Knot ---------------------------------------------------------------------------------
    def start_knot(self):
        self.tsig = os.path.join(self.tmp, "tsig.key")
        cmd = write_knot(os.path.join(self.tmp, "knot"), self.dns_port, [DOMAIN], "e2e", self.tsig)
        self.knot = subprocess.Popen(cmd, stdout=open(os.path.join(self.tmp, "knot.log"), "w"),
                                     stderr=subprocess.STDOUT)
        self.procs.append(self.knot)
        if not wait_for(lambda: knot_serves(self.dns_port, DOMAIN), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(os.path.join(self.tmp, "knot.log")))
        log(f"Knot serving {DOMAIN} on 127.0.0.1:{self.dns_port}")

    # dkimrotor ----------------------------------------------------------------------------
    def good_config(self):
        src = self.args.source
        return f"""milter:   {{ socket = "inet:{self.milter_port}@127.0.0.1"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; sign_authenticated = true; }};
keystore: {{ directory = "{self.tmp}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{self.dns_port}"]; check_authoritative = true;
            authoritative_port = {self.dns_port};
            min_propagation = "0s"; poll = "1s"; timeout = "2s"; }};
log:      {{ level = "info"; audit = "{self.tmp}/signed.log"; }};
domains = (
  {{ domain = "{DOMAIN}"; stream = "e2e";
    algorithms = ["rsa-sha256"]; bits = 2048;
    active_keys = 3; prepublish = 1; key_lifetime = "30d";
    selector_format = "{{stream}}-{{yyyymmdd}}-{{alg}}{{bits}}-{{n}}";
    publish_hook = "{src}/contrib/hooks/nsupdate"; }} );
"""

    def write_config(self, text):
        tmp = self.conf + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf)

    def dr_env(self):
        env = dict(os.environ)
        env.update(DKIMROTOR_NS_SERVER="127.0.0.1", DKIMROTOR_NS_PORT=str(self.dns_port),
                   DKIMROTOR_NS_TSIG=self.tsig, DKIMROTOR_NS_CONFIG=f"{self.tmp}/none.env",
                   DKIMROTOR_NS_TTL="60")
        return env

    def start_dkimrotor(self):
        self.write_config(self.good_config())
        dr = self.args.dkimrotor
        r = subprocess.run([dr, "rotate", "-c", self.conf, "--domain", DOMAIN],
                           capture_output=True, text=True, env=self.dr_env(), timeout=120)
        log(f"dkimrotor rotate: exit {r.returncode}")
        if r.returncode != 0:
            raise RuntimeError(f"dkimrotor rotate failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        self.daemon = subprocess.Popen([dr, "run", "-c", self.conf], env=self.dr_env(),
                                       stdout=open(self.dr_log, "w"), stderr=subprocess.STDOUT)
        self.procs.append(self.daemon)
        if not wait_for(lambda: port_open(self.milter_port) or self.daemon.poll() is not None, 30):
            raise RuntimeError("dkimrotor did not listen in 30 s")
        if self.daemon.poll() is not None:
            raise RuntimeError(f"dkimrotor run exited {self.daemon.returncode}")

        def active():
            out = subprocess.run([dr, "keys", "-c", self.conf, "--json"], capture_output=True,
                                 text=True).stdout
            return out.count('"state": "active"')
        n = 0
        wait_for(lambda: active() >= 3, 60, 0.5)
        n = active()
        log(f"dkimrotor milter on inet:{self.milter_port}@127.0.0.1, {n} active keys")
        if n < 3:
            raise RuntimeError("fewer than 3 active keys after 60 s:\n" + subprocess.run(
                [dr, "keys", "-c", self.conf], capture_output=True, text=True).stdout)

    # Postfix ------------------------------------------------------------------------------
    def start_postfix(self):
        c = self.pf_conf
        os.makedirs(c)
        queue = os.path.join(self.tmp, "spool")
        data = os.path.join(self.tmp, "data")
        os.makedirs(queue)
        os.makedirs(data)
        shutil.chown(data, "postfix")
        if self.args.break_milter:
            milters = f"inet:127.0.0.1:{self.dead_port}"
            action = "accept"
        else:
            milters = f"inet:127.0.0.1:{self.milter_port}"
            action = "tempfail"
        write_postfix_config(c, queue, data, domain="e2e.test", smtp_port=self.smtp_port,
                             sink_port=self.sink_port, milters=milters, default_action=action,
                             log_file=self.pf_log, log_prefix=self.tmp)
        env = dict(os.environ, MAIL_CONFIG=c)
        r = subprocess.run(["postfix", "-c", c, "check"], capture_output=True, text=True,
                           env=env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"postfix check failed:\n{r.stdout}{r.stderr}")
        r = subprocess.run(["postfix", "-c", c, "start"], capture_output=True, text=True,
                           env=env, timeout=60)
        self.postfix_started = True
        if r.returncode != 0:
            raise RuntimeError(f"postfix start failed:\n{r.stdout}{r.stderr}")
        if not wait_for(lambda: port_open(self.smtp_port), 30):
            raise RuntimeError("Postfix did not listen in 30 s")
        log(f"Postfix on 127.0.0.1:{self.smtp_port} (milters {milters}, "
            f"default action {action}), relaying to the sink on 127.0.0.1:{self.sink_port}")

    def stop_postfix(self):
        if self.postfix_started:
            stop_postfix(self.pf_conf)

    # sink ---------------------------------------------------------------------------------
    def start_sink(self):
        self.sink = SmtpSink(self.sink_port)

    def cleanup(self):
        self.stop_postfix()
        if self.sink:
            self.sink.close()
        for p in reversed(self.procs):
            stop_process(p)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log(f"kept {self.tmp}")

    def diagnostics(self):
        print(f"--- tail of {self.pf_log}")
        print(tail(self.pf_log), end="")
        print(f"--- tail of {self.dr_log}")
        print(tail(self.dr_log), end="", flush=True)


def verify_all(env, got, label):
    """Checks each delivered message: one DKIM-Signature that verifies. Returns selector counts."""
    selectors = {}
    bad_count = bad_verify = 0
    examples = []
    for mid, msgs in got.items():
        for m in msgs:
            n, sel, ok = examine(m, env.dns)
            if n != 1:
                bad_count += 1
                if len(examples) < 3:
                    examples.append(f"{mid}: {n} DKIM-Signature fields")
            elif not ok:
                bad_verify += 1
                if len(examples) < 3:
                    examples.append(f"{mid}: s={sel} does not verify")
            else:
                selectors[sel] = selectors.get(sel, 0) + 1
    check(bad_count == 0, f"{label}: {bad_count} messages without exactly one DKIM-Signature"
          + (f" (e.g. {'; '.join(examples)})" if examples else ""))
    check(bad_verify == 0, f"{label}: {bad_verify} signatures do not verify with dkimpy"
          + (f" (e.g. {'; '.join(examples)})" if examples else ""))
    verify_with_mail_dkim(env, got, label)
    return selectors


def verify_with_mail_dkim(env, got, label):
    """Every delivered message verifies with Perl's Mail::DKIM too, asking the same Knot."""
    script = os.path.join(env.args.source, "tests", "interop", "verify_mail_dkim.pl")
    folder = tempfile.mkdtemp(prefix=f"mail-dkim-{label}-", dir=env.tmp)
    paths = []
    for i, msgs in enumerate(got.values()):
        for j, m in enumerate(msgs):
            path = os.path.join(folder, f"{i}.{j}.eml")
            with open(path, "wb") as f:
                f.write(m)
            paths.append(path)
    results = {}
    for start in range(0, len(paths), 500):  # keep the command line short
        r = subprocess.run(["perl", script, "--dns", f"127.0.0.1:{env.dns.port}"]
                           + paths[start:start + 500], capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            check(False, f"{label}: verify_mail_dkim.pl exit {r.returncode}: {r.stderr[-500:]}")
            return
        for line in r.stdout.splitlines():
            fields = line.split("\t")
            results.setdefault(fields[0], []).append(fields[5] if len(fields) > 5 else "?")
    bad = [(p, results.get(p)) for p in paths if results.get(p) != ["pass"]]
    check(not bad, f"{label}: {len(bad)} of {len(paths)} messages do not verify with Mail::DKIM"
          + (f" (e.g. {bad[:3]})" if bad else ""))
    log(f"{label}: Mail::DKIM verified {len(paths) - len(bad)} of {len(paths)} against Knot")


def test_basic(env):
    n = 300
    msgs = [make_message(DOMAIN, "basic", i) for i in range(n)]
    t0 = time.monotonic()
    errors = send_batch(env.smtp_port, msgs, SENDER, timeout=30)
    check(not errors, f"basic: {len(errors)} of {n} sends failed: {errors[:3]}")
    got = wait_delivered(env.sink, [m for m, _ in msgs], 60)
    log(f"basic: sent {n}, {len(got)} delivered in {time.monotonic() - t0:.1f} s")
    check(len(got) == n, f"basic: only {len(got)} of {n} messages reached the sink")
    check(all(len(v) == 1 for v in got.values()), "basic: some messages were delivered twice")
    selectors = verify_all(env, got, "basic")
    log(f"basic: selectors {selectors}")
    check(len(selectors) == 3, f"basic: expected 3 selectors signing, saw {selectors}")
    for sel, c in selectors.items():
        check(80 <= c <= 120, f"basic: selector {sel} signed {c} of {n} messages, want 100 +- 20")


def test_reload(env):
    stop = threading.Event()
    lock = threading.Lock()
    accepted, errors = [], []

    def sender(k):
        i = 0
        try:
            with smtplib.SMTP("127.0.0.1", env.smtp_port, timeout=30) as s:
                s.ehlo("client.e2e.test")
                while not stop.is_set():
                    mid, text = make_message(DOMAIN, f"reload{k}", i)
                    i += 1
                    try:
                        refused = s.sendmail(SENDER, ["someone@example.net"], text)
                        with lock:
                            if refused:
                                errors.append(f"{mid}: refused {refused}")
                            else:
                                accepted.append(mid)
                    except smtplib.SMTPException as e:
                        with lock:
                            errors.append(f"{mid}: {e}")
                        s.rset()
                    time.sleep(0.02)
        except Exception as e:  # connection-level failure
            with lock:
                errors.append(f"sender {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    good = env.good_config()
    broken = good + "\nno_such_setting = 1;\n"
    t0 = time.monotonic()
    try:
        time.sleep(2)
        for i in range(10):
            if i == 4:
                env.write_config(broken)
            elif i == 5:
                env.write_config(good)
            env.daemon.send_signal(signal.SIGHUP)
            time.sleep(1.5)
        time.sleep(max(0.0, 20 - (time.monotonic() - t0)))
    finally:
        env.write_config(good)
        stop.set()
        for t in threads:
            t.join(60)
    log(f"reload: {len(accepted)} accepted, {len(errors)} errors in "
        f"{time.monotonic() - t0:.1f} s with 10 SIGHUPs")
    check(not errors, f"reload: {len(errors)} SMTP errors returned to the senders: {errors[:3]}")
    check(len(accepted) >= 100, f"reload: only {len(accepted)} messages accepted under load")
    check(env.daemon.poll() is None, "reload: dkimrotor exited during the reloads")
    dlog = open(env.dr_log, errors="replace").read()
    check("no_such_setting" in dlog,
          "reload: dkimrotor's log does not mention the broken config's unknown setting")
    got = wait_delivered(env.sink, accepted, 90)
    check(len(got) == len(accepted),
          f"reload: {len(accepted) - len(got)} of {len(accepted)} accepted messages "
          "did not reach the sink")
    selectors = verify_all(env, got, "reload")
    log(f"reload: selectors {selectors}")
    pflog = open(env.pf_log, errors="replace").read().splitlines()
    milter_errors = [l for l in pflog if "milter" in l.lower() and
                     re.search(r"warning|error|fatal|panic|reject|tempfail|4\.\d\.\d", l, re.I)]
    check(not milter_errors, f"reload: Postfix logged {len(milter_errors)} milter errors, e.g. "
          f"{milter_errors[:2]}")


def test_external(env):
    mid, text = make_message(DOMAIN, "external", 0)
    errors = send_batch(env.smtp_port, [(mid, text)], SENDER, source="127.0.0.2", timeout=30)
    check(not errors, f"external: send from 127.0.0.2 failed: {errors}")
    got = wait_delivered(env.sink, [mid], 30)
    if check(mid in got, "external: the message from 127.0.0.2 did not reach the sink"):
        n = len(headers(got[mid][0], b"DKIM-Signature"))
        check(n == 0, f"external: the message from 127.0.0.2 (outside internal_hosts) "
              f"has {n} DKIM-Signature fields, want none")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True, help="the source tree (for contrib/hooks)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--break-milter", action="store_true",
                    help="self-test: point Postfix at a dead milter port with "
                         "milter_default_action = accept; the test must fail")
    args = ap.parse_args()
    args.dkimrotor = os.path.abspath(args.dkimrotor)
    args.source = os.path.abspath(args.source)

    if os.geteuid() != 0:
        print("SKIP: the Postfix end-to-end test needs root (Postfix drops to its mail_owner)")
        return SKIP
    missing = [p for p in ("postfix", "knotd", "kdig", "knsupdate") if not shutil.which(p)
               and not os.path.exists(f"/usr/sbin/{p}")]
    if missing:
        print(f"FAIL: missing {', '.join(missing)}: run scripts/install-deps")
        print("0 passed, 1 failed")
        return 1

    t0 = time.monotonic()
    env = Env(args)
    try:
        env.start_knot()
        env.start_dkimrotor()
        env.start_sink()
        env.start_postfix()
        test_basic(env)
        test_reload(env)
        test_external(env)
    except Exception as e:
        check(False, f"{type(e).__name__}: {e}")
    finally:
        if check.failed:
            env.diagnostics()
        env.cleanup()
    log(f"done in {time.monotonic() - t0:.1f} s")
    print(check.summary(), flush=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
