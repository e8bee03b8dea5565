#!/usr/bin/python3
"""Measures dkimrotor side by side with OpenDKIM and writes docs/PERFORMANCE.md.

Sections (--only picks some; all by default):
  milter    the milter protocol matrix: bodies 1 KiB, 100 KiB, 10 MiB x connections 1, 4, 16
            x modes mta and capacity x filters dkimrotor, OpenDKIM and the do-nothing filter,
            driven by dkimrotor_milter_load; CPU per message of each filter from /proc; for
            10 MiB, dkimrotor's CPU per message against the SHA-256 cost of the body
            (`openssl speed -evp sha256`, measured in the same run);
  postfix   smtp-source -> a private Postfix with the milter -> smtp-sink, 1 and 4 sessions;
  memory    dkimrotor's peak RSS while signing one 100 MiB message against its idle RSS
            (OpenDKIM's and the do-nothing filter's for comparison), and its RSS every
            100,000 messages across 1,000,000;
  rotation  p99 of a 1-connection capacity run inside and outside the window in which
            dkimrotor generates RSA-4096 keys for a domain added by SIGHUP.

Cells are interleaved (one cell for every filter, then the next cell) and the whole matrix is
repeated --repeat times; the report quotes medians and ratios of medians. A run that fails
(unsigned, tempfailed, a bad signature, an error, a missing message) is reported as FAILED and
never averaged in. Benchmarks assert nothing: targets are marked met or missed in the report.

Usage: perf.py --build DIR [--repeat N] [--quick] [--only milter,postfix,memory,rotation]
               [--output FILE] [--render RESULTS.json] [--keep]
"""
import argparse
import datetime
import json
import math
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import perf_lab as L  # noqa: E402

SECTIONS = ["milter", "postfix", "memory", "rotation"]
BODIES = ["1k", "100k", "10m"]
BODY_BYTES = {"1k": 1024, "100k": 100 * 1024, "10m": 10 * 1024 * 1024}
BODY_LABEL = {"1k": "1 KiB", "100k": "100 KiB", "10m": "10 MiB"}
CONNECTIONS = [1, 4, 16]
MODES = ["mta", "capacity"]
FILTERS = ["dkimrotor", "opendkim", "null"]
LABEL = {"dkimrotor": "dkimrotor", "opendkim": "OpenDKIM", "null": "do-nothing",
         "none": "no milter"}
ROTATION_DOMAIN = "rsa4096.test"
LOAD_REL = "tests/bench/dkimrotor_milter_load"


class Plan:
    """How long and how often each measurement runs: a full run, or --quick for development."""

    def __init__(self, quick, repeat):
        self.quick = quick
        self.repeat = repeat if repeat else (1 if quick else 3)
        self.duration = 1.5 if quick else 4.0              # seconds, 1 KiB and 100 KiB cells
        self.warmup_small = 20 if quick else 50            # per connection
        self.warmup_big = 1                                # per connection, 10 MiB
        self.seconds_big = 1.5 if quick else 4.0           # aimed at for 10 MiB cells
        self.postfix_messages = {1: 60 if quick else 300, 4: 120 if quick else 600}
        self.memory_connections = 4
        self.memory_total = 100_000 if quick else 1_000_000
        self.memory_step = 10_000 if quick else 100_000
        self.rotation_seconds = 16 if quick else 24
        self.rotation_hup_after = 7 if quick else 9
        # One connection: a busy MTA that still leaves a core idle, where the idle-priority
        # rotation thread can finish its keys while the load runs. (At 4 capacity connections
        # both cores are saturated and the keys only finish after the load.)
        self.rotation_connections = 1
        self.sha_seconds = 1 if quick else 3


