#!/usr/bin/python3
"""The man pages docs/man/dkimrotor.8 and dkimrotor.conf.5 against the binary and the loader.

usage: man_pages_test.py DKIMROTOR_BINARY SOURCE_DIR

1. Both pages render without a warning (groff -ww; man-db's man --warnings when installed).
2. dkimrotor.8 has a command entry (.SS under COMMANDS) for every command `dkimrotor --help`
   lists and every subcommand a usage line shows ("keys import"), and an option entry (a .TP
   tag in that command's entries) for every option each `dkimrotor CMD --help` prints.
3. dkimrotor.conf.5 has an entry (.TP under the .SS of its section) for every setting
   conf/loader.cc knows, and none it does not, each stating its default (or that it is
   required). The ranges and allowed values the page states are those the binary enforces
   (read from its errors for out-of-range values), and the defaults it states for algorithms,
   bits, active_keys, prepublish and selector_format are those the binary uses (read from the
   keys a `rotate` of a minimal configuration makes).
4. lexgrog (man-db) finds each page's whatis entry, when it is installed.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message)


# --- A small roff reader: enough of the man macros these pages use --------------------------

FONT_MACROS = {"B", "I", "R", "SM", "SB", "BR", "RB", "BI", "IB", "IR", "RI"}
ESCAPES = [("\\(dq", '"'), ("\\(aq", "'"), ("\\(lq", '"'), ("\\(rq", '"'), ("\\(mu", "x"),
           ("\\(em", "--"), ("\\-", "-"), ("\\~", " "), ("\\ ", " "), ("\\|", ""), ("\\&", ""),
           ("\\c", ""), ("\\fB", ""), ("\\fI", ""), ("\\fR", ""), ("\\fP", ""), ("\\e", "\\")]


def unescape(s):
    for escape, plain in ESCAPES:
        s = s.replace(escape, plain)
    return s


def macro_args(rest):
    """A macro line's arguments: split on spaces, "double quotes" group."""
    args, cur, quoted, started = [], "", False, False
    for c in rest:
        if c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if started:
                args.append(cur)
            cur, started = "", False
        else:
            cur, started = cur + c, True
    if started:
        args.append(cur)
    return args


def line_text(line):
    """The text one source line contributes, font changes dropped."""
    if not line.startswith((".", "'")):
        return unescape(line)
    m = re.match(r"[.'](\S+)\s*(.*)", line)
    if not m or m.group(1) not in FONT_MACROS:
        return ""
    args = macro_args(m.group(2))
    joiner = " " if len(m.group(1)) == 1 or m.group(1) in ("SM", "SB") else ""
    return unescape(joiner.join(args))


def read_page(path):
    """[(SH title, SS title, tag text, body text)] for every .TP entry, and the .SS titles
    as [(SH title, SS title)]."""
    with open(path, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if not l.startswith('.\\"')]
    entries, subsections = [], []
    sh = ss = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(".SH"):
            sh, ss = line_text(".B " + line[3:].strip()), ""
        elif line.startswith(".SS"):
            ss = line_text(".B " + line[3:].strip())
            subsections.append((sh, ss))
        elif line == ".TP":
            tag = line_text(lines[i + 1])
            body = []
            j = i + 2
            while j < len(lines) and not re.match(r"\.(TP|SS|SH|PP|LP|P|IP)\b", lines[j]):
                body.append(line_text(lines[j]))
                j += 1
            entries.append((sh, ss, tag, " ".join(" ".join(body).split())))
            i = j
            continue
        i += 1
    return entries, subsections


# --- 1. rendering ----------------------------------------------------------------------------

def check_renders(page):
    groff = shutil.which("groff")
    if groff is None:
        fail("groff is not installed (scripts/install-deps installs groff-base)")
        return
    r = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page], capture_output=True, text=True)
    if r.returncode != 0 or r.stderr:
        fail(f"groff -man -ww {page}: exit {r.returncode}:\n{r.stderr}")
    man = shutil.which("man")
    if man is None:
        print(f"skipped: man --warnings {page} (man-db not installed)")
        return
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80")
    r = subprocess.run([man, "--warnings=w", "-l", page], capture_output=True, text=True, env=env)
    if r.returncode != 0 or r.stderr:
        fail(f"man --warnings=w -l {page}: exit {r.returncode}:\n{r.stderr}")


