#!/usr/bin/env bash
# The demo: boots zos-netboot as PID 1 of a real kernel in QEMU (TCG), with two virtio NICs on
# tap devices in a router namespace made for the occasion:
#   oob  10.77.0.1/24       dnsmasq: DHCPv4 + DNS (hub.lab.test)
#   pub  2001:db8:77::1/64  radvd: SLAAC prefix 2001:db8:77::/64 + RDNSS
#   busybox httpd on port 80 as the probe target http://hub.lab.test/
#   the test grid (tests/grid/grid.py) on port 443: HTTPS with a CA made for the demo and
#   baked into the image, serving a manifest and a next root, and taking the registration
# The VM's serial console is this terminal: drivers, lease, SLAAC, probes, the farmer's
# diagnosis, the clock, the fetched and verified next root, the registration, the hand-off into
# the fetched root, and that root printing the handed-over state; then it powers off, the grid's
# registration record is shown, and everything is removed.
#
#   bash qemu/demo.sh [--user] [--append "MORE KERNEL ARGS"]
#     --user   use QEMU's own user-mode network (its DHCP and RA) instead of the router namespace
#              (no grid there: the fetch is off and the next root baked into the image is used)
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...
cd "$(dirname "$0")/.."
repo=$(pwd)

mode=tap append=""
while [ $# -gt 0 ]; do
  case "$1" in
    --user) mode=user; shift ;;
    --append) append=${2?--append needs ARGS}; shift 2 ;;
    *) echo "usage: $0 [--user] [--append ARGS]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: needs root (network namespaces, tap devices)" >&2; exit 1; }

work=$(mktemp -d /tmp/zos-demo.XXXXXX)
ns="zdemo-$$"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  del_ns "$ns"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> building the static binary, the next root, a test CA and the initramfs"
bash scripts/build.sh >/dev/null
bash qemu/build-next-root.sh "$work/next-root" >/dev/null
timeout 60 /usr/bin/python3 tests/grid/grid.py --make-ca "$work/ca" \
  --names hub.lab.test,10.77.0.1,2001:db8:77::1 >"$work/make-ca.log" 2>&1 ||
  { cat "$work/make-ca.log" >&2; echo "demo.sh: grid.py --make-ca failed" >&2; exit 1; }
bash scripts/build-initramfs.sh --out "$work/initramfs.img" --next-root "$work/next-root" \
  --ca "$work/ca/ca.pem" | tail -n 1

cmdline="loglevel=4 farmer_id=7 runmode=test zos.init=/sbin/init $append"
if [ "$mode" = user ]; then
  echo "==> booting with QEMU user-mode networking (DHCP 10.0.2.15, RA 2001:db8:7::/64)"
  bash qemu/run.sh --initrd "$work/initramfs.img" --user --timeout 180 \
    --append "$cmdline zos.probe=none zos.fetch=none"
  exit
fi

echo "==> router namespace $ns: oob (DHCPv4, DNS), pub (IPv6 RA), probe target; test grid (HTTPS) next"
make_ns "$ns"
r() { t ip netns exec "$ns" "$@"; }
for tap in oob pub; do
  r ip tuntap add "$tap" mode tap
  r sysctl -qw "net.ipv6.conf.$tap.accept_dad=0" "net.ipv6.conf.$tap.accept_ra=0" "net.ipv6.conf.$tap.forwarding=1"
  r ip link set "$tap" up
done
r ip addr add 10.77.0.1/24 dev oob
r ip addr add 2001:db8:77::1/64 dev pub nodad
timeout 600 ip netns exec "$ns" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts --no-resolv \
  --bind-dynamic --interface=oob --no-ping --port=53 --dhcp-range=10.77.0.100,10.77.0.200,1h \
  --dhcp-option=3,10.77.0.1 --dhcp-option=6,10.77.0.1 --domain=lab.test \
  --host-record=hub.lab.test,10.77.0.1,2001:db8:77::1 --dhcp-leasefile="$work/leases" \
  --pid-file= 2>"$work/dnsmasq.log" &
