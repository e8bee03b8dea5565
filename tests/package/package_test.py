#!/usr/bin/python3
"""The Debian package, end to end, on this machine: builds it with scripts/package in a clean
clone of the source tree, installs it with apt-get, checks what it installed (the binary, the
man pages, the dkimrotor user, the keystore's mode, the conffile, the hooks, the unit), runs
the daemon as the service would until it has written a key, reinstalls (the edited conffile
and the key stay), purges (the keystore with its key and the user stay), empties the keystore
and installs and purges again (now the keystore and the user go).

Needs root, dpkg, apt-get and git; exits 77 (skipped) without them, and when a dkimrotor
package, the dkimrotor user, /etc/dkimrotor, /var/lib/dkimrotor or a dpkg-statoverride for it
is already there, so a real installation is never touched. Leaves the machine as it found it.

  package_test.py --source DIR [--deb FILE]

--deb uses an already built package instead of building one (for trying the test by hand).
"""
import argparse
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77
PKG = "dkimrotor"
CONF = "/etc/dkimrotor/dkimrotor.conf"
KEYSTORE = "/var/lib/dkimrotor"
BINARY = "/usr/sbin/dkimrotor"
UNIT = "/lib/systemd/system/dkimrotor.service"
HOOKS = ["nsupdate", "zonefile", "lexicon"]
# dpkg reads /etc/dpkg/dpkg.cfg.d in name order, and a path-include only wins over an earlier
# path-exclude: this file lifts a container's exclusion of the man pages for the test.
DPKG_INCLUDE = "/etc/dpkg/dpkg.cfg.d/zz-dkimrotor-package-test"
MAN_PAGES = ["/usr/share/man/man8/dkimrotor.8.gz", "/usr/share/man/man5/dkimrotor.conf.5.gz"]
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]

failures = []


def check(what, ok, detail=""):
    print(("ok:   " if ok else "FAIL: ") + what + ("" if ok or not detail else ": " + detail),
          flush=True)
    if not ok:
        failures.append(what)
    return ok


class Fatal(Exception):
    """A step the rest depends on failed."""


def run(cmd, check_rc=True, **kw):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       env=env, **kw)
    if check_rc and p.returncode != 0:
        raise Fatal(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout[-4000:]}")
    return p


def package_state():
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PKG], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else ""


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (installs and purges a package)"
    for tool in ["dpkg", "dpkg-query", "apt-get", "git", "runuser"]:
        if not shutil.which(tool):
            return f"needs {tool}"
    state = package_state()
    if state and not state.endswith("not-installed"):
        return f"a {PKG} package is here already ({state}): not touching it"
    if user_exists(PKG) or group_exists(PKG):
        return f"a {PKG} user or group exists already: not touching it"
    for path in ["/etc/dkimrotor", KEYSTORE, DPKG_INCLUDE]:
        if os.path.lexists(path):
            return f"{path} exists already: not touching it"
    p = subprocess.run(["dpkg-statoverride", "--list", KEYSTORE], capture_output=True, text=True)
    if p.returncode == 0:
        return f"a dpkg-statoverride for {KEYSTORE} would change the modes checked: {p.stdout.strip()}"
    return None


def man_excluded():
    """The dpkg path-exclude lines that drop our man pages (Debian's container images have one)."""
    lines = []
    for f in sorted(glob.glob("/etc/dpkg/dpkg.cfg.d/*")):
        try:
            with open(f) as fh:
                for line in fh:
                    m = re.match(r"\s*path-exclude[= ]\s*(\S+)", line)
                    if m and any(re.fullmatch(m.group(1).replace("*", ".*"), p) for p in MAN_PAGES):
                        lines.append(f"{f}: {line.strip()}")
        except OSError:
            pass
    return lines


def source_version(source):
    with open(os.path.join(source, "CMakeLists.txt")) as f:
        m = re.search(r"project\(dkimrotor VERSION ([0-9.]+)", f.read())
    with open(os.path.join(source, "debian/changelog")) as f:
        d = re.match(r"dkimrotor \(([^)]+)\)", f.readline())
    return (m.group(1) if m else None), (d.group(1) if d else None)