def check_whatis(page, name):
    lexgrog = shutil.which("lexgrog")
    if lexgrog is None:
        print(f"skipped: lexgrog {page} (man-db not installed)")
        return
    r = subprocess.run([lexgrog, page], capture_output=True, text=True)
    if r.returncode != 0 or f'"{name} - ' not in r.stdout:
        fail(f"lexgrog finds no whatis entry '{name} - ...' in {page} (a broken NAME "
             f"section?): exit {r.returncode}: {r.stdout}{r.stderr}")


# --- 2. commands and options -------------------------------------------------------------------

def run(binary, *args, **kwargs):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, **kwargs)


def check_commands(binary, page):
    r = run(binary, "--help")
    if r.returncode != 0:
        fail(f"dkimrotor --help: exit {r.returncode}: {r.stderr}")
        return
    listed = r.stdout.split("commands:", 1)[-1]
    commands = re.findall(r"^  ([a-z][a-z-]*)\s", listed, re.M)
    if len(commands) < 5:
        fail(f"found only {commands} in dkimrotor --help: its command list changed shape, "
             "update this test")
        return
    entries, subsections = read_page(page)
    titles = [ss for sh, ss in subsections if sh == "COMMANDS"]
    for command in commands:
        blocks = [t for t in titles if t.split()[0] == command]
        if not blocks:
            fail(f"dkimrotor.8 has no command entry (.SS {command} under COMMANDS) for "
                 f"'{command}', which dkimrotor --help lists")
            continue
        h = run(binary, command, "--help")
        if h.returncode != 0 or not h.stdout.startswith("usage:"):
            fail(f"dkimrotor {command} --help: exit {h.returncode}, no usage: {h.stderr}")
            continue
        for sub in re.findall(rf"dkimrotor {command} ([a-z]+)\b", h.stdout):
            if f"{command} {sub}" not in titles:
                fail(f"dkimrotor.8 has no entry '.SS \"{command} {sub}\"', which "
                     f"dkimrotor {command} --help shows")
        options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])(?![\w-])", h.stdout))
        if command != "run" and not any(o.startswith("--") for o in options):
            fail(f"no option found in dkimrotor {command} --help: update this test")
        tags = " ".join(tag for sh, ss, tag, body in entries
                        if sh == "COMMANDS" and ss.split()[0] == command)
        documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-z])(?![\w-])", tags))
        for option in sorted(options - documented):
            fail(f"dkimrotor.8: '{command}' has no option entry (.TP tag) for {option}, which "
                 f"dkimrotor {command} --help prints")


# --- 3. settings -------------------------------------------------------------------------------

def known_settings(loader_cc):
    """Every setting conf/loader.cc knows, as KnownSettings() names them ("milter.socket",
    "domains.[].bits", "domains.[].delegation.zone"), from its tables of names."""
    with open(loader_cc, encoding="utf-8") as f:
        src = f.read()
    tables = {name: re.findall(r'"([a-z_]+)"', body)
              for name, body in re.findall(r"const Names (k\w+) = \{(.*?)\};", src, re.S)}
    schema = re.search(r"kSchema = \{(.*?)\};", src, re.S)
    pairs = re.findall(r'\{"(\w+)",\s*&(k\w+)\}', schema.group(1)) if schema else []
    if len(pairs) < 7 or "kSections" not in tables or "kDelegationSettings" not in tables:
        raise SystemExit(f"FAIL: conf/loader.cc's tables of setting names (kSections, kSchema, "
                         f"kDelegationSettings) changed shape: found {pairs}, "
                         f"{sorted(tables)}; update this test")
    out = set()
    for section, table in pairs:
        prefix = "domains.[]." if section == "domains" else section + "."
        out.update(prefix + name for name in tables[table])
    out.update("domains.[].delegation." + name for name in tables["kDelegationSettings"])
    placed = {t for _, t in pairs} | {"kSections", "kDelegationSettings"}
    for table in tables:
        if table not in placed:
            fail(f"conf/loader.cc has a table {table} this test does not place: teach "
                 "known_settings() where its settings live")
    for section in tables["kSections"]:
        if section not in {s for s, _ in pairs}:
            fail(f"section {section} of kSections is not in kSchema: update this test")
    if len(out) < 30:
        fail(f"only {len(out)} settings found in conf/loader.cc: update this test")
    return out


