#!/usr/bin/env bash
# Time to online (DHCPv4 + IPv6 SLAAC + a probe of the hub) and link up -> IPv6 usable:
# zos-netboot against the kernel alone and against a scripted busybox peer.
#
#   bash scripts/bench-online.sh [RUNS]      (default 10; root; from the repo root or anywhere)
#
# The lab (its own: namespaces zlab-bon-<pid>-r/-n). Node NIC zo0 is a veth whose router end ro0
# is a port of bridge br0 in the router namespace; a second veth pair (rk0 in br0, rk1 up, ARP and
# IPv6 off) keeps br0's carrier up while zo0 is down. On br0: 10.88.0.1/24 + 2001:db8:88::1/64,
# dnsmasq (DHCPv4 10.88.0.0/24 --no-ping; DNS on port 53 with hub.lab.test -> both addresses),
# radvd (prefix 2001:db8:88::/64, RDNSS, AdvRASolicitedUnicast on) and busybox httpd on port 80.
# Why the bridge: radvd sends a multicast RA whenever its interface changes state, so with radvd
# on the veth end itself every node link-up would hand the node an RA it never asked for (a switch
# port does not do that). ro0 is created with ifindex 1001 (zo0 gets 2 in its namespace): when
# both veth ends have the same index, linkwatch may delay the operstate by up to ~1 s.
# radvd's unsolicited multicast RAs (3 at start-up, 16 s apart, then every 1350-1800 s) would
# make a run fast by luck: a tcpdump in the node namespace sees every RA, and a run during which
# a multicast RA arrived is thrown away and run again (counted in the output).
#
# Every run starts from zo0 down, with no IPv4/IPv6 address, no routes or neighbours, the node's
# /proc/sys/net/ipv6/{conf,neigh}/zo0/* reset to the values zo0 had when it was created, the
# router's neighbour cache flushed and no client state file. Measured RUNS times each, the items
# taking turns:
#   1  zos-netboot net --cmdline "zos.probe=http://hub.lab.test/" (plus --state, --resolv into
#      the lab's temporary directory, --timeout 20): wall time (process start -> exit; it exits
#      once online) and its own timings_ms.total/dhcp4/slaac/probes.
#   2  link up -> first global IPv6 address without the tentative flag (DAD done), all from one
#      `ip -ts monitor link address` (the zo0 link event with UP -> the address event):
#      2a kernel defaults, 2b router_solicitation_delay=0 + neigh/zo0/retrans_time_ms=100 (what
#      zos-netboot sets besides optimistic DAD), 2z zos-netboot (in the runs of item 1).
#   3  RS -> RA: rdisc6 (ndisc6) sends one RS from the node's link-local address; the time is
#      between the two packets' kernel timestamps in the node's tcpdump (process start-up does
#      not count). radvd answers an RS from a unicast source with a unicast RA at once (the
#      0-500 ms random delay and the 3 s MinDelayBetweenRAs apply only to multicast answers), so
#      this is the floor no client can beat with this router config.
#   4  a peer: busybox udhcpc + the kernel's SLAAC tuned as in 2b, then for each family DNS
#      (getent ahostsv4/ahostsv6) and busybox wget of the probe URL, one script, timed like 1
#      (wall). Like zos-netboot it waits for both IPv4 and IPv6 before probing.
# Needs tcpdump and rdisc6 (apt-get install tcpdump ndisc6) besides what scripts/setup.sh installs.
# BIN=/path/to/zos-netboot skips the build (default: cargo build --release). BENCH_LOGS=DIR keeps
# the lab's logs (monitor, tcpdump, per-run client output, daemon logs) in DIR; RADVD_DEBUG=N sets
# radvd's -d level (default 1). RUST_LOG=debug reaches zos-netboot (its per-run logs).
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...

runs=${1:-10}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
cd "$(dirname "$0")/.."
repo=$(pwd)


[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in ip dnsmasq radvd busybox jq timeout awk date tcpdump rdisc6; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh; tcpdump and rdisc6: apt-get install tcpdump ndisc6)"
done
busybox udhcpc --help >/dev/null 2>&1 || die "busybox has no udhcpc"

zos_bin release