def build(source, work):
    clone = os.path.join(work, "src")
    run(["git", "clone", "--quiet", "--no-hardlinks", source, clone])
    print(f"building the package in a clean clone ({clone})", flush=True)
    start = time.monotonic()
    p = run([os.path.join(clone, "scripts/package")], check_rc=False, cwd=clone)
    took = time.monotonic() - start
    if p.returncode != 0:
        raise Fatal(f"scripts/package exited {p.returncode}:\n{p.stdout[-6000:]}")
    lint = [l for l in p.stdout.splitlines() if re.match(r"[EWIXP]: ", l)]
    print(f"scripts/package took {took:.0f} s; lintian: {len(lint)} finding(s)", flush=True)
    for l in lint:
        print("  " + l)
    debs = glob.glob(os.path.join(clone, "dist", f"{PKG}_*.deb"))
    if len(debs) != 1:
        raise Fatal(f"expected one {PKG}_*.deb in {clone}/dist, found {debs}")
    return debs[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mode_owner(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def show(got):
    return "missing" if got is None else f"mode {got[0]:04o} uid {got[1]} gid {got[2]}"


def check_installed(install_output):
    check("postinst says the service is disabled until configured",
          "installed disabled" in install_output, install_output[-2000:])
    p = run([BINARY, "--help"], check_rc=False)
    check(f"{BINARY} --help exits 0", p.returncode == 0 and "usage: dkimrotor" in p.stdout,
          f"exit {p.returncode}: {p.stdout[:300]}")
    check("dkimrotor on root's PATH is /usr/sbin/dkimrotor",
          shutil.which("dkimrotor", path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
          == BINARY)

    listed = run(["dpkg", "-L", PKG]).stdout.split()
    for page in MAN_PAGES:
        check(f"dpkg -L lists {page}", page in listed)
    if shutil.which("man"):
        for args, page in [(["dkimrotor"], MAN_PAGES[0]), (["5", "dkimrotor.conf"], MAN_PAGES[1])]:
            p = run(["man", "-w"] + args, check_rc=False)
            check(f"man -w {' '.join(args)} finds {page}",
                  p.returncode == 0 and os.path.realpath(p.stdout.strip()) == page,
                  f"exit {p.returncode}: {p.stdout.strip()}")
    else:
        check("man is installed for man -w (man-db, scripts/install-deps)", False)

    try:
        pw = pwd.getpwnam(PKG)
        gr = grp.getgrnam(PKG)
    except KeyError as e:
        check(f"the {PKG} user and group exist", False, str(e))
        return None
    check(f"{PKG} is a system user (uid {pw.pw_uid} < 1000)", pw.pw_uid < 1000)
    check(f"{PKG}'s primary group is {PKG}", pw.pw_gid == gr.gr_gid, f"gid {pw.pw_gid}")
    check(f"{PKG}'s shell is /usr/sbin/nologin", pw.pw_shell == "/usr/sbin/nologin", pw.pw_shell)
    check(f"{PKG}'s home is {KEYSTORE}", pw.pw_dir == KEYSTORE, pw.pw_dir)
    got = mode_owner(KEYSTORE) if os.path.isdir(KEYSTORE) else None
    check(f"{KEYSTORE} is 0700 {PKG}:{PKG}", got == (0o700, pw.pw_uid, gr.gr_gid), show(got))

    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout
    check(f"{CONF} is a conffile", re.search(r"^\s*" + re.escape(CONF) + r"\s", conffiles, re.M)
          is not None, conffiles)
    got = mode_owner(CONF) if os.path.exists(CONF) else None
    check(f"{CONF} is 0644 root:root (it holds no secret)", got == (0o644, 0, 0), show(got))

    for hook in HOOKS:
        path = f"/usr/lib/dkimrotor/hooks/{hook}"
        ok = os.path.isfile(path) and stat.S_IMODE(os.stat(path).st_mode) == 0o755
        check(f"{path} is installed, 0755", ok)

    unit = open(UNIT).read() if os.path.exists(UNIT) else ""
    check(f"{UNIT} is installed and runs {BINARY} -c {CONF}",
          f"ExecStart={BINARY} run -c {CONF}\n" in unit and "Type=notify" in unit)
    if shutil.which("systemd-analyze"):
        p = run(["systemd-analyze", "verify", UNIT], check_rc=False)
        check("systemd-analyze verify accepts the unit", p.returncode == 0, p.stdout.strip())
    else:
        print("skip: systemd-analyze verify (no systemd-analyze)")
    check("the unit is not enabled on a fresh install",
          not glob.glob("/etc/systemd/system/*.wants/dkimrotor.service"))

    p = run([BINARY, "check", "-c", CONF], check_rc=False)
    check(f"dkimrotor check -c {CONF} (as root) exits 0", p.returncode == 0, p.stdout.strip())
    p = run(["runuser", "-u", PKG, "--", BINARY, "check", "-c", CONF], check_rc=False)
    check(f"dkimrotor check -c {CONF} (as {PKG}) exits 0", p.returncode == 0, p.stdout.strip())
    return pw.pw_uid, gr.gr_gid


def run_daemon_until_key(port):
    """Adds a domain to the conffile and runs the daemon as the unit would until it has made
    its first key. Returns the conffile's new bytes."""
    with open(CONF) as f:
        conf = f.read()
    conf = conf.replace('socket = "inet:8891@127.0.0.1";', f'socket = "inet:{port}@127.0.0.1";')
    conf = re.sub(r"^domains = \(\n\);", 'domains = (\n  { domain = "package-test.invalid"; '
                  'stream = "t"; algorithms = ["ed25519-sha256"]; }\n);', conf, flags=re.M)
    with open(CONF, "w") as f:
        f.write(conf)
    daemon = subprocess.Popen(["runuser", "-u", PKG, "--", BINARY, "run", "-c", CONF],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    keys = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and daemon.poll() is None:
        keys = [f for f in glob.glob(os.path.join(KEYSTORE, "**"), recursive=True)
                if f.endswith(".pem")]
        if keys:
            break
        time.sleep(0.2)
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
    try:
        out, _ = daemon.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
        out, _ = daemon.communicate()
    check(f"the daemon, run as {PKG}, wrote a key into the keystore", bool(keys), out[-2000:])
    pw = pwd.getpwnam(PKG)
    for k in keys:
        check(f"{k} is 0600 {PKG}'s", mode_owner(k)[:2] == (0o600, pw.pw_uid), show(mode_owner(k)))
    return conf


def keystore_files():
    return sorted(os.path.relpath(os.path.join(d, f), KEYSTORE)
                  for d, _, fs in os.walk(KEYSTORE) for f in fs)


def test(deb):
    out = run(APT + ["install", os.path.abspath(deb)]).stdout
    print(f"installed {os.path.basename(deb)}", flush=True)
    ids = check_installed(out)
    if ids is None:
        raise Fatal("no dkimrotor user: the rest needs it")
    uid, gid = ids

    conf = run_daemon_until_key(free_port())
    files = keystore_files()
    run(APT + ["-o", "Dpkg::Options::=--force-confold", "install", "--reinstall",
               os.path.abspath(deb)])
    check("a reinstall keeps the edited conffile", open(CONF).read() == conf)
    check("a reinstall keeps the keystore", keystore_files() == files, str(keystore_files()))
    got = mode_owner(KEYSTORE)
    check(f"a reinstall keeps {KEYSTORE} 0700 {PKG}:{PKG}", got == (0o700, uid, gid), show(got))

    out = run(APT + ["purge", PKG]).stdout
    check("purge removes the package", package_state() in ("", "unknown ok not-installed"),
          package_state())
    for path in ["/etc/dkimrotor", BINARY, UNIT, "/usr/lib/dkimrotor"] + MAN_PAGES:
        check(f"purge removes {path}", not os.path.lexists(path))
    check(f"purge keeps {KEYSTORE} and its key", keystore_files() == files, str(keystore_files()))
    got = mode_owner(KEYSTORE) if os.path.isdir(KEYSTORE) else None
    check(f"purge keeps {KEYSTORE} 0700, owned by uid {uid} gid {gid}", got == (0o700, uid, gid),
          show(got))
    check(f"purge keeps the {PKG} user and group, who own the keys",
          user_exists(PKG) and group_exists(PKG) and pwd.getpwnam(PKG).pw_uid == uid)
    check("purge says why it kept the keystore", f"{KEYSTORE} is not empty" in out, out[-2000:])

    # The admin deals with the keys; the folder stays, empty.
    for entry in os.listdir(KEYSTORE):
        p = os.path.join(KEYSTORE, entry)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    run(APT + ["install", os.path.abspath(deb)])
    check(f"a new install reuses the {PKG} user", pwd.getpwnam(PKG).pw_uid == uid)
    got = mode_owner(KEYSTORE)
    check(f"a new install keeps {KEYSTORE} 0700 {PKG}:{PKG}", got == (0o700, uid, gid), show(got))
    run(APT + ["purge", PKG])
    check(f"purge with an empty keystore removes {KEYSTORE}", not os.path.lexists(KEYSTORE))
    check(f"purge with an empty keystore removes the {PKG} user", not user_exists(PKG))
    check(f"purge with an empty keystore removes the {PKG} group", not group_exists(PKG))


def cleanup():
    """Leaves the machine as found: skip_reason() made sure none of this was here before."""
    if package_state() and not package_state().endswith("not-installed"):
        run(APT + ["purge", PKG], check_rc=False)
    if os.path.lexists(KEYSTORE):
        shutil.rmtree(KEYSTORE, ignore_errors=True)
    shutil.rmtree("/etc/dkimrotor", ignore_errors=True)
    if user_exists(PKG):
        run(["userdel", PKG], check_rc=False)
    if group_exists(PKG):
        run(["groupdel", PKG], check_rc=False)
    if os.path.lexists(DPKG_INCLUDE):
        os.remove(DPKG_INCLUDE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="the source tree (a git repository)")
    ap.add_argument("--deb", help="an already built package to test instead of building one")
    args = ap.parse_args()

    reason = skip_reason()
    if reason:
        print(f"skipped: {reason}")
        return SKIP

    cmake_version, deb_version = source_version(args.source)
    check(f"debian/changelog's version {deb_version} is CMakeLists.txt's {cmake_version}",
          cmake_version is not None and cmake_version == deb_version)

    start = time.monotonic()
    work = tempfile.mkdtemp(prefix="dkimrotor-package-test.")
    try:
        deb = args.deb or build(args.source, work)
        excluded = man_excluded()
        if excluded:
            print("dpkg excludes the man pages here (" + "; ".join(excluded) +
                  f"): {DPKG_INCLUDE} includes them for the test", flush=True)
            with open(DPKG_INCLUDE, "w") as f:
                f.write("".join(f"path-include={p}\n" for p in MAN_PAGES))
        test(deb)
    except Fatal as e:
        check("a step the rest depends on", False, str(e))
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)
    print(f"took {time.monotonic() - start:.0f} s")
    if failures:
        print(f"{len(failures)} check(s) failed: " + "; ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
