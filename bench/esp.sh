#!/usr/bin/env bash
# NBD 1 MiB throughput through the ESP card (NCR 53C94-class, C miniport) against the reference card, in one
# `scsiport serve` process: each card alone on its own 16-bit DMA channel (reference on 5, ESP on 6) with a RAM disk
# of the same size, each disk its own NBD export. Rounds alternate between the two exports (reference, ESP, reference,
# ...), each round one fio run (nbd engine) per workload; per workload it prints both medians and the ratio ESP /
# reference. A ratio is only meaningful against the peer measured in the same run, so the machine's load cancels out
# as far as alternation can make it.
#
# usage: bench/esp.sh
# env:   ROUNDS (per card, default 5), RUNTIME (seconds per fio run, default 5), SIZE (region, default 256M),
#        SCSIPORT (binary; default target/release/scsiport, built with cargo if missing)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
source "$here/lib.sh"

rounds=${ROUNDS:-5}
runtime=${RUNTIME:-5}
size=${SIZE:-256M}
bin=${SCSIPORT:-$repo/target/release/scsiport}
command -v fio >/dev/null || { echo "fio is not installed (apt-get install -y fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required to read fio's JSON" >&2; exit 1; }
if [[ ! -x $bin ]]; then
    (cd "$repo" && cargo build --release -p scsiport)
fi

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/bench.toml" <<EOF
[[adapter]]
name = "ref0"
kind = "reference"
io_base = 0x330
irq = 11
dma_channel = 5
[[adapter.disk]]
backend = "ram"
size = "1GiB"

[[adapter]]
name = "esp0"
kind = "esp"
io_base = 0x230
irq = 10
dma_channel = 6
[[adapter.disk]]
backend = "ram"
size = "1GiB"

[nbd]
listen = "127.0.0.1:$port"

[[nbd_export]]
name = "ref"
disk = "ref0:0:0"

[[nbd_export]]
name = "esp"
disk = "esp0:0:0"

[iscsi]
enabled = false

[control]
socket = "$tmp/control.sock"
EOF

(cd "$tmp" && exec "$bin" serve --config "$tmp/bench.toml" >"$tmp/serve.log" 2>&1) &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$tmp"' EXIT
wait_port "$port" 300 || { cat "$tmp/serve.log" >&2; exit 1; }

# name rw
workloads=("seq-write-1M-qd8 write" "seq-read-1M-qd8 read")

# run EXPORT NAME RW: one fio run, prints MiB/s.
run() {
    local out="$tmp/$1-$2.json"
    timeout -k 5 $((runtime + 60)) fio --name="$2" --ioengine=nbd --uri="nbd://127.0.0.1:$port/$1" \
        --rw="$3" --bs=1M --iodepth=8 --size="$size" --runtime="$runtime" --time_based \
        --output-format=json >"$tmp/raw" 2>"$tmp/err" || { echo "fio failed on $1 $2:" >&2; cat "$tmp/err" >&2; exit 1; }
    sed -n '/^{/,$p' "$tmp/raw" >"$out"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; s=j["write" if "write" in sys.argv[2] else "read"]; print("%.1f" % (s["bw_bytes"] / (1 << 20)))' "$out" "$3"
}

# Both RAM disks start sparse: fill the measured region of each once, unmeasured, so that no round pays for the
# first touch of its blocks.
for e in ref esp; do
    timeout -k 5 600 fio --name=fill --ioengine=nbd --uri="nbd://127.0.0.1:$port/$e" --rw=write --bs=1M --iodepth=8 \
        --size="$size" --output-format=terse >/dev/null 2>"$tmp/err" || { echo "fio fill of $e failed:" >&2; cat "$tmp/err" >&2; exit 1; }
done

echo "NBD 1 MiB, queue depth 8, $rounds rounds per card of ${runtime}s, alternating; RAM disks; $(nproc) CPUs"
printf '%-18s %6s %10s %10s\n' workload round reference esp
declare -A results
for w in "${workloads[@]}"; do
    read -r name rw <<<"$w"
    refs=() esps=()
    for r in $(seq 1 "$rounds"); do
        # Alternate which card goes first, so neither always runs on the warmer cache or the quieter moment.
        if (( r % 2 )); then
            a=$(run ref "$name" "$rw"); b=$(run esp "$name" "$rw")
        else
            b=$(run esp "$name" "$rw"); a=$(run ref "$name" "$rw")
        fi
        refs+=("$a") esps+=("$b")
        printf '%-18s %6d %10s %10s\n' "$name" "$r" "$a" "$b"
    done
    results[$name]="${refs[*]}|${esps[*]}"
done

echo
printf '%-18s %16s %16s %12s\n' workload "reference MiB/s" "esp MiB/s" "esp/ref"
for w in "${workloads[@]}"; do
    read -r name _ <<<"$w"
    python3 - "$name" "${results[$name]}" <<'PY'
import statistics, sys
name, both = sys.argv[1], sys.argv[2]
ref, esp = ([float(x) for x in part.split()] for part in both.split("|"))
r, e = statistics.median(ref), statistics.median(esp)
print(f"{name:<18} {r:16.1f} {e:16.1f} {e / r:11.2f}x")
PY
done