tag="zlab-bon-$$"
router="$tag-r"
node="$tag-n"
ifn=zo0
rif=ro0
rif_index=1001
host=hub.lab.test
url="http://$host/"
dir=$(mktemp -d /tmp/zlab-bon.XXXXXX)
dnsmasq_pid="" radvd_pid="" httpd_pid=""
monitor_pid="" monitor_ip_pid="" # the `timeout` wrapper and the `ip monitor` under it (node ns)
tcpdump_pid="" tcpdump_ns_pid=""  # likewise for tcpdump
client_pid=""


# Kill every process in the node namespace except the monitor and tcpdump (by PID).
sweep_node() {
  local pid
  for pid in $(t ip netns pids "$node" 2>/dev/null || true); do
    [ "$pid" = "$monitor_ip_pid" ] || [ "$pid" = "$tcpdump_ns_pid" ] && continue
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cleanup() {
  set +e
  if [ -n "${BENCH_LOGS:-}" ] && [ -d "$dir" ]; then # keep the lab's logs for a post-mortem
    mkdir -p "$BENCH_LOGS" && cp -r "$dir/." "$BENCH_LOGS/"
  fi
  kill_wait "$client_pid"
  ns_exists "$node" && sweep_node
  kill_wait "$monitor_pid" "$tcpdump_pid" "$radvd_pid" "$httpd_pid" "$dnsmasq_pid"
  for ns in "$node" "$router"; do
    del_ns "$ns"
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

child_of() { # PID of the only child of a `timeout` wrapper (the real process)
  local c
  c=$(cat "/proc/$1/task/$1/children" 2>/dev/null || true)
  printf '%s' "${c// /}"
}

# --- the lab ---------------------------------------------------------------------------------
for ns in "$router" "$node"; do make_ns "$ns"; done
rsys() { t ip netns exec "$router" sysctl -qw "$@"; }
t ip -n "$router" link add "$rif" index "$rif_index" type veth peer name "$ifn" netns "$node"
t ip -n "$router" link add rk0 type veth peer name rk1
t ip -n "$router" link add br0 type bridge forward_delay 0 stp_state 0 mcast_snooping 0
t ip -n "$router" link set br0 address 02:88:00:00:00:01 # pinned: a bridge takes a port's MAC
for p in "$rif" rk0 rk1; do rsys "net.ipv6.conf.$p.disable_ipv6=1"; done
t ip -n "$router" link set rk1 arp off # or it answers ARP for br0's address (weak host model)
t ip -n "$router" link set "$rif" master br0
t ip -n "$router" link set rk0 master br0
# An IPv6 router port: forwarding, no RAs accepted, no DAD (radvd's first RAs fail with EINVAL
# while the router's link-local address is tentative).
rsys net.ipv6.conf.all.forwarding=1 net.ipv6.conf.br0.forwarding=1 net.ipv6.conf.br0.accept_ra=0 \
  net.ipv6.conf.br0.accept_dad=0
t ip -n "$router" addr add 10.88.0.1/24 dev br0
t ip -n "$router" addr add 2001:db8:88::1/64 dev br0 nodad
for l in rk1 rk0 "$rif" br0; do t ip -n "$router" link set "$l" up; done
# radvd ignores an interface that is not running yet when it starts (and then answers RSs only
# once the kernel reports it running): wait until br0 is operationally up. Bounded: 10 s.
for ((i = 0; i < 200; i++)); do
  t ip -n "$router" -o link show dev br0 | grep -q "state UP" && break
  sleep 0.05
done
t ip -n "$router" -o link show dev br0 | grep -q "state UP" || die "br0 did not come up"
node_index=$(t ip -n "$node" -o link show dev "$ifn" | awk -F': ' '{ print $1; exit }')

timeout -k 5 3600 ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --interface=br0 --bind-interfaces --except-interface=lo --no-ping --no-resolv \
  --dhcp-range=10.88.0.10,10.88.0.250,255.255.255.0,1h --domain=lab.test \
  --host-record="$host,10.88.0.1,2001:db8:88::1" --dhcp-leasefile="$dir/dnsmasq.leases" \
  --pid-file= --log-facility="$dir/dnsmasq.log" </dev/null >/dev/null 2>"$dir/dnsmasq.stderr" &
dnsmasq_pid=$!

cat >"$dir/radvd.conf" <<'EOF'
interface br0 {
	AdvSendAdvert on;
	AdvRASolicitedUnicast on;
	MinRtrAdvInterval 1350;
	MaxRtrAdvInterval 1800;
	prefix 2001:db8:88::/64 { };
	RDNSS 2001:db8:88::1 { };
};
EOF
chmod 644 "$dir/radvd.conf" # radvd refuses a config others can write
timeout -k 5 3600 ip netns exec "$router" radvd -n -C "$dir/radvd.conf" -p "$dir/radvd.pid" \
  -m stderr -d "${RADVD_DEBUG:-1}" </dev/null >/dev/null 2>"$dir/radvd.log" &
radvd_pid=$!

mkdir -p "$dir/www"
echo ok >"$dir/www/index.html"
timeout -k 5 3600 ip netns exec "$router" busybox httpd -f -p 80 -h "$dir/www" \
  </dev/null >/dev/null 2>"$dir/httpd.log" &
httpd_pid=$!

for ((i = 0; i < 200; i++)); do # bounded: 10 s
  grep -q "DHCP, IP range" "$dir/dnsmasq.log" 2>/dev/null && [ -s "$dir/radvd.pid" ] &&
    t ip netns exec "$router" busybox netstat -ltn 2>/dev/null | grep -q ':80 ' && break
  for p in "$dnsmasq_pid" "$radvd_pid" "$httpd_pid"; do
    kill -0 "$p" 2>/dev/null || { cat "$dir/dnsmasq.stderr" "$dir/radvd.log" "$dir/httpd.log" >&2; die "a lab daemon exited"; }
  done
  sleep 0.05
done
if ! grep -q "DHCP, IP range" "$dir/dnsmasq.log" || [ ! -s "$dir/radvd.pid" ]; then
  die "dnsmasq/radvd not ready"
fi

# One link+address monitor and one ICMPv6 capture for the whole benchmark, in the node namespace.
timeout -k 2 3600 ip -n "$node" -ts monitor link address >"$dir/monitor.log" 2>&1 &
monitor_pid=$!
timeout -k 2 3600 ip netns exec "$node" tcpdump -i any -n -tt -l -U icmp6 \
  >"$dir/tcpdump.log" 2>"$dir/tcpdump.stderr" &
tcpdump_pid=$!
for ((i = 0; i < 100; i++)); do
  t ip -n "$node" addr add 127.0.0.2/8 dev lo
  sleep 0.02
  t ip -n "$node" addr del 127.0.0.2/8 dev lo
  grep -q "127.0.0.2" "$dir/monitor.log" && grep -q "listening on" "$dir/tcpdump.stderr" && break
done
grep -q "127.0.0.2" "$dir/monitor.log" || die "ip monitor not ready"
grep -q "listening on" "$dir/tcpdump.stderr" || { cat "$dir/tcpdump.stderr" >&2; die "tcpdump not ready"; }
monitor_ip_pid=$(child_of "$monitor_pid")
tcpdump_ns_pid=$(child_of "$tcpdump_pid")
if [ -z "$monitor_ip_pid" ] || [ -z "$tcpdump_ns_pid" ]; then
  die "cannot find the monitor/tcpdump processes"
fi

# --- helpers run in the node namespace -------------------------------------------------------
# The kernel's defaults for zo0 are what it had when it was made: a snapshot of conf/zo0/* and
# neigh/zo0/* taken before anything touched it. (conf/default would do for conf/, but a network
# namespace other than the first has no neigh/default: new interfaces get the global ND table's.)
cat >"$dir/sysctls.sh" <<'EOF'
#!/bin/sh
# sysctls.sh save|restore IF FILE: /proc/sys/net/ipv6/{conf,neigh}/IF/* to FILE and back (only
# what differs is written back; stable_secret has no value until set and is skipped).
op=$1 if=$2 file=$3
if [ "$op" = save ]; then
  for f in /proc/sys/net/ipv6/conf/"$if"/* /proc/sys/net/ipv6/neigh/"$if"/*; do
    case ${f##*/} in stable_secret) continue ;; esac
    v=$(cat "$f" 2>/dev/null) || continue
    printf '%s %s\n' "$f" "$v"
  done >"$file"
  exit 0