def setting_entries(page):
    """{"milter.socket": body, "domains.[].bits": body, ...} from the SETTINGS section."""
    entries, _ = read_page(page)
    out = {}
    for sh, ss, tag, body in entries:
        if sh != "SETTINGS" or not ss:
            continue
        section, name = ss.split()[0], tag.split()[0]
        key = ("domains.[]." if section == "domains" else section + ".") + name
        if key in out:
            fail(f"dkimrotor.conf.5 documents {key} twice")
        out[key] = body
    return out


# Out-of-range or unknown values, one per setting, whose errors tell the limits and values the
# binary enforces: "FILE:LINE: SETTING = VALUE: must be [from] LO to HI" or "must be "a" or "b"".
BAD_CONFIG = """\
milter: { stop_timeout = "2h"; on_error = "x"; on_bad_message = "x"; };
signing: { signature_lifetime = "400d"; max_header_fields = 1; max_header_bytes = 1;
           canonicalization = "x"; };
dns: { authoritative_port = 0; min_propagation = "2w"; poll = "0s"; timeout = "0s"; };
log: { target = "x"; level = "x"; };
domains = ( { domain = "example.com"; stream = "m"; bits = 1; active_keys = 0;
              key_lifetime = "1s"; prepublish = 9; grace = "400d"; hook_timeout = "0s";
              algorithms = ["x"]; } );
"""
EXPECTED_RANGES = 14
EXPECTED_VALUE_LISTS = 6


def check_limits(binary, entries, tmp):
    path = os.path.join(tmp, "bad.conf")
    with open(path, "w") as f:
        f.write(BAD_CONFIG)
    r = run(binary, "check", "-c", path)
    ranges = values = 0
    for line in r.stderr.splitlines():
        m = re.search(r":\d+: ([a-z_.\[\]0-9]+) = .*?: (?:must be|unknown algorithm: use) (.*)", line)
        if not m:
            continue
        setting = re.sub(r"\.\[\d+\]", ".[]", m.group(1)).removesuffix(".[]")
        body = entries.get(setting, "")
        limit = re.match(r"(?:from )?(\S+) to (\S+?)(?: \(|$)", m.group(2))
        if limit:
            ranges += 1
            wanted = f"{limit.group(1)} to {limit.group(2)}"
            if wanted not in body:
                fail(f"dkimrotor.conf.5: {setting} does not state the range '{wanted}' the "
                     f"binary enforces ({line.strip()})")
            continue
        allowed = re.findall(r'"([^"]+)"', m.group(2).split(" (")[0])
        if allowed:
            values += 1
            for value in allowed:
                if f'"{value}"' not in body:
                    fail(f"dkimrotor.conf.5: {setting} does not list the value \"{value}\" the "
                         f"binary accepts ({line.strip()})")
    if ranges != EXPECTED_RANGES or values != EXPECTED_VALUE_LISTS:
        fail(f"read {ranges} ranges and {values} value lists (expected {EXPECTED_RANGES} and "
             f"{EXPECTED_VALUE_LISTS}) from dkimrotor check's errors for a bad configuration: "
             f"the messages changed, update this test:\n{r.stderr}")


def stated_default(entries, setting):
    m = re.search(r'default (\[[^\]]*\]|"[^"]*"|\S+?)(?=[.,;]?(?:\s|$))', entries.get(setting, ""))
    if not m:
        fail(f"dkimrotor.conf.5 states no default for {setting}")
        return None
    return m.group(1)


