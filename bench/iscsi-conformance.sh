#!/usr/bin/env bash
# Runs libiscsi's conformance suite (iscsi-test-cu -d -t iSCSI URL, and -d -S -t SCSI URL URL)
# against our target and against tgtd on an image of the same size, then prints real pass
# counts (a skipped test is not a pass) and the tests tgtd passes that we fail.
#
# Usage: bench/iscsi-conformance.sh [--ours-cmd CMD] [--ours-url URL] [--size 1G]
#   --ours-cmd  command that starts our target in the foreground (default: `scsiport serve`
#               with a RAM disk, iSCSI only, on 127.0.0.1:13262, built here)
#   --ours-url  URL of our LUN (default: iscsi://127.0.0.1:$OUR_PORT/iqn.2026-11.io.scsiport:default/0)
# Ports: OUR_PORT (13262), TGT_PORT (13261), TGT_CTL (tgtd control port, 17).
# Everything listens on 127.0.0.1 only; logs go to $OUT (default /tmp/iscsi-conformance).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
size=1G
our_port="${OUR_PORT:-13262}"
tgt_port="${TGT_PORT:-13261}"
tgt_ctl="${TGT_CTL:-17}"
ours_url=""
ours_cmd=""
out="${OUT:-/tmp/iscsi-conformance}"

while [ $# -gt 0 ]; do
    case "$1" in
        --ours-cmd) ours_cmd="$2"; shift 2 ;;
        --ours-url) ours_url="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

[ -n "$ours_url" ] || ours_url="iscsi://127.0.0.1:${our_port}/iqn.2026-11.io.scsiport:default/0"

for t in iscsi-test-cu tgtd tgtadm python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install libiscsi-bin tgt)" >&2; exit 1; }
done
mkdir -p "$out"

if [ -z "$ours_cmd" ]; then
    # The whole stack: every command a pass-through SRB through the port, the miniport, the HBA and the 8237.
    target_dir="${CARGO_TARGET_DIR:-$root/target}"
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -p scsiport)
    ours_cmd="$target_dir/release/scsiport serve --ram --disk-size ${size}iB --no-nbd --iscsi-listen 127.0.0.1:${our_port}"
fi

ours_pid=""
tgt_pid=""
cleanup() {
    if [ -n "$tgt_pid" ]; then
        stop_tgtd "$tgt_ctl" "$tgt_pid"
    fi
    [ -n "$ours_pid" ] && kill "$ours_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT


# Ours.
bash -c "exec $ours_cmd" >"$out/ours.log" 2>&1 &
ours_pid=$!
ours_host_port="$(echo "$ours_url" | sed -E 's#iscsi://([^/]+)/.*#\1#')"
wait_port "${ours_host_port##*:}"

# tgtd on a sparse image of the same size; LUN 0 of a tgtd target is its controller,
# the disk is LUN 1.
img="$out/tgt.img"
rm -f "$img"
truncate -s "$size" "$img"
tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:${tgt_port} >"$out/tgtd.log" 2>&1 &
tgt_pid=$!
wait_port "$tgt_port"
tgt_export "$tgt_ctl" "$img"
tgt_url="iscsi://127.0.0.1:${tgt_port}/iqn.2026-11.io.peer:tgt/1"

# The SCSI group as the README counts it: destructive and SANITIZE tests allowed (-d -S), the same URL twice so the
# multipath tests have their second path. The iSCSI group takes one URL.
for group in iSCSI SCSI; do
    if [ "$group" = SCSI ]; then
        timeout 1800 iscsi-test-cu -t SCSI -d -S "$ours_url" "$ours_url" >"$out/ours-$group.log" 2>&1 || true
        timeout 1800 iscsi-test-cu -t SCSI -d -S "$tgt_url" "$tgt_url" >"$out/tgt-$group.log" 2>&1 || true
    else
        timeout 1800 iscsi-test-cu -t "$group" -d "$ours_url" >"$out/ours-$group.log" 2>&1 || true
        timeout 1800 iscsi-test-cu -t "$group" -d "$tgt_url" >"$out/tgt-$group.log" 2>&1 || true
    fi
    python3 "$here/iscsi-cu-parse.py" "$out/ours-$group.log" >"$out/ours-$group.txt"
    python3 "$here/iscsi-cu-parse.py" "$out/tgt-$group.log" >"$out/tgt-$group.txt"
done

python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
def load(path):
    return dict(line.split() for line in open(path) if line.strip())
for group in ("iSCSI", "SCSI"):
    ours, tgt = load(f"{out}/ours-{group}.txt"), load(f"{out}/tgt-{group}.txt")
    def counts(d):
        return {v: sum(1 for x in d.values() if x == v) for v in ("passed", "failed", "skipped")}
    o, t = counts(ours), counts(tgt)
    print(f"{group:5}  ours: {o['passed']} passed, {o['failed']} failed, {o['skipped']} skipped"
          f"   tgtd: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped")
    worse = sorted(n for n, v in tgt.items() if v == "passed" and ours.get(n) != "passed")
    better = sorted(n for n, v in ours.items() if v == "passed" and tgt.get(n) != "passed")
    print(f"       tgtd passes, we do not ({len(worse)}): {' '.join(worse) or '-'}")
    print(f"       we pass, tgtd does not ({len(better)}): {' '.join(better) or '-'}")
PY