fi
while read -r f v; do
  [ "$(cat "$f" 2>/dev/null)" = "$v" ] && continue
  printf '%s\n' "$v" >"$f" 2>/dev/null || echo "cannot reset $f" >&2
done <"$file"
EOF
cat >"$dir/udhcpc-peer.sh" <<'EOF'
#!/bin/sh
case "$1" in
  bound | renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"
    [ -z "$dns" ] || echo "nameserver ${dns%% *}" >/etc/resolv.conf
    ;;
esac
exit 0
EOF
cat >"$dir/peer.sh" <<'EOF'
#!/bin/sh
# The peer, one sequence: kernel SLAAC tuned as zos-netboot tunes it (minus optimistic DAD), the
# link up, busybox udhcpc (no ARP check: -a is off by default) while the kernel does SLAAC, then
# a global address that finished DAD + a default route, then DNS and HTTP over each family.
if=$1 dir=$2 host=$3
echo 0 >"/proc/sys/net/ipv6/conf/$if/router_solicitation_delay" || exit 1
echo 100 >"/proc/sys/net/ipv6/neigh/$if/retrans_time_ms" || exit 1
ip link set "$if" up || exit 1
busybox udhcpc -f -q -n -i "$if" -s "$dir/udhcpc-peer.sh" >"$dir/peer-udhcpc.log" 2>&1 &
dhcp=$!
i=0
until ip -6 -o addr show dev "$if" scope global -tentative | grep -q inet6 &&
  ip -6 route show default dev "$if" | grep -q default; do
  i=$((i + 1))
  [ "$i" -lt 1000 ] || { echo "peer: no usable IPv6 within 10 s" >&2; exit 1; }
  sleep 0.01
