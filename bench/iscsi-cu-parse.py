#!/usr/bin/env python3
"""Per-test verdicts from iscsi-test-cu output.

CUnit's run summary counts a skipped test as passed, so each `Test: NAME ...` line is
read together with what follows it up to the next test: a bare `FAILED` (alone on a line
or right after the dots) is a failure, `[SKIPPED]` a skip, a trailing `passed` a pass.
`[FAILED]` lines inside a test are expected failures it logs on its way to passing.

Usage: iscsi-cu-parse.py LOG  -> prints `SUITE.TEST VERDICT` lines.
"""
import re
import sys


def verdicts(text):
    out = []
    suite = "?"
    cur = None

    def close():
        if cur is None:
            return
        name, body = cur
        lines = [l.strip() for l in body.splitlines()]
        if any(l == "FAILED" for l in lines):
            v = "failed"
        elif "[SKIPPED]" in body:
            v = "skipped"
        elif any(l.startswith("passed") or l.endswith("passed") for l in lines):
            v = "passed"
        else:
            v = "failed"
        out.append((name, v))

    for line in text.splitlines():
        m = re.match(r"\s*Suite: (\S+)", line)
        if m:
            close()
            cur = None
            suite = m.group(1)
            continue
        m = re.match(r"\s*Test: (\S+) \.\.\.(.*)", line)
        if m:
            close()
            cur = (suite + "." + m.group(1), m.group(2))
            continue
        if line.startswith("Run Summary"):
            close()
            cur = None
            continue
        if cur is not None:
            cur = (cur[0], cur[1] + "\n" + line)
    close()
    return out


if __name__ == "__main__":
    with open(sys.argv[1], errors="replace") as f:
        for name, v in verdicts(f.read()):
            print(name, v)
