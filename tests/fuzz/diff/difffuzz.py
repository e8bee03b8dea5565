#!/usr/bin/python3
"""Differential fuzzer: dkimrotor's signatures against dkimpy and Perl Mail::DKIM.

Mutates the messages of tests/data/corpus (byte flips; CR, LF, CRLF, NUL, ':', ';', space and
tab inserted, mostly in the header; lines duplicated and cut; messages spliced; 8-bit bytes;
very long lines), signs each mutant with dkimrotor twice -- with `dkimrotor sign -c CONF` and
through the running daemon's milter socket, handed over as Postfix hands it over (name and
value apart, body in chunks; tests/lib/milter_wire.py) -- and verifies every signature with
dkimpy (in this process) and Mail::DKIM (one persistent Perl worker per job,
mail_dkim_worker.pl). Both see the message as an MTA delivers it: CRLF line ends, a bare CR
kept, a missing final line end added.

Set-up, all on loopback and free ports, stopped at the end: a private Knot serving
example.org, `dkimrotor rotate` publishing one RSA key through contrib/hooks/nsupdate (the
real DNS check), `dkimrotor run`. The verifiers then get the published TXT record, read once
from Knot, directly (dkimpy's dnsfunc=, a Mail::DKIM resolver stand-in): a DNS round trip per
verification would cost more than the verification, and the record is the one Knot serves.

Verdicts per message and path:
  signed, both verifiers pass             fine
  signed, one verifier fails              that verifier's quirk, counted with its reason
  signed, both fail                       FAILURE: printed, saved to --out, exit 1
  unsigned (dkimrotor refused the input)  counted per reason
  dkimrotor crashed (signal, sanitizer report, milter gone)   FAILURE
Mutants whose outcome class (path, verdict, reason) was not seen before by their job join that
job's pool and are mutated further. Deterministic for a given --seed and --jobs.

Exit: 0 no failure, 1 failures, 2 the set-up failed.
"""
import argparse
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "lib"))
from mail_lab import free_ports, knot_serves, port_open, wait_for, write_knot  # noqa: E402
from milter_wire import (MilterConnection, MilterError, PacketTooLarge, delivered,  # noqa: E402
                         split_as_postfix)

DOMAIN = "example.org"
SANITIZER = re.compile(rb"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: |"
                       rb"SUMMARY: \w+Sanitizer")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- the lab: Knot, keystore, daemon -------------------------------------------------------