done
wait "$dhcp" || { echo "peer: udhcpc failed" >&2; exit 1; }
probe() { # FAMILY URL-FORMAT: resolve (glibc, /etc/resolv.conf from udhcpc), then GET
  a=$(getent "ahosts$1" "$host" | awk '{ print $1; exit }')
  [ -n "$a" ] || { echo "peer: no $1 address for $host" >&2; return 1; }
  # shellcheck disable=SC2059
  busybox wget -q -O /dev/null "$(printf "$2" "$a")" # no -T: busybox 1.35's wget segfaults with it
}
probe v4 'http://%s/' &
p4=$!
probe v6 'http://[%s]/' &
p6=$!
ok=0
wait "$p4" && ok=$((ok + 1))
wait "$p6" && ok=$((ok + 1))
[ "$ok" -eq 2 ] || { echo "peer: $ok of 2 probes ok" >&2; exit 1; }
EOF
chmod 755 "$dir/sysctls.sh" "$dir/udhcpc-peer.sh" "$dir/peer.sh"
t ip netns exec "$node" sh "$dir/sysctls.sh" save "$ifn" "$dir/sysctls.defaults"
grep -q "neigh/$ifn/retrans_time_ms" "$dir/sysctls.defaults" || die "no sysctl snapshot of $ifn"

# reset: stop the client; zo0 down, no address, route or neighbour, sysctls at their defaults;
# the router forgets the node's neighbour entries; no state file.
reset_node() {
  kill_wait "$client_pid"
  client_pid=""
  sweep_node
  rm -f "$dir/state.json" "$dir/resolv-zos.conf"
  t ip -n "$node" link set "$ifn" down
  t ip -n "$node" addr flush dev "$ifn"
  t ip -n "$node" route flush dev "$ifn" 2>/dev/null || true
  t ip -n "$node" -6 route flush dev "$ifn" 2>/dev/null || true
  t ip -n "$node" neigh flush dev "$ifn" 2>/dev/null || true
  t ip netns exec "$node" sh "$dir/sysctls.sh" restore "$ifn" "$dir/sysctls.defaults"
  t ip -n "$router" neigh flush dev br0 2>/dev/null || true
  : >"/etc/netns/$node/resolv.conf"
}