# --- running the load generator ------------------------------------------------------------
def machine_busy():
    """(busy, total) CPU seconds of the whole machine, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy / L.CLK_TCK, (busy + idle + iowait) / L.CLK_TCK


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Loader:
    def __init__(self, lab):
        self.lab = lab
        self.binary = os.path.join(lab.build, LOAD_REL)
        self.keys_files = {}

    def available(self):
        return os.access(self.binary, os.X_OK)

    def keys_file(self, part):
        path = self.keys_files.get(part.name)
        if not path:
            path = self.lab.path(f"keys-{part.name}.txt")
            with open(path, "w") as f:
                for name, record in part.keys.items():
                    f.write(f"{name} {record}\n")
            self.keys_files[part.name] = path
        return path

    def argv(self, part, body, connections, mode, duration=None, messages=None, warmup=0,
             latency_log=None):
        a = [self.binary, "--socket", part.socket, "--connections", str(connections)]
        a += ["--duration", f"{duration:g}"] if duration else ["--messages", str(messages)]
        a += ["--body-size", body, "--mode", mode, "--from-domain", L.DOMAIN]
        if part.keys:
            a += ["--expect", "signed", "--keys-file", self.keys_file(part)]
        else:
            a += ["--expect", "header:X-Null-Filter"]
        a += ["--warmup", str(warmup), "--timeout", "120"]
        if latency_log:
            a += ["--latency-log", latency_log]
        return a + ["--json"]

    def run(self, part, body, connections, mode, duration=None, messages=None, warmup=0,
            latency_log=None, timeout=None):
        """One run; returns a record with the load generator's JSON, the filter's CPU seconds
        over the run and whether it passed."""
        argv = self.argv(part, body, connections, mode, duration, messages, warmup, latency_log)
        cpu0 = L.cpu_seconds(part.pid)
        busy0, total0 = machine_busy()
        child0 = children_cpu()
        t0 = time.monotonic()
        try:
            r = subprocess.run(argv, capture_output=True, text=True,
                               timeout=timeout or ((duration or 0) + 900))
            rc, out, err = r.returncode, r.stdout, r.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = -1, (e.stdout or b"").decode(errors="replace"), "timed out"
        wall = time.monotonic() - t0
        cpu = L.cpu_seconds(part.pid) - cpu0
        busy1, total1 = machine_busy()
        # What the rest of the machine used meanwhile, in cores: all busy time less the
        # filter's and the load generator's (its verification phase included).
        others = max(0.0, (busy1 - busy0) - cpu - (children_cpu() - child0)) / wall
        j = None
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                try:
                    j = json.loads(line)
                except ValueError:
                    pass
                break
        rec = {"argv": argv, "exit": rc, "json": j, "cpu_s": cpu, "wall_s": wall,
               "others_cores": others, "stderr": err.strip()[-800:]}
        rec["ok"] = bool(rc == 0 and j and j.get("ok"))
        if j:
            handled = j["messages"] + warmup * connections
            rec["cpu_per_msg_s"] = cpu / handled if handled else None
        if not rec["ok"]:
            rec["problem"] = describe_failure(rec)
        return rec


def describe_failure(rec):
    j = rec.get("json")
    if not j:
        return f"exit {rec['exit']}: {rec['stderr'] or 'no JSON output'}"
    parts = [f"{k} {j[k]}" for k in ("unsigned", "tempfailed", "bad_signature", "errors")
             if j.get(k)]
    if not j.get("messages"):
        parts.append("no message measured")
    ex = "; ".join(j.get("examples", [])[:2])
    return f"exit {rec['exit']}: " + ", ".join(parts) + (f" (e.g. {ex})" if ex else "")


def command_line(argv, lab):
    """argv as a shell line, with the temporary paths and ports made generic."""
    s = shlex.join(argv)
    s = s.replace(lab.build + "/", "$BUILD_DIR/").replace(lab.tmp + "/", "$LAB/")
    s = re.sub(r"inet:\d+@", "inet:PORT@", s)
    s = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", s)
    return s


# --- machine facts and the SHA-256 baseline ------------------------------------------------
def sh(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts(build):
    cpu = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    cpu = cpu or re.sub(r".*Model name:\s*", "", next(
        (l for l in sh(["lscpu"]).splitlines() if "Model name" in l), ""))
    flags = open("/proc/cpuinfo").read()
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1))
    commit = sh(["git", "-C", L.SOURCE_DIR, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", L.SOURCE_DIR, "status", "--porcelain", "--untracked-files=no"])
    build_type = ""
    try:
        build_type = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$",
                               open(os.path.join(build, "CMakeCache.txt")).read(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu + (" (SHA-NI)" if re.search(r"\bsha_ni\b", flags) else ""),
        "cores": os.cpu_count(),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "os": next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                    if l.startswith("PRETTY_NAME=")), ""),
        "openssl": sh(["openssl", "version"]),
        "postfix": sh(["postconf", "-h", "-d", "mail_version"]),
        "opendkim": sh(["opendkim", "-V"]).splitlines()[0] if sh(["opendkim", "-V"]) else "",
        "knot": sh(["knotd", "-V"]).splitlines()[0] if sh(["knotd", "-V"]) else "",
        "python": platform.python_version(),
        "dkimrotor": (commit + (" (with uncommitted changes)" if dirty else "")) or "unknown",
        "build_type": build_type,
    }


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def openssl_rsa2048(seconds):
    """RSA-2048 signatures per second of `openssl speed rsa2048`."""
    argv = ["openssl", "speed", "-mr", "-seconds", str(seconds), "rsa2048"]
    out = sh(argv)
    for line in out.splitlines():
        parts = line.strip().split(":")
        if parts[0] == "+F2" and len(parts) >= 4:
            return float(parts[3]), argv
    raise RuntimeError(f"no +F2 line in `{shlex.join(argv)}`:\n{out}")


def openssl_sha256(seconds):
    """bytes per second of `openssl speed -evp sha256 -bytes 16384`."""
    argv = ["openssl", "speed", "-mr", "-evp", "sha256", "-bytes", "16384", "-seconds",
            str(seconds)]
    out = sh(argv)
    for line in out.splitlines():
        parts = line.strip().split(":")
        if parts[0] == "+F" and len(parts) >= 4:
            return float(parts[3]), argv
    raise RuntimeError(f"no +F line in `{shlex.join(argv)}`:\n{out}")


# --- 1. the milter protocol matrix ---------------------------------------------------------
def big_messages(plan, estimates, filt, connections):
    """Messages per connection for a 10 MiB cell: about plan.seconds_big at the rate this
    filter reached before (a guess of 30 messages/s per connection at first)."""
    rate = estimates.get((filt, connections), estimates.get((filt, 1), 30.0 * connections))
    total = rate * plan.seconds_big
    return max(2, min(200, round(total / connections)))


def run_milter(lab, loader, parts, plan, results, bodies, connections, modes):
    estimates = {}
    total = plan.repeat * len(bodies) * len(connections) * len(modes) * len(parts)
    n = 0
    for rep in range(plan.repeat):
        for body in bodies:
            for c in connections:
                for mode in modes:
                    for part in parts:
                        n += 1
                        if body == "10m":
                            m = big_messages(plan, estimates, part.name, c)
                            rec = loader.run(part, body, c, mode, messages=m,
                                             warmup=plan.warmup_big)
                        else:
                            rec = loader.run(part, body, c, mode, duration=plan.duration,
                                             warmup=plan.warmup_small)
                        rec.update(section="milter", filter=part.name, body=body,
                                   connections=c, mode=mode, rep=rep)
                        results.append(rec)
                        j = rec.get("json") or {}
                        if body == "10m" and j.get("msgs_per_s"):
                            estimates[(part.name, c)] = j["msgs_per_s"]
                        L.log(f"milter {n}/{total}: {part.name:9} {body:>4} c={c:<2} {mode:8} "
                              + (f"{j.get('msgs_per_s', 0):9.1f} msg/s p99 "
                                 f"{j.get('p99_us', 0) / 1000:7.2f} ms cpu/msg "
                                 f"{(rec.get('cpu_per_msg_s') or 0) * 1e6:8.1f} us"
                                 if rec["ok"] else f"FAILED: {rec['problem']}"))


# --- 2. behind Postfix ---------------------------------------------------------------------
def check_delivery(kind, part, sink, n, audit_delta):
    """Problems with what reached the sink for a run of n messages."""
    problems = []
    files = sink.files()
    if len(files) != n:
        problems.append(f"{len(files)} of {n} messages reached smtp-sink")
    bad = 0
    for path in files:
        msg = open(path, "rb").read()
        sigs = len(re.findall(rb"^DKIM-Signature:", msg, re.I | re.M))
        if kind in ("dkimrotor", "opendkim"):
            bad += sigs != 1
        elif kind == "null":
            bad += sigs != 0 or not re.search(rb"^X-Null-Filter: yes", msg, re.M)
        else:
            bad += sigs != 0
    if bad:
        problems.append(f"{bad} messages without what the milter should add")
    if kind in ("dkimrotor", "opendkim"):
        sample = files[:: max(1, len(files) // 10)][:10]
        failed = sum(1 for p in sample if L.verify_dkim(open(p, "rb").read(), part.keys) != (1, True))
        if failed:
            problems.append(f"{failed} of {len(sample)} sampled signatures do not verify (dkimpy)")
    if kind == "dkimrotor" and audit_delta is not None and audit_delta != n:
        problems.append(f"dkimrotor's audit log has {audit_delta} new lines, want {n}")
    return problems


def run_postfix(lab, parts, plan, results, sessions_list=(1, 4)):
    setups = []
    for part in parts + [None]:
        kind = part.name if part else "none"
        sink = L.SmtpSink(lab, f"sink-{kind}")
        pf = L.Postfix(lab, f"postfix-{kind}", part.socket if part else None, sink.port)
        setups.append((kind, part, sink, pf))
    # Warm up each instance: smtpd, cleanup and smtp processes started, the milter connected.
    for kind, part, sink, pf in setups:
        L.smtp_source(pf.port, 20, 2)
        L.wait_for(lambda: sink.count() >= 20, 60, 0.2)
        sink.clear()
    for rep in range(plan.repeat):
        for sessions in sessions_list:
            n = plan.postfix_messages[sessions]
            for kind, part, sink, pf in setups:
                audit0 = part.audit_lines() if kind == "dkimrotor" else None
                secs, rc, out, argv = L.smtp_source(pf.port, n, sessions)
                arrived = L.wait_for(lambda: sink.count() >= n, 120, 0.1)
                audit_delta = None
                if kind == "dkimrotor":
                    L.wait_for(lambda: part.audit_lines() - audit0 >= n, 10, 0.1)
                    audit_delta = part.audit_lines() - audit0
                problems = []
                if rc != 0 or out:
                    problems.append(f"smtp-source exit {rc}: {out[:300]}")
                if not arrived:
                    problems.append(L.tail(pf.log_path, 5).strip())
                problems += check_delivery(kind, part, sink, n, audit_delta)
                sink.clear()
                rec = {"section": "postfix", "filter": kind, "sessions": sessions, "rep": rep,
                       "messages": n, "seconds": secs, "msgs_per_s": n / secs,
                       "argv": argv, "ok": not problems}
                if problems:
                    rec["problem"] = "; ".join(problems)
                results.append(rec)
                L.log(f"postfix: {kind:9} s={sessions} {n / secs:8.1f} msg/s"
                      + ("" if rec["ok"] else f" FAILED: {rec['problem']}"))


# --- 3. memory -----------------------------------------------------------------------------
def run_memory(lab, loader, parts, plan, results, dkimrotor):
    for part in parts:
        warm = loader.run(part, "1k", 1, "capacity", messages=200, warmup=2)
        time.sleep(1)
        idle = L.status_kib(part.pid, "VmRSS")
        hwm_before = L.status_kib(part.pid, "VmHWM")
        reset = L.reset_peak_rss(part.pid)
        rec = loader.run(part, "100m", 1, "capacity", messages=1, warmup=0)
        peak = L.status_kib(part.pid, "VmHWM")
        rec.update(section="memory100", filter=part.name, idle_kib=idle, peak_kib=peak,
                   hwm_before_kib=hwm_before, peak_reset=reset,
                   after_kib=L.status_kib(part.pid, "VmRSS"))
        if not warm["ok"]:
            rec["ok"] = False
            rec["problem"] = "warm-up: " + warm.get("problem", "")
        results.append(rec)
        L.log(f"memory: {part.name:9} idle {idle / 1024:.1f} MiB, peak with 100 MiB "
              f"{peak / 1024:.1f} MiB (+{(peak - idle) / 1024:.1f})"
              + ("" if rec["ok"] else f" FAILED: {rec['problem']}"))

    # RSS across many small messages: the load generator runs once; a thread samples /proc
    # whenever the audit log (one line per signed message) passes another step.
    d = dkimrotor
    per_conn = plan.memory_total // plan.memory_connections
    samples = []
    stop = threading.Event()
    base = d.audit_lines()

    def sampler():
        pos, count, nxt = 0, 0, 0
        with open(d.audit, "rb") as f:
            f.seek(0, os.SEEK_END)
            pos = f.tell()
        t0 = time.monotonic()
        samples.append({"messages": 0, "rss_kib": L.status_kib(d.pid, "VmRSS"), "t": 0.0})
        nxt = plan.memory_step
        while not stop.is_set():
            with open(d.audit, "rb") as f:
                f.seek(pos)
                chunk = f.read()
            pos += len(chunk)
            count += chunk.count(b"\n")
            if count >= nxt:
                samples.append({"messages": count, "rss_kib": L.status_kib(d.pid, "VmRSS"),
                                "t": time.monotonic() - t0})
                while nxt <= count:
                    nxt += plan.memory_step
            time.sleep(0.05)

    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    rec = loader.run(d, "1k", plan.memory_connections, "capacity", messages=per_conn, warmup=0,
                     timeout=7200)
    time.sleep(0.5)
    stop.set()
    th.join(10)
    rec.update(section="memory1m", filter="dkimrotor", samples=samples,
               audit_lines=d.audit_lines() - base,
               hwm_kib=L.status_kib(d.pid, "VmHWM"))
    results.append(rec)
    L.log(f"memory: RSS over {plan.memory_total} messages: "
          + ", ".join(f"{s['messages']}: {s['rss_kib'] / 1024:.1f}" for s in samples)
          + ("" if rec["ok"] else f" FAILED: {rec['problem']}"))


# --- 4. rotation under load ----------------------------------------------------------------
LOG_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3})\]")


def log_events(path, since):
    """(unix time, message) of the daemon's log lines at or after since."""
    events = []
    for line in open(path, errors="replace"):
        m = LOG_TIME.match(line)
        if not m:
            continue
        t = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
        if t >= since - 0.001:
            events.append((t, line.rstrip()))
    return events


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100) of a list."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, min(len(v) - 1, math.ceil(q / 100 * len(v)) - 1))]


