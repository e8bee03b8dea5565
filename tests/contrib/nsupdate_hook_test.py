#!/usr/bin/python3
"""contrib/hooks/nsupdate against a real, private Knot, once with knsupdate and once with BIND's
nsupdate: the RFC 2136 prerequisites that keep servers sharing a domain from overwriting each
other's key records.

  - publish into an empty name; the same value again (a no-op: the SOA serial stays);
  - a different key at the same name: refused with one line naming what is there and the
    stream setting, the record untouched;
  - revoke with the right DKIMROTOR_KEY_VALUE; revoke when the name holds another key (refused,
    untouched); revoke when it holds the revocation already (a no-op); publish over
    "v=DKIM1; p=" (a delegated slot's reuse) succeeds, over any other record it is refused;
  - revoke without DKIMROTOR_KEY_VALUE: the old unconditional replace;
  - an RSA-4096 record (over 512 bytes, three strings): served as one TXT record that joins
    back to the value, recognised by the value-dependent prerequisites, revoked;
  - DKIMROTOR_RECORD_NAME and DKIMROTOR_RECORD_ZONE: the record goes to the delegation zone;
    a name without "._domainkey." is refused.

Usage: nsupdate_hook_test.py --source SRC. Exits 77 when knotd, kdig or a client is missing.
Prints one line per failure and "N passed, M failed".
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks  # noqa: E402
from mail_lab import free_ports, knot_serves, stop_process, tail, wait_for, write_knot  # noqa: E402

SKIP = 77
ZONE = "example.test"
DELEGATED = "dkim.provider.test"  # a CNAME delegation target zone, served by the same Knot

check = Checks()


class Lab:
    def __init__(self, source, tmp, port, tsig):
        self.hook = os.path.join(source, "contrib", "hooks", "nsupdate")
        self.port, self.tsig, self.tmp = port, tsig, tmp

    def run(self, client, action, domain, selector, value, **extra):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DKIMROTOR_NS_SERVER": "127.0.0.1",
               "DKIMROTOR_NS_PORT": str(self.port), "DKIMROTOR_NS_TSIG": self.tsig,
               "DKIMROTOR_NS_CONFIG": os.path.join(self.tmp, "none.env"),
               "DKIMROTOR_NS_TTL": "60", "DKIMROTOR_NS_CLIENT": client, "TMPDIR": self.tmp}
        env.update(extra)
        r = subprocess.run([self.hook, action, domain, selector, value], env=env,
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stderr

    def dig(self, name, rtype="TXT"):
        """The TXT records at name, each as its list of strings (kdig with a 4096-byte EDNS
        buffer, so a large record comes over UDP in one answer)."""
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), "+bufsize=4096",
                              "+noall", "+answer", rtype, name], capture_output=True,
                             text=True, timeout=10).stdout
        records = []
        for line in out.splitlines():
            if f"\t{rtype}\t" in line or f" {rtype} " in line:
                records.append(re.findall(r'"((?:[^"\\]|\\.)*)"', line))
        return records

    def txt(self, name):
        return ["".join(r) for r in self.dig(name)]

    def serial(self, zone=ZONE):
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), "+short", "SOA", zone],
                             capture_output=True, text=True, timeout=10).stdout.split()
        return out[2] if len(out) > 2 else None


def rsa_value(bits):
    """A fresh RSA public key's DKIM record value (the private key is thrown away)."""
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                          f"rsa_keygen_bits:{bits}"], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubout", "-outform", "DER"], input=key,
                         capture_output=True, check=True).stdout
    import base64
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def one_line(err):
    return len(err.strip().splitlines()) == 1