now_ns() { date +%s%N; }
# ns of an `ip -ts` line "[2026-11-25T04:15:14.861471] ..." (local time).
ts_ns() { date -d "$(printf '%s' "$1" | sed -E 's/^\[([^]]+)\].*/\1/')" +%s%N; }
# ns of a tcpdump -tt line "1795583160.869621 zo0 Out ...".
td_ns() {
  local s=${1%% *}
  printf '%s' $((${s%.*} * 1000000000 + 10#${s#*.} * 1000))
}
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }

# Monitor lines after line OFF: the zo0 link event that has UP; the first global IPv6 address
# (any flags); the first global IPv6 address whose DAD is done.
mon_link_up() { awk -v off="$1" -v ifn="$ifn" 'NR > off && $0 !~ /Deleted/ && $3 ~ ("^" ifn "[@:]") && $4 ~ /[<,]UP[,>]/ { print; exit }' "$dir/monitor.log"; }
mon_v6_any() { awk -v off="$1" -v ifn="$ifn" 'NR > off && $0 !~ /Deleted/ && $3 == ifn && $4 == "inet6" && / scope global / { print; exit }' "$dir/monitor.log"; }
mon_v6_ready() { awk -v off="$1" -v ifn="$ifn" 'NR > off && $0 !~ /Deleted/ && $3 == ifn && $4 == "inet6" && / scope global / && !/tentative|optimistic|dadfailed/ { print; exit }' "$dir/monitor.log"; }
# Waits until the monitor has printed every event so far: it reports a marker address on lo.
mon_sync() {
  local off i
  off=$(wc -l <"$dir/monitor.log")
  t ip -n "$node" addr add 127.0.0.3/8 dev lo
  for ((i = 0; i < 200; i++)); do
    awk -v off="$off" 'NR > off && /127\.0\.0\.3/ { f = 1 } END { exit !f }' "$dir/monitor.log" && break
    sleep 0.01
  done
  t ip -n "$node" addr del 127.0.0.3/8 dev lo
}
# Waits until tcpdump has written out everything captured so far: it sees a ping on the node's lo
# (packets reach it in order) and the reply shows up in its log. Bounded: 2 s.
td_sync() {
  local off i
  off=$(wc -l <"$dir/tcpdump.log")
  t ip netns exec "$node" busybox ping -6 -c 1 -W 1 ::1 >/dev/null 2>&1 || true
  for ((i = 0; i < 200; i++)); do
    awk -v off="$off" 'NR > off && $2 == "lo" && /echo reply/ { f = 1 } END { exit !f }' \
      "$dir/tcpdump.log" && return 0
    sleep 0.01
  done
  echo "  (tcpdump did not catch up within 2 s)" >&2
}
# tcpdump lines after line OFF on zo0: the first RS out / RA in; the multicast RAs that came in.
# (tcpdump -i any marks packets Out, In (unicast to us), M (multicast), B (broadcast).)
td_first() { awk -v off="$1" -v ifn="$ifn" -v dirn="$2" -v what="$3" 'NR > off && $2 == ifn && ($3 == "Out") == (dirn == "Out") && index($0, what) { print; exit }' "$dir/tcpdump.log"; }
td_multicast_ras() { awk -v off="$1" -v ifn="$ifn" 'NR > off && $2 == ifn && $3 != "Out" && / > ff02::1: / && /router advertisement/' "$dir/tcpdump.log" | wc -l; }

declare -A vals=()   # key -> " ms ms ..."
declare -A fails=()  # key -> count
declare -A redone=() # key -> runs thrown away for an unsolicited RA
add() { vals[$1]="${vals[$1]:-} $2"; }

# After a run whose monitor/tcpdump offsets are MOFF/TOFF: the IPv6 breakdown into KEY.*
ipv6_breakdown() { # KEY MOFF TOFF -> sets v6_ms ("" if none); adds KEY.rs/.ra/.addr/.ready
  local key=$1 up_line ready_line any_line rs ra up
  v6_ms=""
  up_line=$(mon_link_up "$2")
  ready_line=$(mon_v6_ready "$2")
  [ -n "$up_line" ] && [ -n "$ready_line" ] || return 0
  up=$(ts_ns "$up_line")
  v6_ms=$(ms "$up" "$(ts_ns "$ready_line")")
  add "$key.ready" "$v6_ms"
  any_line=$(mon_v6_any "$2")
  [ -z "$any_line" ] || add "$key.addr" "$(ms "$up" "$(ts_ns "$any_line")")"
  rs=$(td_first "$3" Out "router solicitation")
  ra=$(td_first "$3" In "router advertisement")
  [ -z "$rs" ] || add "$key.rs" "$(ms "$up" "$(td_ns "$rs")")"
  [ -z "$ra" ] || add "$key.ra" "$(ms "$up" "$(td_ns "$ra")")"
}

# Item 3, on a link that is up with a usable link-local address: one RS from rdisc6, the router's
# neighbour cache cold (as for a node it has not seen); RS out -> RA in from tcpdump. A try during
# which a multicast RA arrived (rdisc6 would stop at it) is done again, up to 3 times.
measure_floor() {
  local run=$1 try toff rs ra
  for ((try = 1; try <= 3; try++)); do
    t ip -n "$router" neigh flush dev br0 2>/dev/null || true
    toff=$(wc -l <"$dir/tcpdump.log")
    if ! t ip netns exec "$node" rdisc6 -1 -q -r 1 -w 1000 "$ifn" >"$dir/rdisc6-$run.log" 2>&1; then
      echo "  run $run rdisc6: no answer ($(tr '\n' ' ' <"$dir/rdisc6-$run.log"))" >&2
      continue
    fi
    td_sync
    if [ "$(td_multicast_ras "$toff")" -ne 0 ]; then
      redone[floor]=$((${redone[floor]:-0} + 1))
      continue
    fi
    rs=$(td_first "$toff" Out "router solicitation")
    ra=$(td_first "$toff" In "router advertisement")
    if [ -n "$rs" ] && [ -n "$ra" ]; then
      add floor "$(ms "$(td_ns "$rs")" "$(td_ns "$ra")")"
      printf '  run %2d %-12s RS -> RA %s ms\n' "$run" rdisc6 "$(ms "$(td_ns "$rs")" "$(td_ns "$ra")")" >&2
      return 0
    fi
    echo "  run $run rdisc6: the RS or the RA is missing from the capture" >&2
  done
  fails[floor]=$((${fails[floor]:-0} + 1))
}

# One measured run of ITEM. Sets unsolicited=1 (and records nothing) when a multicast RA arrived
# during it. Always returns 0, so that `set -e` stays in force inside.
run_item() {
  local item=$1 run=$2 moff toff t0 t1 rc log line
  unsolicited=0
  reset_node
  moff=$(wc -l <"$dir/monitor.log")
  toff=$(wc -l <"$dir/tcpdump.log")
  log="$dir/$item-$run.log"
  case "$item" in
    zos)
      t0=$(now_ns)
      timeout -k 2 40 ip netns exec "$node" "$bin" net --cmdline "zos.probe=$url" \
        --state "$dir/state.json" --resolv "$dir/resolv-zos.conf" --timeout 20 >"$log" 2>&1 &
      client_pid=$!
      rc=0
      wait "$client_pid" || rc=$?
      t1=$(now_ns)
      client_pid=""
      mon_sync
      td_sync
      [ "$(td_multicast_ras "$toff")" -eq 0 ] || { unsolicited=1; return 0; }
      if [ "$rc" -ne 0 ] || [ "$(jq -r '.online' "$dir/state.json" 2>/dev/null)" != true ]; then
        fails[zos.wall]=$((${fails[zos.wall]:-0} + 1))
        echo "  run $run zos-netboot: exit $rc, not online (log: $(tail -c 300 "$log" | tr '\n' ' '))" >&2
        return 0
      fi
      add zos.wall "$(ms "$t0" "$t1")"
      for k in total usable dhcp4 slaac probes; do
        v=$(jq -r ".timings_ms.$k // empty" "$dir/state.json")
        [ -z "$v" ] || add "zos.$k" "$v"
      done
      v=$(jq -r '(.timings_ms.total // empty) - (.timings_ms.usable // empty)' "$dir/state.json" 2>/dev/null || true)
      [ -z "$v" ] || add zos.after "$v"
      ipv6_breakdown zos "$moff" "$toff"
      printf '  run %2d %-12s wall %7s ms  total %s  dhcp4 %s  slaac %s  link up -> IPv6 usable %s ms\n' \
        "$run" zos-netboot "$(ms "$t0" "$t1")" "$(jq -r .timings_ms.total "$dir/state.json")" \
        "$(jq -r .timings_ms.dhcp4 "$dir/state.json")" "$(jq -r .timings_ms.slaac "$dir/state.json")" \
        "${v6_ms:--}" >&2
      ;;
    2a | 2b)
      if [ "$item" = 2b ]; then
        t ip netns exec "$node" sh -c "echo 0 >/proc/sys/net/ipv6/conf/$ifn/router_solicitation_delay &&
          echo 100 >/proc/sys/net/ipv6/neigh/$ifn/retrans_time_ms"
      fi
      t ip -n "$node" link set "$ifn" up
      line=""
      for ((i = 0; i < 1500; i++)); do # ≤ 15 s
        line=$(mon_v6_ready "$moff")
        [ -n "$line" ] && break
        sleep 0.01
      done
      mon_sync
      td_sync
      [ "$(td_multicast_ras "$toff")" -eq 0 ] || { unsolicited=1; return 0; }
      ipv6_breakdown "$item" "$moff" "$toff"
      if [ -z "$v6_ms" ]; then
        fails[$item.ready]=$((${fails[$item.ready]:-0} + 1))
        echo "  run $run $item: no usable global IPv6 address within 15 s" >&2
        return 0
      fi
      printf '  run %2d %-12s link up -> IPv6 usable %s ms\n' "$run" "$item" "$v6_ms" >&2
      if [ "$item" = 2b ]; then measure_floor "$run"; fi # item 3, on the link 2b left up
      ;;
    peer)
      t0=$(now_ns)
      timeout -k 2 40 ip netns exec "$node" sh "$dir/peer.sh" "$ifn" "$dir" "$host" >"$log" 2>&1 &
      client_pid=$!
      rc=0
      wait "$client_pid" || rc=$?
      t1=$(now_ns)
      client_pid=""
      mon_sync
      td_sync
      [ "$(td_multicast_ras "$toff")" -eq 0 ] || { unsolicited=1; return 0; }
      if [ "$rc" -ne 0 ]; then
        fails[peer.wall]=$((${fails[peer.wall]:-0} + 1))
        echo "  run $run peer: exit $rc ($(tr '\n' ' ' <"$log" | cut -c1-300))" >&2
        return 0
      fi
      add peer.wall "$(ms "$t0" "$t1")"
      ipv6_breakdown peer "$moff" "$toff"
      printf '  run %2d %-12s wall %7s ms  link up -> IPv6 usable %s ms\n' "$run" peer \
        "$(ms "$t0" "$t1")" "${v6_ms:--}" >&2
      ;;
  esac
  return 0
}

