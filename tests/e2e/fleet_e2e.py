#!/usr/bin/python3
"""End-to-end test: a fleet of dkimrotor daemons sharing one domain never clobber each other.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - one private Knot serving example.test, accepting TSIG-signed updates;
  - three `dkimrotor run` daemons with streams mta1, mta2 and mta3 (mta3 with RSA-4096 keys,
    whose record is over 512 bytes), each with its own keystore, milter and control socket,
    all publishing through contrib/hooks/nsupdate (settings from an nsupdate.env file).

Checks:
  1. Each daemon activates its own keys (the 4096-bit record passes the hook and the daemon's
     DNS check); mail through each milter is signed with its stream's selector and verifies
     with dkimpy and with Perl Mail::DKIM, both asking Knot.
  2. A fourth daemon misconfigured with mta1's stream makes mta1's selectors: its publish
     hook is refused, daemon 1's records in Knot stay byte-identical, its keys stay pending,
     its log says another key is there, its milter tempfails mail instead of signing it, and
     daemon 1's mail still verifies.
  3. `dkimrotor rotate` on the running daemon 2 (control socket, grace 0s): its new key is
     published and signs, its old key is revoked through the hook (v=DKIM1; p= in Knot), mail
     verifies, and the records of daemons 1 and 3 are untouched.

Needs root (the daemon runs hooks owned by root only when it is root or their owner; the test
runs as the daemons' owner); as another user it exits 77 (skipped). Prints one line per failure
and "N passed, M failed". --hook runs another hook (e.g. one without prerequisites: the test
must then fail).
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import (Checks, dns_answer, log, run_lab,  # noqa: E402
                      signatures, tempfail, txt_values)
from dkim_lab import send as send_mail, verify as verify_mail  # noqa: E402
from mail_lab import (free_ports, knot_serves, port_open, stop_process, tail,  # noqa: E402
                      wait_for, write_knot)

SKIP = 77
DOMAIN = "example.test"

check = Checks()


class Knot:
    def __init__(self, tmp):
        (self.port,) = free_ports(1)
        self.tsig = os.path.join(tmp, "tsig.key")
        self.log = os.path.join(tmp, "knot.log")
        cmd = write_knot(os.path.join(tmp, "knot"), self.port, [DOMAIN], "fleet", self.tsig)
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        if not wait_for(lambda: knot_serves(self.port, DOMAIN), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(self.log))

    def answer(self, name):
        """The TXT records at name exactly as Knot sends them (kdig's answer lines, TTL
        included): what "byte-identical" compares."""
        return dns_answer(self.port, name)

    def txt(self, name):
        """The joined strings of each TXT record at name."""
        return txt_values(self.port, name)


class Daemon:
    def __init__(self, lab, name, stream, bits, grace="7d"):
        self.lab, self.name, self.stream, self.bits = lab, name, stream, bits
        self.dir = os.path.join(lab.tmp, name)
        os.makedirs(self.dir)
        self.milter_port = free_ports(1)[0]
        self.conf = os.path.join(self.dir, "dkimrotor.conf")
        self.log = os.path.join(self.dir, "dkimrotor.log")
        self.proc = None
        with open(self.conf, "w") as f:
            f.write(f"""milter:   {{ socket = "inet:{self.milter_port}@127.0.0.1"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; }};
keystore: {{ directory = "{self.dir}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{lab.knot.port}"]; check_authoritative = true;
            authoritative_port = {lab.knot.port};
            min_propagation = "0s"; poll = "1s"; timeout = "2s"; }};
log:      {{ level = "info"; }};
domains = (
  {{ domain = "{DOMAIN}"; stream = "{stream}";
    algorithms = ["rsa-sha256"]; bits = {bits};
    active_keys = 1; prepublish = 1; key_lifetime = "30d"; grace = "{grace}";
    selector_format = "{{stream}}-{{yyyymmdd}}-{{alg}}{{bits}}";
    publish_hook = "{lab.hook}"; }} );
