#!/usr/bin/env bash
# Same workloads, same run, against our target and tgtd; prints each result and the
# ratio ours/tgtd. Reads use iscsi-perf (libiscsi-bin): sequential 1 MiB with 8 in
# flight, random 4 KiB with 32 in flight. iscsi-perf cannot write, so the same two
# shapes as writes use the iscsi-load example of crates/iscsi (one connection,
# immediate data and R2T as negotiated), run the same way against both targets.
#
# Usage: bench/iscsi-perf.sh [--ours-url URL --peer-url URL] [--ours-cmd CMD] [--secs N] [--size 1G]
# Without URLs it starts both targets itself as bench/iscsi-conformance.sh does (our
# iscsi-direct example on 127.0.0.1:$OUR_PORT (13262), tgtd on 127.0.0.1:$TGT_PORT (13261,
# control port $TGT_CTL, 17) over an image of --size bytes).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
secs=6
size=1G
our_port="${OUR_PORT:-13262}"
tgt_port="${TGT_PORT:-13261}"
tgt_ctl="${TGT_CTL:-17}"
ours_url=""
peer_url=""
ours_cmd=""
out="${OUT:-/tmp/iscsi-perf}"

while [ $# -gt 0 ]; do
    case "$1" in
        --ours-url) ours_url="$2"; shift 2 ;;
        --peer-url) peer_url="$2"; shift 2 ;;
        --ours-cmd) ours_cmd="$2"; shift 2 ;;
        --secs) secs="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v iscsi-perf >/dev/null || { echo "missing tool: iscsi-perf (apt-get install libiscsi-bin)" >&2; exit 1; }
mkdir -p "$out"

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


target_dir="${CARGO_TARGET_DIR:-/work/target-iscsi}"
(cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -p iscsi --example iscsi-direct --example iscsi-load)
load="$target_dir/release/examples/iscsi-load"
if [ -z "$ours_url" ]; then
    if [ -z "$ours_cmd" ]; then
        ours_cmd="$target_dir/release/examples/iscsi-direct --listen 127.0.0.1:${our_port} --size ${size}iB"
    fi
    bash -c "exec $ours_cmd" >"$out/ours.log" 2>&1 &
    ours_pid=$!
    wait_port "$our_port"
    ours_url="iscsi://127.0.0.1:${our_port}/iqn.2026-11.io.scsiport:default/0"
fi
if [ -z "$peer_url" ]; then
    img="$out/tgt.img"
    rm -f "$img"
    truncate -s "$size" "$img"
    tgtd -f -C "$tgt_ctl" --iscsi portal=127.0.0.1:${tgt_port} >"$out/tgtd.log" 2>&1 &
    tgt_pid=$!
    wait_port "$tgt_port"
    tgt_export "$tgt_ctl" "$img"
    peer_url="iscsi://127.0.0.1:${tgt_port}/iqn.2026-11.io.peer:tgt/1"
fi

# iscsi-perf prints its running figures with carriage returns and ends with
# "iops average N (M MB/s)".
measure() {
    local log="$1" tool="$2"; shift 2
    local url="${!#}"
    if [ "$tool" = perf ]; then
        timeout $((secs + 30)) iscsi-perf "$@" >"$log" 2>&1 || true
        tr '\r' '\n' <"$log" | sed -nE 's/.*iops average ([0-9.]+) \(([0-9.]+) MB\/s\).*/\1 \2/p' | tail -1
    else
        timeout $((secs + 30)) "$load" --url "$url" "${@:1:$#-1}" --secs "$secs" --span "$(numfmt --from=iec "$size")" \
            >"$log" 2>&1 || true
        # iscsi-load ends with "ops N errors E iops X MB/s Y".
        sed -nE 's/^ops [0-9]+ errors 0 iops ([0-9.]+) MB\/s ([0-9.]+)$/\1 \2/p' "$log" | tail -1
    fi
}

printf '%-26s %14s %14s %8s\n' workload ours tgtd ratio
run() {
    local name="$1" unit="$2" tool="$3"; shift 3
    local o t ov tv
    o="$(measure "$out/ours-$name.log" "$tool" "$@" "$ours_url")"
    t="$(measure "$out/tgt-$name.log" "$tool" "$@" "$peer_url")"
    if [ "$unit" = MB/s ]; then ov="${o#* }"; tv="${t#* }"; else ov="${o%% *}"; tv="${t%% *}"; fi
    python3 -c "import sys; o=float(sys.argv[2] or 0); t=float(sys.argv[3] or 0); print(f'{sys.argv[1]:<26} {o:>10.1f} {sys.argv[4]:<4}{t:>10.1f} {sys.argv[4]:<4}{(o/t if t else float(\"nan\")):>6.2f}x')" \
        "$name" "${ov:-0}" "${tv:-0}" "$unit"
}
# Warm-up: one sequential write pass over both disks first, so that neither side's
# first-touch allocation (RAM regions here, page cache over tgtd's sparse image) is
# what the write workloads measure.
measure "$out/ours-warmup.log" load --rw write --bs 1048576 --qd 8 "$ours_url" >/dev/null
measure "$out/tgt-warmup.log" load --rw write --bs 1048576 --qd 8 "$peer_url" >/dev/null
run seq-read-1MiB-qd8 MB/s perf -m 8 -b 2048 -t "$secs"
run rand-read-4KiB-qd32 IOPS perf -m 32 -b 8 -r -t "$secs"
run seq-write-1MiB-qd8 MB/s load --rw write --bs 1048576 --qd 8
run rand-write-4KiB-qd32 IOPS load --rw write --bs 4096 --qd 32 --random
