#!/usr/bin/env bash
# Measures the boot media of scripts/build-media.sh: the size of each artifact, and QEMU start →
# zos-netboot's "online in" line for each boot path (TCG), the median of RUNS boots (default 3).
#
#   scripts/bench-media.sh [--media DIR] [--runs N] [--out FILE]
#
#   --media DIR   media built with build-media.sh --next-root (qemu/build-next-root.sh, so a
#                 boot ends with a power-off); default: build them into target/media-bench
#   --runs N      boots per path (default 3)
#   --out FILE    also write the markdown table there
#
# Paths: pxe-tftp, pxe-http (QEMU's iPXE ROM; dnsmasq + busybox httpd in a network namespace
# zmb-<pid> this script creates, on a tap inside it), uefi-usb, uefi-iso, uefi-efi-fat (OVMF),
# bios-usb, bios-iso (SeaBIOS); local boots use QEMU's user network with restrict=on. Needs
# root. Every command runs under timeout; QEMU and the daemons are stopped by PID, the
# namespace is deleted on exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...

repo=$(cd "$(dirname "$0")/.." && pwd)

media='' runs=3 outfile=''
while [ $# -gt 0 ]; do
  case "$1" in
    --media) media=${2:?}; shift 2 ;;
    --runs) runs=${2:?}; shift 2 ;;
    --out) outfile=${2:?}; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (network namespace, tap)"
cmdline="farmer_id=4242 runmode=test version=v3 zos.probe=none zos.fetch=none"

work=$(mktemp -d "${TMPDIR:-/tmp}/zos-bench-media.XXXXXX")
ns="zmb-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || true; done
  del_ns "$ns"
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$media" ]; then
  media="$repo/target/media-bench"
  timeout 1800 bash "$repo/scripts/build.sh" >/dev/null
  rm -rf "$work/nr"
  timeout 60 bash "$repo/qemu/build-next-root.sh" "$work/nr" >/dev/null
  timeout 900 bash "$repo/scripts/build-media.sh" --out "$media" --cmdline "$cmdline" \
    --bin "$repo/target/x86_64-unknown-linux-musl/release/zos-netboot" --next-root "$work/nr" --no-check >/dev/null
fi
for f in vmlinuz initrd.img boot.ipxe zos-netboot.efi usb.img zos.iso efi-fat.img; do
  [ -f "$media/$f" ] || die "$media/$f is missing"
done

printf '\xf8\x03' >"$work/sercon"
mac=52:54:00:7a:00:01
base=(-machine q35 -accel tcg -cpu max -smp 1 -m 512 -nodefaults -no-user-config -display none -no-reboot)
user_nic=(-netdev user,id=n1,restrict=on -device "virtio-net-pci,netdev=n1,mac=$mac,romfile=")
sercon=(-fw_cfg "name=etc/sercon-port,file=$work/sercon")
ovmf() { cp /usr/share/OVMF/OVMF_VARS_4M.fd "$work/vars.fd"
  echo "-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,unit=1,file=$work/vars.fd"; }

