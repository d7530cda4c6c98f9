#!/usr/bin/env bash
# The long run (issue 6): a node holds a short DHCP lease for a long time.
#
#   bash scripts/longrun.sh [MINUTES] [--lease SECS] [--json FILE]    (default 15 min, 60 s; root)
#
# A router namespace serves DHCPv4 with busybox udhcpd (it hands out 60 s leases; dnsmasq's
# shortest is 120 s) and IPv6 router advertisements with radvd. The node namespace runs the
# static release binary: `zos-netboot net` takes the lease and hands it over, then
# `zos-netboot keep` holds it for MINUTES. Every 5 s the script samples keep's RSS
# (/proc/PID/status) and the node's IPv4 address (present? same? its valid lifetime). At the
# end it reports renewals seen (keep's console), expected (MINUTES·60 / T1), the largest gap
# between two renewals, address losses (samples without the address, "IPv4 lost" lines),
# lowest remaining lifetime, RSS first / max / last. Exit 1 if the address was ever lost,
# renewals fell behind (more than one missing, or a gap over T1 + 5 s), or RSS grew by more
# than 256 KiB after the first minute. Every process runs under `timeout`; everything started
# is stopped by PID and both namespaces removed.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...
cd "$(dirname "$0")/.."
repo=$(pwd)
minutes=15 lease=60 json=''
while [ $# -gt 0 ]; do
  case "$1" in
    --lease) lease=${2:?--lease needs SECS}; shift 2 ;;
    --json) json=${2:?--json needs a FILE}; shift 2 ;;
    [0-9]*) minutes=$1; shift ;;
    *) echo "usage: $0 [MINUTES] [--lease SECS] [--json FILE]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in busybox radvd jq; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
busybox udhcpd --help >/dev/null 2>&1 || [ $? -eq 1 ] || die "busybox has no udhcpd"

