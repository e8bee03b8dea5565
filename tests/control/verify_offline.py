#!/usr/bin/python3
"""Verify every DKIM-Signature of many messages with dkimpy, against key records given in a
file (one "NAME RECORD" pair a line, the format verify_mail_dkim.pl --keys-file reads): the
records as they were published when the messages were signed, so a message signed before its
key was revoked still verifies.

usage: verify_offline.py KEYS_FILE EXPECTED_SIGNATURES MSG...
Prints one line per failing message; exits 0 only if every message has EXPECTED_SIGNATURES
signatures and all pass.
"""

import sys

import dkim


def main() -> int:
    keys_file, expected, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    records = {}
    for line in open(keys_file, encoding="ascii"):
        name, _, record = line.rstrip("\n").partition(" ")
        records[name.rstrip(".")] = record.encode()

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return records.get(name.decode().rstrip("."), b"")

    failures = 0
    for path in paths:
        message = open(path, "rb").read()
        count = message.count(b"DKIM-Signature:")
        verifier = dkim.DKIM(message)
        results = [verifier.verify(idx=i, dnsfunc=dnsfunc) for i in range(count)]
        if count != expected or not all(results):
            failures += 1
            print(f"{path}: {count} signature(s), results {results}")
    print(f"{len(paths)} message(s), {failures} failure(s)")
    return 0 if failures == 0 and paths else 1


if __name__ == "__main__":
    sys.exit(main())