SCHED_POLICY = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH",
                5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}


def thread_policies(pid):
    """{policy name: number of threads} of a process (field 41 of /proc/PID/task/TID/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            name = SCHED_POLICY.get(int(fields[38]), fields[38])
            out[name] = out.get(name, 0) + 1
        except (OSError, IndexError, ValueError):
            pass
    return out


def thread_cpu(pid, policy):
    """utime + stime, in seconds, of a process's threads that run at policy."""
    total = 0.0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if SCHED_POLICY.get(int(fields[38])) == policy:
                total += (int(fields[11]) + int(fields[12])) / L.CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_rotation(lab, loader, plan, results, dkimrotor, rep):
    d = dkimrotor
    policies = thread_policies(d.pid)
    latency_log = lab.path(f"rotation-latency-{rep}.txt")
    argv = loader.argv(d, "1k", plan.rotation_connections, "capacity", duration=plan.rotation_seconds,
                       warmup=plan.warmup_small, latency_log=latency_log)
    cpu0 = L.cpu_seconds(d.pid)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(plan.rotation_hup_after)
    domain = f"r{rep}.{ROTATION_DOMAIN}"
    t_hup = time.time()
    d.add_domain(domain, 4096)
    out, err = proc.communicate(timeout=plan.rotation_seconds + 900)
    cpu = L.cpu_seconds(d.pid) - cpu0
    j = None
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            j = json.loads(line)
            break
    rec = {"section": "rotation", "filter": "dkimrotor", "rep": rep, "argv": argv,
           "exit": proc.returncode, "json": j, "stderr": err.strip()[-800:], "cpu_s": cpu,
           "domain": domain, "hup_at": t_hup, "thread_policies": policies}
    rec["ok"] = bool(proc.returncode == 0 and j and j.get("ok"))
    # What the SCHED_IDLE (rotation) thread got while the load ran: it was started by the
    # reload, so its CPU time is all since the SIGHUP.
    idle_cpu = thread_cpu(d.pid, "SCHED_IDLE")
    lat = []
    for line in open(latency_log):
        a, b = line.split()
        lat.append((int(a) / 1e9, int(b) / 1e3))  # unix seconds, microseconds
    load_end = max((t for t, _ in lat), default=t_hup)
    # Key generation: from SIGHUP to the last "generated ... key ..._domainkey.DOMAIN" line.
    # Under full load the idle-priority thread may only finish once the load is over.
    want_keys = 2  # active_keys 1 + prepublish 1

    def generated():
        return [t for t, line in log_events(d.log_path, t_hup)
                if "generated" in line and f"._domainkey.{domain}" in line]
    L.wait_for(lambda: len(generated()) >= want_keys, 180, 0.5)
    gen_all = generated()
    gen_in_load = [t for t in gen_all if t <= load_end]
    finished = len(gen_in_load) >= want_keys
    window_end = max(gen_in_load) if finished else load_end
    reloaded = [t for t, line in log_events(d.log_path, t_hup) if "configuration reloaded" in line]
    rec.update(keys_generated=len(gen_in_load), generation_finished=finished,
               reloaded_after_s=(reloaded[0] - t_hup) if reloaded else None,
               window_s=window_end - t_hup, load_end_after_s=load_end - t_hup,
               generated_after_s=[t - t_hup for t in gen_all],
               generation_done_after_s=(max(gen_all) - t_hup) if len(gen_all) >= want_keys
               else None,
               idle_thread_cpu_s=idle_cpu)
    # A message is inside when its end of message was sent inside the window.
    inside = [us for t, us in lat if t_hup <= t <= window_end]
    outside = [us for t, us in lat if not (t_hup <= t <= window_end)]
    # A control: a window as long (or as long as fits), ending half a second before the
    # SIGHUP, against the rest. Its ratio shows how much p99 moves between stretches of the
    # same run anyway.
    first = min((t for t, _ in lat), default=t_hup)
    c_end = t_hup - 0.5
    c_start = max(c_end - (window_end - t_hup), first + 0.5)
    if c_end - c_start >= 1.0:
        control = [us for t, us in lat if c_start <= t <= c_end]
        rest = [us for t, us in lat if not (c_start <= t <= c_end or t_hup <= t <= window_end)]
        rec.update(control_n=len(control), p99_control_us=percentile(control, 99),
                   p99_control_rest_us=percentile(rest, 99))
    rec.update(inside_n=len(inside), outside_n=len(outside),
               p99_inside_us=percentile(inside, 99), p99_outside_us=percentile(outside, 99),
               p50_inside_us=percentile(inside, 50), p50_outside_us=percentile(outside, 50))
    if not rec["ok"]:
        rec["problem"] = describe_failure(rec)
    elif len(inside) < 100:
        rec["ok"] = False
        rec["problem"] = f"only {len(inside)} messages inside the generation window"
    results.append(rec)
    done = rec["generation_done_after_s"]
    L.log(f"rotation: {len(gen_in_load)} RSA-4096 keys generated in the {rec['window_s']:.2f} s "
          f"window" + ("" if finished else " (NOT finished while the load ran; done "
                       + ("never" if done is None else f"{done:.1f} s after SIGHUP") + ")")
          + f"; rotation thread CPU {idle_cpu:.2f} s"
          + f"; p99 inside {fmt_ms(rec['p99_inside_us'])} ms ({len(inside)} msgs), outside "
          f"{fmt_ms(rec['p99_outside_us'])} ms ({len(outside)} msgs)"
          + ("" if rec["ok"] else f" FAILED: {rec['problem']}"))