def check_defaults(binary, entries, tmp):
    """The keys a first rotation step makes with every domain setting left out."""
    keystore = os.path.join(tmp, "keystore")
    os.mkdir(keystore, 0o700)
    path = os.path.join(tmp, "minimal.conf")
    with open(path, "w") as f:
        f.write(f'keystore: {{ directory = "{keystore}"; }};\n'
                # Nothing answers: the keys stay pending, quickly.
                'dns: { resolvers = ["127.0.0.1:1"]; timeout = "1s"; check_authoritative = false; };\n'
                'domains = ( { domain = "example.com"; stream = "mta9"; } );\n')
    r = run(binary, "rotate", "-c", path, "--domain", "example.com")
    if r.returncode != 0:
        fail(f"dkimrotor rotate on a minimal configuration: exit {r.returncode}: {r.stderr}")
        return
    r = run(binary, "keys", "-c", path, "--json")
    keys = json.loads(r.stdout)["domains"][0]["keys"]
    d = {s: stated_default(entries, "domains.[]." + s)
         for s in ("algorithms", "bits", "active_keys", "prepublish", "selector_format")}
    if None in d.values():
        return
    algorithms = json.loads(d["algorithms"])
    if sorted({k["algorithm"] for k in keys}) != sorted(algorithms):
        fail(f"dkimrotor.conf.5 says algorithms defaults to {d['algorithms']}; the binary made "
             f"keys of {sorted({k['algorithm'] for k in keys})}")
    wanted = len(algorithms) * (int(d["active_keys"]) + int(d["prepublish"]))
    if len(keys) != wanted:
        fail(f"dkimrotor.conf.5's defaults active_keys = {d['active_keys']} and prepublish = "
             f"{d['prepublish']} make {wanted} keys; the binary made {len(keys)}")
    rsa = [k for k in keys if k["algorithm"] == "rsa-sha256"]
    if rsa and any(k["bits"] != int(d["bits"]) for k in rsa):
        fail(f"dkimrotor.conf.5 says bits defaults to {d['bits']}; the binary made "
             f"{sorted({k['bits'] for k in rsa})}")
    if keys:
        k = keys[0]
        date = k["created"][:10].replace("-", "")
        alg = "rsa" if k["algorithm"] == "rsa-sha256" else "ed25519"
        selector = (json.loads(d["selector_format"]).replace("{stream}", "mta9")
                    .replace("{yyyymmdd}", date).replace("{yyyymm}", date[:6])
                    .replace("{alg}", alg).replace("{bits}", str(k["bits"]) if alg == "rsa" else ""))
        if k["selector"] != selector:
            fail(f"dkimrotor.conf.5's default selector_format {d['selector_format']} makes "
                 f"{selector}; the binary's first key is {k['selector']}")


def check_settings(binary, page, loader_cc):
    known = known_settings(loader_cc)
    entries = setting_entries(page)
    for setting in sorted(known - entries.keys()):
        fail(f"dkimrotor.conf.5 has no entry for {setting}, which conf/loader.cc knows")
    for setting in sorted(entries.keys() - known):
        fail(f"dkimrotor.conf.5 documents {setting}, which conf/loader.cc does not know")
    for setting, body in sorted(entries.items()):
        if setting in known and "default" not in body and "required" not in body:
            fail(f"dkimrotor.conf.5: the entry of {setting} states no default")
    with tempfile.TemporaryDirectory() as tmp:
        check_limits(binary, entries, tmp)
        check_defaults(binary, entries, tmp)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    binary, source = sys.argv[1], sys.argv[2]
    daemon_page = os.path.join(source, "docs/man/dkimrotor.8")
    conf_page = os.path.join(source, "docs/man/dkimrotor.conf.5")
    for page, name in ((daemon_page, "dkimrotor"), (conf_page, "dkimrotor.conf")):
        check_renders(page)
        check_whatis(page, name)
    check_commands(binary, daemon_page)
    check_settings(binary, conf_page, os.path.join(source, "conf/loader.cc"))
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok: both man pages render cleanly and document every command, option and setting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
