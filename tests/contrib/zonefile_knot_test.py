#!/usr/bin/python3
"""contrib/hooks/zonefile feeding a real, private Knot: the zone file $INCLUDEs the hook's
include file, and DKIMROTOR_ZONE_RELOAD is a script that bumps the zone's SOA serial and runs
`knotc -b zone-reload` (the hook runs it without a shell).

  - an RSA-4096 record (a value of about 740 bytes, over 512): served as exactly one TXT record
    whose strings, each at most 255 bytes, join back to the value, both over UDP with an EDNS
    buffer and over TCP; over plain UDP without EDNS the answer is truncated (TC), which is why
    EDNS0 and TCP matter to a verifier; the include file's own strings are at most 255 bytes
    too (Knot would split a longer one itself, BIND refuses it); dkimpy verifies a message
    signed with the private key against the served record; the SOA serial went up
    (secondaries would see the change);
  - revoke: the name then serves exactly "v=DKIM1; p=";
  - DKIMROTOR_RECORD_NAME (a delegated name inside the same zone) is where the record goes.

Usage: zonefile_knot_test.py --source SRC. Exits 77 when knotd, kdig or knotc is missing.
Prints one line per failure and "N passed, M failed". Needs no root.
"""
import argparse
import base64
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
REVOKED = "v=DKIM1; p="

check = Checks()


# The reload command: what an administrator's would do for a zone that $INCLUDEs the hook's
# file. Bumping the serial is the hook's documented contract (secondaries notice by it); the
# -b makes knotc wait until Knot has loaded the zone, so the hook returns only when it is served.
RELOAD = """#!/bin/sh
set -eu
zonefile=$1 socket=$2 zone=$3
awk '$2 == "SOA" && !done { $5 = $5 + 1; done = 1 } { print }' "$zonefile" > "$zonefile.new"
mv "$zonefile.new" "$zonefile"
exec knotc -s "$socket" -b -t 10 zone-reload "$zone"
"""


class Lab:
    def __init__(self, source, tmp, port, reload_cmd):
        self.hook = os.path.join(source, "contrib", "hooks", "zonefile")
        self.port, self.tmp, self.reload_cmd = port, tmp, reload_cmd
        self.include = os.path.join(tmp, "dkim.db")

    def run(self, action, domain, selector, value, **extra):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR": self.tmp,
               "DKIMROTOR_ZONE_INCLUDE": self.include, "DKIMROTOR_ZONE_TTL": "60",
               "DKIMROTOR_ZONE_RELOAD": self.reload_cmd,
               "DKIMROTOR_ZONE_CONFIG": os.path.join(self.tmp, "none.env")}
        env.update(extra)
        r = subprocess.run([self.hook, action, domain, selector, value], env=env,
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stderr

    def kdig(self, name, *opts, rtype="TXT"):
        return subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.port), *opts, rtype, name],
                              capture_output=True, text=True, timeout=10).stdout

    def records(self, name, *opts):
        """The TXT records at name, each as its list of strings."""
        out = self.kdig(name, "+noall", "+answer", *opts)
        return [re.findall(r'"((?:[^"\\]|\\.)*)"', line) for line in out.splitlines()
                if "\tTXT\t" in line]

    def txt(self, name):
        return ["".join(r) for r in self.records(name, "+bufsize=4096")]

    def serial(self):
        out = self.kdig(ZONE, "+short", rtype="SOA").split()
        return int(out[2]) if len(out) > 2 else None