# --- the report ----------------------------------------------------------------------------
def fmt_ms(us, digits=2):
    return "n/a" if us is None else f"{us / 1000:.{digits}f}"


def fmt_rate(x):
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


FAILED = "failed"  # a target whose runs did not all pass


class Cell:
    """The runs of one filter in one cell: medians, or FAILED when any run failed."""

    def __init__(self, recs):
        self.recs = recs
        self.failed = [r for r in recs if not r["ok"]]
        ok = [r for r in recs if r["ok"]]
        js = [r["json"] for r in ok if r.get("json")]
        self.n = len(recs)
        self.rate = None if self.failed or not ok else med(
            [r.get("msgs_per_s") if "msgs_per_s" in r else r["json"]["msgs_per_s"] for r in ok])
        self.p50 = None if self.failed else med([j["p50_us"] for j in js])
        self.p99 = None if self.failed else med([j["p99_us"] for j in js])
        self.cpu = None if self.failed else med([r.get("cpu_per_msg_s") for r in ok])

    def show_rate(self):
        if not self.recs:
            return "—"
        return f"**FAILED** ({len(self.failed)}/{self.n})" if self.failed else fmt_rate(self.rate)

    def show(self, value, f):
        if not self.recs:
            return "—"
        return "**FAILED**" if self.failed else f(value)


def select(results, **kw):
    return [r for r in results if all(r.get(k) == v for k, v in kw.items())]


