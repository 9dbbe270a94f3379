#!/usr/bin/env bash
# The whole test suite: installs the interop peers the tests drive, checks formatting and lints, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the interop tests need, and the Debian packages that bring them.
need=(
  "iscsi-test-cu:libiscsi-bin"
  "iscsi-inq:libiscsi-bin"
  "tgtd:tgt"
  "fio:fio"
  "nbdinfo:libnbd-bin"
  "nbdcopy:libnbd-bin"
  "sg_inq:sg3-utils"
  "qemu-img:qemu-utils"
  "qemu-io:qemu-utils"
  "qemu-nbd:qemu-utils"
)
missing=()
for n in "${need[@]}"; do
  command -v "${n%%:*}" >/dev/null 2>&1 || missing+=("${n#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing: ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# Release mode: the data-path tests move hundreds of MiB through the DMA model.
cargo test --workspace --release -- --test-threads=2
