#!/usr/bin/python3
"""Verify every message (*.eml) of a folder with dkimpy in one process, fetching key records
from the tests' Knot on 127.0.0.1 through kdig (each name once).

usage: verify_many.py FOLDER PORT EXPECTED_SIGNATURES
Prints a line per failure and a summary; exits 0 only if every message carries exactly
EXPECTED_SIGNATURES signatures and all of them pass.
"""

import os
import re
import subprocess
import sys

import dkim


def main() -> int:
    folder, port, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = {}

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        if name not in cache:
            out = subprocess.run(["kdig", "@127.0.0.1", "-p", port, "+short", "TXT",
                                  name.decode().rstrip(".")], capture_output=True, text=True).stdout
            cache[name] = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', out)).encode()
        return cache[name]

    names = sorted(n for n in os.listdir(folder) if n.endswith(".eml"))
    failures = 0
    for n in names:
        message = open(os.path.join(folder, n), "rb").read()
        count = message.count(b"DKIM-Signature:")
        verifier = dkim.DKIM(message)
        ok = count == expected and all(verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(count))
        if not ok:
            failures += 1
            print(f"{n}: {count} signature(s), expected {expected} passing")
    print(f"{len(names)} message(s), {failures} failure(s)")
    return 0 if names and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
