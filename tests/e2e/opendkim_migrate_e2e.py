#!/usr/bin/python3
"""End-to-end test: an OpenDKIM installation moved to dkimrotor with `dkimrotor migrate`, with
no DNS change.

Everything runs on 127.0.0.1 on free ports and is started and stopped here:
  - one private Knot serving example.test and other.test, with the records of OpenDKIM's keys
    already published (as they are on a server that runs OpenDKIM);
  - an opendkim.conf with a KeyTable, a refile SigningTable (*@example.test, *@other.test,
    *@*.other.test, one single address), InternalHosts, ExternalIgnoreList and Mode sv. The
    keys: example.test's made by opendkim-genkey and left group-readable (0640), other.test's
    made by openssl, and a third KeyTable entry whose key file is missing.

Checks:
  1. `migrate` writes the configuration (exit 0), imports both keys as pending, and prints a
     line for the group-readable key, the missing key file, the single address, Mode v and
     ExternalIgnoreList; it prints no key material. Again without --force: exit 1, file kept.
  2. The written file has no publish_hook. For the test only, its dns block is replaced by
     one pointing at Knot (resolvers and authoritative_port, min_propagation "0s", poll "1s");
     nothing else is edited. `check` loads it.
  3. `dkimrotor run` on it: both imported keys become active, mail From example.test,
     other.test and news.other.test is signed with the OpenDKIM selectors and verified by
     dkimpy and Mail::DKIM against Knot.
  4. Knot's answers (each zone's SOA, serial included, and every key record) are
     byte-identical before the migration and after the mail.

Needs root (as the other e2e tests); otherwise exits 77 (skipped).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from dkim_lab import Checks, dns_answer, log, run_lab, send, verify  # noqa: E402
from mail_lab import (free_ports, knot_serves, port_open, stop_process, tail,  # noqa: E402
                      wait_for, write_knot)

SKIP = 77
checks = Checks()


def txt_rdata(p_value):
    """A zone-file TXT rdata: v=DKIM1 and p= in strings of at most 255 characters."""
    value = f"v=DKIM1; k=rsa; p={p_value}"
    return " ".join(f'"{value[i:i + 250]}"' for i in range(0, len(value), 250))


def public_b64(key_path):
    der = subprocess.run(["openssl", "pkey", "-in", key_path, "-pubout", "-outform", "DER"],
                         capture_output=True, check=True).stdout
    import base64
    return base64.b64encode(der).decode()


class Lab:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="dkimrotor-migrate.")
        os.chmod(self.tmp, 0o755)
        self.procs = []
        self.daemon = None

    def start(self, name, cmd):
        log_path = os.path.join(self.tmp, name + ".log")
        p = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p, log_path

    def setup(self):
        self.knot_port, self.milter_port = free_ports(2)
        od = os.path.join(self.tmp, "opendkim")
        keys = os.path.join(od, "keys")
        os.makedirs(keys)
        # example.test: opendkim-genkey, as Debian's documentation does it; left 0640.
        subprocess.run(["opendkim-genkey", "-b", "2048", "-d", "example.test", "-s", "mail",
                        "-D", keys], check=True)
        self.key_example = os.path.join(keys, "mail.private")
        os.chmod(self.key_example, 0o640)
        # other.test: openssl, PKCS#1 as older OpenDKIM setups hold it.
        self.key_other = os.path.join(keys, "other.private")
        subprocess.run(["openssl", "genrsa", "-traditional", "-out", self.key_other, "2048"],
                       check=True, capture_output=True)
        os.chmod(self.key_other, 0o600)
        self.records = {
            "mail._domainkey.example.test": public_b64(self.key_example),
            "s2019._domainkey.other.test": public_b64(self.key_other),
        }
        with open(os.path.join(od, "KeyTable"), "w") as f:
            f.write("# OpenDKIM keys\n"
                    f"mail._domainkey.example.test  example.test:mail:{self.key_example}\n"
                    f"s2019._domainkey.other.test   other.test:s2019:{self.key_other}\n"
                    f"old._domainkey.example.test   example.test:old:{keys}/gone.private\n")
        with open(os.path.join(od, "SigningTable"), "w") as f:
            f.write("*@example.test     mail._domainkey.example.test\r\n"
                    "*@example.test     old._domainkey.example.test\r\n"
                    "*@other.test       s2019._domainkey.other.test\r\n"
                    "*@*.other.test     s2019._domainkey.other.test\r\n"
                    "ceo@example.net    mail._domainkey.example.test\r\n")
        with open(os.path.join(od, "TrustedHosts"), "w") as f:
            f.write("127.0.0.1\n::1\nlocalhost\n10.0.0.0/8\n")
        self.opendkim_conf = os.path.join(od, "opendkim.conf")
        with open(self.opendkim_conf, "w") as f:
            f.write(f"""# As Debian's opendkim.conf, with tables