def rsa_key(tmp, bits):
    """A fresh RSA key: (PEM private key bytes, its DKIM record value)."""
    path = os.path.join(tmp, f"rsa{bits}.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    f"rsa_keygen_bits:{bits}", "-out", path], capture_output=True, check=True)
    der = subprocess.run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    with open(path, "rb") as f:
        return f.read(), "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def dkimpy_verifies(lab, name, private_pem, selector, domain):
    try:
        import dkim
    except ImportError as e:
        return False, f"dkimpy missing: {e}"
    msg = (b"From: a@" + domain.encode() + b"\r\nTo: b@example.org\r\nSubject: big key\r\n"
           b"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\nHello.\r\n")
    sig = dkim.sign(msg, selector.encode(), domain.encode(), private_pem,
                    include_headers=[b"from", b"to", b"subject", b"date"])
    asked = []

    def dnsfunc(qname, timeout=5):
        qname = (qname.decode() if isinstance(qname, bytes) else qname).rstrip(".")
        asked.append(qname)
        values = lab.txt(qname)
        return values[0].encode() if len(values) == 1 else b""
    ok = dkim.verify(sig + msg, dnsfunc=dnsfunc)
    return ok and asked == [name], f"verify={ok}, asked {asked}"


def scenario(lab, private_pem, big):
    name = f"big._domainkey.{ZONE}"
    check(len(big) > 512, f"the RSA-4096 value has {len(big)} bytes, want over 512")
    before = lab.serial()
    rc, err = lab.run("publish", ZONE, "big", big, DKIMROTOR_RECORD_NAME=name)
    check(rc == 0, f"publish of the {len(big)}-byte value: exit {rc} {err!r}")
    for via, opts in (("UDP with EDNS", ("+bufsize=4096", "+ignore")), ("TCP", ("+tcp",))):
        recs = lab.records(name, *opts)
        check(len(recs) == 1, f"{via}: want exactly one TXT record at {name}, got {len(recs)}")
        check(len(recs) == 1 and "".join(recs[0]) == big,
              f"{via}: the strings served do not join back to the published value")
        check(bool(recs) and all(len(s) <= 255 for s in recs[0]) and len(recs[0]) >= 3,
              f"{via}: want at least three strings of at most 255 bytes: "
              f"{[len(s) for s in recs[0]] if recs else None}")
    # Knot splits an over-long string in a zone file by itself; BIND refuses the zone. So the
    # file's own strings are checked too: the hook must split, not the server.
    with open(lab.include) as f:
        written = [re.findall(r'"([^"]*)"', line) for line in f if line.startswith(name + ".")]
    check(len(written) == 1 and "".join(written[0]) == big and
          all(len(s) <= 255 for s in written[0]),
          f"the include file should hold one line for {name} whose strings, each at most 255 "
          f"bytes, join back to the value: {[[len(s) for s in w] for w in written]}")
    plain = lab.kdig(name, "+noedns", "+ignore")
    flags = re.search(r";; Flags: ([^;]*)", plain)
    check(flags is not None and "tc" in flags.group(1).split(),
          f"over plain UDP without EDNS the {len(big)}-byte answer should be truncated (TC): "
          f"flags {flags.group(1) if flags else plain!r}")
    after = lab.serial()
    check(before is not None and after is not None and after > before,
          f"the SOA serial should go up on publish: {before} -> {after}")
    ok, why = dkimpy_verifies(lab, name, private_pem, "big", ZONE)
    check(ok, f"dkimpy does not verify a message signed with the RSA-4096 key: {why}")

    rc, err = lab.run("revoke", ZONE, "big", REVOKED, DKIMROTOR_RECORD_NAME=name)
    check(rc == 0 and lab.txt(name) == [REVOKED],
          f"revoke: exit {rc} {err!r}, DNS {lab.txt(name)}, want [{REVOKED!r}]")

    # A customer's domain delegated (by CNAME) into a name in this zone.
    slot = f"k1._domainkey.customer.keys.{ZONE}"
    rc, err = lab.run("publish", "customer.example", "s1", big, DKIMROTOR_RECORD_NAME=slot)
    check(rc == 0 and lab.txt(slot) == [big],
          f"publish at DKIMROTOR_RECORD_NAME={slot}: exit {rc} {err!r}, "
          f"{len(lab.txt(slot))} records")
    check(lab.txt("s1._domainkey.customer.example") == [] and lab.txt(name) == [REVOKED],
          "the delegated publish touched another name")
    rc, err = lab.run("revoke", "customer.example", "s1", REVOKED,
                      DKIMROTOR_RECORD_NAME=slot + ".")
    check(rc == 0 and lab.txt(slot) == [REVOKED],
          f"revoke at {slot}. (trailing dot): exit {rc} {err!r}, DNS {lab.txt(slot)}")
    with open(lab.include) as f:
        lines = f.read().splitlines()
    check(len(lines) == 2, f"the include file should hold one line per name, has {len(lines)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    args = ap.parse_args()
    knotd = shutil.which("knotd") or ("/usr/sbin/knotd" if os.path.exists("/usr/sbin/knotd")
                                      else None)
    knotc = shutil.which("knotc") or ("/usr/sbin/knotc" if os.path.exists("/usr/sbin/knotc")
                                      else None)
    if not knotd or not knotc or not shutil.which("kdig"):
        print("SKIP: needs knotd, knotc and kdig (scripts/install-deps)")
        return SKIP
    tmp = tempfile.mkdtemp(prefix="dkimrotor-zonefile-knot.")
    knot = None
    try:
        (port,) = free_ports(1)
        folder = os.path.join(tmp, "knot")
        cmd = write_knot(folder, port, [ZONE], "hooktest", os.path.join(tmp, "tsig.key"))
        zonefile = os.path.join(folder, "zones", f"{ZONE}.zone")
        include = os.path.join(tmp, "dkim.db")
        open(include, "w").close()
        with open(zonefile, "a") as f:
            f.write(f"$INCLUDE {include}\n")
        reload_script = os.path.join(tmp, "reload")
        with open(reload_script, "w") as f:
            f.write(RELOAD)
        os.chmod(reload_script, 0o755)
        socket_path = cmd[cmd.index("-s") + 1]
        knot = subprocess.Popen(cmd, stdout=open(os.path.join(tmp, "knot.log"), "w"),
                                stderr=subprocess.STDOUT)
        if not wait_for(lambda: knot_serves(port, ZONE), 15, 0.2):
            check(False, "Knot did not start:\n" + tail(os.path.join(tmp, "knot.log")))
        else:
            lab = Lab(args.source, tmp, port, f"{reload_script} {zonefile} {socket_path} {ZONE}")
            private_pem, big = rsa_key(tmp, 4096)
            scenario(lab, private_pem, big)
    except Exception as e:
        check(False, f"{type(e).__name__}: {e}")
    finally:
        stop_process(knot)
        shutil.rmtree(tmp, ignore_errors=True)
    print(check.summary(), flush=True)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
