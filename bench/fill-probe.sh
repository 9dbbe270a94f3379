#!/usr/bin/env bash
# What filling a disk through its server costs, and why: `qemu-img convert -n` of SIZE bytes of random data into a
# sparse image, once per server and probe, scsiport against its peer (qemu-nbd over NBD, tgtd over iSCSI), each
# time on a freshly emptied image (truncated to 0, then to SIZE, so every fill allocates the file's blocks again).
#
# Probes, each its own fill of both servers (peer first, then scsiport):
#   cpu    : wall time, MiB/s, and the server's CPU ms per GiB (user + system from /proc/PID/stat, as peers.sh)
#   ops    : what the client sends: strace of qemu-img's socket writes, decoded by fill-ops.py into iSCSI CDB
#            opcodes and lengths, or NBD request types and lengths
#   stat   : the server's task clock, context switches and page faults (perf stat)
#   sys    : the server's system calls (strace -c -f)
#   perf   : the server's profile (perf record -g), the top entries of `perf report --no-children`
#   folios : page-cache folio sizes of the image after the fill (folio-sizes.py)
#
# usage: bench/fill-probe.sh nbd|iscsi    env: SIZE (default 1G), PROBES (default "cpu ops stat sys perf folios"),
#                                              ROUNDS (cpu probe rounds, default 3, order alternating),
#                                              SYNC (1: write dirty data back before each fill),
#                                              SCSIPORT_BIN, OUT (default /tmp/scsiport-fill-probe), CARGO_TARGET_DIR
# Needs what peers.sh installs (run it once) plus strace and perf.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
root="$(cd "$here/.." && pwd)"
proto=${1:?usage: fill-probe.sh nbd|iscsi}
case "$proto" in nbd|iscsi) ;; *) echo "usage: fill-probe.sh nbd|iscsi" >&2; exit 2 ;; esac
size=${SIZE:-1G}
probes=${PROBES:-cpu ops stat sys perf folios}
rounds=${ROUNDS:-3}
out=${OUT:-/tmp/scsiport-fill-probe}
bytes=$(numfmt --from=iec "$size")
for t in strace:strace perf:linux-perf qemu-img:qemu-utils python3:python3; do
    command -v "${t%%:*}" >/dev/null 2>&1 && continue
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${t#*:}" >/dev/null
done
target_dir=${CARGO_TARGET_DIR:-$root/target}
if [ -n "${SCSIPORT_BIN:-}" ]; then
    bin=$SCSIPORT_BIN
else
    (cd "$root" && CARGO_TARGET_DIR="$target_dir" cargo build -q --release -j2 -p scsiport)
    bin="$target_dir/release/scsiport"
fi
img=(qemu-img)
if [ "$proto" = iscsi ] && ! qemu-img --help | grep -q '^Supported formats:.* iscsi '; then
    # The private qemu-img with the iscsi driver that peers.sh unpacks.
    priv=${QEMU_ISCSI_DIR:-/var/cache/scsiport-bench/qemu-iscsi}
    [ -x "$priv/usr/bin/qemu-img" ] || { echo "no qemu-img with iscsi: run bench/peers.sh once" >&2; exit 1; }
    img=(env "QEMU_MODULE_DIR=$priv/usr/lib/x86_64-linux-gnu/qemu" "$priv/usr/bin/qemu-img")
fi

rm -rf "$out"
mkdir -p "$out"
head -c "$bytes" /dev/urandom >"$out/src.img"
truncate -s "$size" "$out/peer.img" "$out/scsiport.img"
pids=()
tgt_pid=""
cleanup() {
    [ -n "$tgt_pid" ] && stop_tgtd 17 "$tgt_pid"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$out"/*.img
}
trap cleanup EXIT
if [ "$proto" = nbd ]; then
    peer=qemu-nbd
    qemu-nbd -f raw -x default -b 127.0.0.1 -p 10960 -t --cache=writeback "$out/peer.img" >"$out/peer.log" 2>&1 &
    peer_pid=$!
    pids+=("$peer_pid")
    "$bin" serve --disk-path "$out/scsiport.img" --disk-size "${size}iB" --no-iscsi \
        --nbd-listen 127.0.0.1:10961 >"$out/scsiport.log" 2>&1 &
    sp_pid=$!
    pids+=("$sp_pid")
    wait_port 10960 200
    wait_port 10961 200
    peer_url=nbd://127.0.0.1:10960/default
    sp_url=nbd://127.0.0.1:10961/default
else
    peer=tgtd
    tgtd -f -C 17 --iscsi portal=127.0.0.1:3271 >"$out/peer.log" 2>&1 &
    tgt_pid=$!
    peer_pid=$tgt_pid
    "$bin" serve --disk-path "$out/scsiport.img" --disk-size "${size}iB" --no-nbd \
        --iscsi-listen 127.0.0.1:3272 >"$out/scsiport.log" 2>&1 &
    sp_pid=$!
    pids+=("$sp_pid")
    wait_port 3271 200
    tgt_export 17 "$out/peer.img"
    wait_port 3272 200
    peer_url=iscsi://127.0.0.1:3271/iqn.2026-11.io.peer:tgt/1
    sp_url=iscsi://127.0.0.1:3272/iqn.2026-11.io.scsiport:default/0
fi

cpu() { local s; s=$(<"/proc/$1/stat"); s=${s##*) }; awk '{print $12 + $13}' <<<"$s"; }
hz=$(getconf CLK_TCK)
# empty NAME: the image holds no blocks and nothing of it is cached.
# With SYNC=1, dirty page-cache data (the source just written, the previous fill) is written back first.
empty() {
    truncate -s 0 "$out/$1.img"
    truncate -s "$size" "$out/$1.img"
    if [ "${SYNC:-0}" = 1 ]; then sync; fi
}
# Machine-wide counters of /proc/vmstat (Documentation/admin-guide/mm): pages scanned by direct reclaim, and direct
# compaction stalls with the pages they scanned: page-cache allocations that found too little free memory, or no free
# run as large as the folio they wanted, and reclaimed or compacted themselves, on the allocating thread's CPU time.
direct_scans() {
    awk '$1 ~ /^pgscan_direct$/ {r = $2} $1 == "compact_stall" {s = $2}
         $1 ~ /^compact_(migrate|free)_scanned$/ {c += $2} END {print r + 0, s + 0, c + 0}' /proc/vmstat
}
# fill NAME PID URL [WRAPPER...]: one fill; prints "MiB/s cpu-ms-per-GiB reclaim-scans compaction-stalls
# compaction-scans".
fill() {
    local name=$1 pid=$2 url=$3 t0 t1 c0 c1 d0 d1 r0 s0 k0 r1 s1 k1
    shift 3
    empty "$name"
    c0=$(cpu "$pid")
    d0=$(direct_scans)
    t0=$(date +%s.%N)
    timeout 600 "$@" "${img[@]}" convert -n -f raw -O raw "$out/src.img" "$url" >>"$out/convert.log" 2>&1
    t1=$(date +%s.%N)
    c1=$(cpu "$pid")
    d1=$(direct_scans)
    read -r r0 s0 k0 <<<"$d0"
    read -r r1 s1 k1 <<<"$d1"
    python3 -c "print(f'{$bytes / (1 << 20) / ($t1 - $t0):.1f} {($c1 - $c0) * 1000 / $hz / ($bytes / (1 << 30)):.0f} {$r1 - $r0} {$s1 - $s0} {$k1 - $k0}')"
}

servers=("$peer:$peer_pid:$peer_url" "scsiport:$sp_pid:$sp_url")
for probe in $probes; do
    case "$probe" in
    cpu)
        for r in $(seq 1 "$rounds"); do
            order=("${servers[@]}")
            [ $((r % 2)) = 0 ] && order=("${servers[1]}" "${servers[0]}")
            for s in "${order[@]}"; do
                IFS=: read -r name pid url <<<"$s"
                url=${s#*:*:}
                read -r rate ms scans stalls cscans <<<"$(fill "$name" "$pid" "$url")"
                echo "cpu round $r $name: $rate MiB/s, $ms ms CPU per GiB; direct reclaim scanned $scans pages;" \
                    "direct compaction stalled $stalls times, scanned $cscans pages"
            done
        done
        ;;
    ops)
        for s in "${servers[@]}"; do
            IFS=: read -r name pid _ <<<"$s"
            url=${s#*:*:}
            fill "$name" "$pid" "$url" strace -f -xx -s 64 -e trace=write,writev,sendmsg,sendto \
                -o "$out/ops-$name.strace" >/dev/null
            echo "ops $name: $(python3 "$here/fill-ops.py" "$proto" "$out/ops-$name.strace")"
        done
        ;;
    stat)
        for s in "${servers[@]}"; do
            IFS=: read -r name pid _ <<<"$s"
            url=${s#*:*:}
            perf stat -e task-clock,context-switches,page-faults -p "$pid" -o "$out/stat-$name.txt" &
            ps=$!
            sleep 1
            fill "$name" "$pid" "$url" >/dev/null
            kill -INT "$ps"
            wait "$ps" 2>/dev/null || true
            echo "perf stat $name: $(grep -E 'task-clock|context-switches|page-faults' "$out/stat-$name.txt" |
                awk '{printf "%s %s; ", $1, $2}')"
        done
        ;;
    sys)
        for s in "${servers[@]}"; do
            IFS=: read -r name pid _ <<<"$s"
            url=${s#*:*:}
            strace -c -f -p "$pid" -o "$out/sys-$name.txt" &
            st=$!
            sleep 1
            fill "$name" "$pid" "$url" >/dev/null
            kill -INT "$st"
            wait "$st" 2>/dev/null || true
            echo "syscalls $name:"
            head -12 "$out/sys-$name.txt"
        done
        ;;
    perf)
        for s in "${servers[@]}"; do
            IFS=: read -r name pid _ <<<"$s"
            url=${s#*:*:}
            perf record -q -e cpu-clock -g -p "$pid" -o "$out/perf-$name.data" 2>/dev/null &
            pr=$!
            sleep 1
            read -r rate ms _ <<<"$(fill "$name" "$pid" "$url")"
            kill -INT "$pr"
            wait "$pr" 2>/dev/null || true
            echo "profile $name ($rate MiB/s, $ms ms CPU per GiB, with perf attached):"
            perf report -i "$out/perf-$name.data" --no-children --sort symbol --percent-limit 1.5 --stdio -g none 2>/dev/null |
                grep -E '^ +[0-9]' | head -20
        done
        ;;
    folios)
        for s in "${servers[@]}"; do
            IFS=: read -r name pid _ <<<"$s"
            url=${s#*:*:}
            fill "$name" "$pid" "$url" >/dev/null
            python3 "$here/folio-sizes.py" "$out/$name.img" | sed "s|^$out/||"
        done
        ;;
    *) echo "unknown probe $probe" >&2; exit 2 ;;
    esac
done
