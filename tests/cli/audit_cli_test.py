#!/usr/bin/python3
"""`dkimrotor audit` as a process, on reports written here: plain .xml, .xml.gz and .zip (told
apart by their bytes), the JSON shape, exit codes, and hostile inputs (malformed XML, entity
expansion, gzip and zip bombs, oversized and wrongly dated reports), each answered with a
message naming the file while the other reports are still read.

usage: audit_cli_test.py --dkimrotor PATH
Prints one line per failed check and a closing 'N passed, M failed' line.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

DAY = 86400
T0 = 1764028800  # 2025-11-25T00:00:00Z, the reports' day
MIB = 1 << 20


class Context:
    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.dir = workdir
        keystore = workdir / "keystore"
        keystore.mkdir()
        self.config = workdir / "dkimrotor.conf"
        self.config.write_text(
            f'keystore: {{ directory = "{keystore}"; }};\n'
            'domains = ( { domain = "example.test"; stream = "mta1"; } );\n')

        def key(selector, state, created, activated=None, retired=None, revoked=None):
            k = {"domain": "example.test", "selector": selector, "algorithm": "rsa-sha256",
                 "bits": 2048, "state": state, "created": created, "state_since": created,
                 "public_key": ""}
            for name, value in (("activated", activated), ("retired", retired), ("revoked", revoked)):
                if value is not None:
                    k[name] = value
            return k

        (keystore / "state.json").write_text(json.dumps({"version": 1, "keys": [
            key("mta1-live", "active", T0 - 30 * DAY, T0 - 29 * DAY),
            key("mta1-gone", "revoked", T0 - 90 * DAY, T0 - 89 * DAY, T0 - 40 * DAY, T0 - 20 * DAY),
        ]}))

    def run(self, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), "audit", *args], capture_output=True, text=True,
                              timeout=timeout)

    def audit(self, *reports: Path, json_out: bool = False) -> subprocess.CompletedProcess:
        return self.run("-c", str(self.config), *(["--json"] if json_out else []), *map(str, reports))


def report(records: list[tuple[int, list[tuple[str, str, str]]]], domain: str = "example.test",
           begin: int = T0, end: int = T0 + DAY - 1, org: str = "google.com", prolog: str = "") -> bytes:
    rows = []
    for count, dkims in records:
        auth = "".join(f"<dkim><domain>{d}</domain><selector>{s}</selector><result>{r}</result></dkim>"
                       for d, s, r in dkims)
        rows.append(f"<record><row><source_ip>192.0.2.1</source_ip><count>{count}</count>"
                    f"<policy_evaluated><disposition>none</disposition></policy_evaluated></row>"
                    f"<identifiers><header_from>{domain}</header_from></identifiers>"
                    f"<auth_results>{auth}<spf><domain>{domain}</domain><result>pass</result></spf>"
                    f"</auth_results></record>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}<feedback><report_metadata>'
            f"<org_name>{org}</org_name><email>noreply@{org}</email><report_id>42</report_id>"
            f"<date_range><begin>{begin}</begin><end>{end}</end></date_range></report_metadata>"
            f"<policy_published><domain>{domain}</domain><p>none</p></policy_published>"
            + "".join(rows) + "</feedback>\n").encode()


PASSING = report([(10, [("example.test", "mta1-live", "pass")])])


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def write(ctx: Context, name: str, data: bytes) -> Path:
    path = ctx.dir / name
    path.write_bytes(data)
    return path


def expect_refused(r: subprocess.CompletedProcess, path: Path, reason: str) -> None:
    expect(r.returncode == 1, f"exit {r.returncode}, want 1: {r.stderr}")
    expect(f"dkimrotor audit: {path}" in r.stderr and reason in r.stderr,
           f"want '{path}: ...{reason}' on stderr, got: {r.stderr}")


def test_plain_xml_passing_exits_0_with_the_json_shape(ctx: Context) -> None:
    r = ctx.audit(write(ctx, "pass.xml", PASSING), json_out=True)
    expect(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
    out = json.loads(r.stdout)
    expect(list(out) == ["domains"], r.stdout)
    d = out["domains"][0]
    expect(list(d) == ["domain", "selectors"] and d["domain"] == "example.test", r.stdout)
    s = d["selectors"][0]
    expect(list(s) == ["selector", "managed", "state", "messages", "pass", "fail", "findings"], r.stdout)
    expect(s == {"selector": "mta1-live", "managed": True, "state": "active", "messages": 10,
                 "pass": 10, "fail": 0, "findings": []}, r.stdout)


def test_gzip_failing_unknown_and_revoked_selectors_are_findings(ctx: Context) -> None:
    data = report([(7, [("example.test", "mta1-live", "pass")]),
                   (3, [("example.test", "mta1-live", "fail"), ("example.test", "s1", "pass")]),
                   (2, [("example.test", "mta1-gone", "pass")])])
    # The name says nothing: the bytes tell gzip.
    path = write(ctx, "report.bin", gzip.compress(data))
    r = ctx.audit(path, json_out=True)
    expect(r.returncode == 1, f"exit {r.returncode}: {r.stderr}")
    sel = {s["selector"]: s for s in json.loads(r.stdout)["domains"][0]["selectors"]}
    expect(sel["mta1-live"]["messages"] == 10 and sel["mta1-live"]["fail"] == 3, r.stdout)
    expect(sel["mta1-live"]["findings"][0].startswith("failing at receivers: 3 of 10"), r.stdout)
    expect(sel["s1"]["managed"] is False and sel["s1"]["state"] is None, r.stdout)
    expect("not managed by dkimrotor" in sel["s1"]["findings"][0], r.stdout)
    expect(sel["mta1-gone"]["state"] == "revoked", r.stdout)
    expect(sel["mta1-gone"]["findings"][0].startswith("signing after revocation"), r.stdout)
    text = ctx.audit(path)
    expect("finding: s1: not managed by dkimrotor" in text.stdout, text.stdout)


def test_zip_reads_only_regular_xml_entries_and_merges_reports(ctx: Context) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("google.com!example.test!1764028800!1764115199.xml", PASSING)
        z.writestr("yahoo.xml", report([(5, [("example.test", "mta1-live", "pass")])], org="yahoo.com"))
        z.writestr("readme.txt", b"not a report")
        link = zipfile.ZipInfo("link.xml")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)
        z.writestr(link, "/etc/passwd")
    path = write(ctx, "reports.zip", buf.getvalue())
    r = ctx.audit(path, json_out=True)
    expect(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
    s = json.loads(r.stdout)["domains"][0]["selectors"][0]
    expect(s["messages"] == 15 and s["pass"] == 15, r.stdout)


def test_other_domain_is_one_line_and_skipped(ctx: Context) -> None:
    r = ctx.audit(write(ctx, "other.xml", report([(5, [("other.test", "x", "fail")])], domain="other.test")))
    expect(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
    expect("other.test, which is not configured here: skipped" in r.stdout, r.stdout)


def test_malformed_report_is_named_and_the_others_still_read(ctx: Context) -> None:
    bad = write(ctx, "bad.xml", b"<feedback><report_metadata></feedback>")
    good = write(ctx, "good.xml", PASSING)
    r = ctx.audit(bad, good, json_out=True)
    expect_refused(r, bad, "not well-formed XML")
    expect(json.loads(r.stdout)["domains"][0]["selectors"][0]["messages"] == 10, r.stdout)


def test_billion_laughs_is_not_expanded(ctx: Context) -> None:
    dtd = '<!DOCTYPE feedback [\n<!ENTITY lol "lol">\n'
    for i in range(1, 10):
        ref = "&lol;" if i == 1 else f"&lol{i - 1};"
        dtd += f'<!ENTITY lol{i} "{ref * 10}">\n'
    dtd += "]>\n"
    path = write(ctx, "laughs.xml", report([(1, [("other.test", "s", "pass")])], domain="other.test",
                                           org="&lol9;", prolog=dtd))
    start = time.monotonic()
    r = ctx.audit(path)
    expect(time.monotonic() - start < 10, "took too long: entities expanded?")
    expect(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
    expect("report from &lol9; (report 42" in r.stdout, f"entity expanded or lost: {r.stdout[:300]}")


def test_gzip_bomb_stops_at_the_cap(ctx: Context) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(16 * MIB)
    parts = [comp.compress(zeros) for _ in range(64)]  # 1 GiB of zeros, about 1 MiB compressed
    path = write(ctx, "bomb.xml.gz", b"".join(parts) + comp.flush())
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = ctx.audit(path, write(ctx, "good.xml", PASSING))
    expect_refused(r, path, "decompresses to more than 50 MiB (the limit): refused as a possible decompression bomb")
    expect("mta1-live" in r.stdout, "the good report was not read after the bomb")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    expect(rss < 600 * 1024 or rss == before, f"max RSS {rss} KiB: the bomb was not stopped early")


def test_zip_bomb_is_refused_by_its_header(ctx: Context) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.xml", bytes(200 * MIB))
    path = write(ctx, "bomb.zip", buf.getvalue())
    expect_refused(ctx.audit(path), path, "refused before inflating")


def test_zip_bomb_with_lying_header_stops_while_inflating(ctx: Context) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.xml", bytes(200 * MIB))
    data = bytearray(buf.getvalue())
    # Claim 1000 bytes uncompressed in the local header (offset 22) and the central directory (24).
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 1000)
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)
    path = write(ctx, "liar.zip", bytes(data))
    r = ctx.audit(path)
    expect(r.returncode == 1 and f"dkimrotor audit: {path}: zip entry bomb.xml" in r.stderr,
           f"exit {r.returncode}: {r.stderr}")


def test_zip_with_too_many_entries_is_refused(ctx: Context) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i in range(65):
            z.writestr(f"r{i}.xml", PASSING)
    path = write(ctx, "many.zip", buf.getvalue())
    expect_refused(ctx.audit(path), path, "entries, over the limit of 64")


def test_huge_report_is_refused_before_reading(ctx: Context) -> None:
    path = ctx.dir / "huge.xml"
    with path.open("wb") as f:
        f.write(PASSING)
        f.truncate(51 * MIB)
    expect_refused(ctx.audit(path), path, "over the 50 MiB limit for a report")


def test_wrong_dates_are_refused(ctx: Context) -> None:
    backwards = write(ctx, "backwards.xml", report([], begin=T0 + DAY, end=T0))
    expect_refused(ctx.audit(backwards), backwards, "before it begins")
    absurd = write(ctx, "absurd.xml", report([], begin=T0, end=253402300800))  # the year 10000
    expect_refused(ctx.audit(absurd), absurd, "outside the years 2000 to 2099")


def test_missing_file_is_named(ctx: Context) -> None:
    path = ctx.dir / "nonexistent.xml"
    expect_refused(ctx.audit(path), path, "No such file")


def test_usage_errors_exit_2(ctx: Context) -> None:
    for args in ([], ["-c", str(ctx.config)], [str(ctx.dir / "x.xml")], ["-c", str(ctx.config), "--bogus", "x"]):
        r = ctx.run(*args)
        expect(r.returncode == 2, f"{args}: exit {r.returncode}: {r.stderr}")


TESTS = [v for k, v in dict(globals()).items() if k.startswith("test_")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dkimrotor", required=True, type=Path)
    args = parser.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context(args.dkimrotor.resolve(), Path(tmp))
        for test in TESTS:
            try:
                test(ctx)
                passed += 1
            except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                failed += 1
                print(f"FAIL {test.__name__}: {exc}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
