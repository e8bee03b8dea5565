"""Shared helpers for the dkimrotor interop tests.

Both verify_corpus.py and bodyhash_diff.py import this module (it sits next
to them, so the script directory on sys.path finds it). It needs only the
standard library, dkimpy (Debian's python3-dkim) and the openssl command.
Run the scripts with /usr/bin/python3: that is the interpreter dkimpy is
installed for.
"""

from __future__ import annotations

import base64
import hashlib
import re
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dkim
import dkim.util
from dkim.canonicalization import CanonicalizationPolicy

DOMAIN = "dkimrotor.test"

CANONICALIZATIONS: tuple[str, ...] = (
    "relaxed/relaxed",
    "simple/simple",
    "relaxed/simple",
    "simple/relaxed",
)

SIGNER_TIMEOUT_SECONDS = 60


# ---------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    """A throwaway key pair and the DNS TXT record that publishes it."""

    name: str          # short label used in reports: "rsa" or "ed25519"
    algorithm: str     # the a= value the signer must use
    selector: str
    private_pem: Path
    record: str        # TXT data: "v=DKIM1; k=...; p=..."

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{DOMAIN}"


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _public_der(private_pem: Path) -> bytes:
    return _openssl("pkey", "-in", str(private_pem), "-pubout", "-outform", "DER")


def generate_keys(directory: Path) -> dict[str, SigningKey]:
    """Create a 2048-bit RSA key and an Ed25519 key (mode 0600) in directory."""
    rsa_pem = directory / "rsa2048.pem"
    ed_pem = directory / "ed25519.pem"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(rsa_pem))
    _openssl("genpkey", "-algorithm", "ed25519", "-out", str(ed_pem))
    for pem in (rsa_pem, ed_pem):
        pem.chmod(0o600)

    # RSA: p= is the DER SubjectPublicKeyInfo (RFC 6376 3.6.1).
    rsa_p = base64.b64encode(_public_der(rsa_pem)).decode()
    # Ed25519: p= is the bare 32-byte public key (RFC 8463 4.2), which is
    # the tail of the SubjectPublicKeyInfo.
    ed_p = base64.b64encode(_public_der(ed_pem)[-32:]).decode()
    return {
        "rsa": SigningKey("rsa", "rsa-sha256", "rsa2048", rsa_pem, f"v=DKIM1; k=rsa; p={rsa_p}"),
        "ed25519": SigningKey("ed25519", "ed25519-sha256", "ed25519", ed_pem,
                              f"v=DKIM1; k=ed25519; p={ed_p}"),
    }


def write_keys_file(keys: Sequence[SigningKey], path: Path) -> Path:
    """The "NAME RECORD" file that verify_mail_dkim.pl --keys-file reads."""
    path.write_text("".join(f"{k.dns_name} {k.record}\n" for k in keys))
    return path


def make_dnsfunc(keys: Sequence[SigningKey]):
    """A dkimpy dnsfunc serving the given keys; other names do not exist."""
    records = {k.dns_name.lower(): k.record.encode() for k in keys}

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        if isinstance(name, bytes):
            name = name.decode("ascii", errors="replace")
        return records.get(name.rstrip(".").lower())

    return dnsfunc


# ---------------------------------------------------------------------------
# Running the signer
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SignResult:
    returncode: int
    stdout: bytes
    stderr: bytes

    def describe_failure(self) -> str:
        reason = self.stderr.decode(errors="replace").strip().replace("\n", " | ")
        return f"exit {self.returncode}: {reason or '(no stderr)'}"


