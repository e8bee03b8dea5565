#!/usr/bin/python3
"""Differential test of dkimrotor's body hash (bh=) against dkimpy.

Each case is a small message (From/To/Subject + a body where "simple" and
"relaxed" body canonicalization differ, or where line endings are odd).
It is signed with every canonicalization and both key types, and three
things are compared for the body canonicalization in use:

  1. the bh= that dkimrotor wrote;
  2. the body hash dkimpy's canonicalization code computes;
  3. the hash of the canonical body written out by hand in this file from
     RFC 6376 3.4.3/3.4.4 (plus erratum 3192: a relaxed empty body hashes
     as the empty string, a simple empty body as a single CRLF).

(2) vs (3) guards the reference itself; (1) vs (2) is the actual test.

Some inputs are read two ways by respected verifiers: whitespace at the end
of a last line that has no line ending ("text  " at EOF). dkimpy keeps one
SP there ("text \\r\\n"); Mail::DKIM strips it ("text\\r\\n"), which also
makes the hash independent of a transport adding the final CRLF. For these
"ambiguous" cases dkimrotor must match one of the two readings, and a note
says which.

Output: one "FAIL ..." line per failed check, then `N passed, M failed`.
Exit status 1 if any check failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import interop_common as ic

CRLF = b"\r\n"
LF = b"\n"


@dataclass(frozen=True)
class BodyCase:
    """A body and its canonical forms, derived by hand from RFC 6376.

    simple/relaxed: the one correct canonical body; for an ambiguous case
    `relaxed` is None and `relaxed_readings` lists the acceptable ones.
    eol: line ending of the message's header lines (LF makes a bare-LF file).
    """

    name: str
    body: bytes
    simple: bytes
    relaxed: bytes | None
    eol: bytes = CRLF
    relaxed_readings: tuple[tuple[str, bytes], ...] = ()

    def message(self) -> bytes:
        head = [b"From: Alice <alice@example.org>", b"To: bob@example.net",
                b"Subject: body hash case " + self.name.encode()]
        return b"".join(line + self.eol for line in head) + self.eol + self.body


CASES: tuple[BodyCase, ...] = (
    # Empty bodies: erratum 3192 (relaxed empty -> "", simple empty -> CRLF).
    BodyCase("empty", b"", CRLF, b""),
    BodyCase("one-crlf", CRLF, CRLF, b""),
    BodyCase("three-crlf", CRLF * 3, CRLF, b""),
    BodyCase("many-crlf", CRLF * 25, CRLF, b""),
    # Whitespace-only lines: kept by simple, emptied then dropped by relaxed.
    BodyCase("two-spaces-crlf", b"  \r\n", b"  \r\n", b""),
    BodyCase("wsp-only-lines", b" \r\n\t\r\n \t \r\n", b" \r\n\t\r\n \t \r\n", b""),
    BodyCase("tab-only-lines", b"\t\r\n\t\t\r\n", b"\t\r\n\t\t\r\n", b""),
    BodyCase("crlf-then-wsp-line", b"\r\n  \r\n", b"\r\n  \r\n", b""),
    BodyCase("wsp-line-between-text", b"a\r\n \t\r\nb\r\n", b"a\r\n \t\r\nb\r\n", b"a\r\n\r\nb\r\n"),
    # Trailing whitespace before line endings.
    BodyCase("trailing-spaces-last-line", b"text  \r\n", b"text  \r\n", b"text\r\n"),
    BodyCase("trailing-tab-last-line", b"text\t\r\n", b"text\t\r\n", b"text\r\n"),
    BodyCase("trailing-wsp-every-line", b"a \r\nb\t\r\nc \t \r\n", b"a \r\nb\t\r\nc \t \r\n",
             b"a\r\nb\r\nc\r\n"),
    BodyCase("ends-wsp-line-then-blank", b"text\r\n \r\n\r\n", b"text\r\n \r\n", b"text\r\n"),
    BodyCase("ends-wsp-crlf-crlf", b"text \r\n\r\n", b"text \r\n", b"text\r\n"),
    # Whitespace at the start of and inside lines.
    BodyCase("leading-wsp", b"  indented\r\n\tindented\r\n", b"  indented\r\n\tindented\r\n",
             b" indented\r\n indented\r\n"),
    BodyCase("inner-wsp-runs", b"a  b\t\tc \t d\r\n", b"a  b\t\tc \t d\r\n", b"a b c d\r\n"),
    # Missing final line ending: a CRLF is added (3.4.3, 3.4.4).
    BodyCase("no-final-crlf", b"text", b"text\r\n", b"text\r\n"),
    BodyCase("no-final-crlf-two-lines", b"a\r\nb", b"a\r\nb\r\n", b"a\r\nb\r\n"),
    BodyCase("no-final-crlf-after-blank", b"a\r\n\r\nb", b"a\r\n\r\nb\r\n", b"a\r\n\r\nb\r\n"),
    # Blank lines: leading and inner ones are kept, trailing ones dropped.
    BodyCase("leading-blank-lines", b"\r\n\r\ntext\r\n", b"\r\n\r\ntext\r\n", b"\r\n\r\ntext\r\n"),
    BodyCase("trailing-blank-lines", b"text\r\n" + CRLF * 10, b"text\r\n", b"text\r\n"),
    # Bare CR is an ordinary character, not a line ending and not WSP.
    BodyCase("bare-cr-inside-line", b"a\rb\r\n", b"a\rb\r\n", b"a\rb\r\n"),
    BodyCase("cr-cr-lf", b"abc\r\r\n", b"abc\r\r\n", b"abc\r\r\n"),
    BodyCase("space-before-bare-cr", b"a \r\r\n", b"a \r\r\n", b"a \r\r\n"),
    BodyCase("wsp-around-bare-cr", b"a  \r  b\r\n", b"a  \r  b\r\n", b"a \r b\r\n"),
    BodyCase("bare-cr-at-eof", b"text\r", b"text\r\r\n", b"text\r\r\n"),
    # Bare LF files: each LF is a line ending, i.e. CRLF in the canonical form.
    BodyCase("lf-text", b"text\n", b"text\r\n", b"text\r\n", LF),
    BodyCase("lf-empty", b"", CRLF, b"", LF),
    BodyCase("lf-one-blank", b"\n", CRLF, b"", LF),
    BodyCase("lf-three-blank", b"\n\n\n", CRLF, b"", LF),
    BodyCase("lf-trailing-wsp-then-blank", b"a  \n\n", b"a  \r\n", b"a\r\n", LF),
    BodyCase("lf-wsp-only-lines", b" \n\t\n", b" \r\n\t\r\n", b"", LF),
    BodyCase("lf-no-final-eol", b"a\nb", b"a\r\nb\r\n", b"a\r\nb\r\n", LF),
    BodyCase("lf-leading-and-inner-wsp", b"\t a  b \n", b"\t a  b \r\n", b" a b\r\n", LF),
    BodyCase("mixed-crlf-lf", b"a\r\nb\nc\r\n\n", b"a\r\nb\r\nc\r\n", b"a\r\nb\r\nc\r\n"),
    # Ambiguous: whitespace at the end of an unterminated last line.
    BodyCase("trailing-wsp-no-final-crlf", b"text  ", b"text  \r\n", None,
             relaxed_readings=(("dkimpy", b"text \r\n"), ("Mail::DKIM", b"text\r\n"))),
    BodyCase("wsp-only-no-final-crlf", b"   ", b"   \r\n", None,
             relaxed_readings=(("dkimpy", b" \r\n"), ("Mail::DKIM", b""))),
)


@dataclass(frozen=True)
class Context:
    binary: Path
    keys: tuple[ic.SigningKey, ...]
    tally: ic.Tally


def check_reference(ctx: Context, case: BodyCase) -> None:
    """dkimpy must agree with the hand-derived canonical forms."""
    message = case.message()
    for body_canon, expected in (("simple", case.simple), ("relaxed", case.relaxed)):
        label = f"{case.name} body={body_canon} reference"
        dkimpy = ic.dkimpy_body_hash(message, body_canon)
        if expected is not None:
            ctx.tally.check(dkimpy == ic.sha256_b64(expected), label,
                            f"dkimpy computes {dkimpy}, hand-derived canonical body "
                            f"{expected!r} hashes to {ic.sha256_b64(expected)}")
        else:
            readings = dict(case.relaxed_readings)
            ctx.tally.check(dkimpy == ic.sha256_b64(readings["dkimpy"]), label,
                            f"dkimpy computes {dkimpy}, not the expected dkimpy reading "
                            f"{readings['dkimpy']!r}")


def check_signer(ctx: Context, case: BodyCase, canonicalization: str, key: ic.SigningKey) -> None:
    message = case.message()
    body_canon = canonicalization.split("/")[1]
    label = f"{case.name} c={canonicalization} a={key.algorithm}"
    result = ic.run_signer(ctx.binary, message, (key,), canonicalization)
    if result.returncode != 0:
        ctx.tally.fail(f"{label} signer", result.describe_failure())
        return
    try:
        (signature,) = ic.split_added_signatures(result.stdout, message, 1)
    except ic.SignatureFormatError as exc:
        ctx.tally.fail(f"{label} output", str(exc))
        return
    actual = signature.tag("bh")
    canon_tag = ic.normalize_c(signature.tag("c"))
    if canon_tag != canonicalization:
        ctx.tally.fail(f"{label} c=", f"signature says c={signature.tag('c')}")
        return

    expected = ic.dkimpy_body_hash(message, body_canon, key.algorithm)
    ambiguous = body_canon == "relaxed" and case.relaxed is None
    if not ambiguous:
        ctx.tally.check(actual == expected, f"{label} bh-vs-dkimpy",
                        f"bh={actual}, dkimpy computes {expected} "
                        f"(canonical {body_canon} body {canonical_form(case, body_canon)!r})")
        return

    readings = {ic.sha256_b64(form): (who, form) for who, form in case.relaxed_readings}
    if actual in readings:
        who, form = readings[actual]
        ctx.tally.check(True, label)
        ctx.tally.note(f"ambiguous case {case.name}: dkimrotor follows the {who} reading {form!r}")
    else:
        ctx.tally.fail(f"{label} bh-ambiguous",
                       f"bh={actual} matches none of: "
                       + ", ".join(f"{who} {form!r} ({ic.sha256_b64(form)})"
                                   for who, form in case.relaxed_readings))


def guarded(ctx: Context, case: BodyCase, canonicalization: str, key: ic.SigningKey) -> None:
    """check_signer, with an unexpected exception reported as a failure."""
    try:
        check_signer(ctx, case, canonicalization, key)
    except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
        ctx.tally.fail(f"{case.name} c={canonicalization} a={key.algorithm} internal",
                       f"{type(exc).__name__}: {exc}")


def canonical_form(case: BodyCase, body_canon: str) -> bytes | None:
    return case.simple if body_canon == "simple" else case.relaxed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dkimrotor", type=Path, required=True, help="path to the dkimrotor binary")
    parser.add_argument("--jobs", type=int, default=min(4, max(2, os.cpu_count() or 2)),
                        help="parallel workers (default: 2-4 by CPU count)")
    args = parser.parse_args(argv)
    if not os.access(args.dkimrotor, os.X_OK):
        parser.error(f"{args.dkimrotor} is not an executable file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tally = ic.Tally()
    with tempfile.TemporaryDirectory(prefix="dkimrotor-bodyhash-") as tmp:
        keys = ic.generate_keys(Path(tmp))
        ctx = Context(args.dkimrotor.resolve(), tuple(keys.values()), tally)
        for case in CASES:
            check_reference(ctx, case)
        jobs = [(case, canon, key) for case in CASES for canon in ic.CANONICALIZATIONS for key in ctx.keys]
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: guarded(ctx, *job), jobs))
    print(f"{len(CASES)} bodies x {len(ic.CANONICALIZATIONS)} canonicalizations x {len(keys)} key types")
    return tally.report()


if __name__ == "__main__":
    sys.exit(main())