Syslog			yes
SyslogSuccess		yes
Canonicalization	relaxed/simple
Mode			sv
SubDomains		no
OversignHeaders		From
Socket			inet:{self.milter_port}@127.0.0.1
PidFile			/run/opendkim/opendkim.pid
TrustAnchorFile		/usr/share/dns/root.key
KeyTable		refile:{od}/KeyTable
SigningTable		refile:{od}/SigningTable
ExternalIgnoreList	refile:{od}/TrustedHosts
InternalHosts		refile:{od}/TrustedHosts
""")
        tsig = os.path.join(self.tmp, "tsig.key")
        cmd = write_knot(os.path.join(self.tmp, "knot"), self.knot_port,
                         ["example.test", "other.test"], "migrate", tsig)
        for name, p in self.records.items():
            zone = name.split("._domainkey.")[1]
            with open(os.path.join(self.tmp, "knot", "zones", f"{zone}.zone"), "a") as f:
                f.write(f"{name}. 60 TXT {txt_rdata(p)}\n")
        self.knot, self.knot_log = self.start("knot", cmd)
        if not wait_for(lambda: knot_serves(self.knot_port, "other.test"), 15, 0.2):
            raise RuntimeError("Knot did not start:\n" + tail(self.knot_log))
        log(f"Knot on :{self.knot_port} serves OpenDKIM's records")
        self.keystore = os.path.join(self.tmp, "keystore")
        self.conf = os.path.join(self.tmp, "dkimrotor.conf")

    def dns_snapshot(self):
        out = []
        for zone in ("example.test", "other.test"):
            out += dns_answer(self.knot_port, zone, "SOA")
        for name in sorted(self.records) + ["old._domainkey.example.test"]:
            out += dns_answer(self.knot_port, name, "TXT")
        return out

    def cli(self, *args, timeout=90):
        return subprocess.run([self.args.dkimrotor, *args], capture_output=True, text=True,
                              timeout=timeout)

    def keys(self):
        r = self.cli("keys", "--json", "-c", self.conf)
        try:
            data = json.loads(r.stdout)
        except ValueError:
            return {}
        return {k.get("selector"): k.get("state") for d in data.get("domains", [])
                for k in d.get("keys", [])}

    def diagnostics(self):
        if self.daemon:
            print(f"--- tail of {self.daemon_log}\n" + tail(self.daemon_log, 30), end="")

    def cleanup(self):
        for p in reversed(self.procs):
            stop_process(p, 15)
        if self.args.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def run(lab):
    lab.setup()
    before = lab.dns_snapshot()
    checks(len([line for line in before if "\tTXT\t" in line]) == 2,
           f"Knot serves OpenDKIM's two records: {before}")

    r = lab.cli("migrate", "--from-opendkim", lab.opendkim_conf, "--output", lab.conf,
                "--keystore", lab.keystore, "--stream", "mx1")
    out = r.stdout + r.stderr
    log("migrate said:\n" + out)
    checks(r.returncode == 0, f"migrate exits 0, not {r.returncode}")
    checks("imported mail._domainkey.example.test (rsa-sha256, 2048 bits) as pending" in out,
           "example.test's key imported")
    checks("imported s2019._domainkey.other.test (rsa-sha256, 2048 bits) as pending" in out,
           "other.test's key imported")
    checks(re.search(r"warning: mail\._domainkey\.example\.test: key file \S+ is readable or "
                     r"writable by group \(mode 0640\)", out) is not None,
           "the group-readable key is reported")
    checks(re.search(r"warning: old\._domainkey\.example\.test .*not imported: key file \S+gone"
                     r"\.private does not exist", out) is not None,
           "the missing key file is reported")
    for part in ("ceo@example.net", "Mode sv: verifying is not carried over", "ExternalIgnoreList"):
        checks(part in out, f"migrate reports {part}")
    secrets = [open(p).read() for p in (lab.key_example, lab.key_other)]
    body_lines = [line for s in secrets for line in s.splitlines() if "-----" not in line]
    checks("PRIVATE KEY" not in out and not any(line in out for line in body_lines),
           "migrate prints no key material")
    keys_dir = os.path.join(lab.keystore, "keys")
    modes = [os.stat(os.path.join(keys_dir, n)).st_mode & 0o777 for n in os.listdir(keys_dir)]
    checks(len(modes) == 2 and all(m == 0o600 for m in modes),
           f"two key files in the keystore, mode 0600: {[oct(m) for m in modes]}")

    with open(lab.conf) as f:
        written = f.read()
    again = lab.cli("migrate", "--from-opendkim", lab.opendkim_conf, "--output", lab.conf,
                    "--keystore", lab.keystore)
    with open(lab.conf) as f:
        checks(again.returncode == 1 and "exists" in again.stderr and f.read() == written,
               f"a second migrate without --force exits 1 and keeps the file: {again.returncode}")
    checks(re.search(r"^\s*publish_hook\s*=", written, re.M) is None,
           "the migrated configuration sets no publish_hook")

    # Test-only: the dns block pointed at the private Knot, and no waiting.
    dns = (f'dns:\n{{\n  resolvers = ["127.0.0.1:{lab.knot_port}"];\n'
           f'  check_authoritative = true;\n  authoritative_port = {lab.knot_port};\n'
           '  min_propagation = "0s";\n  poll = "1s";\n  timeout = "2s";\n};\n')
    edited, n = re.subn(r"^dns:\n\{\n.*?^\};\n", dns, written, flags=re.S | re.M)
    checks(n == 1, "the migrated configuration has one dns block")
    with open(lab.conf, "w") as f:
        f.write(edited)
    c = lab.cli("check", "-c", lab.conf)
    checks("mail._domainkey.example.test" in c.stdout and "s2019._domainkey.other.test" in c.stdout,
           f"check loads the migrated configuration and checks both keys:\n{c.stdout}{c.stderr}")

    lab.daemon, lab.daemon_log = lab.start("dkimrotor", [lab.args.dkimrotor, "run", "-c", lab.conf])
    if not wait_for(lambda: port_open(lab.milter_port) or lab.daemon.poll() is not None, 30):
        raise RuntimeError("dkimrotor did not listen in 30 s")
    if lab.daemon.poll() is not None:
        raise RuntimeError(f"dkimrotor exited {lab.daemon.returncode}:\n{tail(lab.daemon_log)}")
    active = wait_for(lambda: lab.keys().get("mail") == "active" and
                      lab.keys().get("s2019") == "active", 30, 0.5)
    checks(active, f"both imported keys become active: {lab.keys()}")

    verify(checks, lab.args.source, lab.knot_port, lab.tmp, "example.test",
           send(lab.milter_port, "example.test", "ex", 5), "example.test", lambda s: s == "mail")
    verify(checks, lab.args.source, lab.knot_port, lab.tmp, "other.test",
           send(lab.milter_port, "other.test", "ot", 3), "other.test", lambda s: s == "s2019")
    verify(checks, lab.args.source, lab.knot_port, lab.tmp, "news.other.test",
           send(lab.milter_port, "news.other.test", "news", 3), "other.test",
           lambda s: s == "s2019")

    after = lab.dns_snapshot()
    checks(after == before, f"Knot's answers unchanged:\nbefore {before}\nafter  {after}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dkimrotor", required=True)
    ap.add_argument("--source", required=True, help="the source tree (for the verifiers)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.dkimrotor = os.path.abspath(args.dkimrotor)
    args.source = os.path.abspath(args.source)
    return run_lab(checks, "the migration test needs root",
                   ("knotd", "kdig", "perl", "opendkim-genkey", "openssl"), lambda: Lab(args), run)

if __name__ == "__main__":
    sys.exit(main())
