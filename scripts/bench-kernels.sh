#!/usr/bin/env bash
# Full kernel or cloud kernel: QEMU start → zos-netboot's "online in" line, booting the kernel
# and an initramfs directly (-kernel/-initrd, SeaBIOS, TCG) with one virtio NIC on QEMU's user
# network (restrict=on), the median of RUNS boots per kernel.
#
#   scripts/bench-kernels.sh [--runs N] [--bin PATH] [--out FILE]
#
# Builds, into target/bench-kernels, one initramfs per kernel (build-initramfs.sh as the media
# have it: zstd, the same binary and modules.list) for the newest /boot/vmlinuz-*-amd64 and
# the newest /boot/vmlinuz-*-cloud-amd64. Prints sizes and times; --out writes the table. Every
# QEMU runs under timeout and is stopped by its PID.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
die() { printf 'bench-kernels.sh: %s\n' "$*" >&2; exit 1; }
runs=3 bin="$repo/target/x86_64-unknown-linux-musl/release/zos-netboot" out=''
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --bin) bin=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[ -x "$bin" ] || die "$bin is missing (bash scripts/build.sh)"
full=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' ! -name '*-cloud-amd64' | sort -V | tail -n 1)
cloud=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)
[ -n "$full" ] && [ -n "$cloud" ] || die "needs both linux-image-amd64 and linux-image-cloud-amd64"
work="$repo/target/bench-kernels"
mkdir -p "$work"
table="| kernel | initrd bytes | QEMU start → online, median of $runs (s) | runs (s) |
|---|---:|---:|---|"

boot_once() { # KERNEL INITRD → seconds to "online in", or "fail"
  local log="$work/console.log" start pid t=fail
  rm -f "$log"
  start=$(date +%s%N)
  timeout -k 5 150 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 \
    -nodefaults -no-user-config -display none -no-reboot -kernel "$1" -initrd "$2" \
    -append "console=ttyS0,115200 farmer_id=1 runmode=test version=v3 zos.probe=none zos.fetch=none" \
    -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,romfile= \
    -serial "file:$log" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 1400); do
    if grep -aq '] online in ' "$log" 2>/dev/null; then
      t=$(awk -v s="$start" -v e="$(date +%s%N)" 'BEGIN { printf "%.1f", (e - s) / 1e9 }')
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "$t"
}

for k in "$full" "$cloud"; do
  ver=${k##*/vmlinuz-}
  img="$work/initrd-$ver.img"
  [ -s "$img" ] || timeout 900 bash "$repo/scripts/build-initramfs.sh" --out "$img" \
    --kernel-version "$ver" --bin "$bin" >/dev/null 2>&1 ||
    die "build-initramfs.sh for $ver failed"
  times=()
  for _ in $(seq 1 "$runs"); do times+=("$(boot_once "$k" "$img")"); done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  table+="
| $ver | $(stat -c %s "$img") | $median | (${times[*]}) |"
done
echo "$table"
[ -z "$out" ] || echo "$table" >"$out"
