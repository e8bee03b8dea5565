#!/usr/bin/env python3
"""docs/SECURITY.md names the test that proves each promise: every such name must be a test
that ctest knows, so a renamed or deleted test cannot leave a promise unproven.

Usage: security_doc_test.py SOURCE_DIR BUILD_DIR. Names are `Suite.Test`, `Suite.*` or
`Suite.Prefix*` in backquotes; a ctest name matches when it is the name or ends with
"." + the name (ctest names some suites with a module prefix, e.g. faults.SignalStorm.X)."""
import re
import subprocess
import sys

SCRIPTED = {"interop", "e2e", "cli", "contrib", "faults"}


def main():
    source, build = sys.argv[1], sys.argv[2]
    text = open(f"{source}/docs/SECURITY.md", encoding="utf-8").read()
    # GoogleTest suites are CamelCase; lowercase names are ctest's scripted tests
    # (interop.difffuzz), other lowercase dotted words are settings or files.
    names = sorted(n for n in set(re.findall(r"`([A-Za-z][A-Za-z0-9]*\.(?:[A-Za-z0-9_]+\*?|\*))`", text))
                   if n != "Suite.Test" and (n[0].isupper() or n.split(".")[0] in SCRIPTED))
    listing = subprocess.run(["ctest", "-N"], cwd=build, capture_output=True, text=True, check=True).stdout
    tests = re.findall(r"Test\s+#\d+: (\S+)", listing)
    if len(tests) < 100:
        print(f"ctest -N in {build} lists {len(tests)} tests: not a configured build", file=sys.stderr)
        return 2

    def known(name):
        if name.endswith("*"):
            prefix = name[:-1]
            return any(t.startswith(prefix) or ("." + prefix) in t for t in tests)
        return any(t == name or t.endswith("." + name) for t in tests)

    missing = [n for n in names if not known(n)]
    print(f"{len(names)} test names in docs/SECURITY.md, {len(tests)} tests in ctest", flush=True)
    for n in missing:
        print(f"docs/SECURITY.md names {n}, which is no test", file=sys.stderr)
    return 1 if missing or len(names) < 30 else 0


if __name__ == "__main__":
    sys.exit(main())
