#!/usr/bin/python3
"""Sign every corpus message with dkimrotor and verify with independent code.

For each message x canonicalization (4) x key set (RSA-2048, Ed25519, and
both at once) this script

  * runs `dkimrotor sign` and checks the output is the added DKIM-Signature
    field(s) followed by the unchanged input, with the input's line ending
    and the expected a=, c=, d=, s= tags and From in h=;
  * checks each bh= against the body hash dkimpy's canonicalization code
    computes for the same body canonicalization;
  * verifies each signature with dkimpy (public key from a local dnsfunc);
  * verifies each signature with Perl Mail::DKIM via verify_mail_dkim.pl
    (public key from a stand-in resolver, no DNS).

It then tampers with signed messages (one body edit, one edit of the signed
From field) and requires both verifiers to reject them, so the test would
notice verifiers that accept anything.

Keys are generated into a temporary directory at every run and deleted
afterwards. Known limits of the installed verifiers (Mail::DKIM before
1.20230630 has no ed25519-sha256; dkimpy cannot parse a header field name
followed by whitespace before the colon) are reported as skipped checks
in "note:" lines, never as passes.

Output: one "FAIL ..." line per failed check, then `N passed, M failed`.
Exit status 1 if any check failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import interop_common as ic

# Key sets to sign with: one signature each, and both in one run.
KEY_SETS: tuple[tuple[str, ...], ...] = (("rsa",), ("ed25519",), ("rsa", "ed25519"))

# The message used for the tamper checks; any corpus message with a body works.
TAMPER_MESSAGE = "01-minimal-crlf.eml"


@dataclass
class Case:
    """One signing run and what came of it."""

    message: Path
    canonicalization: str
    keys: tuple[ic.SigningKey, ...]
    signed_path: Path
    # (position among the added fields, the field, the key it was made with)
    signatures: list[tuple[int, ic.AddedSignature, ic.SigningKey]] = field(default_factory=list)
    signed_ok: bool = False

    @property
    def label(self) -> str:
        algs = "+".join(k.algorithm for k in self.keys)
        return f"{self.message.name} c={self.canonicalization} a={algs}"


@dataclass(frozen=True)
class Context:
    binary: Path
    keys: dict[str, ic.SigningKey]
    keys_file: Path
    mail_dkim_algorithms: frozenset[str]
    tally: ic.Tally


# ---------------------------------------------------------------------------
# Signing and the checks that need only Python
# ---------------------------------------------------------------------------

def match_keys(added: Sequence[ic.AddedSignature],
               keys: Sequence[ic.SigningKey]) -> list[tuple[int, ic.AddedSignature, ic.SigningKey]]:
    """Pair each added signature with the key whose selector it names.

    The contract does not fix the order of the added fields, so they are
    matched by s=; a missing or repeated selector is a format error.
    """
    by_selector = {key.selector: key for key in keys}
    matched = []
    for index, sig in enumerate(added):
        key = by_selector.pop(sig.tag("s"), None)
        if key is None:
            raise ic.SignatureFormatError(f"added signature #{index} has unexpected s={sig.tag('s')!r}")
        matched.append((index, sig, key))
    return matched


def sign_and_check(ctx: Context, case: Case) -> None:
    original = case.message.read_bytes()
    result = ic.run_signer(ctx.binary, original, case.keys, case.canonicalization)
    if result.returncode != 0:
        ctx.tally.fail(f"{case.label} signer", result.describe_failure())
        return
    try:
        added = ic.split_added_signatures(result.stdout, original, len(case.keys))
        case.signatures = match_keys(added, case.keys)
    except ic.SignatureFormatError as exc:
        ctx.tally.fail(f"{case.label} output", str(exc))
        return
    case.signed_path.write_bytes(result.stdout)
    case.signed_ok = True
    ctx.tally.check(True, f"{case.label} output")

    parse_problem = ic.dkimpy_can_parse(original)
    for index, sig, key in case.signatures:
        label = f"{case.label} sig#{index}({key.name})"
        problems = ic.check_signature_tags(sig, key, case.canonicalization)
        ctx.tally.check(not problems, f"{label} tags", "; ".join(problems))

        body_canon = ic.normalize_c(case.canonicalization).split("/")[1]
        expected_bh = ic.dkimpy_body_hash(original, body_canon, key.algorithm)
        actual_bh = sig.tag("bh")
        ctx.tally.check(actual_bh == expected_bh, f"{label} bh-vs-dkimpy",
                        f"bh={actual_bh}, dkimpy computes {expected_bh} for {body_canon} body")

        if parse_problem:
            ctx.tally.skip(f"dkimpy cannot parse the message ({case.message.name}: {parse_problem})")
            continue
        ok, reason = ic.dkimpy_verify(result.stdout, index, list(ctx.keys.values()))
        ctx.tally.check(ok, f"{label} verifier=dkimpy", reason)


def guarded(ctx: Context, case: Case) -> None:
    """sign_and_check, with an unexpected exception reported as a failure."""
    try:
        sign_and_check(ctx, case)
    except Exception as exc:  # noqa: BLE001 - one broken case must not hide the others
        case.signed_ok = False
        ctx.tally.fail(f"{case.label} internal", f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------
# Mail::DKIM, run in batches over the files signed above
# ---------------------------------------------------------------------------

def mail_dkim_batches(ctx: Context, paths: Sequence[Path], jobs: int) -> dict[tuple[str, int], ic.PerlVerdict]:
    if not paths:
        return {}
    size = max(1, -(-len(paths) // jobs))
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    verdicts: dict[tuple[str, int], ic.PerlVerdict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        for part in pool.map(lambda chunk: ic.mail_dkim_verify(chunk, ctx.keys_file), chunks):
            verdicts.update(part)
    return verdicts


def check_mail_dkim(ctx: Context, case: Case, verdicts: dict[tuple[str, int], ic.PerlVerdict]) -> None:
    error = verdicts.get((str(case.signed_path), -1))
    for index, _sig, key in case.signatures:
        label = f"{case.label} sig#{index}({key.name}) verifier=mail-dkim"
        if key.algorithm not in ctx.mail_dkim_algorithms:
            ctx.tally.skip(f"installed Mail::DKIM cannot verify {key.algorithm}")
            continue
        verdict = verdicts.get((str(case.signed_path), index))
        if verdict is None:
            reason = f"{error.result}: {error.detail}" if error else "no verdict for this signature"
            ctx.tally.fail(label, reason)
            continue
        if (verdict.selector, verdict.domain) != (key.selector, ic.DOMAIN):
            ctx.tally.fail(label, f"signature #{index} is s={verdict.selector} d={verdict.domain}")
            continue
        ctx.tally.check(verdict.result == "pass", label, verdict.detail)


# ---------------------------------------------------------------------------
# Tampering: both verifiers must reject
# ---------------------------------------------------------------------------

def tamper_body(signed: bytes) -> bytes:
    """Append a non-blank line: changes the body hash in every canonicalization."""
    eol = ic.first_line_ending(signed)
    if not signed.endswith(b"\n"):
        signed += eol
    return signed + b"this line was added in transit" + eol


def tamper_from(signed: bytes) -> bytes:
    """Put a word in front of the From field's value (From is always signed)."""
    tampered, count = re.subn(rb"(?im)^(from[ \t]*:)", rb"\1 Mallory", signed, count=1)
    if count != 1:
        raise ValueError("no From field to tamper with")
    return tampered


