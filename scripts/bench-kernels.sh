#!/usr/bin/env bash
# Full kernel or cloud kernel: QEMU start → zos-netboot's "online in" line, booting the kernel
# and an initramfs directly (-kernel/-initrd, SeaBIOS, TCG) with one virtio NIC on QEMU's user
# network (restrict=on), the median of RUNS boots per kernel, the two kernels interleaved (run
# 1 of each, then run 2 of each, …) so that the machine's load hits both alike.
#
#   scripts/bench-kernels.sh [--runs N] [--bin PATH] [--out FILE] [--rebuild]
#                            [--compress zstd|gzip|none] [--modules zst|ko] [--firmware xz|plain]
#
# Builds, into target/bench-kernels, one initramfs per kernel with build-initramfs.sh and the
# same options for both (default: as the media have it) for the newest /boot/vmlinuz-*-amd64
# and the newest /boot/vmlinuz-*-cloud-amd64; an image already there is reused unless
# --rebuild. Both kernels get the same command line. Besides the total, each boot's console
# gives the breakdown (medians):
#   before clock   QEMU start → the kernel's clock starts: SeaBIOS, loading, and the bzImage
#                  decompressing itself (wall time minus the two clocks below)
#   unpack         the kernel unpacking the initramfs ("Trying to unpack" → "Freeing initrd")
#   → /init        the kernel's clock at "Run /init"
#   coldplug       zos-netboot's clock at its "drivers: coldplug" line
#   /init → online zos-netboot's clock at "online in"
# Prints the load average before and after; --out writes the table. Every QEMU runs under
# timeout and is stopped by its PID.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
die() { printf 'bench-kernels.sh: %s\n' "$*" >&2; exit 1; }
runs=3 bin="$repo/target/x86_64-unknown-linux-musl/release/zos-netboot" out='' rebuild=0
build_args=()
variant=''
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=${2:?}; shift 2 ;;
    --bin) bin=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    --compress | --modules | --firmware)
      build_args+=("$1" "${2:?$1 needs a value}"); variant+="-${1#--}-$2"; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[ -x "$bin" ] || die "$bin is missing (bash scripts/build.sh)"
full=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' ! -name '*-cloud-amd64' | sort -V | tail -n 1)
cloud=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)
[ -n "$full" ] && [ -n "$cloud" ] || die "needs both linux-image-amd64 and linux-image-cloud-amd64"
work="$repo/target/bench-kernels"
mkdir -p "$work"
load() { cut -d' ' -f1-3 /proc/loadavg; }

boot_once() { # KERNEL INITRD LOG → "total before unpack init coldplug online" (s), or "fail"
  local log=$3 start pid t=fail
  rm -f "$log"
  start=$(date +%s%N)
  timeout -k 5 150 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 512 \
    -nodefaults -no-user-config -display none -no-reboot -kernel "$1" -initrd "$2" \
    -append "console=ttyS0,115200 farmer_id=1 runmode=test version=v3 zos.probe=none zos.fetch=none" \
    -netdev user,id=n1,restrict=on -device virtio-net-pci,netdev=n1,romfile= \
    -serial "file:$log" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do
    if grep -aq '] online in ' "$log" 2>/dev/null; then
      t=$(awk -v s="$start" -v e="$(date +%s%N)" 'BEGIN { printf "%.1f", (e - s) / 1e9 }')
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$t" != fail ] || { echo fail; return; }
  # Kernel lines: "[    1.193560] Trying to unpack …"; zos-netboot's own: "[   0.443] drivers: …".
  awk -v total="$t" '
    function ts(line) { sub(/^[^[]*\[ */, "", line); sub(/\].*/, "", line); return line + 0 }
    /\] Trying to unpack rootfs/ { u0 = ts($0) }
    /\] Freeing initrd memory/ { u1 = ts($0) }
    /\] Run \/init as init process/ { init = ts($0) }
    /^\[ *[0-9]+\.[0-9][0-9][0-9]\] drivers: coldplug:/ { cold = ts($0) }
    /^\[ *[0-9]+\.[0-9][0-9][0-9]\] online in / { online = ts($0) }
    END { printf "%.1f %.1f %.1f %.1f %.2f %.1f\n", total, total - init - online, u1 - u0, init, cold, online }
  ' "$log"
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print "-" }'; }

imgs=()
for k in "$full" "$cloud"; do
  ver=${k##*/vmlinuz-}
  img="$work/initrd-$ver$variant.img"
  if [ "$rebuild" = 1 ] || [ ! -s "$img" ]; then
    timeout 1800 nice -n 10 bash "$repo/scripts/build-initramfs.sh" --out "$img" \
      --kernel-version "$ver" --bin "$bin" --budget 0 "${build_args[@]}" >/dev/null 2>&1 ||
      die "build-initramfs.sh for $ver failed"
  fi
  imgs+=("$img")
done
echo "load average before: $(load)" >&2
declare -A res
for r in $(seq 1 "$runs"); do
  for i in 0 1; do
    k=$([ "$i" = 0 ] && echo "$full" || echo "$cloud")
    ver=${k##*/vmlinuz-}
    res[$i,$r]=$(boot_once "$k" "${imgs[$i]}" "$work/console-$ver$variant-$r.log")
    echo "  $ver run $r: ${res[$i,$r]} (load $(load))" >&2
  done
done
echo "load average after: $(load)" >&2
table="| kernel | initrd bytes | QEMU start → online, median of $runs (s) | before clock | unpack | → /init | coldplug | /init → online | runs (s) |
|---|---:|---:|---:|---:|---:|---:|---:|---|"
for i in 0 1; do
  k=$([ "$i" = 0 ] && echo "$full" || echo "$cloud")
  ver=${k##*/vmlinuz-}
  row="| $ver | $(stat -c %s "${imgs[$i]}")"
  totals=''
  for col in 1 2 3 4 5 6; do
    m=$(for r in $(seq 1 "$runs"); do echo "${res[$i,$r]}"; done | awk -v c="$col" '$1 != "fail" { print $c }' | median)
    row+=" | $m"
  done
  for r in $(seq 1 "$runs"); do totals+="${totals:+ }$(echo "${res[$i,$r]}" | awk '{ print $1 }')"; done
  table+="
$row | ($totals) |"
done
echo "$table"
[ -z "$out" ] || echo "$table" >"$out"
