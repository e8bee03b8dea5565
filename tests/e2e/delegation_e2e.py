#!/usr/bin/python3
"""End-to-end test: CNAME delegation. Keys rotate through slots in the signer's zone while the
customer's domain only ever holds the CNAMEs its owner created once.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - one private Knot serving the customer's zone (customer.test: the CNAMEs) and the signer's
    zone (keys.provider.test: the key records, written by contrib/hooks/nsupdate);
  - a private Unbound, a real recursive resolver in front of Knot: receivers, the daemon's DNS
    checks and both verifiers resolve through it, following the CNAMEs across zones;
  - one `dkimrotor run` with customer.test delegated to customer-test.keys.provider.test,
    slots k1..k4, two active keys and a spare, grace 6 s.

Checks:
  1. `dkimrotor dns` prints the four CNAMEs. With only k1 and k2 created, the third key stays
     pending and `keys` and `check` name the missing CNAME k3; a k3 pointing elsewhere is
     named too; once it is right the key is verified and becomes the spare.
  2. Rotations (`dkimrotor rotate` on the running daemon) through the slots, k1 and k2 taking
     new keys again: after each, mail is signed d=customer.test s=SLOT and verified by dkimpy
     and Mail::DKIM through the CNAMEs.
  3. Knot's record at every slot, sampled every 0.2 s: a slot goes from a key to "p=" only
     grace after the key retired (audit.log), and from "p=" to a new key only grace after the
     revocation; nothing is ever written under customer.test.
  4. `dkimrotor check` ends with no error and names each slot's CNAME as right.

Needs root (the daemon runs hooks owned by root only); otherwise exits 77 (skipped).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks, dns_answer, log, run_lab, send, txt_values, verify  # noqa: E402
from mail_lab import (free_ports, knot_serves, port_open, stop_process, tail,  # noqa: E402
                      unbound_serves, wait_for, write_knot, write_unbound)

SKIP = 77
DOMAIN = "customer.test"
PROVIDER = "keys.provider.test"
ZONE = "customer-test." + PROVIDER
SLOTS = ["k1", "k2", "k3", "k4"]
GRACE = 6
ROTATIONS = 4

checks = Checks()


class Lab:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-delegation.")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.daemon = None

    def start(self, name, cmd, env=None):
        log_path = os.path.join(self.tmp, name + ".log")
        p = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)
        return p, log_path

    def setup(self):
        self.knot_port, self.unbound_port, self.milter_port = free_ports(3)
        self.tsig = os.path.join(self.tmp, "tsig.key")
        cmd = write_knot(os.path.join(self.tmp, "knot"), self.knot_port, [DOMAIN, PROVIDER],
                         "delegation", self.tsig)
        self.knot, self.knot_log = self.start("knot", cmd)
        if not wait_for(lambda: knot_serves(self.knot_port, DOMAIN), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(self.knot_log))
        cmd = write_unbound(os.path.join(self.tmp, "unbound"), self.unbound_port,
                            {DOMAIN: self.knot_port, PROVIDER: self.knot_port})
        self.unbound, self.unbound_log = self.start("unbound", cmd)
        if not wait_for(lambda: unbound_serves(self.unbound_port, DOMAIN), 15, 0.2):
            raise RuntimeError("Unbound did not start:\n" + tail(self.unbound_log))
        log(f"Knot on :{self.knot_port} serves {DOMAIN} and {PROVIDER}; Unbound on "
            f":{self.unbound_port} resolves through it")
        hooks = os.path.join(self.tmp, "hooks")
        os.makedirs(hooks, 0o755)
        self.hook = os.path.join(hooks, "nsupdate")
        shutil.copyfile(self.args.hook, self.hook)
        os.chmod(self.hook, 0o755)
        self.ns_env = os.path.join(self.tmp, "nsupdate.env")
        # The delegation zone is a name inside the provider's zone: the update goes there.
        with open(self.ns_env, "w") as f:
            f.write(f"DKIMROTOR_NS_SERVER=127.0.0.1\nDKIMROTOR_NS_PORT={self.knot_port}\n"
                    f"DKIMROTOR_NS_ZONE={PROVIDER}\nDKIMROTOR_NS_TSIG={self.tsig}\n"
                    "DKIMROTOR_NS_TTL=60\nDKIMROTOR_NS_TIMEOUT=5\n")
        os.chmod(self.ns_env, 0o600)
        self.keystore = os.path.join(self.tmp, "keystore")
        self.conf = os.path.join(self.tmp, "dkimrotor.conf")
        with open(self.conf, "w") as f:
            f.write(f"""milter:   {{ socket = "inet:{self.milter_port}@127.0.0.1"; on_error = "tempfail"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; }};