class Lab:
    def __init__(self, dkimrotor, tmp):
        self.dkimrotor = dkimrotor
        self.tmp = tmp
        self.dns_port, self.milter_port = free_ports(2)
        self.conf = os.path.join(tmp, "dkimrotor.conf")
        self.daemon_log = os.path.join(tmp, "daemon.log")
        self.knot = self.daemon = None
        self.records = {}

    def start(self):
        self._start_knot()
        with open(self.conf, "w") as f:
            f.write(f"""milter:   {{ socket = "inet:{self.milter_port}@127.0.0.1"; on_bad_message = "accept";
            stop_timeout = "2s"; }};
signing:  {{ internal_hosts = ["127.0.0.1/32"]; }};
keystore: {{ directory = "{self.tmp}/keystore"; }};
dns:      {{ resolvers = ["127.0.0.1:{self.dns_port}"]; authoritative_port = {self.dns_port};
            min_propagation = "0s"; poll = "1h"; timeout = "2s"; }};
log:      {{ level = "info"; }};
domains = (
  {{ domain = "{DOMAIN}"; stream = "fuzz"; algorithms = ["rsa-sha256"]; bits = 1024;
    active_keys = 1; prepublish = 0; publish_hook = "{SOURCE}/contrib/hooks/nsupdate"; }} );
""")
        env = self._env()
        r = subprocess.run([self.dkimrotor, "rotate", "-c", self.conf, "--domain", DOMAIN],
                           capture_output=True, text=True, env=env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"dkimrotor rotate failed ({r.returncode}):\n{r.stdout}{r.stderr}")
        self.daemon = subprocess.Popen([self.dkimrotor, "run", "-c", self.conf], env=env,
                                       stdout=open(self.daemon_log, "wb"),
                                       stderr=subprocess.STDOUT)
        if not wait_for(lambda: port_open(self.milter_port) or
                        self.daemon.poll() is not None, 30):
            raise RuntimeError("dkimrotor run does not listen after 30 s")
        if self.daemon.poll() is not None:
            raise RuntimeError(f"dkimrotor run exited {self.daemon.returncode}:\n" +
                               open(self.daemon_log, errors="replace").read()[-3000:])
        keys = json.loads(subprocess.run([self.dkimrotor, "keys", "-c", self.conf, "--json"],
                                         capture_output=True, text=True, check=True).stdout)
        selectors = sorted({k["selector"] for k in _key_list(keys) if k.get("state") == "active"})
        if not selectors:
            raise RuntimeError(f"no active key: {keys}")
        for sel in selectors:
            name = f"{sel}._domainkey.{DOMAIN}"
            out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(self.dns_port), "+short",
                                  "TXT", name], capture_output=True, text=True).stdout
            # kdig prints the character-strings quoted, one or more per record.
            record = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', out))
            if "p=" not in record:
                raise RuntimeError(f"Knot does not serve {name}: {out!r}")
            self.records[name] = record
        log(f"Knot on 127.0.0.1:{self.dns_port}, milter on 127.0.0.1:{self.milter_port}, "
            f"selectors {', '.join(selectors)}")

    def daemon_alive(self):
        return self.daemon is not None and self.daemon.poll() is None

    def stop(self):
        for p in (self.daemon, self.knot):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def _env(self):
        env = dict(os.environ)
        env.update(DKIMROTOR_NS_SERVER="127.0.0.1", DKIMROTOR_NS_PORT=str(self.dns_port),
                   DKIMROTOR_NS_TSIG=self.tsig, DKIMROTOR_NS_CONFIG=f"{self.tmp}/none.env",
                   DKIMROTOR_NS_TTL="60")
        return env

    def _start_knot(self):
        self.tsig = os.path.join(self.tmp, "tsig.key")
        cmd = write_knot(os.path.join(self.tmp, "knot"), self.dns_port, [DOMAIN], "fuzz", self.tsig)
        self.knot = subprocess.Popen(cmd, stdout=open(os.path.join(self.tmp, "knot.log"), "w"),
                                     stderr=subprocess.STDOUT)
        if not wait_for(lambda: knot_serves(self.dns_port, DOMAIN), 15, 0.2):
            raise RuntimeError("Knot did not start")


def _key_list(keys):
    """The keys of `dkimrotor keys --json`: {"domains": [{"domain", "keys": [...]}]}."""
    return [k for d in keys.get("domains", []) for k in d.get("keys", [])]


# --- mutations ----------------------------------------------------------------------------
INSERTS = [b"\r", b"\n", b"\r\n", b"\0", b":", b";", b" ", b"\t"]


def header_end(m):
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = m.find(sep)
        if i >= 0:
            return i
    return len(m)


def position(rng, m):
    """A position in m, in the header 3 times out of 4."""
    if not m:
        return 0
    h = header_end(m)
    if h > 0 and rng.random() < 0.75:
        return rng.randrange(h + 1)
    return rng.randrange(len(m) + 1)


def lines_of(m):
    return m.splitlines(keepends=True)


def m_flip(rng, m, pool):
    if not m:
        return m
    i = min(position(rng, m), len(m) - 1)
    return m[:i] + bytes([m[i] ^ (1 << rng.randrange(8))]) + m[i + 1:]


def m_insert(rng, m, pool):
    i = position(rng, m)
    return m[:i] + rng.choice(INSERTS) * rng.choice((1, 1, 1, 2, 3)) + m[i:]


def m_eight_bit(rng, m, pool):
    i = position(rng, m)
    return m[:i] + bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randint(1, 4))) + m[i:]


def m_dup_line(rng, m, pool):
    ls = lines_of(m)
    if not ls:
        return m
    i = rng.randrange(len(ls))
    ls.insert(i, ls[i])
    return b"".join(ls)


def m_cut_line(rng, m, pool):
    ls = lines_of(m)
    if len(ls) < 2:
        return m
    if rng.random() < 0.5:
        del ls[rng.randrange(len(ls))]
        return b"".join(ls)
    i = rng.randrange(len(ls))  # cut inside a line: it loses its end
    ls[i] = ls[i][:rng.randrange(len(ls[i]) + 1)]
    return b"".join(ls)


def m_splice(rng, m, pool):
    other = rng.choice(pool)
    return m[:position(rng, m)] + other[rng.randrange(len(other) + 1):]


