#!/usr/bin/env bash
# Runs the four NBD fio workloads against one NBD URI and prints, per
# workload, the bandwidth (MiB/s) and IOPS taken from fio's JSON output:
#   seq-read-1M-qd8, seq-write-1M-qd8, rand-read-4k-qd32, rand-write-4k-qd32
#
# usage: bench/nbd-fio.sh nbd://127.0.0.1:10809/default
# env:   RUNTIME (seconds per workload, default 10), SIZE (region, default 1G),
#        FIO_JSON_DIR (keep each raw fio JSON there), LABEL (first column).
set -euo pipefail

uri=${1:?usage: $0 NBD_URI}
runtime=${RUNTIME:-10}
size=${SIZE:-1G}
label=${LABEL:-}
command -v fio >/dev/null || { echo "fio is not installed (apt-get install -y fio)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required to read fio's JSON" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# name rw bs iodepth
workloads=(
  "seq-read-1M-qd8 read 1M 8"
  "seq-write-1M-qd8 write 1M 8"
  "rand-read-4k-qd32 randread 4k 32"
  "rand-write-4k-qd32 randwrite 4k 32"
)

printf '%s%-20s %12s %12s\n' "${label:+$label }" workload MiB/s IOPS
for w in "${workloads[@]}"; do
  read -r name rw bs depth <<<"$w"
  out="$tmp/$name.json"
  # fio prints "fio: connected to NBD server" before the JSON: keep from
  # the first '{' on.
  timeout -k 5 $((runtime + 60)) fio --name="$name" --ioengine=nbd --uri="$uri" \
    --rw="$rw" --bs="$bs" --iodepth="$depth" --size="$size" \
    --runtime="$runtime" --time_based --group_reporting \
    --output-format=json >"$tmp/raw" 2>"$tmp/err" || {
      echo "fio failed for $name:" >&2; cat "$tmp/err" >&2; exit 1; }
  sed -n '/^{/,$p' "$tmp/raw" >"$out"
  if [[ -n "${FIO_JSON_DIR:-}" ]]; then
    mkdir -p "$FIO_JSON_DIR" && cp "$out" "$FIO_JSON_DIR/$name.json"
  fi
  python3 - "$out" "$name" "$rw" "$label" <<'PY'
import json, sys
path, name, rw, label = sys.argv[1:5]
job = json.load(open(path))["jobs"][0]
side = job["write" if "write" in rw else "read"]
mib = side["bw_bytes"] / (1 << 20)
iops = side["iops"]
prefix = label + " " if label else ""
print(f"{prefix}{name:<20} {mib:12.1f} {iops:12.0f}")
PY
done