def tamper_checks(ctx: Context, corpus: Path, workdir: Path) -> None:
    message = corpus / TAMPER_MESSAGE
    if not message.is_file():
        ctx.tally.fail("tamper", f"{message} is missing")
        return
    original = message.read_bytes()
    tampered: list[tuple[str, Path, ic.SigningKey]] = []
    for key in ctx.keys.values():
        for canon in ic.CANONICALIZATIONS:
            label = f"{message.name} c={canon} a={key.algorithm}"
            result = ic.run_signer(ctx.binary, original, (key,), canon)
            if result.returncode != 0:
                ctx.tally.fail(f"{label} tamper: signer", result.describe_failure())
                continue
            for kind, tamper in (("body", tamper_body), ("from-header", tamper_from)):
                path = workdir / f"tampered-{key.name}-{canon.replace('/', '-')}-{kind}.eml"
                path.write_bytes(tamper(result.stdout))
                tampered.append((f"{label} tampered-{kind}", path, key))

    for label, path, _key in tampered:
        ok, reason = ic.dkimpy_verify(path.read_bytes(), 0, list(ctx.keys.values()))
        ctx.tally.check(not ok, f"{label} verifier=dkimpy", "accepted a tampered message")

    checkable = [(label, path) for label, path, key in tampered
                 if key.algorithm in ctx.mail_dkim_algorithms]
    for _label, _path, key in tampered:
        if key.algorithm not in ctx.mail_dkim_algorithms:
            ctx.tally.skip(f"installed Mail::DKIM cannot verify {key.algorithm}")
    verdicts = ic.mail_dkim_verify([path for _, path in checkable], ctx.keys_file) if checkable else {}
    for label, path in checkable:
        verdict = verdicts.get((str(path), 0))
        if verdict is None:
            ctx.tally.fail(f"{label} verifier=mail-dkim", "no verdict")
            continue
        ctx.tally.check(verdict.result == "fail", f"{label} verifier=mail-dkim",
                        f"expected result fail, got {verdict.detail}")


# ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dkimrotor", type=Path, required=True, help="path to the dkimrotor binary")
    parser.add_argument("--corpus", type=Path, required=True, help="directory of *.eml messages")
    parser.add_argument("--jobs", type=int, default=min(4, max(2, os.cpu_count() or 2)),
                        help="parallel workers (default: 2-4 by CPU count)")
    parser.add_argument("--only", metavar="GLOB", default="*.eml",
                        help="corpus file pattern (default: *.eml)")
    args = parser.parse_args(argv)
    if not os.access(args.dkimrotor, os.X_OK):
        parser.error(f"{args.dkimrotor} is not an executable file")
    if not args.corpus.is_dir():
        parser.error(f"{args.corpus} is not a directory")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    messages = sorted(args.corpus.glob(args.only))
    tally = ic.Tally()
    if not messages:
        tally.fail("corpus", f"no messages matching {args.only} in {args.corpus}")
        return tally.report()

    with tempfile.TemporaryDirectory(prefix="dkimrotor-interop-") as tmp:
        workdir = Path(tmp)
        keys = ic.generate_keys(workdir)
        ctx = Context(
            binary=args.dkimrotor.resolve(),
            keys=keys,
            keys_file=ic.write_keys_file(list(keys.values()), workdir / "keys.txt"),
            mail_dkim_algorithms=frozenset(k.algorithm for k in keys.values()
                                           if ic.mail_dkim_supports(k.algorithm)),
            tally=tally,
        )
        signed_dir = workdir / "signed"
        signed_dir.mkdir()

        combinations = itertools.product(messages, ic.CANONICALIZATIONS, KEY_SETS)
        cases = [
            Case(message, canon, tuple(keys[name] for name in key_set), signed_dir / f"{number:04d}.eml")
            for number, (message, canon, key_set) in enumerate(combinations)
        ]
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda case: guarded(ctx, case), cases))

        signed = [case for case in cases if case.signed_ok]
        verdicts = mail_dkim_batches(ctx, [case.signed_path for case in signed], args.jobs)
        for case in signed:
            check_mail_dkim(ctx, case, verdicts)

        tamper_checks(ctx, args.corpus, workdir)

    print(f"{len(messages)} messages x {len(ic.CANONICALIZATIONS)} canonicalizations x "
          f"{len(KEY_SETS)} key sets")
    return tally.report()


if __name__ == "__main__":
    sys.exit(main())