def m_long_line(rng, m, pool):
    i = position(rng, m)
    n = rng.choice((990, 998, 999, 1000, 2000, 10000, 70000))
    fill = rng.choice((b"x", b"a ", b" ", b"\t", b"=", b"\xc3\xa9"))
    return m[:i] + (fill * n)[:n] + m[i:]


def m_truncate(rng, m, pool):
    return m[:rng.randrange(len(m) + 1)]


MUTATIONS = [(m_flip, 4), (m_insert, 8), (m_eight_bit, 2), (m_dup_line, 2), (m_cut_line, 2),
             (m_splice, 2), (m_long_line, 1), (m_truncate, 1)]
MUT_FUNCS = [f for f, w in MUTATIONS for _ in range(w)]


def mutate(rng, seed_msg, pool):
    m = seed_msg
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        m = rng.choice(MUT_FUNCS)(rng, m, pool)
    return m


# --- delivery and verification -------------------------------------------------------------
def as_delivered(m):
    """The bytes an MTA delivers: CRLF line ends (a bare CR stays), a final line end."""
    m = re.sub(rb"\r?\n", b"\r\n", m)
    if not m.endswith(b"\r\n"):
        m += b"\r\n"
    return m


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def dkimpy_verify(dkim, message, records, nsigs):
    """(passed, reason) over the first nsigs signatures."""
    def dnsfunc(name, timeout=5):
        return records.get(name.decode().rstrip(".").lower(), "").encode() or None

    handler = ListHandler()
    logger = logging.getLogger(f"dkimpy-{os.getpid()}")
    logger.handlers = [handler]
    logger.propagate = False
    try:
        d = dkim.DKIM(message, logger=logger)
        for i in range(nsigs):
            if not d.verify(idx=i, dnsfunc=dnsfunc):
                return False, (handler.records[-1] if handler.records else
                               "signature did not verify")
    except Exception as e:  # dkimpy raises DKIMException and, on odd input, anything else
        return False, f"{type(e).__name__}: {e}"
    return True, ""