pids+=($!)
cat >"$work/radvd.conf" <<CONF
interface pub {
  AdvSendAdvert on; MinRtrAdvInterval 3; MaxRtrAdvInterval 4;
  prefix 2001:db8:77::/64 { AdvOnLink on; AdvAutonomous on; };
  RDNSS 2001:db8:77::1 { };
};
CONF
chmod 644 "$work/radvd.conf"
timeout 600 ip netns exec "$ns" radvd -n -C "$work/radvd.conf" -p "$work/radvd.pid" -m stderr \
  2>"$work/radvd.log" &
pids+=($!)
mkdir -p "$work/www"
echo "hub stand-in" >"$work/www/index.html"
timeout 600 ip netns exec "$ns" busybox httpd -f -p 80 -h "$work/www" &
pids+=($!)

# The grid's next root: the same tiny root, marked so its init says where it came from, as a
# reproducible tarball; and a `file` artifact, /etc/motd in the next root.
bash qemu/build-next-root.sh "$work/fetched-root" >/dev/null
echo "the test grid" >"$work/fetched-root/etc/zos-root-origin"
mkdir -p "$work/grid/zos"
tar --format=gnu --sort=name --mode=u+rwX,go+rX,go-w --owner=0 --group=0 --numeric-owner \
  --mtime=@1700000000 -C "$work/fetched-root" -czf "$work/grid/zos/next-root.tar.gz" .
echo "installed from the test grid as a file artifact" >"$work/grid/zos/motd.txt"
artifact() { # NAME FILE KIND [DEST]
  printf '{"name": "%s", "url": "%s", "size": %s, "sha256": "%s", "kind": "%s"%s}' "$1" \
    "$(basename "$2")" "$(stat -c %s "$2")" "$(sha256sum "$2" | awk '{ print $1 }')" "$3" \
    "${4:+, \"dest\": \"$4\"}"
}
printf '{"version": 1, "artifacts": [%s, %s]}\n' \
  "$(artifact next-root "$work/grid/zos/next-root.tar.gz" rootfs)" \
  "$(artifact motd "$work/grid/zos/motd.txt" file /etc/motd)" >"$work/grid/zos/manifest.json"
timeout 600 ip netns exec "$ns" /usr/bin/python3 tests/grid/grid.py --root "$work/grid" \
  --https 10.77.0.1:443 --https '[2001:db8:77::1]:443' --cert "$work/ca/server.pem" \
  --key "$work/ca/server-key.pem" --records "$work/records.json" --ready-file "$work/grid.ready" \
  --exit-after 590 2>"$work/grid.log" &
grid=$!
pids+=("$grid")
# Ready when it wrote its ready file (at most 10 s; at once if it died).
for _ in $(seq 100); do [ -f "$work/grid.ready" ] && break; kill -0 "$grid" 2>/dev/null || break; sleep 0.1; done
[ -f "$work/grid.ready" ] || { cat "$work/grid.log" >&2; echo "demo.sh: the grid did not start" >&2; exit 1; }

echo "==> QEMU start (the console below is the VM's)"
ip netns exec "$ns" bash qemu/run.sh --initrd "$work/initramfs.img" --tap oob --tap pub \
  --timeout 180 --append "$cmdline zos.probe=http://hub.lab.test/ \
  zos.manifest=https://hub.lab.test/zos/manifest.json zos.ca=/etc/zos/ca.pem \
  zos.registrar=https://hub.lab.test/api/v1/nodes zos.root=/fetched-root"
echo "==> the VM powered off; what the grid saw:"
grep -E "GET|POST" "$work/grid.log" | sed 's/^/  /' || true
echo "==> its registration record:"
/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); [print("  node %s: farmer_id %s, %d registration(s), macs %s" % (k, v["body"]["farmer_id"], v["registrations"], ", ".join(v["body"]["macs"]))) for k, v in r.items()]' "$work/records.json" || true
echo "==> removing the router namespace"