""")

    def start(self):
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "DKIMROTOR_NS_CONFIG": self.lab.ns_env}
        self.proc = subprocess.Popen([self.lab.dkimrotor, "run", "-c", self.conf], env=env,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        self.lab.procs.append(self.proc)

    def cli(self, *args, timeout=90):
        return subprocess.run([self.lab.dkimrotor, *args, "-c", self.conf], capture_output=True,
                              text=True, timeout=timeout)

    def keys(self):
        """[(selector, state)] as the daemon holds them."""
        r = self.cli("keys", "--json")
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return []
        out = []
        for d in data.get("domains", []):
            for k in d.get("keys", []):
                out.append((k.get("selector"), k.get("state")))
        return out

    def active(self):
        return [s for s, st in self.keys() if st == "active"]

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        stop_process(self.proc, 15)


class Lab:
    def __init__(self, args):
        self.args = args
        self.dkimrotor = args.dkimrotor
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-fleet.")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.daemons = []
        self.knot = None

    def setup(self):
        self.knot = Knot(self.tmp)
        self.procs.append(self.knot.proc)
        log(f"Knot serving {DOMAIN} on 127.0.0.1:{self.knot.port}")
        # The daemon runs only a hook owned by root (or its user) and not writable by others.
        hooks = os.path.join(self.tmp, "hooks")
        os.makedirs(hooks, 0o755)
        self.hook = os.path.join(hooks, "nsupdate")
        shutil.copyfile(self.args.hook, self.hook)
        os.chmod(self.hook, 0o755)
        self.ns_env = os.path.join(self.tmp, "nsupdate.env")
        with open(self.ns_env, "w") as f:
            f.write(f"DKIMROTOR_NS_SERVER=127.0.0.1\nDKIMROTOR_NS_PORT={self.knot.port}\n"
                    f"DKIMROTOR_NS_ZONE={DOMAIN}\nDKIMROTOR_NS_TSIG={self.knot.tsig}\n"
                    "DKIMROTOR_NS_TTL=60\nDKIMROTOR_NS_TIMEOUT=5\n")
        os.chmod(self.ns_env, 0o600)

    def daemon(self, name, stream, bits, grace="7d"):
        d = Daemon(self, name, stream, bits, grace)
        self.daemons.append(d)
        d.start()
        return d

    def cleanup(self):
        for d in self.daemons:
            d.stop()
        for p in reversed(self.procs):
            stop_process(p)
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def diagnostics(self):
        for d in self.daemons:
            print(f"--- {d.name} ({d.stream}): dkimrotor keys")
            try:
                r = d.cli("keys", timeout=20)
                print(r.stdout + r.stderr, end="")
            except (OSError, subprocess.SubprocessError) as e:
                print(f"({e})")
            print(f"--- tail of {d.log}")
            print(tail(d.log, 25), end="", flush=True)


# --- mail --------------------------------------------------------------------------------
def send(daemon, tag, n):
    """Sends n messages From: user@example.test through the daemon's milter as Postfix would.
    Returns [(reply byte, delivered message bytes, reply data)]."""
    return send_mail(daemon.milter_port, DOMAIN, f"fleet {tag}", n, f"via {daemon.stream}")


def verify(lab, label, messages, want_prefix):
    """Every message: accepted, one DKIM-Signature with d=example.test and a selector of the
    daemon's stream, verified by dkimpy and by Mail::DKIM against Knot."""
    return verify_mail(check, lab.args.source, lab.knot.port, lab.tmp, label, messages, DOMAIN,
                       lambda s: s.startswith(want_prefix))


def records(lab, daemons):
    """{name: Knot's answer lines} for every selector the daemons hold."""
    out = {}
    for d in daemons:
        for sel, _ in d.keys():
            name = f"{sel}._domainkey.{DOMAIN}"
            out[name] = lab.knot.answer(name)
    return out


class Watch:
    """Samples Knot's answers for the names in `expected` every 0.2 s in a thread, and keeps
    every answer that differs: a clobbered record may be put back by its owner's republish
    before a single before/after comparison would see it."""

    def __init__(self, lab, expected):
        self.lab, self.expected = lab, expected
        self.changes = []
        self.samples = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.is_set():
            for name, want in self.expected.items():
                got = self.lab.knot.answer(name)
                if got != want and len(self.changes) < 20:
                    self.changes.append((name, got))
            self.samples += 1
            self.stop_event.wait(0.2)

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)
        return self.changes


