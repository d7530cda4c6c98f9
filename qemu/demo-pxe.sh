#!/usr/bin/env bash
# The network-boot demo: the whole chain a farmer's PXE node goes through, on this terminal.
# QEMU's own iPXE option ROM (the virtio NIC's) does DHCP in a router namespace made for the
# occasion, where dnsmasq answers iPXE (DHCP option 175) with boot.ipxe and serves it, the
# kernel and the initrd by TFTP (scripts/build-media.sh made them, with the farm's command
# line); iPXE boots them; zos-netboot takes over as PID 1 and comes online with the address
# reserved for the NIC's MAC (the same one iPXE got), then hands off to the test next root.
#
#   bash qemu/demo-pxe.sh [--cmdline "farmer_id=N runmode=… …"]
#   (scripts/demo.sh --pxe runs it after installing what it needs)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...
cd "$(dirname "$0")/.."

farm="farmer_id=7 runmode=test version=v3"
while [ $# -gt 0 ]; do
  case "$1" in
    --cmdline) farm=${2?--cmdline needs ARGS}; shift 2 ;;
    *) echo "usage: $0 [--cmdline ARGS]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo-pxe.sh: needs root (network namespaces, tap devices)" >&2; exit 1; }

work=$(mktemp -d /tmp/zos-demo-pxe.XXXXXX)
ns="zpxe-$$"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  del_ns "$ns"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mac=52:54:00:7a:00:01 reserved=10.77.0.50
echo "==> building the boot media (scripts/build-media.sh) with: $farm"
bash scripts/build.sh >/dev/null
bash qemu/build-next-root.sh "$work/next-root" >/dev/null
bash scripts/build-media.sh --out "$work/media" --no-check --next-root "$work/next-root" \
  --cmdline "loglevel=4 $farm zos.probe=none zos.fetch=none zos.init=/sbin/init" |
  tail -n 8
mkdir -p "$work/tftp"
cp "$work/media/boot.ipxe" "$work/media/vmlinuz" "$work/media/initrd.img" "$work/tftp/"
chmod -R a+rX "$work"

echo "==> router namespace $ns: tap oob 10.77.0.1/24, dnsmasq (DHCP, $mac → $reserved, TFTP)"
make_ns "$ns"
t ip -n "$ns" tuntap add oob mode tap
t ip -n "$ns" addr add 10.77.0.1/24 dev oob
t ip -n "$ns" link set oob up
timeout -k 2 300 ip netns exec "$ns" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --no-resolv --bind-dynamic --interface=oob --no-ping --port=0 \
  --dhcp-range=10.77.0.100,10.77.0.200,255.255.255.0,1h --dhcp-host="$mac,$reserved" \
  --dhcp-option=3,10.77.0.1 --dhcp-match=set:ipxe,175 --dhcp-boot=tag:ipxe,boot.ipxe \
  --enable-tftp --tftp-root="$work/tftp" --dhcp-leasefile="$work/leases" --pid-file= \
  --log-facility="$work/dnsmasq.log" &
pids+=($!)
for _ in $(seq 200); do
  grep -q "TFTP root" "$work/dnsmasq.log" 2>/dev/null && break
  sleep 0.05
done
grep -q "TFTP root" "$work/dnsmasq.log" || { cat "$work/dnsmasq.log" >&2; echo "dnsmasq did not start" >&2; exit 1; }

echo "==> QEMU: iPXE (the NIC's option ROM) → boot.ipxe → kernel → zos-netboot → online"
# SeaBIOS and iPXE also write to the serial port (etc/sercon-port = 0x3f8).
printf '\xf8\x03' >"$work/sercon-port.bin"
timeout -k 5 240 ip netns exec "$ns" qemu-system-x86_64 -machine q35 -accel tcg -cpu max \
  -smp 1 -m 512 -nodefaults -no-user-config -display none -no-reboot -serial stdio \
  -fw_cfg "name=etc/sercon-port,file=$work/sercon-port.bin" -boot order=n \
  -netdev tap,id=n1,ifname=oob,script=no,downscript=no \
  -device "virtio-net-pci,netdev=n1,mac=$mac" </dev/null || true
echo "==> dnsmasq's view: what iPXE and the node were given"
grep -E "DHCPACK|sent .* (boot\.ipxe|vmlinuz|initrd\.img)" "$work/dnsmasq.log" | sed 's/^/    /' || true