class PerlWorker:
    def __init__(self, keys_file):
        self.p = subprocess.Popen(["perl", os.path.join(HERE, "mail_dkim_worker.pl"), keys_file],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def verify(self, message, nsigs):
        self.p.stdin.write(b"%d\n" % len(message) + message)
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("the Mail::DKIM worker died")
        f = line.rstrip(b"\n").decode("utf-8", "replace").split("\t")
        pairs = list(zip(f[0::2], f[1::2]))
        if len(pairs) < nsigs:
            return False, f"{f[0]}: {f[1] if len(f) > 1 else ''}"
        for result, detail in pairs[:nsigs]:
            if result != "pass":
                return False, f"{result}: {detail}" if detail else result
        return True, ""

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def shape(mutant):
    """What is odd in a failing message's header, for the summary."""
    h = mutant[:header_end(mutant)]
    tags = []
    if re.search(rb"\r(?!\n)", h):
        tags.append("bare CR in the header")
    if b"\0" in h:
        tags.append("NUL in the header")
    for line in re.split(rb"\r?\n", h):
        if line[:1] not in (b" ", b"\t") and b":" in line:
            name = line.split(b":")[0]
            if b";" in name:
                tags.append("';' in a field name")
            if any(c > 127 for c in name):
                tags.append("8-bit field name")
    return ", ".join(sorted(set(tags))) or "other"


def count_own_signatures(message, selectors):
    """dkimrotor's DKIM-Signature fields: both paths put them at the top, before any the
    message already had (those are not dkimrotor's to answer for)."""
    n = 0
    for field in re.split(rb"\r\n(?![ \t])", message[:header_end(message)]):
        if not field.lower().startswith(b"dkim-signature:") or not any(
                re.search(rb"[;\s]s=" + re.escape(sel.encode()) + rb"\s*;", field)
                for sel in selectors):
            break
        n += 1
    return n


def reason_class(text):
    """A reason without its variable parts, for counting and for 'new outcome' learning."""
    text = re.sub(r"^From domain .* is not configured$", "From domain … is not configured", text,
                  flags=re.S)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\d+", "N", text)
    text = re.sub(r"\([^)]*\)", "(…)", text)
    return text[:120]


# --- one job --------------------------------------------------------------------------------
class Job:
    def __init__(self, cfg, index):
        import dkim  # dkimpy: /usr/bin/python3's python3-dkim
        self.dkim = dkim
        self.cfg = cfg
        self.index = index
        self.rng = random.Random(f"{cfg['seed']}-{index}")
        self.seeds = [open(p, "rb").read() for p in cfg["corpus"]]
        self.pool = []
        self.seen = set()
        self.perl = PerlWorker(cfg["keys_file"])
        self.milter = None
        self.log_pos = 0
        self.log_reasons = {}
        self.last_progress = time.monotonic()
        self.stats = {"messages": 0, "signed": {}, "unsigned": {}, "both_reject": 0,
                      "quirks": {}, "limits": {}, "shapes": {}, "crashes": 0, "failures": [], "verified": 0,
                      "learned": 0, "sign_seconds": 0.0, "milter_seconds": 0.0,
                      "verify_seconds": 0.0}

    def count(self, key, sub, n=1):
        d = self.stats[key].setdefault(sub[0], {})
        d[sub[1]] = d.get(sub[1], 0) + n

    def run(self, n):
        done = 0
        # Job 0 starts with every input that once failed, as it is: a regression shows at
        # once, whatever the seed.
        regressions = [(f"W0R{k}", open(p, "rb").read())
                       for k, p in enumerate(self.cfg["regressions"])] if self.index == 0 else []
        while done < n or regressions:
            if self.cfg["deadline"] and time.time() > self.cfg["deadline"]:
                break
            batch, regressions = regressions, []
            for i in range(done, min(n, done + self.cfg["batch"] - len(batch))):
                base = self.rng.choice(self.pool) if self.pool and self.rng.random() < 0.5 \
                    else self.rng.choice(self.seeds)
                batch.append((f"W{self.index}N{i}", mutate(self.rng, base, self.seeds + self.pool)))
            done += len([q for q, _ in batch if "N" in q])
            self.stats["messages"] += len(batch)
            outcomes = {qid: set() for qid, _ in batch}
            for path in self.cfg["paths"]:
                t0 = time.monotonic()
                if path == "sign":
                    signed = self.sign_cli_batch(batch)
                    self.stats["sign_seconds"] += time.monotonic() - t0
                else:
                    signed = {qid: self.sign_milter(m, qid) for qid, m in batch}
                    self.stats["milter_seconds"] += time.monotonic() - t0
                for qid, mutant in batch:
                    outcomes[qid].add(self.judge(path, qid, mutant, *signed[qid]))
            if time.monotonic() - self.last_progress > 60:
                self.last_progress = time.monotonic()
                st = self.stats
                log(f"job {self.index}: {st['messages']} messages, {st['both_reject']} both-reject, "
                    f"{st['crashes']} crashes, pool {len(self.pool)}")
            for qid, mutant in batch:
                if outcomes[qid] - self.seen:
                    self.seen |= outcomes[qid]
                    if len(mutant) < 1 << 20:
                        self.pool.append(mutant)
                        self.stats["learned"] += 1
                        if len(self.pool) > 2000:
                            del self.pool[self.rng.randrange(len(self.pool))]
        self.perl.close()
        if self.milter:
            self.milter.close()
        return self.stats

    def fail(self, path, qid, mutant, signed, reasons, kind):
        self.stats["failures"].append(qid)
        out = self.cfg["out"]
        os.makedirs(out, exist_ok=True)
        base = os.path.join(out, f"{kind}-{path}-{qid}")
        with open(base + ".eml", "wb") as f:
            f.write(mutant)
        if signed is not None:
            with open(base + ".signed.eml", "wb") as f:
                f.write(signed)
        with open(base + ".txt", "w") as f:
            f.write(f"{kind} on the {path} path\n" + "\n".join(reasons) + "\n")
        if len(self.stats["failures"]) <= self.cfg["print_failures"]:
            log(f"FAILURE {kind} ({path}) {qid}: {'; '.join(reasons)} -> {base}.eml\n"
                f"    input: {mutant[:300]!r}")

    def judge(self, path, qid, mutant, signed, reason, crash):
        if crash:
            self.stats["crashes"] += 1
            self.fail(path, qid, mutant, None, [crash], "crash")
            return (path, "crash")
        if signed is None:
            rc = reason_class(reason)
            self.count("unsigned", (path, rc))
            return (path, "unsigned", rc)
        self.count("signed", (path, "signed"))
        nsigs = count_own_signatures(signed, self.cfg["selectors"])
        if nsigs == 0:
            self.stats["both_reject"] += 1
            self.fail(path, qid, mutant, signed, ["no dkimrotor signature at the top"], "no-signature")
            return (path, "no-signature")
        t1 = time.monotonic()
        py_ok, py_why = dkimpy_verify(self.dkim, signed, self.cfg["records"], nsigs)
        pl_ok, pl_why = self.perl.verify(signed, nsigs)
        self.stats["verify_seconds"] += time.monotonic() - t1
        self.stats["verified"] += 1
        if not py_ok and not pl_ok and path == "milter" and \
                b"\0" in mutant[:header_end(mutant)]:
            # The milter protocol carries header values as C strings: libmilter hands the
            # milter the value cut at the NUL, the MTA delivers all of it. No milter can sign
            # what it is not shown; counted, not dkimrotor's failure.
            self.count("limits", (path, "NUL in a header field: the milter saw the field cut "
                                        "there, both verifiers reject"))
            return (path, "nul-cut")
        if not py_ok and not pl_ok:
            self.stats["both_reject"] += 1
            self.count("shapes", (path, shape(mutant)))
            self.fail(path, qid, mutant, signed, [f"dkimpy: {py_why}", f"Mail::DKIM: {pl_why}"],
                      "both-reject")
            return (path, "both-reject", reason_class(py_why), reason_class(pl_why))
        if not py_ok:
            self.count("quirks", ("dkimpy", reason_class(py_why)))
            return (path, "quirk-dkimpy", reason_class(py_why))
        if not pl_ok:
            self.count("quirks", ("Mail::DKIM", reason_class(pl_why)))
            return (path, "quirk-mail-dkim", reason_class(pl_why))
        return (path, "pass")

    def sign_cli_batch(self, batch):
        """Signs the batch with one `dkimrotor sign -c CONF --output-dir DIR FILE...`; a crash
        is charged to the first file without a status line, and the rest signed again.
        Returns {qid: (delivered bytes or None, refusal reason, crash report or None)}."""
        work = os.path.join(self.cfg["tmp"], f"job{self.index}")
        indir, outdir = os.path.join(work, "in"), os.path.join(work, "out")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(indir)
        os.makedirs(outdir)
        files = {}
        for qid, mutant in batch:
            files[qid] = os.path.join(indir, qid)
            with open(files[qid], "wb") as f:
                f.write(mutant)
        results = {}
        todo = [qid for qid, _ in batch]
        env = dict(os.environ, UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1")
        while todo:
            p = subprocess.run([self.cfg["dkimrotor"], "sign", "-c", self.cfg["conf"],
                                "--output-dir", outdir] + [files[q] for q in todo],
                               capture_output=True, timeout=600, env=env)
            for line in p.stdout.decode("utf-8", "replace").splitlines():
                f = line.split("\t")
                qid = os.path.basename(f[0])
                if len(f) >= 2 and f[1] == "signed":
                    with open(os.path.join(outdir, qid), "rb") as o:
                        results[qid] = (as_delivered(o.read()), "", None)
                elif len(f) >= 3:
                    results[qid] = (None, f[2], None)
            rest = [q for q in todo if q not in results]
            sanitizer = SANITIZER.search(p.stderr)
            if p.returncode in (0, 1) and not sanitizer:
                for q in rest:
                    results[q] = (None, "", f"no status line from dkimrotor sign: {p.stderr[-500:]!r}")
                break
            if not rest:  # a late sanitizer report: charge the last file
                rest = [todo[-1]]
                results.pop(rest[0], None)
            why = (f"dkimrotor sign: signal {-p.returncode}" if p.returncode < 0 else
                   f"dkimrotor sign: exit {p.returncode}")
            if sanitizer:
                why += ": " + p.stderr.decode(errors="replace")[-3000:]
            results[rest[0]] = (None, "", why)
            todo = rest[1:]
        return results

    def sign_milter(self, mutant, qid):
        headers, body = split_as_postfix(mutant)
        for attempt in (1, 2):
            try:
                if self.milter is None:
                    self.milter = MilterConnection("127.0.0.1", self.cfg["milter_port"])
                res = self.milter.send_message(headers, body, queue_id=qid.encode())
                break
            except PacketTooLarge as e:
                return None, f"not sent: {e}", None
            except (OSError, MilterError) as e:
                self.milter = None
                if not daemon_alive(self.cfg["daemon_pid"]) or attempt == 2:
                    return None, "", f"milter: {e}; daemon " + (
                        "alive" if daemon_alive(self.cfg["daemon_pid"]) else "gone")
        if res.inserted:
            return as_delivered(delivered(headers, body, res, bool(
                self.milter.protocol & 0x100000))), "", None
        return None, self.milter_reason(qid, res), None

    def milter_reason(self, qid, res):
        """Why the daemon left the message unsigned: its log line "QID: not signed: WHY"."""
        for _ in range(100):
            if qid in self.log_reasons:
                return self.log_reasons.pop(qid)
            with open(self.cfg["daemon_log"], "rb") as f:
                f.seek(self.log_pos)
                data = f.read()
            cut = data.rfind(b"\n") + 1
            self.log_pos += cut
            for m in re.finditer(rb"(W\d+[NR]\d+): (?:not signed|cannot sign): ([^\n]*)", data[:cut]):
                self.log_reasons[m.group(1).decode()] = m.group(2).decode(errors="replace")
            if qid in self.log_reasons:
                return self.log_reasons.pop(qid)
            time.sleep(0.002)
        return f"no reason logged (reply {res.reply!r} at {res.stage!r})"


def daemon_alive(pid):
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def job_main(args):
    cfg, index, n = args
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return Job(cfg, index).run(n)


def merge(total, s):
    for k in ("messages", "both_reject", "crashes", "verified", "learned", "sign_seconds",
              "milter_seconds", "verify_seconds"):
        total[k] = total.get(k, 0) + s[k]
    total.setdefault("failures", []).extend(s["failures"])
    for k in ("signed", "unsigned", "quirks", "limits", "shapes"):
        for a, d in s[k].items():
            for b, v in d.items():
                t = total.setdefault(k, {}).setdefault(a, {})
                t[b] = t.get(b, 0) + v


def report(total, elapsed, paths):
    log("---- figures ----")
    print(f"messages (mutants):  {total['messages']}, each through: {', '.join(paths)}")
    for p in paths:
        print(f"signed via {p}: {total.get('signed', {}).get(p, {}).get('signed', 0)}")
    for p in paths:
        reasons = total.get("unsigned", {}).get(p, {})
        print(f"unsigned via {p}: {sum(reasons.values())}")
        for r, n in sorted(reasons.items(), key=lambda x: -x[1]):
            print(f"  {n:7d}  {r}")
    print(f"both verifiers reject: {total['both_reject']}")
    for p, shapes in total.get("shapes", {}).items():
        for r, n in sorted(shapes.items(), key=lambda x: -x[1]):
            print(f"  {n:7d}  via {p}: {r}")
    for v in ("dkimpy", "Mail::DKIM"):
        q = total.get("quirks", {}).get(v, {})
        print(f"quirks of {v} (only it rejects): {sum(q.values())}")
        for r, n in sorted(q.items(), key=lambda x: -x[1]):
            print(f"  {n:7d}  {r}")
    for p, reasons in total.get("limits", {}).items():
        for r, n in reasons.items():
            print(f"protocol limit, not a failure ({p}): {n}  {r}")
    print(f"crashes: {total['crashes']}")
    print(f"mutants kept as interesting: {total['learned']}")
    rate = total["messages"] / elapsed if elapsed else 0
    print(f"time: {elapsed:.1f} s, {rate:.1f} messages/s ({len(paths)} signing paths each); "
          f"per job: sign {total['sign_seconds']:.1f} s, milter {total['milter_seconds']:.1f} s, "
          f"verify {total['verify_seconds']:.1f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(SOURCE, "build"),
                    help="build directory holding the dkimrotor binary (e.g. an ASan build)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=1000, help="mutants; each goes through every path")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=0, help="stop after this many seconds")
    ap.add_argument("--paths", default="sign,milter")
    ap.add_argument("--batch", type=int, default=100,
                    help="mutants per `dkimrotor sign --output-dir` run")
    ap.add_argument("--corpus", default=os.path.join(SOURCE, "tests", "data", "corpus"))
    ap.add_argument("--regressions", default=os.path.join(HERE, "regressions"),
                    help="inputs that once failed, signed as they are at the start of each run")
    ap.add_argument("--out", default="difffuzz-out", help="where failures are saved")
    ap.add_argument("--print-failures", type=int, default=20,
                    help="print at most this many failures per job (all are saved)")
    args = ap.parse_args()

    dkimrotor = os.path.join(os.path.abspath(args.build), "dkimrotor")
    if not os.access(dkimrotor, os.X_OK):
        print(f"difffuzz: no dkimrotor binary in {args.build} (give --build DIR)", file=sys.stderr)
        return 2
    missing = [p for p in ("knotd", "kdig", "knsupdate", "perl") if not shutil.which(p) and
               not os.path.exists(f"/usr/sbin/{p}")]
    if missing:
        print(f"difffuzz: missing {', '.join(missing)} (scripts/install-deps)", file=sys.stderr)
        return 2
    corpus = sorted(os.path.join(args.corpus, f) for f in os.listdir(args.corpus)
                    if f.endswith(".eml"))
    paths = [p for p in args.paths.split(",") if p]
    if not corpus or any(p not in ("sign", "milter") for p in paths):
        print("difffuzz: no corpus, or --paths is not a list of sign, milter", file=sys.stderr)
        return 2

    # Failures of an earlier run in --out would read as this run's: only ours are removed.
    if os.path.isdir(args.out):
        for f in os.listdir(args.out):
            if re.match(r"(crash|both-reject|no-signature)-(sign|milter)-W\d+[NR]\d+\.", f):
                os.unlink(os.path.join(args.out, f))
    # kill(1) as well as Ctrl-C stops Knot and the daemon and removes the lab (the finally below).
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(128 + sig))
    tmp = tempfile.mkdtemp(prefix="difffuzz.")
    lab = Lab(dkimrotor, tmp)
    start = time.time()
    try:
        try:
            lab.start()
        except Exception as e:
            print(f"difffuzz: set-up failed: {e}", file=sys.stderr)
            return 2
        keys_file = os.path.join(tmp, "keys.txt")
        with open(keys_file, "w") as f:
            for name, record in lab.records.items():
                f.write(f"{name} {record}\n")
        regressions = sorted(os.path.join(args.regressions, f) for f in
                             os.listdir(args.regressions) if f.endswith(".eml"))
        cfg = {"seed": args.seed, "regressions": regressions, "tmp": tmp, "batch": args.batch, "corpus": corpus, "records": lab.records,
               "keys_file": keys_file,
               "selectors": [n.split("._domainkey.")[0] for n in lab.records], "dkimrotor": dkimrotor, "conf": lab.conf,
               "milter_port": lab.milter_port, "daemon_log": lab.daemon_log,
               "daemon_pid": lab.daemon.pid, "paths": paths, "out": os.path.abspath(args.out),
               "print_failures": args.print_failures,
               "deadline": start + args.time_limit if args.time_limit else 0}
        jobs = max(1, args.jobs)
        shares = [args.count // jobs + (1 if i < args.count % jobs else 0) for i in range(jobs)]
        log(f"seed {args.seed}, {len(regressions)} past failures, then {args.count} mutants of "
            f"{len(corpus)} corpus messages, "
            f"{jobs} jobs, paths {', '.join(paths)}, dkimrotor {dkimrotor}")
        fuzz_start = time.time()
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(job_main, [(cfg, i, shares[i]) for i in range(jobs)])
        elapsed = time.time() - fuzz_start
        total = {}
        for s in results:
            merge(total, s)
        if "milter" in paths and not lab.daemon_alive():
            total["crashes"] += 1
            log(f"FAILURE: the daemon exited ({lab.daemon.returncode}):\n" +
                open(lab.daemon_log, errors="replace").read()[-3000:])
        if "milter" in paths:
            with open(lab.daemon_log, "rb") as f:
                if SANITIZER.search(f.read()):
                    total["crashes"] += 1
                    log("FAILURE: a sanitizer report in the daemon's log " + lab.daemon_log)
        report(total, elapsed, paths)
        bad = total["both_reject"] + total["crashes"]
        if bad:
            log(f"FAILED: {total['both_reject']} both-reject, {total['crashes']} crashes; "
                f"inputs and reasons in {cfg['out']}")
            return 1
        log("no failure")
        return 0
    finally:
        lab.stop()
        if os.environ.get("DIFFFUZZ_KEEP"):
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
