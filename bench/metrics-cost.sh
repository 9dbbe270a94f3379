#!/usr/bin/env bash
# What the Prometheus endpoint costs, measured two ways against one `scsiport serve` with [metrics] on:
#
# 1. Throughput: NBD fio rounds without and with a scraper reading /metrics every second. The order alternates
#    (off/on, then on/off) so a machine getting busier or quieter during the run does not favour one side; prints
#    each pair's ratio (scraped / not scraped), their median and spread, and how much the not-scraped rounds vary
#    among themselves (the noise floor a ratio has to beat).
# 2. CPU: the server's own CPU time (utime + stime from /proc/PID/stat) for SCRAPES back-to-back scrapes with no I/O,
#    and per I/O during a not-scraped fio round. Scraping once a second costs (CPU per scrape) / (server CPU per
#    second at that load) of the throughput when the server is CPU-bound; this figure hardly depends on what else the
#    machine runs, which the throughput ratio does.
#
# env: ROUNDS (8), RUNTIME (seconds per fio run, 8), RW (randread), BS (4k), DEPTH (32), SCRAPES (5000),
#      SCSIPORT_BIN (built if unset)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
rounds=${ROUNDS:-8}; runtime=${RUNTIME:-8}; rw=${RW:-randread}; bs=${BS:-4k}; depth=${DEPTH:-32}
scrapes=${SCRAPES:-5000}
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
trap 'kill $server 2>/dev/null; rm -rf "$tmp"' EXIT
wait_port "$nbd" 300
wait_port "$metrics" 300

# Server CPU time so far, in clock ticks.
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)

# One fio run; prints "IOPS IOS".
run_fio() {
  fio --name=m --ioengine=nbd --uri="nbd://127.0.0.1:$nbd/default" --rw="$rw" --bs="$bs" --iodepth="$depth" \
    --size=1g --runtime="$runtime" --time_based --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
print(round(j["read"]["iops"] + j["write"]["iops"]), j["read"]["total_ios"] + j["write"]["total_ios"])'
}
scraped() {
  local scraper
  ( for _ in $(seq 1 $((runtime + 30))); do curl -s -o /dev/null "127.0.0.1:$metrics/metrics"; sleep 1; done ) &
  scraper=$!
  run_fio
  kill $scraper 2>/dev/null; wait $scraper 2>/dev/null || true
}

run_fio >/dev/null # warm-up
offs=(); ons=(); ratios=(); cpu_per_io=()
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    t0=$(ticks); read -r off ios < <(run_fio); t1=$(ticks)
    read -r on _ < <(scraped)
  else
    read -r on _ < <(scraped)
    t0=$(ticks); read -r off ios < <(run_fio); t1=$(ticks)
  fi
  cpu_per_io+=("$(python3 -c "print(($t1 - $t0) / $hz / $ios)")")
  offs+=("$off"); ons+=("$on")
  ratio=$(python3 -c "print(f'{$on / $off:.3f}')")
  ratios+=("$ratio")
  echo "round $r: $rw $bs qd$depth  not scraped $off IOPS, scraped every second $on IOPS, ratio $ratio"
done

# A scrape's CPU, with no I/O running.
body=$(curl -s "127.0.0.1:$metrics/metrics")
t0=$(ticks)
python3 - "$metrics" "$scrapes" <<'EOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    while c.recv(65536):
        pass
    c.close()
EOF
t1=$(ticks)

python3 - "${ratios[*]}" "${offs[*]}" "${cpu_per_io[*]}" "$t0" "$t1" "$hz" "$scrapes" "${#body}" \
  "$(grep -vc '^#' <<<"$body")" <<'EOF'
import statistics as s, sys
ratios, cpu_io = ([float(x) for x in a.split()] for a in (sys.argv[1], sys.argv[3]))
offs = [int(x) for x in sys.argv[2].split()]
t0, t1, hz, n, size, series = (int(x) for x in sys.argv[4:10])
print(f"throughput: median ratio {s.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}) over "
      f"{len(ratios)} alternating pairs; the not-scraped rounds alone vary by {s.pstdev(offs) / s.mean(offs):.1%} "
      f"(coefficient of variation), {min(offs)} to {max(offs)} IOPS")
per_scrape = (t1 - t0) / hz / n
per_io = s.median(cpu_io)
busy = per_io * s.median(offs)  # server CPU seconds per second at the fio load
print(f"cpu: a scrape ({size} bytes, {series} series) costs {per_scrape * 1e3:.3f} ms of server CPU "
      f"({t1 - t0} ticks of 1/{hz} s over {n} scrapes); an I/O costs {per_io * 1e6:.1f} us, so the server "
      f"uses {busy:.2f} CPU-seconds per second at {s.median(offs):.0f} IOPS; scraping once a second takes "
      f"{per_scrape / busy:.3%} of that")
EOF
echo "scrapes served: $(curl -s 127.0.0.1:$metrics/metrics | awk '/^scsiport_metrics_scrapes_total/ {print $2}')"