# boot NAME PREFIX... -- QEMU ARGS: one boot; prints seconds from QEMU start to "] online in ".
boot() {
  local log="$work/console.log" start now qpid
  local pre=()
  while [ "$1" != -- ]; do pre+=("$1"); shift; done
  shift
  rm -f "$log"
  : >"$log"
  start=$(date +%s.%N)
  timeout -k 5 150 "${pre[@]}" qemu-system-x86_64 "${base[@]}" "$@" -serial "file:$log" </dev/null >/dev/null 2>"$work/qemu.err" &
  qpid=$!
  pids+=("$qpid")
  local t=''
  while kill -0 "$qpid" 2>/dev/null; do
    if grep -aq '] online in ' "$log"; then
      now=$(date +%s.%N)
      t=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
      break
    fi
    sleep 0.05
  done
  wait "$qpid" 2>/dev/null || true
  [ -n "$t" ] || { tr -d '\r' <"$log" | tail -20 >&2; cat "$work/qemu.err" >&2; die "no online line"; }
  echo "$t"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A result
run_path() {
  local name=$1; shift
  local times=()
  for _ in $(seq "$runs"); do times+=("$(boot "$@")"); done
  result[$name]="$(printf '%s\n' "${times[@]}" | median) (${times[*]})"
  printf '  %-14s median %ss  runs: %s\n' "$name" "$(printf '%s\n' "${times[@]}" | median)" "${times[*]}" >&2
}

# The router namespace for the network boots.
make_ns "$ns"
timeout 20 ip -n "$ns" tuntap add oob mode tap
timeout 20 ip -n "$ns" link set oob up
timeout 20 ip -n "$ns" addr add 10.77.0.1/24 dev oob
mkdir -p "$work/boot"
cp "$media/boot.ipxe" "$media/vmlinuz" "$media/initrd.img" "$work/boot/"
chmod -R a+rX "$work"
dns() { # dhcp-boot value, extra args
  local b=$1; shift
  timeout -k 5 3600 ip netns exec "$ns" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts --no-resolv \
    --bind-dynamic --interface=oob --no-ping --port=0 --dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,1h \
    --dhcp-host="$mac,10.77.0.50" --dhcp-option=3,10.77.0.1 --dhcp-match=set:ipxe,175 \
    --dhcp-boot="$b" --dhcp-leasefile="$work/leases" --pid-file= --log-facility="$work/dnsmasq.log" "$@" \
    2>>"$work/dnsmasq.err" &
  pids+=($!)
  for _ in $(seq 200); do grep -q "DHCP, IP range" "$work/dnsmasq.log" 2>/dev/null && return 0; sleep 0.05; done
  die "dnsmasq did not start: $(cat "$work/dnsmasq.err")"
}
net_nic=(-boot order=n -netdev tap,id=n1,ifname=oob,script=no,downscript=no -device "virtio-net-pci,netdev=n1,mac=$mac")

echo "bench-media.sh: $runs boot(s) per path, QEMU start → \"online in\" (TCG)" >&2
: >"$work/dnsmasq.log" && : >"$work/leases"
dns tag:ipxe,boot.ipxe --enable-tftp --tftp-root="$work/boot"
dpid=${pids[-1]}
run_path pxe-tftp timeout 200 ip netns exec "$ns" -- "${sercon[@]}" "${net_nic[@]}"
kill "$dpid"; wait "$dpid" 2>/dev/null || true
: >"$work/dnsmasq.log" && : >"$work/leases"
dns tag:ipxe,http://10.77.0.1/boot.ipxe
timeout -k 5 3600 ip netns exec "$ns" busybox httpd -f -p 10.77.0.1:80 -h "$work/boot" 2>/dev/null &
pids+=($!)
for _ in $(seq 200); do timeout 5 ip netns exec "$ns" ss -H -l -n -t | grep -q ':80 ' && break; sleep 0.05; done
run_path pxe-http timeout 200 ip netns exec "$ns" -- "${sercon[@]}" "${net_nic[@]}"

# shellcheck disable=SC2046 # ovmf prints whitespace-separated arguments without spaces inside
run_path uefi-usb env -- $(ovmf) -drive "file=$media/usb.img,format=raw,if=virtio,snapshot=on" "${user_nic[@]}"
# shellcheck disable=SC2046
run_path uefi-iso env -- $(ovmf) -drive "file=$media/zos.iso,format=raw,media=cdrom,readonly=on" "${user_nic[@]}"
# shellcheck disable=SC2046
run_path uefi-efi-fat env -- $(ovmf) -drive "file=$media/efi-fat.img,format=raw,if=virtio,snapshot=on" "${user_nic[@]}"
run_path bios-usb env -- "${sercon[@]}" -drive "file=$media/usb.img,format=raw,if=virtio,snapshot=on" "${user_nic[@]}"
run_path bios-iso env -- "${sercon[@]}" -drive "file=$media/zos.iso,format=raw,media=cdrom,readonly=on" "${user_nic[@]}"

{
  echo "| artifact | bytes | MiB |"
  echo "|---|---:|---:|"
  for f in vmlinuz initrd.img boot.ipxe zos-netboot.efi usb.img zos.iso efi-fat.img; do
    s=$(stat -c %s "$media/$f")
    awk -v f="$f" -v s="$s" 'BEGIN { printf "| %s | %d | %.2f |\n", f, s, s / 1048576 }'
  done
  echo
  echo "| boot path | QEMU start → online, median of $runs (s) | runs (s) |"
  echo "|---|---:|---|"
  for p in pxe-tftp pxe-http uefi-usb uefi-iso uefi-efi-fat bios-usb bios-iso; do
    r=${result[$p]}
    echo "| $p | ${r%% *} | ${r#* } |"
  done
} | tee "${outfile:-/dev/null}"