keystore: {{ directory = "{self.keystore}"; }};
dns:      {{ resolvers = ["127.0.0.1:{self.unbound_port}"]; check_authoritative = true;
            authoritative_port = {self.knot_port};
            min_propagation = "0s"; poll = "1s"; timeout = "2s"; }};
domains = (
  {{ domain = "{DOMAIN}"; active_keys = 2; prepublish = 1; key_lifetime = "1h";
    grace = "{GRACE}s";
    delegation = {{ zone = "{ZONE}"; slots = [{", ".join(f'"{s}"' for s in SLOTS)}]; }};
    publish_hook = "{self.hook}"; }} );
""")

    def owner_update(self, lines):
        """The domain's owner changes customer.test (a TSIG-signed update to Knot)."""
        path = os.path.join(self.tmp, "owner.update")
        with open(path, "w") as f:
            f.write(f"server 127.0.0.1 {self.knot_port}\nzone {DOMAIN}.\n" + "\n".join(lines)
                    + "\nsend\n")
        r = subprocess.run(["knsupdate", "-k", self.tsig, path], capture_output=True, text=True,
                           timeout=20)
        if r.returncode != 0:
            raise RuntimeError(f"knsupdate: {r.stdout}{r.stderr}")

    def cname(self, slot, target=None):
        return [f"update delete {slot}._domainkey.{DOMAIN}. CNAME",
                f"update add {slot}._domainkey.{DOMAIN}. 60 CNAME "
                f"{target or slot + '._domainkey.' + ZONE}."]

    def start_daemon(self):
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "DKIMROTOR_NS_CONFIG": self.ns_env}
        self.daemon, self.daemon_log = self.start(
            "dkimrotor", [self.args.dkimrotor, "run", "-c", self.conf], env)
        if not wait_for(lambda: port_open(self.milter_port) or self.daemon.poll() is not None, 30):
            raise RuntimeError("dkimrotor did not listen in 30 s")
        if self.daemon.poll() is not None:
            raise RuntimeError(f"dkimrotor exited {self.daemon.returncode}:\n{tail(self.daemon_log)}")

    def cli(self, *args, timeout=90):
        return subprocess.run([self.args.dkimrotor, *args, "-c", self.conf], capture_output=True,
                              text=True, timeout=timeout)

    def keys(self):
        """{selector: key report} as the daemon holds them."""
        r = self.cli("keys", "--json")
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return {}
        return {k.get("selector"): k for d in data.get("domains", []) for k in d.get("keys", [])}

    def states(self):
        return {s: k.get("state") for s, k in self.keys().items()}

    def in_state(self, state):
        return sorted(s for s, st in self.states().items() if st == state)

    def cleanup(self):
        for p in reversed(self.procs):
            stop_process(p, 15)
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def diagnostics(self):
        try:
            r = self.cli("keys", timeout=20)
            print("--- dkimrotor keys\n" + r.stdout + r.stderr, end="")
        except (OSError, subprocess.SubprocessError) as e:
            print(f"({e})")
        if self.daemon:
            print(f"--- tail of {self.daemon_log}\n" + tail(self.daemon_log, 30), end="", flush=True)


