#!/usr/bin/env bash
# Run libiscsi's conformance suite (iscsi-test-cu -t SCSI) against tgtd and against the
# scsi crate's disk (served by the iscsi crate's iscsi-direct example) on the same
# machine, one after the other, and compare test by test.
#
# CUnit counts a skipped test as passed, so each "Test: NAME ..." line is classified by
# what follows it: [SKIPPED], FAILED / [FAILED], or passed.
#
# Usage: crates/scsi/scripts/compare-iscsi-test-cu.sh [OUTDIR]
# Exit status: 0 when the disk passes every test tgtd passes, 1 otherwise, 2 when a
# tool is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:-$(mktemp -d /tmp/scsi-compare.XXXXXX)}
mkdir -p "$out"
size=1G
tgt_port=3261
our_port=3262
ctl=7

for tool in tgtd tgtadm iscsi-test-cu python3 cargo; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done

pids=()
cleanup() {
    tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

# --- tgtd, as PEERS.md sets it up: its disk is LUN 1.
truncate -s "$size" "$out/tgt.img"
tgtd -f -C "$ctl" --iscsi portal=127.0.0.1:$tgt_port >"$out/tgtd.log" 2>&1 &
pids+=($!)
wait_port $tgt_port
tgtadm -C "$ctl" --lld iscsi --op new --mode target --tid 1 -T iqn.2026-11.io.peer:tgt
tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$out/tgt.img"
tgtadm -C "$ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
iscsi-test-cu -t SCSI -d "iscsi://127.0.0.1:$tgt_port/iqn.2026-11.io.peer:tgt/1" >"$out/tgtd.cu" 2>&1 || true
cleanup
pids=()

# --- the scsi crate's disk behind the iSCSI front end, also at LUN 1.
(cd "$here" && cargo build -q -p iscsi --example iscsi-direct)
target_dir=$(cd "$here" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/examples/iscsi-direct" --listen 127.0.0.1:$our_port --size 1GiB --lun1 \
    --target iqn.2026-11.io.scsiport:cu >"$out/ours.log" 2>&1 &
pids+=($!)
wait_port $our_port
iscsi-test-cu -t SCSI -d "iscsi://127.0.0.1:$our_port/iqn.2026-11.io.scsiport:cu/1" >"$out/ours.cu" 2>&1 || true

python3 - "$out/tgtd.cu" "$out/ours.cu" <<'PY'
import re, sys

def classify(path):
    res, suite, cur = {}, None, None
    for line in open(path, errors="replace"):
        m = re.match(r"Suite: (\S+)", line)
        if m:
            suite, cur = m.group(1), None
            continue
        m = re.match(r"\s+Test: (\S+) \.\.\.(.*)", line)
        if m:
            cur = f"{suite}.{m.group(1)}"
            rest = m.group(2)
            res[cur] = ("skip" if "[SKIPPED]" in rest else
                        "fail" if "FAILED" in rest else
                        "pass" if "passed" in rest else "?")
            continue
        if cur is None:
            continue
        if "[SKIPPED]" in line and res[cur] == "?":
            res[cur] = "skip"
        elif "FAILED" in line:
            res[cur] = "fail"
        elif line.strip() == "passed" and res[cur] == "?":
            res[cur] = "pass"
    return res

tgt, ours = classify(sys.argv[1]), classify(sys.argv[2])
for name, r in (("tgtd", tgt), ("scsiport", ours)):
    counts = {k: sum(1 for v in r.values() if v == k) for k in ("pass", "skip", "fail")}
    print(f"{name:9} run {len(r):3}  passed {counts['pass']:3}  skipped {counts['skip']:3}  failed {counts['fail']:3}")
worse = sorted(t for t, v in tgt.items() if v == "pass" and ours.get(t) != "pass")
better = sorted(t for t, v in ours.items() if v == "pass" and tgt.get(t) != "pass")
print(f"passed here, not by tgtd: {len(better)}")
for t in worse:
    print(f"REGRESSION vs tgtd: {t} ({ours.get(t, 'absent')})")
print("not passed by either:", ", ".join(sorted(t for t in ours if ours[t] != "pass" and tgt.get(t) != "pass")))
sys.exit(1 if worse else 0)
PY
