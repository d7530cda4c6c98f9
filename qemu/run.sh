#!/usr/bin/env bash
# Boots the Debian cloud kernel with an initramfs in QEMU (TCG: KVM does not work here).
#
#   qemu/run.sh --initrd FILE [--kernel FILE] [--append "ARGS"] [--user]... [--tap NAME[,mac=MAC]]...
#               [--log FILE] [--timeout SECS] [--mem MB] [--pidfile FILE] [--monitor SOCKET]
#               [--dry-run]
#
#   --initrd FILE     the initramfs (scripts/build-initramfs.sh --out FILE)
#   --kernel FILE     default: the newest /boot/vmlinuz-*-cloud-amd64
#   --append ARGS     kernel command line after "console=ttyS0 panic=-1", e.g.
#                     "loglevel=4 zos.probe=none zos.init=/sbin/init runmode=test"
#   --user            a NIC on QEMU user-mode networking (DHCPv4 10.0.2.15, RA for
#                     2001:db8:7::/64, restrict=on: nothing leaves the VM)
#   --tap NAME[,mac=MAC]  a NIC on tap device NAME, which must exist in the CURRENT network
#                     namespace (run this under `ip netns exec NS`; never a host tap)
#   --log FILE        serial console to FILE (default: this terminal)
#   --timeout SECS    kill QEMU after SECS (default 120); exit status 124 then
#   --mem MB          guest memory (default 512)
#   --pidfile FILE    QEMU writes its PID there (so a caller can kill it by PID)
#   --monitor SOCKET  the QEMU monitor on a unix socket (`set_link n1 off` unplugs NIC 1)
#   --dry-run         print the QEMU command line and exit
#
# NICs are virtio-net-pci in the order given, at fixed PCI slots 0x10, 0x11, … (so the guest
# names them eth0, eth1, … in that order), MAC 52:54:00:7a:00:NN (NN = 01, 02, …) unless given,
# no option ROM (the kernel is loaded directly). QEMU exits when the guest powers off, reboots
# or panics (-no-reboot, panic=-1).
set -euo pipefail

die() { printf 'run.sh: %s\n' "$*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

initrd='' kernel='' append='' log='' secs=120 mem=512 pidfile='' monitor='' dry=0
nics=()
while [ $# -gt 0 ]; do
  case "$1" in
    --initrd) initrd=${2:?--initrd needs a FILE}; shift 2 ;;
    --kernel) kernel=${2:?--kernel needs a FILE}; shift 2 ;;
    --append) append=${2?--append needs ARGS}; shift 2 ;;
    --user) nics+=(user); shift ;;
    --tap) nics+=("tap:${2:?--tap needs NAME[,mac=MAC]}"); shift 2 ;;
    --log) log=${2:?--log needs a FILE}; shift 2 ;;
    --timeout) secs=${2:?--timeout needs SECS}; shift 2 ;;
    --mem) mem=${2:?--mem needs MB}; shift 2 ;;
    --pidfile) pidfile=${2:?--pidfile needs a FILE}; shift 2 ;;
    --monitor) monitor=${2:?--monitor needs a SOCKET path}; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$initrd" ] || { usage >&2; die "--initrd FILE is required"; }
[ -f "$initrd" ] || die "initrd $initrd does not exist"
case "$secs" in '' | *[!0-9]*) die "--timeout must be whole seconds" ;; esac
if [ -z "$kernel" ]; then
  kernel=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' 2>/dev/null | sort -V | tail -n 1)
  [ -n "$kernel" ] || die "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)"
fi
[ -r "$kernel" ] || die "kernel $kernel is not readable"
qemu=${QEMU:-qemu-system-x86_64}
[ "$dry" = 1 ] || command -v "$qemu" >/dev/null || die "$qemu is missing (apt-get install qemu-system-x86)"

args=(
  -machine q35 -accel tcg -cpu max -smp 1 -m "$mem"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$kernel" -initrd "$initrd"
  -append "console=ttyS0 panic=-1${append:+ $append}"
)
if [ -n "$log" ]; then
  args+=(-serial "file:$log")
else
  args+=(-serial stdio)
fi
[ -z "$pidfile" ] || args+=(-pidfile "$pidfile")
# The human monitor on a unix socket: tests pull a NIC's cable with `set_link nN off`.
[ -z "$monitor" ] || args+=(-monitor "unix:$monitor,server=on,wait=off")

i=0
for nic in "${nics[@]}"; do
  i=$((i + 1))
  id="n$i"
  mac=$(printf '52:54:00:7a:00:%02x' "$i")
  slot=$(printf '0x%x' $((0x10 + i - 1)))
  case "$nic" in
    user)
      args+=(-netdev "user,id=$id,ipv4=on,ipv6=on,ipv6-prefix=2001:db8:7::,ipv6-prefixlen=64,restrict=on")
      ;;
    tap:*)
      spec=${nic#tap:}
      name=${spec%%,*}
      [ "$spec" = "$name" ] || {
        opt=${spec#*,}
        case "$opt" in mac=*) mac=${opt#mac=} ;; *) die "--tap $spec: only mac=MAC may follow the name" ;; esac
      }
      [ -n "$name" ] || die "--tap needs a device name"
      if [ "$dry" = 0 ] && [ ! -e "/sys/class/net/$name" ]; then
        die "tap $name does not exist in this network namespace (ip tuntap add $name mode tap)"
      fi
      args+=(-netdev "tap,id=$id,ifname=$name,script=no,downscript=no")
      ;;
  esac
  args+=(-device "virtio-net-pci,netdev=$id,mac=$mac,addr=$slot,romfile=")
done

if [ "$dry" = 1 ]; then
  printf '%q ' timeout -k 5 "$secs" "$qemu" "${args[@]}"
  echo
  exit 0
fi
rc=0
if [ -n "$log" ]; then
  timeout -k 5 "$secs" "$qemu" "${args[@]}" </dev/null || rc=$?
else
  # The console is this terminal (Ctrl-C stops QEMU). --foreground: QEMU may read the tty.
  timeout --foreground -k 5 "$secs" "$qemu" "${args[@]}" || rc=$?
fi
[ "$rc" -ne 124 ] || echo "run.sh: QEMU timed out after ${secs}s" >&2
exit "$rc"