tag="zlr$$"
node="$tag-n" router="$tag-r"
work=$(mktemp -d /tmp/zos-longrun.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "$node" "$router"; do
    del_ns "$ns"
  done
  if [ "${KEEP_LOGS:-}" ]; then mkdir -p "$KEEP_LOGS" && cp -a "$work/." "$KEEP_LOGS/"; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

zos_bin static

make_ns "$router"
make_ns "$node"
t ip link add eth0 netns "$node" type veth peer name r0 netns "$router"
t ip -n "$router" addr add 10.88.0.1/24 dev r0
t ip -n "$router" addr add 2001:db8:88::1/64 dev r0 nodad
for k in all.forwarding=1 r0.forwarding=1 r0.accept_ra=0 r0.accept_dad=0; do
  t ip netns exec "$router" sysctl -qw "net.ipv6.conf.$k"
done
t ip -n "$router" link set r0 up

secs=$((minutes * 60))
limit=$((secs + 120))
cat >"$work/udhcpd.conf" <<EOF
start 10.88.0.100
end 10.88.0.200
interface r0
lease_file $work/udhcpd.leases
pidfile $work/udhcpd.pid
min_lease $lease
opt lease $lease
opt subnet 255.255.255.0
opt router 10.88.0.1
opt dns 10.88.0.1
EOF
: >"$work/udhcpd.leases"
timeout -k 2 "$limit" ip netns exec "$router" busybox udhcpd -f "$work/udhcpd.conf" \
  >"$work/udhcpd.log" 2>&1 &
pids+=($!)
cat >"$work/radvd.conf" <<EOF
interface r0 {
	AdvSendAdvert on;
	MinRtrAdvInterval 30;
	MaxRtrAdvInterval 60;
	prefix 2001:db8:88::/64 { AdvOnLink on; AdvAutonomous on; };
	RDNSS 2001:db8:88::1 { };
};
EOF
chmod 644 "$work/radvd.conf"
timeout -k 2 "$limit" ip netns exec "$router" radvd -n -C "$work/radvd.conf" \
  -p "$work/radvd.pid" -m stderr >"$work/radvd.log" 2>&1 &
pids+=($!)

echo "==> node: zos-netboot net, then keep for $minutes min (lease $lease s from busybox udhcpd)"
state="$work/node/state.json"
mkdir -p "$work/node"
ok=''
for _ in 1 2 3 4 5; do # udhcpd and radvd may need a moment to bind
  if timeout -k 2 60 ip netns exec "$node" "$bin" net --cmdline "zos.probe=none" \
    --state "$state" --resolv "$work/node/resolv.conf" --timeout 20 >"$work/net.log" 2>&1; then
    ok=1 && break
  fi
done
[ "$ok" ] || { cat "$work/net.log" >&2; die "net did not bind"; }
address=$(jq -r '.address' "$work/node/leases/eth0.json")
t1=$(jq -r '.t1_secs' "$work/node/leases/eth0.json")
echo "    bound $address, lease $(jq -r .lease_secs "$work/node/leases/eth0.json") s, T1 $t1 s"

timeout -k 2 "$limit" ip netns exec "$node" "$bin" keep --state "$state" \
  --resolv "$work/node/resolv.conf" >"$work/keep.log" 2>&1 &
keep_pid=$!
pids+=($keep_pid)
# The binary's own PID (timeout → ip netns exec → exec zos-netboot): the child of timeout.
zpid=''
for _ in $(seq 100); do
  zpid=$(pgrep -P "$keep_pid" | head -1 || true)
  [ -n "$zpid" ] && [ -r "/proc/$zpid/status" ] && break
  sleep 0.05
done
[ -n "$zpid" ] || die "keep did not start"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$zpid/status" 2>/dev/null || echo 0; }
samples=0 missing=0 min_lft=999999 rss_first=0 rss_max=0 rss_last=0 rss_1min=0
start=$(date +%s)
echo "    keep is PID $zpid; sampling every 5 s"
while :; do
  now=$(date +%s)
  el=$((now - start))
  [ "$el" -ge "$secs" ] && break
  kill -0 "$zpid" 2>/dev/null || { cat "$work/keep.log" >&2; die "keep exited after $el s"; }
  r=$(rss)
  [ "$rss_first" -eq 0 ] && rss_first=$r
  [ "$el" -ge 60 ] && [ "$rss_1min" -eq 0 ] && rss_1min=$r
  [ "$r" -gt "$rss_max" ] && rss_max=$r
  rss_last=$r
  lft=$(ip -n "$node" -j -4 addr show dev eth0 |
    jq -r --arg a "$address" '[.[].addr_info[] | select(.local == $a) | .valid_life_time][0] // "none"')
  samples=$((samples + 1))
  if [ "$lft" = none ]; then
    missing=$((missing + 1))
    echo "    $(date -u +%T) +${el}s: $address MISSING"
  else
    [ "$lft" -lt "$min_lft" ] && min_lft=$lft
  fi
  if [ $((samples % 12)) -eq 0 ]; then
    echo "    +${el}s: renewals $(grep -c 'renewed by' "$work/keep.log" || true), RSS ${r} KiB, valid_lft ${lft}"
  fi
  sleep 5 # sampling period: there is no event to wait for, only time passing
done

renewals=$(grep -c 'renewed by' "$work/keep.log" || true)
lost=$(grep -c 'IPv4 lost' "$work/keep.log" || true)
# Gaps between renewals, from keep's console timestamps "[  12.345] eth0: lease on … renewed by".
max_gap=$(grep 'renewed by' "$work/keep.log" | sed -E 's/^\[ *([0-9]+)\.([0-9]+)\].*/\1.\2/' |
  awk -v t1="$t1" 'NR == 1 {prev = $1; gap = 0; next} {g = $1 - prev; if (g > gap) gap = g; prev = $1}
    END {printf "%.1f", (NR ? gap : 0)}')
expected=$((secs / t1))
growth=$((rss_last - (rss_1min > 0 ? rss_1min : rss_first)))
fail=()
[ "$missing" -eq 0 ] && [ "$lost" -eq 0 ] || fail+=("address lost ($missing samples, $lost 'IPv4 lost' lines)")
[ "$renewals" -ge $((expected - 1)) ] || fail+=("renewals fell behind: $renewals of $expected")
awk -v g="$max_gap" -v t1="$t1" 'BEGIN {exit !(g <= t1 + 5)}' || fail+=("a gap of $max_gap s between renewals (T1 $t1 s)")
[ "$growth" -le 256 ] || fail+=("RSS grew by $growth KiB after the first minute")

printf '\n%-34s %s\n' "duration" "$minutes min"
printf '%-34s %s\n' "lease / T1" "$lease s / $t1 s (busybox udhcpd)"
printf '%-34s %s\n' "renewals (seen / expected)" "$renewals / $expected"
printf '%-34s %s\n' "largest gap between renewals" "$max_gap s"
printf '%-34s %s\n' "address samples missing" "$missing of $samples"
printf '%-34s %s\n' "lowest remaining lifetime seen" "$min_lft s"
printf '%-34s %s\n' "keep RSS first / max / last" "$rss_first / $rss_max / $rss_last KiB"
if [ -n "$json" ]; then
  jq -n --argjson minutes "$minutes" --argjson lease "$lease" --argjson t1 "$t1" \
    --argjson renewals "$renewals" --argjson expected "$expected" --argjson max_gap "$max_gap" \
    --argjson missing "$missing" --argjson samples "$samples" --argjson min_lft "$min_lft" \
    --argjson rss_first "$rss_first" --argjson rss_max "$rss_max" --argjson rss_last "$rss_last" \
    '{minutes: $minutes, lease: $lease, t1: $t1, renewals: $renewals, expected: $expected,
      max_gap_s: $max_gap, samples_missing: $missing, samples: $samples, min_valid_lft: $min_lft,
      rss_kib: {first: $rss_first, max: $rss_max, last: $rss_last}}' >"$json"
fi
if [ "${#fail[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${fail[@]}" >&2
  tail -20 "$work/keep.log" >&2
  exit 1
fi
echo "PASS"