def scenario(lab, client, big):
    c = os.path.basename(client)
    tag = re.sub(r"[^a-z]", "", c)
    name = f"fleet-{tag}._domainkey.{ZONE}"
    sel = f"fleet-{tag}"
    a, b, revoked = "v=DKIM1; k=rsa; p=AAAA" + tag, "v=DKIM1; k=rsa; p=BBBB" + tag, "v=DKIM1; p="

    rc, err = lab.run(client, "publish", ZONE, sel, a)
    check(rc == 0 and lab.txt(name) == [a], f"{c}: publish into an empty name: exit {rc} {err!r}, "
          f"DNS {lab.txt(name)}")
    serial = lab.serial()
    rc, err = lab.run(client, "publish", ZONE, sel, a)
    check(rc == 0, f"{c}: publishing the same value again: exit {rc} {err!r}")
    check(lab.serial() == serial, f"{c}: publishing the same value again changed the zone "
          f"(serial {serial} -> {lab.serial()}); it must be a no-op")

    rc, err = lab.run(client, "publish", ZONE, sel, b)
    check(rc == 1, f"{c}: publishing another key over {name}: exit {rc}, want 1")
    check(one_line(err) and "another key is at " + name in err and "stream" in err and
          "p=AAAA" in err, f"{c}: the refusal should be one line naming the key there and the "
          f"stream setting: {err!r}")
    check(lab.txt(name) == [a], f"{c}: a refused publish changed {name}: {lab.txt(name)}")

    rc, err = lab.run(client, "revoke", ZONE, sel, revoked, DKIMROTOR_KEY_VALUE=b)
    check(rc == 1 and one_line(err) and "does not hold this key" in err,
          f"{c}: revoking key B while the name holds key A: exit {rc} {err!r}, want 1 and one line")
    check(lab.txt(name) == [a], f"{c}: a refused revoke changed {name}: {lab.txt(name)}")

    rc, err = lab.run(client, "revoke", ZONE, sel, revoked, DKIMROTOR_KEY_VALUE=a)
    check(rc == 0 and lab.txt(name) == [revoked],
          f"{c}: revoke with the right key value: exit {rc} {err!r}, DNS {lab.txt(name)}")
    serial = lab.serial()
    rc, err = lab.run(client, "revoke", ZONE, sel, revoked, DKIMROTOR_KEY_VALUE=a)
    check(rc == 0 and lab.serial() == serial and lab.txt(name) == [revoked],
          f"{c}: revoking again when p= is there: exit {rc} {err!r}, serial {serial} -> "
          f"{lab.serial()}; want a no-op success")
    # A revocation is nobody's key: a delegated domain's slot takes its next key so.
    rc, err = lab.run(client, "publish", ZONE, sel, b, DKIMROTOR_KEY_VALUE=b)
    check(rc == 0 and lab.txt(name) == [b],
          f"{c}: publishing over v=DKIM1; p= (slot reuse): exit {rc} {err!r}, DNS {lab.txt(name)}")
    loose = f"loose-{tag}._domainkey.{ZONE}"
    lab.run(client, "publish", ZONE, f"loose-{tag}", "v=DKIM1; k=rsa; p=")
    rc, err = lab.run(client, "publish", ZONE, f"loose-{tag}", a)
    check(rc == 1 and lab.txt(loose) == ["v=DKIM1; k=rsa; p="],
          f"{c}: only the daemon's own revocation text may be replaced, not another record: "
          f"exit {rc}, DNS {lab.txt(loose)}")

    # No DKIMROTOR_KEY_VALUE (an older daemon): revoke replaces whatever is there.
    old = f"old-{tag}"
    lab.run(client, "publish", ZONE, old, b)
    rc, err = lab.run(client, "revoke", ZONE, old, revoked)
    check(rc == 0 and lab.txt(f"{old}._domainkey.{ZONE}") == [revoked],
          f"{c}: revoke without DKIMROTOR_KEY_VALUE: exit {rc} {err!r}")

    # RSA-4096: three strings of at most 255 bytes, one record.
    bname = f"big-{tag}._domainkey.{ZONE}"
    rc, err = lab.run(client, "publish", ZONE, f"big-{tag}", big)
    recs = lab.dig(bname)
    check(rc == 0 and len(recs) == 1 and "".join(recs[0]) == big,
          f"{c}: a {len(big)}-byte value is not served as one record joining back to it: "
          f"exit {rc} {err!r}, {len(recs)} records")
    check(len(recs) == 1 and all(len(s) <= 255 for s in recs[0]) and len(recs[0]) == 3,
          f"{c}: the {len(big)}-byte value should be three strings of at most 255 bytes: "
          f"{[len(s) for s in recs[0]] if recs else None}")
    serial = lab.serial()
    rc, err = lab.run(client, "publish", ZONE, f"big-{tag}", big)
    check(rc == 0 and lab.serial() == serial,
          f"{c}: the 4096-bit value again should be recognised (same strings): exit {rc} {err!r}")
    rc, err = lab.run(client, "publish", ZONE, f"big-{tag}", big[:-4] + "AAAA")
    check(rc == 1 and lab.txt(bname) == [big], f"{c}: another 4096-bit value over it: exit {rc}")
    rc, err = lab.run(client, "revoke", ZONE, f"big-{tag}", revoked, DKIMROTOR_KEY_VALUE=big)
    check(rc == 0 and lab.txt(bname) == [revoked],
          f"{c}: revoking the 4096-bit key: exit {rc} {err!r}")

    # A domain delegated by CNAME: the daemon names the record and the zone.
    slot = f"slot-{tag}._domainkey.{DELEGATED}"
    rc, err = lab.run(client, "publish", "customer.example", f"s-{tag}", a,
                      DKIMROTOR_RECORD_NAME=slot, DKIMROTOR_RECORD_ZONE=DELEGATED,
                      DKIMROTOR_KEY_VALUE=a)
    check(rc == 0 and lab.txt(slot) == [a], f"{c}: publish at DKIMROTOR_RECORD_NAME in "
          f"DKIMROTOR_RECORD_ZONE: exit {rc} {err!r}, DNS {lab.txt(slot)}")
    rc, err = lab.run(client, "revoke", "customer.example", f"s-{tag}", revoked,
                      DKIMROTOR_RECORD_NAME=slot + ".", DKIMROTOR_RECORD_ZONE=DELEGATED,
                      DKIMROTOR_KEY_VALUE=a)
    check(rc == 0 and lab.txt(slot) == [revoked],
          f"{c}: revoke at DKIMROTOR_RECORD_NAME (trailing dot): exit {rc} {err!r}")
    rc, err = lab.run(client, "publish", ZONE, sel, a, DKIMROTOR_RECORD_NAME=f"www.{ZONE}")
    check(rc == 2 and "_domainkey" in err,
          f"{c}: a DKIMROTOR_RECORD_NAME without ._domainkey.: exit {rc} {err!r}, want 2")
    check(not lab.txt(f"www.{ZONE}"), f"{c}: the refused name got a record")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    args = ap.parse_args()
    clients = [c for c in (shutil.which("knsupdate"), shutil.which("nsupdate")) if c]
    knotd = shutil.which("knotd") or ("/usr/sbin/knotd" if os.path.exists("/usr/sbin/knotd")
                                      else None)
    if not knotd or not shutil.which("kdig") or len(clients) < 2:
        print("SKIP: needs knotd, kdig, knsupdate and nsupdate (scripts/install-deps)")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="dkimrotor-nsupdate-hook.")
    knot = None
    try:
        (port,) = free_ports(1)
        tsig = os.path.join(tmp, "tsig.key")
        cmd = write_knot(os.path.join(tmp, "knot"), port, [ZONE, DELEGATED], "hooktest", tsig)
        knot = subprocess.Popen(cmd, stdout=open(os.path.join(tmp, "knot.log"), "w"),
                                stderr=subprocess.STDOUT)
        if not wait_for(lambda: knot_serves(port, ZONE) and knot_serves(port, DELEGATED), 15, 0.2):
            check(False, "Knot did not start:\n" + tail(os.path.join(tmp, "knot.log")))
        else:
            lab = Lab(args.source, tmp, port, tsig)
            big = rsa_value(4096)
            check(len(big) > 512, f"the RSA-4096 value has {len(big)} bytes, want over 512")
            for client in clients:
                scenario(lab, client, big)
    except Exception as e:
        check(False, f"{type(e).__name__}: {e}")
    finally:
        stop_process(knot)
        shutil.rmtree(tmp, ignore_errors=True)
    print(check.summary(), flush=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