def run_signer(binary: Path, message: bytes, keys: Sequence[SigningKey], canonicalization: str) -> SignResult:
    command = [str(binary), "sign", "--domain", DOMAIN]
    for key in keys:
        command += ["--key", str(key.private_pem), "--selector", key.selector]
    command += ["--canonicalization", canonicalization]
    try:
        result = subprocess.run(command, input=message, capture_output=True,
                                timeout=SIGNER_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return SignResult(-1, b"", f"timed out after {SIGNER_TIMEOUT_SECONDS}s".encode())
    return SignResult(result.returncode, result.stdout, result.stderr)


# ---------------------------------------------------------------------------
# Parsing what the signer added
# ---------------------------------------------------------------------------

class SignatureFormatError(Exception):
    """The signer's output does not have the promised shape."""


@dataclass(frozen=True)
class AddedSignature:
    raw: bytes                 # the whole header field, with its line endings
    tags: dict[str, bytes]     # tag -> value, folding whitespace removed

    def tag(self, name: str) -> str:
        return self.tags.get(name, b"").decode("ascii", errors="replace")


def first_line_ending(message: bytes) -> bytes:
    """The line ending of the first line (CRLF unless it is a bare LF)."""
    newline = message.find(b"\n")
    if newline > 0 and message[newline - 1:newline] == b"\r":
        return b"\r\n"
    return b"\n" if newline >= 0 else b"\r\n"


def _split_fields(block: bytes) -> list[bytes]:
    """Split a block of header lines into fields (a field owns its folds)."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _parse_tags(value: bytes) -> dict[str, bytes]:
    unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", value)
    try:
        tags = dkim.util.parse_tag_value(unfolded)
    except dkim.util.InvalidTagValueList as exc:
        raise SignatureFormatError(f"bad tag list: {exc!r}") from exc
    return {k.decode("ascii", errors="replace"): re.sub(rb"[ \t\r\n]+", b"", v)
            if k in (b"b", b"bh", b"h", b"c") else v for k, v in tags.items()}


def split_added_signatures(output: bytes, original: bytes, expected: int) -> list[AddedSignature]:
    """Check output == N DKIM-Signature fields + original; return the fields."""
    if not output.endswith(original):
        raise SignatureFormatError("output does not end with the unchanged input message")
    prefix = output[:len(output) - len(original)]
    eol = first_line_ending(original)
    if not prefix.endswith(eol):
        raise SignatureFormatError(f"added header block does not end in {eol!r}")
    line_endings = re.findall(rb"\r?\n", prefix)
    if any(e != eol for e in line_endings):
        raise SignatureFormatError(f"added header block mixes line endings; input's first line uses {eol!r}")
    if b"\r" in prefix.replace(b"\r\n", b""):
        raise SignatureFormatError("added header block contains a bare CR")

    fields = _split_fields(prefix)
    if len(fields) != expected:
        raise SignatureFormatError(f"expected {expected} added header field(s), found {len(fields)}")
    signatures = []
    for raw in fields:
        name, sep, value = raw.partition(b":")
        if not sep or name != b"DKIM-Signature":
            raise SignatureFormatError(f"added field is not a DKIM-Signature: {raw[:40]!r}")
        signatures.append(AddedSignature(raw, _parse_tags(value)))
    return signatures


def normalize_c(value: str) -> str:
    """The c= value in its full two-part form (RFC 6376 3.5 defaults)."""
    if not value:
        return "simple/simple"
    return value if "/" in value else f"{value}/simple"


def check_signature_tags(sig: AddedSignature, key: SigningKey, canonicalization: str) -> list[str]:
    """Problems with the tags our contract fixes; empty when all is well."""
    problems = []
    expected = {"v": "1", "a": key.algorithm, "d": DOMAIN, "s": key.selector}
    for tag, want in expected.items():
        if sig.tag(tag) != want:
            problems.append(f"{tag}={sig.tag(tag)!r}, expected {want!r}")
    if normalize_c(sig.tag("c")) != canonicalization:
        problems.append(f"c={sig.tag('c')!r}, expected {canonicalization!r}")
    signed = [h.strip().lower() for h in sig.tag("h").split(":")]
    if "from" not in signed:
        problems.append(f"h={sig.tag('h')!r} does not include from")
    for tag in ("bh", "b"):
        if not sig.tag(tag):
            problems.append(f"missing {tag}=")
    return problems


# ---------------------------------------------------------------------------
# dkimpy as the reference
# ---------------------------------------------------------------------------

def message_body(message: bytes) -> bytes:
    """The body as dkimpy sees it: CRLF-joined lines after the first empty line.

    dkim.rfc822_parse does exactly this, but it raises on header syntax it
    does not accept (e.g. "Subject  : x"); the body split is the same either
    way, so fall back to doing the split here.
    """
    try:
        return dkim.rfc822_parse(message)[1]
    except dkim.MessageFormatError:
        lines = re.split(rb"\r?\n", message)
        for i, line in enumerate(lines):
            if not line:
                return b"\r\n".join(lines[i + 1:])
        return b""


def dkimpy_can_parse(message: bytes) -> str | None:
    """None if dkimpy parses the header section, else its complaint."""
    try:
        dkim.rfc822_parse(message)
    except dkim.MessageFormatError as exc:
        return str(exc)
    return None


def dkimpy_body_hash(message: bytes, body_canonicalization: str, algorithm: str = "rsa-sha256") -> str:
    """Base64 body hash computed with dkimpy's canonicalization code."""
    policy = CanonicalizationPolicy.from_c_value(f"simple/{body_canonicalization}".encode())
    canonical = policy.canonicalize_body(message_body(message))
    hasher = dkim.HASH_ALGORITHMS[algorithm.encode()]
    return base64.b64encode(hasher(canonical).digest()).decode()


class _CollectingLogger:
    """Stands in for the logging.Logger dkimpy writes to; keeps the errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def debug(self, *args: object) -> None:
        pass

    def error(self, message: object, *args: object) -> None:
        self.errors.append(str(message) % args if args else str(message))

    info = warning = debug

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging API name)
        return False


def dkimpy_verify(signed: bytes, index: int, keys: Sequence[SigningKey]) -> tuple[bool, str]:
    """Verify the index-th DKIM-Signature (from the top) with dkimpy."""
    logger = _CollectingLogger()
    try:
        verifier = dkim.DKIM(signed, logger=logger, minkey=1024)
        ok = bool(verifier.verify(idx=index, dnsfunc=make_dnsfunc(keys)))
    except dkim.DKIMException as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if ok:
        return True, "pass"
    return False, "; ".join(logger.errors) or "signature (b=) did not verify"


# ---------------------------------------------------------------------------
# Mail::DKIM through verify_mail_dkim.pl
# ---------------------------------------------------------------------------

PERL_SCRIPT = Path(__file__).resolve().parent / "verify_mail_dkim.pl"


@dataclass(frozen=True)
class PerlVerdict:
    domain: str
    selector: str
    algorithm: str
    result: str
    detail: str


def mail_dkim_supports(algorithm: str) -> bool:
    result = subprocess.run(["perl", str(PERL_SCRIPT), "--supports", algorithm],
                            capture_output=True, check=False)
    return result.returncode == 0


def mail_dkim_verify(paths: Sequence[Path], keys_file: Path,
                     complete_final_line: bool = True) -> dict[tuple[str, int], PerlVerdict]:
    """Run verify_mail_dkim.pl over paths; map (path, index) -> verdict.

    complete_final_line: end an unterminated last line with CRLF before
    verifying, as SMTP delivery would. Mail::DKIM 1.20230212 does not add
    the CRLF that RFC 6376 3.4.3 prescribes for "simple" bodies, so without
    this it rejects correct simple-body signatures of such messages (dkimpy
    and the bh= comparison still check those messages unaltered).

    A message that Mail::DKIM could not process gets index -1 and result
    "error".
    """
    command = ["perl", str(PERL_SCRIPT), "--keys-file", str(keys_file)]
    if complete_final_line:
        command.append("--complete-final-line")
    result = subprocess.run([*command, *map(str, paths)], capture_output=True, check=False)
    if result.returncode not in (0, 3):
        raise RuntimeError(f"verify_mail_dkim.pl failed (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace')}")
    verdicts: dict[tuple[str, int], PerlVerdict] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 7:
            raise RuntimeError(f"unexpected output from verify_mail_dkim.pl: {line!r}")
        path, index, domain, selector, algorithm, res, detail = parts
        verdicts[(path, int(index) if index.isdigit() else -1)] = PerlVerdict(
            domain, selector, algorithm, res, detail)
    return verdicts


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------

@dataclass
class Tally:
    """Thread-safe pass/fail/skip counter that keeps failure lines."""

    passed: int = 0
    failures: list[str] = field(default_factory=list)
    skips: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, ok: bool, label: str, reason: str = "") -> bool:
        with self._lock:
            if ok:
                self.passed += 1
            else:
                self.failures.append(f"FAIL {label}: {reason}")
        return ok

    def fail(self, label: str, reason: str) -> None:
        self.check(False, label, reason)

    def skip(self, reason: str) -> None:
        with self._lock:
            self.skips[reason] = self.skips.get(reason, 0) + 1

    def note(self, text: str) -> None:
        """Information worth a line in the report that is not a check."""
        with self._lock:
            self.notes[text] = self.notes.get(text, 0) + 1

    def report(self) -> int:
        """Print failures, skip notes and the summary line; return exit status."""
        for line in sorted(self.failures):
            print(line)
        for reason, count in sorted(self.skips.items()):
            print(f"note: {count} check(s) skipped: {reason}")
        for text, count in sorted(self.notes.items()):
            print(f"note: {text}" + (f" (x{count})" if count > 1 else ""))
        print(f"{self.passed} passed, {len(self.failures)} failed")
        return 1 if self.failures else 0


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()
