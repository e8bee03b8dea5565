#!/usr/bin/python3
"""End-to-end test of scripts/demo: real mail through its private Postfix, and Ctrl-C cleanup.

Runs scripts/demo (DEMO_SKIP_SETUP=1, BUILD_DIR = the tested binary's folder, free ports) in a
process group of its own and reads its output (the line format is in scripts/lib/demo.py).
Checks:
  1. The first sample messages arrive VERIFIED (dkimpy and Mail::DKIM against the demo's Knot),
     both selectors of each algorithm taking turns; mail from outside arrives UNSIGNED.
  2. Independently of the demo's verdicts: this test asks the demo's Knot for every selector
     the demo printed, and verifies the demo's copy of the first message with dkimpy itself.
  3. A rotation: a new selector becomes active and a later message verifies with it.
  4. SIGINT to the demo's process group, as a terminal's Ctrl-C, and another one a second
     later (the old shell demo's second Ctrl-C cut its cleanup short): it exits within 30 s,
     its work dir is gone, no process of it is left (Postfix of its config dir, knotd,
     dkimrotor, anything naming the work dir), and no new /tmp/dkimrotor-demo* is left.

Needs root (Postfix); as another user it exits 77 (skipped). Prints one line per failure and a
final "N passed, M failed" line. Whatever the demo leaves behind, this test removes afterwards.
"""
import argparse
import os
import re
import signal
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks, dkimpy_dnsfunc, log, txt_values  # noqa: E402
from mail_lab import free_ports, postfix_pids, wait_for  # noqa: E402

SKIP = 77
ZONE = "dkimrotor.test"
MAIL = re.compile(r"^mail #(\d+) (<[^>]*>) (.*) => (VERIFIED|FAILED|UNSIGNED)$")
SIG = re.compile(r"a=(\S+) s=(\S+) dkimpy=(\S+) Mail::DKIM=(\S+)")


class Output:
    """The demo's stdout, read by a thread, echoed with a prefix."""

    def __init__(self, pipe):
        self.lines = []
        self.first_verified = None  # monotonic time of the first VERIFIED line
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.read, args=(pipe,), daemon=True)
        self.thread.start()

    def read(self, pipe):
        for raw in pipe:
            line = raw.decode(errors="replace").rstrip("\n")
            print(f"  | {line}", flush=True)
            with self.lock:
                self.lines.append(line)
                if self.first_verified is None and line.endswith("=> VERIFIED"):
                    self.first_verified = time.monotonic()

    def snapshot(self):
        with self.lock:
            return list(self.lines)

    def work_dir(self):
        for line in self.snapshot():
            if line.startswith("demo: work dir "):
                return line[len("demo: work dir "):]
        return None

    def mails(self):
        """[(n, id, [(alg, selector, dkimpy, mail_dkim)], verdict)] in output order."""
        out = []
        for line in self.snapshot():
            m = MAIL.match(line)
            if m:
                out.append((int(m.group(1)), m.group(2), SIG.findall(m.group(3)), m.group(4)))
        return out


def takes_turns(mails):
    """Whether, for each algorithm, consecutive signed messages alternate between two
    selectors over the first batch (at least 4 messages)."""
    signed = [sigs for _, _, sigs, v in mails if v == "VERIFIED"][:4]
    if len(signed) < 4:
        return False
    for alg in {a for sigs in signed for a, *_ in sigs}:
        seq = [s for sigs in signed for a, s, *_ in sigs if a == alg]
        if len(set(seq)) != 2 or any(x == y for x, y in zip(seq, seq[1:])):
            return False
    return True


def leftovers(work):
    """Pids of processes that name the work dir in their command line or environment (knotd -c
    WORK/knot/knot.conf, dkimrotor run -c WORK/dkimrotor.conf, a hook, Postfix's daemons with
    MAIL_CONFIG=WORK/postfix)."""
    found = set(postfix_pids(f"{work}/postfix"))
    key = work.encode() + b"/"
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            with open(f"/proc/{p}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if key in cmd or key in env:
            found.add(int(p))
    return sorted(found)


def describe(pids):
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmd[:100]}")
        except OSError:
            pass
    return out