# Warm-up: the whole chain answers (radvd ready on br0, an RA reaches zo0) before any run counts.
reset_node
t ip -n "$node" link set "$ifn" up
warm=0
for ((i = 0; i < 20; i++)); do # rdisc6 needs zo0's link-local address, which needs DAD first
  if t ip netns exec "$node" rdisc6 -1 -q -r 1 -w 500 "$ifn" >"$dir/rdisc6-warmup.log" 2>&1; then
    warm=1
    break
  fi
  sleep 0.5
done
[ "$warm" -eq 1 ] || { cat "$dir/rdisc6-warmup.log" "$dir/radvd.log" >&2; die "no RA from radvd in the warm-up"; }

echo "==> lab $tag: router end $rif created with ifindex $rif_index, node end $ifn has ifindex $node_index (distinct: no linkwatch delay); radvd/dnsmasq/httpd on bridge br0" >&2
echo "==> $runs runs of: zos-netboot net, 2a kernel defaults, 2b tuned kernel (+ rdisc6 RS -> RA), peer" >&2
for ((run = 1; run <= runs; run++)); do
  for item in zos 2a 2b peer; do
    for ((try = 1; ; try++)); do
      run_item "$item" "$run"
      [ "$unsolicited" -eq 1 ] || break
      redone[$item]=$((${redone[$item]:-0} + 1))
      echo "  run $run $item: an unsolicited multicast RA arrived during the run; running it again" >&2
      [ "$try" -lt 5 ] || die "unsolicited RAs in 5 tries of the same run"
    done
  done
