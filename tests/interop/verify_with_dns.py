#!/usr/bin/python3
"""Verify every DKIM-Signature of a message with dkimpy, fetching key records from a DNS
server on 127.0.0.1 (the tests' and the demo's Knot) through kdig.

usage: verify_with_dns.py MESSAGE PORT [EXPECTED_SIGNATURES [first]]
Prints one line per signature; exits 0 only if all pass (and their number is as expected).
With "first", only the first EXPECTED signatures are checked (the ones a signer added on top
of a message that already carried others).
"""

import re
import subprocess
import sys

import dkim


def main() -> int:
    path, port = sys.argv[1], sys.argv[2]
    expected = int(sys.argv[3]) if len(sys.argv) > 3 else None
    only_first = len(sys.argv) > 4 and sys.argv[4] == "first"

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", port, "+short", "TXT",
                              name.decode().rstrip(".")], capture_output=True, text=True).stdout
        return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', out)).encode()

    message = open(path, "rb").read()
    verifier = dkim.DKIM(message)
    count = message.count(b"DKIM-Signature:")
    if only_first and expected is not None:
        count = min(count, expected)
    results = [verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(count)]
    for i, ok in enumerate(results):
        print(f"signature {i}: {'pass' if ok else 'FAIL'}")
    if expected is not None and count != expected:
        print(f"expected {expected} signature(s), found {count}")
        return 1
    return 0 if results and all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
