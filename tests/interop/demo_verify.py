#!/usr/bin/python3
"""Verify a signed message with dkimpy and Perl Mail::DKIM, public keys from local PEM files.

usage: demo_verify.py SIGNED.eml DOMAIN SELECTOR=PRIVATE.pem [SELECTOR=PRIVATE.pem ...]

Used by scripts/demo to show a signature checked by verifiers that share no code with
dkimrotor. Exits non-zero if any signature fails in a verifier that supports its algorithm.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import dkim

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interop_common import _public_der  # noqa: E402  (the script directory holds it)


def record_for(pem: Path) -> str:
    der = _public_der(pem)
    # Ed25519 SubjectPublicKeyInfo is 44 bytes; p= is its raw 32-byte tail (RFC 8463).
    if len(der) == 44:
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    message = Path(argv[1]).read_bytes()
    domain = argv[2]
    records: dict[str, str] = {}
    for pair in argv[3:]:
        selector, _, pem = pair.partition("=")
        records[f"{selector}._domainkey.{domain}"] = record_for(Path(pem))

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        value = records.get(name.decode().rstrip("."))
        return value.encode() if value else None

    failed = 0
    verifier = dkim.DKIM(message)
    count = message.count(b"DKIM-Signature:")
    for index in range(count):
        ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        print(f"dkimpy      signature {index}: {'pass' if ok else 'FAIL'}")
        failed += 0 if ok else 1

    perl = Path(__file__).resolve().parent / "verify_mail_dkim.pl"
    args = ["perl", str(perl)]
    for name, record in records.items():
        args += ["--key", f"{name}={record}"]
    out = subprocess.run(args + [argv[1]], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) < 6:
            continue
        _, index, _, selector, algorithm, result = fields[:6]
        if algorithm.startswith("ed25519") and result != "pass":
            print(f"Mail::DKIM  signature {index}: {result} "
                  "(this Mail::DKIM predates ed25519 support; not counted)")
            continue
        print(f"Mail::DKIM  signature {index}: {result} (s={selector}, a={algorithm})")
        failed += 0 if result == "pass" else 1
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        failed += 1
    print("all signatures verified" if failed == 0 else f"{failed} verification(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