# --- the test ----------------------------------------------------------------------------
def run(lab):
    lab.setup()
    t0 = time.monotonic()
    fleet = [lab.daemon("d1", "mta1", 2048), lab.daemon("d2", "mta2", 2048, grace="0s"),
             lab.daemon("d3", "mta3", 4096)]
    for d in fleet:
        if not wait_for(lambda: port_open(d.milter_port) or d.proc.poll() is not None, 30):
            raise RuntimeError(f"{d.name} did not listen in 30 s")
        if d.proc.poll() is not None:
            raise RuntimeError(f"{d.name} exited {d.proc.returncode}:\n{tail(d.log)}")
    ok = wait_for(lambda: all(d.active() for d in fleet), 90, 0.5)
    log(f"fleet: active keys after {time.monotonic() - t0:.1f} s: "
        + ", ".join(f"{d.stream} {d.active()}" for d in fleet))
    if not check(ok, "fleet: not every daemon has an active key after 90 s"):
        return
    # The spares too: every key published and served, so the snapshot below is complete.
    wait_for(lambda: all(st in ("active", "ready") for d in fleet for _, st in d.keys()), 60, 0.5)

    # 1. Each daemon signs with its own keys, and everything verifies.
    for d in fleet:
        for sel, st in d.keys():
            check(sel.startswith(d.stream + "-"), f"{d.name}: selector {sel} is not of stream "
                  f"{d.stream}")
        verify(lab, f"{d.stream} mail", send(d, d.stream, 4), d.stream + "-")
    big = [v for sel in fleet[2].active() for v in lab.knot.txt(f"{sel}._domainkey.{DOMAIN}")]
    check(len(big) == 1 and len(big[0]) > 512 and "k=rsa" in big[0],
          f"mta3: its RSA-4096 record should be one TXT record over 512 bytes: "
          f"{[len(v) for v in big]}")
    if big:
        der = base64.b64decode(big[0].split("p=")[-1])
        check(len(der) > 512, f"mta3: the 4096-bit key decodes to {len(der)} bytes")
    before = records(lab, fleet)
    check(len(before) == 6 and all(len(v) == 1 for v in before.values()),
          f"fleet: want 6 names with one TXT record each, got "
          f"{ {k: len(v) for k, v in before.items()} }")

    # 2. A fourth daemon with mta1's stream: same selectors, refused by the hook.
    watch = Watch(lab, before)
    d4 = lab.daemon("d4", "mta1", 2048)
    if not wait_for(lambda: port_open(d4.milter_port) or d4.proc.poll() is not None, 30):
        raise RuntimeError("d4 did not listen in 30 s")
    refusal = "another key is at "
    wait_for(lambda: d4.log_text().count(refusal) >= 2, 60, 0.5)
    time.sleep(3)  # three more polls: d4's DNS checks see daemon 1's keys, not its own
    d4_keys = d4.keys()
    log(f"d4 (stream mta1): keys {d4_keys}")
    d1_selectors = sorted(s for s, _ in fleet[0].keys())
    check(sorted(s for s, _ in d4_keys) == d1_selectors,
          f"d4: its selectors {sorted(s for s, _ in d4_keys)} should collide with d1's "
          f"{d1_selectors} (the point of this check)")
    check(d4_keys and all(st == "pending" for _, st in d4_keys),
          f"d4: its keys must stay pending, got {d4_keys}")
    text = d4.log_text()
    lines = [l for l in text.splitlines() if refusal in l]
    check(len(lines) >= 2 and all("publish hook failed" in l and "stream" in l for l in lines),
          f"d4: its log should say the publish hook failed because another key is there and "
          f"name the stream setting: {lines[:2] or tail(d4.log, 8)}")
    keys_out = d4.cli("keys").stdout
    log("d4: dkimrotor keys says:\n" + keys_out.rstrip())
    check(keys_out.count(refusal) >= 2,
          "d4: `dkimrotor keys` should show why its keys wait (the hook's refusal): " + keys_out)
    r = d4.cli("check")
    check(r.returncode == 1 and "its keys wait for the publish hook, which fails" in r.stdout
          and refusal in r.stdout,
          f"d4: `dkimrotor check` should fail naming the hook's refusal: exit {r.returncode}\n"
          f"{r.stdout[-1200:]}{r.stderr}")
    after = records(lab, fleet)
    check(after == before, "d4 changed records of the fleet in Knot: " + "; ".join(
        f"{k}: {before.get(k)} -> {after.get(k)}" for k in set(before) | set(after)
        if before.get(k) != after.get(k)))
    d4_mail = send(d4, "d4", 2)
    log(f"d4: the milter answers {d4_mail[0][0]!r} {d4_mail[0][2]!r}")
    for i, (reply, msg, data) in enumerate(d4_mail):
        sigs = signatures(msg)
        reply = (reply, data)
        check(tempfail(reply) and not sigs,
              f"d4: message {i}: reply {reply!r} with {len(sigs)} DKIM-Signatures; with no "
              "active key (on_error = tempfail) it must tempfail and sign nothing")
    verify(lab, "mta1 mail with d4 running", send(fleet[0], "mta1-again", 3), "mta1-")
    d4.stop()
    changes = watch.stop()
    log(f"Knot sampled {watch.samples} times while d4 ran")
    check(watch.samples >= 5 and not changes,
          f"while d4 ran, Knot served other records for the fleet's names: {changes[:3]}")

    # 3. A rotation on the running daemon 2 (grace 0s: its old key is revoked through the hook
    # at once) leaves the others alone.
    d2 = fleet[1]
    old_active = d2.active()
    r = d2.cli("rotate", "--domain", DOMAIN)
    log(f"d2: dkimrotor rotate: exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    check(r.returncode == 0, f"d2: dkimrotor rotate exit {r.returncode}: {r.stderr.strip()}")

    def settled():
        k = dict(d2.keys())
        return (d2.active() and d2.active() != old_active and len(k) == 3 and
                all(k.get(s) == "revoked" for s in old_active) and
                all(st in ("active", "ready", "revoked") for st in k.values()))
    ok = wait_for(settled, 60, 0.5)
    log(f"d2: keys after the rotation: {d2.keys()}")
    check(ok, f"d2: after rotate, want a new active key, the new spare ready and the old key "
          f"revoked: {d2.keys()} (active before {old_active})")
    for s in old_active:
        got = lab.knot.txt(f"{s}._domainkey.{DOMAIN}")
        check(got == ["v=DKIM1; p="], f"d2: the revoked {s} should be served as v=DKIM1; p=: {got}")
    after = records(lab, [fleet[0], fleet[2]])
    others = {k: v for k, v in before.items() if not k.startswith("mta2-")}
    check(after == others, "the rotation of mta2 changed other records: " + "; ".join(
        f"{k}: {others.get(k)} -> {after.get(k)}" for k in set(others) | set(after)
        if others.get(k) != after.get(k)))
    verify(lab, "mta2 mail after rotate", send(d2, "mta2-rotated", 3), "mta2-")
    verify(lab, "mta1 mail after rotate", send(fleet[0], "mta1-late", 2), "mta1-")
    for d in fleet:
        check(d.proc.poll() is None, f"{d.name} exited ({d.proc.returncode})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True, help="the source tree (for contrib/hooks)")
    ap.add_argument("--hook", help="the publish hook (default: SOURCE/contrib/hooks/nsupdate)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.dkimrotor = os.path.abspath(args.dkimrotor)
    args.source = os.path.abspath(args.source)
    args.hook = os.path.abspath(args.hook or os.path.join(args.source, "contrib/hooks/nsupdate"))
    return run_lab(check, "the fleet test needs root (the hooks it runs must belong to root)",
                   ("knotd", "kdig", "knsupdate", "perl"), lambda: Lab(args), run)

if __name__ == "__main__":
    sys.exit(main())