def render(data):
    res, meta = data["results"], data["meta"]
    plan = meta["plan"]
    facts = meta["facts"]
    out = []
    w = out.append
    targets = []  # (what, measured, met: True/False/None)

    w("# Performance: dkimrotor side by side with OpenDKIM")
    w("")
    w(f"Generated by `{meta['command']}` on {meta['date']} (took {meta['took_min']:.0f} min). "
      "Do not edit by hand: run `scripts/perf` again.")
    if plan["quick"] or meta["sections"] != SECTIONS:
        w("")
        w(f"**This is a partial run** (quick: {plan['quick']}, sections: "
          f"{', '.join(meta['sections'])}): its figures are indicative only.")
    w("")
    w("Every figure comes from one run of `scripts/perf` on the machine below. dkimrotor, "
      "OpenDKIM and a do-nothing libmilter filter run side by side on the same machine and "
      "are measured in turn, cell by cell, and the whole set of cells is run "
      f"{plan['repeat']} time{'s' * (plan['repeat'] > 1)}; tables quote the median of the repetitions and ratios of "
      "medians. A run in which any message came back unsigned, tempfailed, with a bad "
      "signature or an error is shown as **FAILED**, never averaged in. The load generator, "
      "Postfix and the milters share the machine's cores, so absolute figures depend on it; "
      "the ratios measured in the same run mean more.")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("| --- | --- |")
    for k, label in [("cpu", "CPU"), ("cores", "cores (online)"), ("memory", "memory"),
                     ("os", "OS"), ("kernel", "kernel"), ("openssl", "OpenSSL"),
                     ("postfix", "Postfix"), ("opendkim", "OpenDKIM"), ("knot", "Knot"),
                     ("dkimrotor", "dkimrotor commit"), ("build_type", "dkimrotor build")]:
        w(f"| {label} | {facts.get(k, '')} |")
    w(f"| load average (1, 5, 15 min) | {meta.get('loadavg_start', '')} at the start, "
      f"{meta.get('loadavg_end', '')} at the end: others' work on the machine shows here |")
    others = [r["others_cores"] for r in res if r.get("section") == "milter"
              and r.get("others_cores") is not None]
    if others:
        w(f"| CPU used by other processes during the milter runs | median "
          f"{statistics.median(others):.2f}, max {max(others):.2f} of {facts.get('cores')} cores "
          "(all busy time in /proc/stat less the filter's and the load generator's) |")
    if meta.get("rsa2048_sps"):
        w(f"| RSA-2048 signature | {1e6 / meta['rsa2048_sps']:,.0f} µs "
          f"(`{meta['rsa2048_cmd']}`) |")
    if meta.get("sha256_bps"):
        w(f"| SHA-256 | {meta['sha256_bps'] / 1e6:,.0f} MB/s (`{meta['sha256_cmd']}`) |")
    w("")

    body = []  # sections after the target table
    b = body.append

    # 1. milter matrix
    mil = select(res, section="milter")
    if mil:
        b("## 1. The milter protocol, side by side")
        b("")
        b("`dkimrotor_milter_load` speaks the MTA side of the milter protocol, as Postfix "
          "does, to each filter over TCP on 127.0.0.1: CONNECT and HELO once per connection, "
          "then per message MAIL, RCPT, DATA, 7 header fields (From, To, Subject, Date, "
          "Message-ID, MIME-Version, Content-Type), the body in 65,535-byte chunks and end of "
          "message. Mode **mta** uses a socket as Postfix does (Nagle, delayed ACKs); mode "
          "**capacity** sets TCP_NODELAY and TCP_QUICKACK so the figure is the filter's own "
          "cost. After the timed phase every signature is verified against the key records "
          "(and the do-nothing filter's header checked). msg/s is over all connections; p50 "
          "and p99 are the end-of-message latency (from the last body byte to the final "
          "reply); CPU/msg is the filter process's utime+stime from /proc/PID/stat over the "
          "run (warm-up included) divided by the messages it handled. Ratios are dkimrotor's "
          "msg/s over the other's.")
        b("")
        b("```")
        for f in FILTERS:
            r = next((r for r in mil if r["filter"] == f and r["body"] == "1k"), None)
            if r:
                b(command_line(r["argv"], FakeLab(meta)))
        r10 = next((r for r in mil if r["body"] == "10m"), None)
        if r10:
            b(command_line(r10["argv"], FakeLab(meta)) + "   # 10 MiB: a message count per "
              "connection, aimed at a few seconds")
        b("```")
        b("")
        for body_size in BODIES:
            rows = [r for r in mil if r["body"] == body_size]
            if not rows:
                continue
            grid = []
            for mode in MODES:
                for c in CONNECTIONS:
                    cells = {f: Cell(select(rows, filter=f, mode=mode, connections=c))
                             for f in FILTERS}
                    if any(x.recs for x in cells.values()):
                        grid.append((mode, c, cells["dkimrotor"], cells["opendkim"], cells["null"]))
            b(f"### Body {BODY_LABEL[body_size]}: messages per second")
            b("")
            b("| mode | conns | dkimrotor | OpenDKIM | do-nothing | dkimrotor / OpenDKIM | "
              "dkimrotor / do-nothing |")
            b("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            for mode, c, d, o, n in grid:
                b(f"| {mode} | {c} | {d.show_rate()} | {o.show_rate()} | {n.show_rate()} | "
                  f"{fmt_ratio(ratio(d.rate, o.rate))} | {fmt_ratio(ratio(d.rate, n.rate))} |")
            b("")
            b(f"### Body {BODY_LABEL[body_size]}: end-of-message latency p50 / p99 (ms) and CPU "
              "per message (µs)")
            b("")
            b("| mode | conns | dkimrotor p50 / p99 | OpenDKIM p50 / p99 | do-nothing p50 / p99 | "
              "dkimrotor CPU | OpenDKIM CPU | do-nothing CPU |")
            b("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for mode, c, d, o, n in grid:
                lat = [x.show(None, lambda _, x=x: f"{fmt_ms(x.p50)} / {fmt_ms(x.p99)}")
                       for x in (d, o, n)]
                cpu = [x.show(x.cpu, lambda v: "n/a" if v is None else f"{v * 1e6:,.0f}")
                       for x in (d, o, n)]
                b(f"| {mode} | {c} | {' | '.join(lat)} | {' | '.join(cpu)} |")
            b("")
            if body_size == "1k":
                b("In mta mode OpenDKIM's end-of-message latency sits near 40 ms whatever the "
                  "load: a TCP delayed-ACK stall, which disappears in capacity mode, where the "
                  "load generator acknowledges at once. dkimrotor avoids it on a Postfix-like "
                  "socket (README, *Speed*).")
                b("")
            if body_size == "10m":
                b("dkimrotor asks for no reply per body chunk, so the load generator sends the "
                  "whole body without waiting and the hashing still queued behind it shows in "
                  "dkimrotor's end-of-message latency. OpenDKIM does its hashing before the end "
                  "of message, so its latency stays low while its messages per second do not.")
                b("")
            sps = meta.get("rsa2048_sps")
            if body_size == "1k" and sps:
                d = Cell(select(rows, filter="dkimrotor", mode="capacity", connections=4))
                n = Cell(select(rows, filter="null", mode="capacity", connections=4))
                if d.cpu and n.cpu:
                    b(f"Where the CPU goes (capacity, 4 connections): the do-nothing filter "
                      f"spends {n.cpu * 1e6:,.0f} µs per message in libmilter, dkimrotor "
                      f"{d.cpu * 1e6:,.0f} µs. Of the {(d.cpu - n.cpu) * 1e6:,.0f} µs "
                      f"between them, one RSA-2048 signature takes {1e6 / sps:,.0f} µs "
                      f"(`{meta['rsa2048_cmd']}`). With the load generator on the same "
                      "cores, a signer cannot come near the do-nothing filter's rate when a "
                      "signature costs more CPU than the whole do-nothing message.")
                    b("")
        # Targets from the matrix.
        for c in (4, 16):
            cells = {f: Cell(select(mil, filter=f, body="1k", mode="capacity", connections=c))
                     for f in FILTERS}
            d, o, n = cells["dkimrotor"], cells["opendkim"], cells["null"]
            if d.recs and o.recs:
                r = ratio(d.rate, o.rate)
                targets.append((f"milter capacity, 1 KiB, {c} connections: ≥ 2× OpenDKIM",
                                f"{fmt_ratio(r)} ({d.show_rate()} vs {o.show_rate()} msg/s)",
                                FAILED if d.failed or o.failed else
                                None if r is None else r >= 2))
            if d.recs and n.recs:
                r = ratio(d.rate, n.rate)
                targets.append((f"milter capacity, 1 KiB, {c} connections: ≥ 75% of do-nothing",
                                f"{'n/a' if r is None else f'{r:.0%}'} ({d.show_rate()} vs "
                                f"{n.show_rate()} msg/s)",
                                FAILED if d.failed or n.failed else
                                None if r is None else r >= 0.75))
        big = [r for r in mil if r["body"] == "10m"]
        if big:
            worst = None
            for mode in MODES:
                for c in CONNECTIONS:
                    d = Cell(select(big, filter="dkimrotor", mode=mode, connections=c))
                    o = Cell(select(big, filter="opendkim", mode=mode, connections=c))
                    if d.recs and o.recs:
                        r = ratio(d.rate, o.rate)
                        if worst is None or r is None or (worst[0] is not None and r < worst[0]):
                            worst = (r, mode, c)
            if worst:
                r, mode, c = worst
                targets.append(("10 MiB body: ≥ 3× OpenDKIM msg/s (every cell)",
                                f"lowest {fmt_ratio(r)} ({mode}, {c} connection{'s' * (c > 1)})"
                                if r is not None else f"a run FAILED ({mode}, {c} conn.)",
                                FAILED if r is None else r >= 3))
            sha = meta.get("sha256_bps")
            if sha:
                cost = BODY_BYTES["10m"] / sha
                b("### 10 MiB: dkimrotor's CPU per message against SHA-256 of the body")
                b("")
                b(f"The SHA-256 cost of a 10 MiB body is 10 MiB divided by the rate of "
                  f"`{meta['sha256_cmd']}` in this run: {sha / 1e6:,.0f} MB/s, so "
                  f"{cost * 1e3:.2f} ms. dkimrotor's CPU per message also covers receiving "
                  "the body through libmilter, canonicalization and one RSA-2048 signature.")
                b("")
                b("The do-nothing filter's CPU per message is what libmilter itself spends "
                  "receiving the body; the last column leaves it out.")
                b("")
                b("| mode | conns | dkimrotor CPU/msg ms | OpenDKIM CPU/msg ms | do-nothing "
                  "CPU/msg ms | SHA-256 of 10 MiB ms | dkimrotor / SHA-256 | (dkimrotor − "
                  "do-nothing) / SHA-256 |")
                b("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
                worst_cpu = None
                for mode in MODES:
                    for c in CONNECTIONS:
                        d = Cell(select(big, filter="dkimrotor", mode=mode, connections=c))
                        o = Cell(select(big, filter="opendkim", mode=mode, connections=c))
                        n = Cell(select(big, filter="null", mode=mode, connections=c))
                        if not d.recs:
                            continue
                        net = (None if d.cpu is None or n.cpu is None
                               else ratio(d.cpu - n.cpu, cost))
                        r = ratio(d.cpu, cost)
                        if r is not None and (worst_cpu is None or r > worst_cpu[0]):
                            worst_cpu = (r, mode, c, d.cpu)
                        b(f"| {mode} | {c} | {d.show(d.cpu, lambda v: f'{v * 1e3:.2f}')} | "
                          f"{o.show(o.cpu, lambda v: f'{v * 1e3:.2f}')} | "
                          f"{n.show(n.cpu, lambda v: f'{v * 1e3:.2f}')} | {cost * 1e3:.2f} | "
                          f"{fmt_ratio(r)} | {fmt_ratio(net)} |")
                b("")
                if worst_cpu:
                    r, mode, c, v = worst_cpu
                    targets.append(("10 MiB body: dkimrotor CPU/msg ≤ 2× SHA-256 of the body "
                                    "(every cell)",
                                    f"highest {fmt_ratio(r)}: {v * 1e3:.2f} ms vs "
                                    f"{cost * 1e3:.2f} ms ({mode}, {c} conn.)", r <= 2))

    # 2. Postfix
    pf = select(res, section="postfix")
    if pf:
        b("## 2. Behind a real Postfix")
        b("")
        b("smtp-source sends 1 KiB messages to a private Postfix 3.7 instance on 127.0.0.1 "
          "(own main.cf and master.cf, no chroot) whose `smtpd_milters` is the filter, with "
          "`milter_default_action = tempfail`; Postfix relays everything to `smtp-sink`. "
          "smtp-source opens one SMTP session per message (no `-d`), so each message is also "
          "one milter connection. msg/s is the messages divided by smtp-source's wall time. "
          "Afterwards every message must have reached the sink with exactly one DKIM-Signature "
          "(the do-nothing filter: its header; no milter: nothing), a sample of 10 is verified "
          "with dkimpy against the key records, and dkimrotor's audit log must have one new "
          "line per message.")
        b("")
        b("```")
        for s in sorted({r["sessions"] for r in pf}):
            r = next(r for r in pf if r["sessions"] == s)
            b(command_line(r["argv"], FakeLab(meta)))
        b("```")
        b("")
        kinds = [k for k in ["dkimrotor", "opendkim", "null", "none"]
                 if any(r["filter"] == k for r in pf)]
        b("| sessions | messages | " + " | ".join(f"{LABEL[k]} msg/s" for k in kinds)
          + " | dkimrotor / OpenDKIM | dkimrotor / no milter |")
        b("| ---: | ---: | " + " | ".join("---:" for _ in kinds) + " | ---: | ---: |")
        for s in sorted({r["sessions"] for r in pf}):
            cells = {k: Cell(select(pf, filter=k, sessions=s)) for k in kinds}
            n = next(r["messages"] for r in pf if r["sessions"] == s)
            d, o, none = cells.get("dkimrotor"), cells.get("opendkim"), cells.get("none")
            b(f"| {s} | {n} | " + " | ".join(cells[k].show_rate() for k in kinds)
              + f" | {fmt_ratio(ratio(d and d.rate, o and o.rate))} | "
              f"{fmt_ratio(ratio(d and d.rate, none and none.rate))} |")
            if s == 1 and d and o:
                r = ratio(d.rate, o.rate)
                targets.append(("behind Postfix, 1 session, 1 KiB: ≥ 5× OpenDKIM msg/s",
                                f"{fmt_ratio(r)} ({d.show_rate()} vs {o.show_rate()} msg/s)",
                                FAILED if d.failed or o.failed else
                                None if r is None else r >= 5))
        b("")

    # 3. memory
    m100 = select(res, section="memory100")
    m1m = select(res, section="memory1m")
    if m100 or m1m:
        b("## 3. Memory")
        b("")
    if m100:
        b("Each filter first signs 200 messages of 1 KiB, then rests for a second: its VmRSS "
          "then is the idle figure. VmHWM (peak RSS) is reset to the current RSS "
          "(`echo 5 > /proc/PID/clear_refs`) and the filter gets one message with a 100 MiB "
          "body; the peak is VmHWM afterwards.")
        b("")
        b("```")
        b(command_line(m100[0]["argv"], FakeLab(meta)))
        b("```")
        b("")
        b("| filter | idle RSS MiB | peak RSS with a 100 MiB message MiB | peak − idle MiB | "
          "RSS afterwards MiB | peak since start (before the reset) MiB | result |")
        b("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in m100:
            b(f"| {LABEL[r['filter']]} | {r['idle_kib'] / 1024:.1f} | {r['peak_kib'] / 1024:.1f} | "
              f"{(r['peak_kib'] - r['idle_kib']) / 1024:.1f} | {r['after_kib'] / 1024:.1f} | "
              f"{r.get('hwm_before_kib', 0) / 1024:.1f} | "
              f"{'ok' if r['ok'] else '**FAILED**: ' + r.get('problem', '')} |")
            if r["filter"] == "dkimrotor":
                grow = (r["peak_kib"] - r["idle_kib"]) / 1024
                targets.append(("100 MiB message: dkimrotor peak RSS ≤ idle + 8 MiB",
                                f"+{grow:.1f} MiB ({r['idle_kib'] / 1024:.1f} → "
                                f"{r['peak_kib'] / 1024:.1f} MiB)"
                                + ("" if r["peak_reset"] else "; peak since start: VmHWM "
                                   "could not be reset"),
                                r["ok"] and grow <= 8))
        b("")
    for r in m1m:
        s = r["samples"]
        total = r["json"]["messages"] if r.get("json") else None
        b(f"dkimrotor's VmRSS while it signs {plan['memory_total']:,} messages of 1 KiB "
          f"(4 connections, capacity mode), read whenever its audit log passed another "
          f"{plan['memory_step']:,} lines. The load generator ran once; "
          f"it measured {total if total is not None else 'n/a':,} messages"
          + ("" if r["ok"] else f" and **FAILED**: {r.get('problem', '')}") + ".")
        b("")
        b("```")
        b(command_line(r["argv"], FakeLab(meta)))
        b("```")
        b("")
        b("| messages signed | seconds | VmRSS MiB |")
        b("| ---: | ---: | ---: |")
        for x in s:
            b(f"| {x['messages']:,} | {x['t']:.0f} | {x['rss_kib'] / 1024:.1f} |")
        b("")
        after_first = [x for x in s if x["messages"] >= plan["memory_step"]]
        if len(after_first) >= 2:
            growth = (after_first[-1]["rss_kib"] - after_first[0]["rss_kib"]) / 1024
            spread = (max(x["rss_kib"] for x in after_first)
                      - min(x["rss_kib"] for x in after_first)) / 1024
            targets.append((f"RSS flat over {plan['memory_total']:,} messages "
                            f"(≤ 1 MiB growth after the first {plan['memory_step']:,})",
                            f"{growth:+.1f} MiB from {after_first[0]['messages']:,} to "
                            f"{after_first[-1]['messages']:,} (spread {spread:.1f} MiB)",
                            r["ok"] and growth <= 1.0))

    # 4. rotation
    rot = select(res, section="rotation")
    if rot:
        b("## 4. Key generation under load")
        b("")
        b(f"A capacity run with {plan.get('rotation_connections', 4)} connection(s) and 1 KiB bodies keeps dkimrotor busy; "
          f"{plan['rotation_hup_after']} s in, its configuration gains a domain with "
          "rsa-sha256, 4096 bits, active_keys 1 and prepublish 1 (the same nsupdate hook), and "
          "the daemon gets SIGHUP. Its rotation thread then generates two RSA-4096 keys. The "
          "generation window runs from the SIGHUP to the daemon's second `generated rsa-sha256 "
          "key ...` log line for that domain, or to the end of the load when the keys were not "
          "both generated by then (an idle-priority thread gets little CPU while the load "
          "keeps every core busy; the table then says when generation did finish, and how much "
          "CPU the rotation thread had during the load). The end-of-message latencies of the load "
          "generator's `--latency-log` (send time, latency) are split by whether the end of "
          "message was sent inside the window. As a control, the same is done for a window "
          "as long (or as long as fits) that ends half a second before the SIGHUP: its ratio is how much p99 moves "
          "between stretches of one run anyway.")
        pol = rot[0].get("thread_policies")
        if pol:
            b("")
            b("Scheduling policies of dkimrotor's threads during the run: "
              + ", ".join(f"{n} × {p}" for p, n in sorted(pol.items())) + "."
              + ("" if "SCHED_IDLE" in pol else " No thread runs at SCHED_IDLE: key "
                 "generation competes with signing at normal priority."))
        b("")
        b("```")
        b(command_line(rot[0]["argv"], FakeLab(meta)))
        b("```")
        b("")
        b("| run | keys generated in the window | window s | rotation thread CPU s | msgs inside "
          "| p50 / p99 inside ms | msgs outside | p50 / p99 outside ms | p99 inside / outside | "
          "control: p99 window / rest | result |")
        b("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in rot:
            rr = ratio(r["p99_inside_us"], r["p99_outside_us"])
            cr = ratio(r.get("p99_control_us"), r.get("p99_control_rest_us"))
            control = ("n/a" if cr is None else f"{fmt_ms(r['p99_control_us'])} / "
                       f"{fmt_ms(r['p99_control_rest_us'])} = {fmt_ratio(cr)}")
            done = r.get("generation_done_after_s")
            unfinished = ("" if r["generation_finished"] else
                          " (load ended at " + f"{r.get('load_end_after_s', 0):.1f} s; both "
                          + ("never" if done is None else f"done at {done:.1f} s") + ")")
            idle = r.get("idle_thread_cpu_s")
            b(f"| {r['rep'] + 1} | {r['keys_generated']}{unfinished} | {r['window_s']:.2f} | "
              f"{'n/a' if idle is None else f'{idle:.2f}'} | "
              f"{r['inside_n']:,} | {fmt_ms(r['p50_inside_us'])} / {fmt_ms(r['p99_inside_us'])} | "
              f"{r['outside_n']:,} | {fmt_ms(r['p50_outside_us'])} / "
              f"{fmt_ms(r['p99_outside_us'])} | {fmt_ratio(rr)} | {control} | "
              f"{'ok' if r['ok'] else '**FAILED**: ' + r.get('problem', '')} |")
        b("")
        ok = [r for r in rot if r["ok"]]
        rr = med([ratio(r["p99_inside_us"], r["p99_outside_us"]) for r in ok])
        unfinished = [r for r in rot if not r["generation_finished"]]
        targets.append(("RSA-4096 generation under load moves p99 by < 10%",
                        ("n/a" if rr is None else f"{(rr - 1) * 100:+.1f}% (median of "
                         f"{len(ok)} run{'s' * (len(ok) > 1)})")
                        + (f"; generation unfinished in {len(unfinished)} run(s)"
                           if unfinished else ""),
                        None if rr is None or len(ok) < len(rot) else rr < 1.10))

    # Targets first, then the sections.
    w("## Targets")
    w("")
    w("| target | measured | |")
    w("| --- | --- | --- |")
    for what, measured, met in targets:
        verdict = ("**FAILED**: see Failed runs" if met is FAILED else "met" if met is True
                   else "**missed**" if met is False else "n/a")
        w(f"| {what} | {measured} | {verdict} |")
    if not targets:
        w("| (no section was run) | | |")
    w("")
    out.extend(body)

    failed = [r for r in res if not r.get("ok")]
    w("## Failed runs")
    w("")
    if not failed:
        w("None: every run passed its checks.")
    for r in failed:
        where = ", ".join(f"{k} {r[k]}" for k in ("filter", "body", "connections", "mode",
                                                    "sessions", "rep") if k in r)
        w(f"- {r['section']} ({where}): {r.get('problem', '')}")
    w("")
    w("## Reproducing")
    w("")
    w("```sh")
    w("scripts/perf                      # everything, about 25 minutes on 2 cores")
    w("scripts/perf --quick              # one short repetition of everything, for development")
    w("scripts/perf --only milter,memory # some sections (written to $BUILD_DIR/perf/)")
    w("```")
    w("")
    w("`scripts/perf` builds a Release tree in `build-perf/` (or `$BUILD_DIR`) with "
      "`-DDKIMROTOR_BENCH=ON` and runs `tests/bench/perf.py`, which starts everything it "
      "needs from `tests/bench/perf_lab.py` on 127.0.0.1 and free ports in a temporary "
      "folder: Knot serving the test zone, `dkimrotor run` (rsa-sha256, 2048 bits, "
      "active_keys 1, keys activated with `dkimrotor rotate`, audit log on), `opendkim -f` "
      "(one 2048-bit key from opendkim-genkey, Mode s, relaxed/relaxed, the same SignHeaders "
      "and OversignHeaders as dkimrotor's defaults), the do-nothing filter, smtp-sink and "
      "private Postfix instances. The raw results of this run are in "
      "`$BUILD_DIR/perf/results.json`; `perf.py --render FILE` rewrites the report from them.")
    w("")
    return "\n".join(out)


class FakeLab:
    """What command_line needs, rebuilt from the saved metadata."""

    def __init__(self, meta):
        self.build = meta["build"]
        self.tmp = meta["lab"]


# --- main ----------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", help="the build directory (Release, -DDKIMROTOR_BENCH=ON)")
    ap.add_argument("--repeat", type=int, default=0, help="repetitions (3; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="short runs, for development")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--bodies", default=",".join(BODIES), help="milter: body sizes")
    ap.add_argument("--connections", default=",".join(map(str, CONNECTIONS)),
                    help="milter: connection counts")
    ap.add_argument("--modes", default=",".join(MODES), help="milter: modes")
    ap.add_argument("--output", help="the report (default docs/PERFORMANCE.md for a full run, "
                                     "$BUILD_DIR/perf/PERFORMANCE.md otherwise)")
    ap.add_argument("--render", metavar="RESULTS", help="only rewrite the report from a "
                                                        "results.json")
    ap.add_argument("--keep", action="store_true", help="keep the lab's temporary folders")
    args = ap.parse_args()

    if args.render:
        data = json.load(open(args.render))
        out = args.output or os.path.join(os.path.dirname(os.path.abspath(args.render)),
                                          "PERFORMANCE.md")
        with open(out, "w") as f:
            f.write(render(data))
        print(f"wrote {out}")
        return 0
    if not args.build:
        ap.error("--build is required")
    if os.geteuid() != 0:
        print("perf.py needs root: Postfix drops to its mail_owner and smtp-sink to postfix",
              file=sys.stderr)
        return 2
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {SECTIONS}")
    sections = [s for s in SECTIONS if s in sections]
    bodies = args.bodies.split(",")
    conns = [int(c) for c in args.connections.split(",")]
    modes = args.modes.split(",")
    plan = Plan(args.quick, args.repeat)
    build = os.path.abspath(args.build)
    results_dir = os.path.join(build, "perf")
    os.makedirs(results_dir, exist_ok=True)
    full = (sections == SECTIONS and not args.quick and bodies == BODIES and conns == CONNECTIONS
            and modes == MODES)
    output = args.output or (os.path.join(L.SOURCE_DIR, "docs", "PERFORMANCE.md") if full
                             else os.path.join(results_dir, "PERFORMANCE.md"))

    started = time.time()
    results = []
    meta = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "command": "scripts/perf " + " ".join(sys.argv[1:]).replace(f"--build {args.build}", "").strip(),
            "facts": machine_facts(build), "plan": vars(plan), "sections": sections,
            "build": build, "loadavg_start": loadavg()}
    meta["command"] = meta["command"].strip()
    L.log(f"sections {', '.join(sections)}; repeat {plan.repeat}; report -> {output}")

    def save():
        meta["took_min"] = (time.time() - started) / 60
        meta["loadavg_end"] = loadavg()
        data = {"meta": meta, "results": results}
        with open(os.path.join(results_dir, "results.json"), "w") as f:
            json.dump(data, f, indent=1)
        os.makedirs(os.path.dirname(output), exist_ok=True)
        with open(output, "w") as f:
            f.write(render(data))

    status = 0
    with L.Lab(build, keep=args.keep) as lab:
        meta["lab"] = lab.tmp
        try:
            if "milter" in sections:
                meta["sha256_bps"], argv = openssl_sha256(plan.sha_seconds)
                meta["sha256_cmd"] = shlex.join([a for a in argv if a != "-mr"])
                L.log(f"SHA-256: {meta['sha256_bps'] / 1e6:,.0f} MB/s")
                meta["rsa2048_sps"], argv = openssl_rsa2048(plan.sha_seconds)
                meta["rsa2048_cmd"] = shlex.join([a for a in argv if a != "-mr"])
                L.log(f"RSA-2048: {meta['rsa2048_sps']:,.0f} signatures/s")
            zones = [L.DOMAIN] + [f"r{i}.{ROTATION_DOMAIN}" for i in range(plan.repeat)]
            knot = L.Knot(lab, zones)
            dkimrotor = L.Dkimrotor(lab, knot)
            opendkim = L.OpenDkim(lab)
            null = L.NullFilter(lab)
            parts = [dkimrotor, opendkim, null]
            loader = Loader(lab)
            needs_load = [s for s in sections if s != "postfix"]
            if needs_load and not loader.available():
                L.log(f"{loader.binary} is missing: skipping {', '.join(needs_load)}")
                meta["skipped"] = needs_load
                sections = [s for s in sections if s == "postfix"]
                meta["sections"] = sections
            if "milter" in sections:
                run_milter(lab, loader, parts, plan, results, bodies, conns, modes)
                save()
            if "postfix" in sections:
                run_postfix(lab, parts, plan, results)
                save()
            if "memory" in sections:
                run_memory(lab, loader, parts, plan, results, dkimrotor)
                save()
            if "rotation" in sections:
                for rep in range(plan.repeat):
                    run_rotation(lab, loader, plan, results, dkimrotor, rep)
                    time.sleep(2)
                save()
        except KeyboardInterrupt:
            L.log("interrupted: stopping everything")
            status = 130
        finally:
            if results:
                save()
    if results:
        L.log(f"wrote {output} and {os.path.join(results_dir, 'results.json')}")
    failed = [r for r in results if not r.get("ok")]
    if failed:
        L.log(f"{len(failed)} run(s) FAILED: see the report's 'Failed runs'")
    return status


if __name__ == "__main__":
    sys.exit(main())