done
reset_node

# --- tables ------------------------------------------------------------------------------------
stats() { # values... -> "n median p90" (p90: nearest rank)
  [ "$#" -gt 0 ] || { echo "0 - -"; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.9 * NR); if (r < 0.9 * NR) r++; if (r < 1) r = 1
    printf "%d %.1f %.1f\n", NR, m, v[r] }'
}
median_of() { # KEY -> median or -
  local n m p
  # shellcheck disable=SC2086 # word-split the list of numbers
  read -r n m p <<<"$(stats ${vals[$1]:-})"
  printf '%s' "$m"
}
ratio() { awk -v a="$1" -v z="$2" 'BEGIN { if (a == "-" || z == "-" || z == 0) print "-"; else if (a / z < 0.01) print "<0.01x"; else printf "%.2fx", a / z }'; }
row() { # LABEL KEY REFERENCE-KEY|"" 
  local n median p90 r="-"
  # shellcheck disable=SC2086
  read -r n median p90 <<<"$(stats ${vals[$2]:-})"
  [ -z "$3" ] || r=$(ratio "$median" "$(median_of "$3")")
  printf '%-62s %5s %10s %9s %9s\n' "$1" "$n/$runs" "$median" "$p90" "$r"
}

echo
printf '%-62s %5s %10s %9s %9s\n' item ok "median ms" "p90 ms" "vs zos"
row "1  zos-netboot net: process start -> exit (wall)" zos.wall zos.wall
row "1  zos-netboot timings_ms.total (start -> online)" zos.total ""
row "1  zos-netboot timings_ms.usable (start -> first family usable)" zos.usable ""
row "1  zos-netboot online after the first family usable (goal <= 150)" zos.after ""
row "1  zos-netboot timings_ms.dhcp4 (DISCOVER -> BOUND)" zos.dhcp4 ""
row "1  zos-netboot timings_ms.slaac (carrier -> IPv6 ready)" zos.slaac ""
row "1  zos-netboot timings_ms.probes" zos.probes ""
row "2a link up -> IPv6 usable: kernel defaults" 2a.ready zos.ready
row "2b link up -> IPv6 usable: rs_delay 0, retrans 100 ms" 2b.ready zos.ready
row "2z link up -> IPv6 usable: zos-netboot (same monitor)" zos.ready zos.ready
row "3  RS -> RA, radvd unicast answer (rdisc6, tcpdump)" floor zos.ready
row "4  peer udhcpc+SLAAC(2b)+getent+wget: start -> exit (wall)" peer.wall zos.wall
echo
echo "IPv6 breakdown, medians in ms after the zo0 link-up event: first RS out and first RA in"
echo "(tcpdump), global address first announced and DAD done (ip monitor; the kernel announces a"
echo "non-optimistic address only once its DAD is done, an optimistic one at once):"
printf '  %-14s %9s %9s %14s %12s\n' "" "first RS" "first RA" "addr seen" "DAD done"
for k in 2a 2b zos peer; do
  printf '  %-14s %9s %9s %14s %12s\n' "$k" "$(median_of "$k.rs")" "$(median_of "$k.ra")" \
    "$(median_of "$k.addr")" "$(median_of "$k.ready")"
done
echo
echo "vs zos: rows 1 and 4 against zos-netboot's wall time, rows 2-3 against row 2z."
echo "Router end $rif created with ifindex $rif_index (node end $ifn: ifindex $node_index), so linkwatch does not delay the operstate."
for k in "${!fails[@]}"; do echo "failed runs: $k ${fails[$k]}"; done
for k in "${!redone[@]}"; do echo "runs repeated for an unsolicited multicast RA: $k ${redone[$k]}"; done
echo "($(nproc) CPUs, kernel $(uname -r); net.core.devconf_inherit_init_net=$(cat /proc/sys/net/core/devconf_inherit_init_net 2>/dev/null || echo ?))"
