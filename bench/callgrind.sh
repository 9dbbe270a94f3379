#!/usr/bin/env bash
# Instructions scsiport serve executes per request, counted by valgrind's callgrind: unlike wall-clock figures they do
# not depend on what else the machine runs, so two builds compare on a loaded machine. User-space instructions only:
# the kernel's share (page-cache copies, TCP) is not in them (bench/README.md, "Where the time goes").
#
# usage: bench/callgrind.sh [SCSIPORT_BIN]      env: OUT (default /tmp/scsiport-callgrind), SIZE (default 256M)
# Prints, per workload, the requests run and the instructions per request; leaves one callgrind dump per workload in
# OUT for callgrind_annotate.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
bin=${1:-$root/target/release/scsiport}
out=${OUT:-/tmp/scsiport-callgrind}
size=${SIZE:-256M}
nbd_port=10951
iscsi_port=3292
for t in valgrind:valgrind fio:fio python3:python3; do
    command -v "${t%%:*}" >/dev/null 2>&1 && continue
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${t#*:}" >/dev/null
done
target_dir=${CARGO_TARGET_DIR:-$root/target}
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -j2 -p iscsi --example iscsi-load)
load="$target_dir/release/examples/iscsi-load"

rm -rf "$out"
mkdir -p "$out"
# Data written with 1 MiB writes, as a user's fill leaves it (bench/README.md: folio sizes).
python3 - "$out/disk.img" "$(numfmt --from=iec "$size")" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
for off in range(0, int(sys.argv[2]), 1 << 20):
    os.pwrite(fd, os.urandom(1 << 20), off)
os.close(fd)
PY
(cd "$out" && exec valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "$bin" serve \
    --disk-path "$out/disk.img" --disk-size "${size}iB" \
    --nbd-listen "127.0.0.1:$nbd_port" --iscsi-listen "127.0.0.1:$iscsi_port") >"$out/server.log" 2>&1 &
vg=$!
trap 'kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true' EXIT
wait_port "$nbd_port" 1200
wait_port "$iscsi_port" 1200
uri="nbd://127.0.0.1:$nbd_port/default"

# run NAME OPS-COMMAND...: zero the counters, run, dump; the command prints the requests it ran.
run() {
    local name=$1 ops ir
    shift
    callgrind_control -z "$vg" >/dev/null
    ops=$("$@")
    callgrind_control -d "$name" "$vg" >/dev/null
    local dump
    dump=$(ls -t "$out"/callgrind.out.* | head -1)
    mv "$dump" "$out/$name.callgrind"
    ir=$(sed -nE 's/^(summary|totals): ([0-9]+).*/\2/p' "$out/$name.callgrind" | head -1)
    python3 -c "print(f'{\"$name\":<24} {$ops:>8} requests {$ir / $ops:>12.0f} instructions per request')"
}
fio_ops() { # rw bs depth requests
    fio --name=cg --ioengine=nbd --uri="$uri" --rw="$1" --bs="$2" --iodepth="$3" --size="$size" \
        --number_ios="$4" --output-format=json 2>/dev/null | sed -n '/^{/,$p' |
        python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['read']['total_ios'] + j['write']['total_ios'])"
}
iscsi_ops() { # rw bs depth secs
    "$load" --url "iscsi://127.0.0.1:$iscsi_port/iqn.2026-11.io.scsiport:default/0" --rw "$1" --bs "$2" --qd "$3" \
        --secs "$4" --span "$(numfmt --from=iec "$size")" | sed -nE 's/^ops ([0-9]+) errors 0 .*/\1/p'
}
run nbd-seq-read-1M-qd8 fio_ops read 1M 8 256
run nbd-seq-write-1M-qd8 fio_ops write 1M 8 256
run nbd-rand-read-4k-qd32 fio_ops randread 4k 32 4096
run nbd-rand-write-4k-qd32 fio_ops randwrite 4k 32 4096
run iscsi-seq-read-1M-qd8 iscsi_ops read 1048576 8 10
