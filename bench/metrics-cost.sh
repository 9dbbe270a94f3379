#!/usr/bin/env bash
# What the Prometheus endpoint costs: NBD fio workloads against one `scsiport serve` with [metrics] on, in alternating
# rounds without and with a scraper reading /metrics every second; prints each round's IOPS and the mean ratio
# (scraped / not scraped). One server for both, so only the scraping differs.
#
# env: ROUNDS (3), RUNTIME (seconds per round, 10), RW (randread), BS (4k), DEPTH (32), SCSIPORT_BIN (built if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
rounds=${ROUNDS:-3}; runtime=${RUNTIME:-10}; rw=${RW:-randread}; bs=${BS:-4k}; depth=${DEPTH:-32}
for t in fio curl python3; do command -v "$t" >/dev/null || { echo "$t is not installed" >&2; exit 1; }; done
bin=${SCSIPORT_BIN:-}
if [ -z "$bin" ]; then cargo build --release -p scsiport >/dev/null; bin=$PWD/target/release/scsiport; fi
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nbd=$(free_port); metrics=$(free_port)
cat >"$tmp/c.toml" <<CFG
[[adapter]]
[[adapter.disk]]
backend = "ram"
size = "1GiB"
[iscsi]
enabled = false
[nbd]
listen = "127.0.0.1:$nbd"
[control]
enabled = false
[metrics]
listen = "127.0.0.1:$metrics"
CFG
"$bin" serve --config "$tmp/c.toml" >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
wait_port "$nbd" 300
iops() {
  fio --name=m --ioengine=nbd --uri="nbd://127.0.0.1:$nbd/default" --rw="$rw" --bs="$bs" --iodepth="$depth" \
    --size=1g --runtime="$runtime" --time_based --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' | python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j["read"]["iops"] + j["write"]["iops"]))'
}
ratios=()
for r in $(seq 1 "$rounds"); do
  off=$(iops)
  ( while :; do curl -s -o /dev/null "127.0.0.1:$metrics/metrics"; sleep 1; done ) &
  scraper=$!
  on=$(iops)
  kill $scraper; wait $scraper 2>/dev/null || true
  ratio=$(python3 -c "print(f'{$on / $off:.3f}')")
  ratios+=("$ratio")
  echo "round $r: $rw $bs qd$depth  not scraped $off IOPS, scraped every second $on IOPS, ratio $ratio"
done
python3 -c "import statistics as s; r=[float(x) for x in '${ratios[*]}'.split()]; print(f'mean ratio {s.mean(r):.3f} (min {min(r):.3f}, max {max(r):.3f}) over {len(r)} rounds')"
echo "scrapes served: $(curl -s 127.0.0.1:$metrics/metrics | awk '/^scsiport_metrics_scrapes_total/ {print $2}')"