class SlotWatch:
    """Samples Knot's record at each slot of the zone every 0.2 s and keeps each change with
    when it was first seen, and anything ever served under the customer's own _domainkey names
    besides the CNAMEs."""

    def __init__(self, lab):
        self.lab = lab
        self.changes = {s: [] for s in SLOTS}  # slot -> [(monotonic, value)]
        self.intruders = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.is_set():
            for s in SLOTS:
                values = txt_values(self.lab.knot_port, f"{s}._domainkey.{ZONE}")
                value = values[0] if len(values) == 1 else (None if not values else tuple(values))
                seen = self.changes[s]
                if not seen or seen[-1][1] != value:
                    seen.append((time.monotonic(), value))
                at_domain = dns_answer(self.lab.knot_port, f"{s}._domainkey.{DOMAIN}")
                if any("\tTXT\t" in line for line in at_domain) and len(self.intruders) < 5:
                    self.intruders.append(at_domain)
            self.stop_event.wait(0.2)

    def stop(self):
        self.stop_event.set()
        self.thread.join(30)


def retirements(lab):
    """{selector: [wall-clock seconds it retired]} from the keystore's audit.log."""
    out = {}
    try:
        with open(os.path.join(lab.keystore, "audit.log")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == "retiring":
                    t = time.mktime(time.strptime(parts[0], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
                    out.setdefault(parts[2], []).append(t)
    except OSError:
        pass
    return out


def run(lab):
    lab.setup()
    # 1. The CNAMEs, as `dns` prints them; the owner creates k1 and k2 only, for now.
    r = lab.cli("dns", "--domain", DOMAIN)
    want = [f"{s}._domainkey.{DOMAIN}. 3600 IN CNAME {s}._domainkey.{ZONE}." for s in SLOTS]
    checks(r.returncode == 0 and all(w in r.stdout.splitlines() for w in want),
           f"dns --domain prints the four CNAMEs: {r.stdout[:400]}{r.stderr}")
    lab.owner_update(lab.cname("k1") + lab.cname("k2"))
    watch = SlotWatch(lab)
    wall0, mono0 = time.time(), time.monotonic()
    lab.start_daemon()
    ok = wait_for(lambda: lab.in_state("active") == ["k1", "k2"], 60, 0.5)
    checks(ok, f"k1 and k2 active within 60 s: {lab.states()}")
    missing = "CNAME k3._domainkey.customer.test is missing"
    wait_for(lambda: missing in json.dumps(lab.keys().get("k3", {})), 20, 0.5)
    k3 = lab.keys().get("k3", {})
    checks(k3.get("state") == "pending" and missing in json.dumps(k3),
           f"k3 waits for its CNAME, and keys says so: {k3}")
    r = lab.cli("check")
    fix = f"creates k3._domainkey.{DOMAIN}. CNAME k3._domainkey.{ZONE}."
    checks(r.returncode == 0 and "the delegation CNAME is missing" in r.stdout and fix in r.stdout,
           f"check names the missing CNAME k3 (a warning: k3 is pending): exit {r.returncode}\n"
           f"{r.stdout[-1500:]}{r.stderr}")
    checks(f"k1._domainkey.{DOMAIN} is a CNAME to k1._domainkey.{ZONE}" in r.stdout,
           "check says k1's CNAME is right")
    # A CNAME that points elsewhere (a provider the customer left) is named too; then the
    # owner gets it right. (A name Knot serves: Unbound must not go out to the Internet.)
    lab.owner_update(lab.cname("k3", f"k3._domainkey.old-provider.{DOMAIN}"))
    elsewhere = f"points to k3._domainkey.old-provider.{DOMAIN}, not to k3._domainkey.{ZONE}"
    checks(wait_for(lambda: elsewhere in json.dumps(lab.keys().get("k3", {})), 20, 0.5),
           f"keys names the CNAME that points elsewhere: {lab.keys().get('k3')}")
    checks(lab.states().get("k3") == "pending", f"k3 stays pending: {lab.states()}")
    lab.owner_update(lab.cname("k3") + lab.cname("k4"))
    checks(wait_for(lambda: lab.states().get("k3") == "ready", 30, 0.5),
           f"k3 is ready once its CNAME is right: {lab.states()}")
    verify(checks, lab.args.source, lab.unbound_port, lab.tmp, "before rotations",
           send(lab.milter_port, DOMAIN, "first", 4), DOMAIN, lambda s: s in ("k1", "k2"))

    # 2. Rotations through the slots.
    used = set(lab.in_state("active"))
    for n in range(1, ROTATIONS + 1):
        if not checks(wait_for(lambda: len(lab.in_state("ready")) == 1, 60, 0.5),
                      f"rotation {n}: a ready spare within 60 s: {lab.states()}"):
            break
        before = lab.in_state("active")
        r = lab.cli("rotate", "--domain", DOMAIN)
        checks(r.returncode == 0, f"rotation {n}: rotate exit {r.returncode}: {r.stderr.strip()}")
        wait_for(lambda: len(lab.in_state("active")) == 2 and lab.in_state("active") != before,
                 20, 0.5)
        active = lab.in_state("active")
        used |= set(active)
        log(f"rotation {n}: active {before} -> {active}; keys {lab.states()}")
        verify(checks, lab.args.source, lab.unbound_port, lab.tmp, f"after rotation {n}",
               send(lab.milter_port, DOMAIN, f"rotation{n}", 3), DOMAIN,
               lambda s, active=active: s in active)
    checks(used >= set(SLOTS), f"every slot signed at some point: {sorted(used)}")
    # The last retired key's revocation, and the slot after it, within the watch.
    wait_for(lambda: "revoked" in lab.states().values(), 3 * GRACE, 0.5)
    watch.stop()

    # 3. What Knot served at each slot, against the grace.
    retired = retirements(lab)
    revocations = refills = 0
    for s in SLOTS:
        seen = watch.changes[s]
        log(f"{s}: " + " -> ".join(("none" if v is None else "p=" if v == "v=DKIM1; p=" else
                                    "key " + str(v)[-8:]) + f" @{t - mono0:.1f}s" for t, v in seen))
        for (t_prev, prev), (t, value) in zip(seen, seen[1:]):
            if value == "v=DKIM1; p=":
                revocations += 1
                # the wall-clock second the key retired, on the monotonic clock of the watch
                times = [r - wall0 + mono0 for r in retired.get(s, []) if r - wall0 + mono0 <= t]
                checks(times and t - max(times) >= GRACE - 1.5,
                       f"{s}: revoked {t - max(times) if times else '?'} s after it retired, "
                       f"within its grace of {GRACE} s")
            elif prev == "v=DKIM1; p=":
                refills += 1
                checks(t - t_prev >= GRACE - 1.5,
                       f"{s}: a new key {t - t_prev:.1f} s after the revocation, within grace "
                       f"({GRACE} s)")
            elif prev is not None:
                checks(False, f"{s}: a key replaced by another without its revocation: "
                       f"{str(prev)[-12:]} -> {str(value)[-12:]}")
    checks(revocations >= 2 and refills >= 1,
           f"the slots were revoked ({revocations}) and reused ({refills})")
    checks(not watch.intruders, f"records were written under {DOMAIN}: {watch.intruders[:2]}")

    # 4. check at the end.
    r = lab.cli("check")
    checks(r.returncode == 0 and "0 error(s)" in r.stdout and
           all(f"{s}._domainkey.{DOMAIN} is a CNAME to {s}._domainkey.{ZONE}" in r.stdout
               for s in SLOTS),
           f"check at the end: exit {r.returncode}\n{r.stdout[-1500:]}{r.stderr}")
    checks(lab.daemon.poll() is None, f"dkimrotor exited ({lab.daemon.returncode})")


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
    return run_lab(checks, "the delegation test needs root (the hooks it runs must belong to root)",
                   ("knotd", "kdig", "knsupdate", "unbound", "perl"), lambda: Lab(args), run)

if __name__ == "__main__":
    sys.exit(main())