def demo_dirs():
    return {e for e in os.listdir("/tmp") if e.startswith("dkimrotor-demo")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--rotation-timeout", type=float, default=180,
                    help="seconds to wait for a rotation and a message signed after it")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: the demo test needs root (the demo's Postfix drops to its mail_owner)")
        return SKIP
    missing = [p for p in ("postfix", "knotd", "kdig", "knsupdate") if not shutil.which(p)
               and not os.path.exists(f"/usr/sbin/{p}")]
    if missing:
        print(f"FAIL: missing {', '.join(missing)}: run scripts/install-deps")
        print("0 passed, 1 failed")
        return 1

    checks = Checks()
    dns_port, milter_port, smtp_port, sink_port = free_ports(4)
    before = demo_dirs()
    env = dict(os.environ, DEMO_SKIP_SETUP="1",
               BUILD_DIR=os.path.dirname(os.path.abspath(args.dkimrotor)),
               DEMO_DNS_PORT=str(dns_port), DEMO_MILTER_PORT=str(milter_port),
               DEMO_SMTP_PORT=str(smtp_port), DEMO_SINK_PORT=str(sink_port),
               DEMO_EVERY="10", DEMO_DURATION="")
    t0 = time.monotonic()
    demo = subprocess.Popen([os.path.join(args.source, "scripts", "demo")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
    out = Output(demo.stdout)
    work = None
    try:
        # 1. the first batch
        wait_for(lambda: takes_turns(out.mails()) or demo.poll() is not None, 120, 0.5)
        work = out.work_dir()
        checks(work is not None, "the demo did not print its work dir")
        mails = out.mails()
        if out.first_verified:
            log(f"first VERIFIED message {out.first_verified - t0:.1f} s after the demo started")
        checks(demo.poll() is None, f"the demo exited early ({demo.returncode})")
        checks(takes_turns(mails), "no batch of 4 VERIFIED messages with the selectors of each "
               "algorithm taking turns")
        checks(all(v != "FAILED" for *_, v in mails), "the demo printed a FAILED message")
        checks(all(len(sigs) == 2 for _, _, sigs, v in mails if v == "VERIFIED"),
               "a VERIFIED message without its two signatures (rsa-sha256, ed25519-sha256)")
        wait_for(lambda: any(v == "UNSIGNED" for *_, v in out.mails()), 30, 0.5)
        checks(any(v == "UNSIGNED" for *_, v in out.mails()),
               "no message from outside internal_hosts shown UNSIGNED")

        # 2. our own look at the demo's DNS and at one delivered message
        selectors = {s for _, _, sigs, _ in out.mails() for _, s, *_ in sigs}
        for sel in sorted(selectors):
            values = txt_values(dns_port, f"{sel}._domainkey.{ZONE}")
            checks(len(values) == 1 and "p=" in values[0] and not values[0].endswith("p="),
                   f"the demo's DNS does not serve selector {sel}'s key: {values}")
        if work:
            import dkim
            n = mails[0][0]
            try:
                with open(f"{work}/mail/{n}.eml", "rb") as f:
                    msg = f.read()
                ok = all(dkim.DKIM(msg).verify(idx=i, dnsfunc=dkimpy_dnsfunc(dns_port))
                         for i in range(2))
            except (OSError, dkim.DKIMException) as e:
                ok = False
                print(f"  {e}")
            checks(ok, f"this test's dkimpy does not verify the demo's copy of mail #{n}")

        # 3. a rotation, and a message signed with a selector that was not there at first
        first_selectors = set(selectors)

        def rotated():
            lines = out.snapshot()
            rot = [i for i, l in enumerate(lines) if l.startswith("rotation:") and "-> active" in l]
            if not rot:
                return False
            after = [l for l in lines[rot[0]:] if MAIL.match(l)]
            return any(MAIL.match(l).group(4) == "VERIFIED" and
                       {s for _, s, *_ in SIG.findall(l)} - first_selectors for l in after)
        t1 = time.monotonic()
        ok = wait_for(lambda: rotated() or demo.poll() is not None, args.rotation_timeout, 1)
        checks(ok and rotated(), f"no rotation followed by a VERIFIED message with a new "
               f"selector within {args.rotation_timeout:.0f} s")
        log(f"rotation seen after {time.monotonic() - t1:.0f} more s")
        checks(all(v != "FAILED" for *_, v in out.mails()), "the demo printed a FAILED message")
        for sel in sorted({s for _, _, sigs, _ in out.mails() for _, s, *_ in sigs}
                          - first_selectors):
            values = txt_values(dns_port, f"{sel}._domainkey.{ZONE}")
            checks(len(values) == 1 and "p=" in values[0] and not values[0].endswith("p="),
                   f"the demo's DNS does not serve the new selector {sel}'s key: {values}")
        checks(demo.poll() is None, f"the demo exited early ({demo.returncode})")
    except Exception as e:  # still Ctrl-C the demo and check its cleanup
        checks(False, f"{type(e).__name__}: {e}")
    finally:
        # 4. Ctrl-C, as a terminal sends it: SIGINT to the demo's whole process group
        work = work or out.work_dir()
        t2 = time.monotonic()
        for _ in range(2):  # and again a second later, as an impatient user does
            try:
                os.killpg(demo.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                demo.wait(1)
                break
            except subprocess.TimeoutExpired:
                pass
        try:
            rc = demo.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        out.thread.join(5)
        log(f"the demo exited {rc} {time.monotonic() - t2:.1f} s after SIGINT")
        checks(rc is not None, "the demo did not exit within 30 s of SIGINT")
        checks(rc == 130, f"the demo exited {rc} after SIGINT, want 130")
        if work:
            checks(not os.path.exists(work), f"the demo's work dir {work} is still there: "
                   f"{sorted(os.listdir(work)) if os.path.isdir(work) else '?'}")
            left = leftovers(work)
            checks(not left, f"processes of the demo are still running: {describe(left)}")
        new = demo_dirs() - before
        checks(not new, f"new /tmp/dkimrotor-demo* left behind: {sorted(new)}")
        # never leave anything behind ourselves, even when the demo did
        if work:
            for pid in leftovers(work):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            shutil.rmtree(work, ignore_errors=True)
        for name in new:
            shutil.rmtree(os.path.join("/tmp", name), ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")
    print(checks.summary(), flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
