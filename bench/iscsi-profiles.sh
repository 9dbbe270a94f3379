#!/usr/bin/env bash
# Runs libiscsi's SCSI suite (`iscsi-test-cu -d -S -t SCSI URL URL`: destructive, sanitize and multipath tests) against
# `scsiport serve` with one LU of each profile of docs/config.md, through the whole stack, and prints the real pass
# counts (a skipped test is not a pass) of each profile and of their union.
#
# Usage: bench/iscsi-profiles.sh [--size 1G]
#   LUN 0 default, LUN 1 removable, LUN 2 write-protected (only the suites that need a write-protected LU: a write
#   test on it fails by design), LUN 3 512-byte logical blocks on 4096-byte physical blocks, LUN 4 a self-encrypting
#   medium (only the SANITIZE suite, for CRYPTOGRAPHIC ERASE). RAM disks.
# Port: OUR_PORT (13263). Logs and per-test verdicts go to $OUT (default /tmp/iscsi-profiles).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
size=1G
port="${OUR_PORT:-13263}"
out="${OUT:-/tmp/iscsi-profiles}"
while [ $# -gt 0 ]; do
    case "$1" in
        --size) size="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for t in iscsi-test-cu python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (apt-get install libiscsi-bin)" >&2; exit 1; }
done
mkdir -p "$out"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -p scsiport)

cat >"$out/profiles.toml" <<TOML
[nbd]
enabled = false
[iscsi]
listen = "127.0.0.1:${port}"
[[adapter]]
name = "scsi0"
[[adapter.disk]]
lun = 0
size = "${size}iB"
backend = "ram"
serial = "PROFILE-DEFAULT"
[[adapter.disk]]
lun = 1
size = "${size}iB"
backend = "ram"
removable = true
serial = "PROFILE-REMOVABLE"
[[adapter.disk]]
lun = 2
size = "${size}iB"
backend = "ram"
read_only = true
serial = "PROFILE-READONLY"
[[adapter.disk]]
lun = 3
size = "${size}iB"
backend = "ram"
physical_block_size = 4096
serial = "PROFILE-512E"
[[adapter.disk]]
lun = 4
size = "${size}iB"
backend = "ram"
encryption = true
serial = "PROFILE-ENCRYPTED"
TOML

pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true' EXIT
run() { # NAME LUN TESTS: a fresh target for each profile, so that no state leaks from one run into the next
    "$target_dir/release/scsiport" serve --config "$out/profiles.toml" >"$out/$1.serve.log" 2>&1 &
    pid=$!
    wait_port "$port"
    local url="iscsi://127.0.0.1:${port}/iqn.2026-11.io.scsiport:default/$2"
    timeout 1800 iscsi-test-cu -d -S -t "$3" "$url" "$url" >"$out/$1.log" 2>&1 || true
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    python3 "$here/iscsi-cu-parse.py" "$out/$1.log" >"$out/$1.txt"
}
run default 0 SCSI
run removable 1 SCSI
run readonly 2 SCSI.ReadOnly
run 512e 3 SCSI
run encrypted 4 SCSI.Sanitize

python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
union = {}
for name in ("default", "removable", "readonly", "512e", "encrypted"):
    verdicts = dict(line.split() for line in open(f"{out}/{name}.txt") if line.strip())
    c = {v: sum(1 for x in verdicts.values() if x == v) for v in ("passed", "failed", "skipped")}
    print(f"{name:10} {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped"
          + (f"   failed: {' '.join(sorted(n for n, v in verdicts.items() if v == 'failed'))}" if c['failed'] else ""))
    for n, v in verdicts.items():
        if v == "passed" or n not in union:
            union[n] = v if union.get(n) != "passed" else "passed"
passed = sorted(n for n, v in union.items() if v == "passed")
print(f"union      {len(passed)} of {len(union)} passed on some profile")
print("never passed:", " ".join(sorted(n for n, v in union.items() if v != "passed")) or "-")
PY
