#!/usr/bin/env bash
# A small network-namespace lab for zos-netboot (needs root; touches no host interface).
#
#   scripts/lab.sh demo   build, run `zos-netboot net` in a fresh lab, show its console output
#                         and state JSON, then remove the lab
#   scripts/lab.sh up     leave a lab up for manual debugging (prints how to enter it)
#   scripts/lab.sh down   remove the lab `up` made
#   scripts/lab.sh status show what `up` made
#
# Topology: a router namespace and a node namespace, two veth wires:
#   node eth0 <-> router r0  10.10.0.1/24, dnsmasq (router, DNS 10.10.0.53, domain lab.test)
#   node eth1 <-> router r1  10.10.1.1/24, no DHCP server
# Node interfaces start DOWN: zos-netboot brings them up. All names start with `zlab-`.
# BIN=/path/to/zos-netboot skips the build (default: cargo build, target/debug/zos-netboot).
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...

cd "$(dirname "$0")/.."
repo=$(pwd)
up_dir=/run/zlab
up_router=zlab-r
up_node=zlab-n
up_ttl=${LAB_TTL:-8h} # dnsmasq of `lab.sh up` runs under `timeout $up_ttl`


need_lab() {
  need_root
  need_tools ip dnsmasq jq timeout
}

build() { zos_bin debug; }



# wire ROUTER NODE RIF NIF CIDR: veth pair, router end addressed and up, node end left down.
wire() {
  t ip -n "$1" link add "$3" type veth peer name "$4" netns "$2"
  t ip -n "$1" addr add "$5" dev "$3"
  t ip -n "$1" link set "$3" up
}

# build_lab ROUTER NODE DIR TTL: both namespaces, two wires, dnsmasq on r0 (PID in DIR).
build_lab() {
  local router=$1 node=$2 dir=$3 ttl=$4 i
  make_ns "$router"
  make_ns "$node"
  wire "$router" "$node" r0 eth0 10.10.0.1/24
  wire "$router" "$node" r1 eth1 10.10.1.1/24
  : >"$dir/dnsmasq.leases"
  # setsid: its own session, so it outlives this script for `up`; killed by PID.
  setsid timeout -k 5 "$ttl" ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null \
    --no-hosts --interface=r0 --bind-interfaces --except-interface=lo \
    --dhcp-range=10.10.0.100,10.10.0.200,255.255.255.0,1h --no-ping --no-resolv --port=0 \
    --dhcp-option=3,10.10.0.1 --dhcp-option=6,10.10.0.53 --domain=lab.test \
    --dhcp-leasefile="$dir/dnsmasq.leases" --pid-file= --log-dhcp \
    --log-facility="$dir/dnsmasq.log" </dev/null >/dev/null 2>"$dir/dnsmasq.stderr" &
  echo $! >"$dir/dnsmasq.pid"
  # Ready when it logs its range (printed after its socket is bound); bounded.
  for ((i = 0; i < 200; i++)); do
    grep -q "DHCP, IP range" "$dir/dnsmasq.log" 2>/dev/null && return 0
    kill -0 "$(cat "$dir/dnsmasq.pid")" 2>/dev/null || break
    sleep 0.05
  done
  cat "$dir/dnsmasq.stderr" >&2
  die "dnsmasq did not start"
}

# stop_dnsmasq DIR: SIGTERM to its `timeout` wrapper by PID (forwarded to dnsmasq), bounded wait.
stop_dnsmasq() {
  local pid i
  [ -f "$1/dnsmasq.pid" ] || return 0
  pid=$(cat "$1/dnsmasq.pid")
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

demo() {
  need_lab
  build
  local tag router node dir state rc=0
  tag="zlab-d$$"
  router="$tag-r"
  node="$tag-n"
  dir=$(mktemp -d /tmp/zlab-demo.XXXXXX)
  state="$dir/state.json"
  # shellcheck disable=SC2064 # expand now: these names are fixed for this run
  trap "stop_dnsmasq '$dir'; del_ns '$node'; del_ns '$router'; rm -rf '$dir'" EXIT
  build_lab "$router" "$node" "$dir" 300

  cat <<EOF

==> lab: node namespace $node, router namespace $router
    eth0 <-> r0 10.10.0.1/24 with dnsmasq (router 10.10.0.1, DNS 10.10.0.53, domain lab.test)
    eth1 <-> r1 10.10.1.1/24 without a DHCP server

==> ip netns exec $node zos-netboot net --state $state --timeout 20
EOF
  timeout --foreground -k 5 60 ip netns exec "$node" "$bin" net --state "$state" --timeout 20 || rc=$?
  echo
  echo "==> exit code $rc"
  if [ -f "$state" ]; then
    echo "==> state JSON ($state)"
    jq . "$state"
  else
    echo "==> no state file was written"
  fi
  echo "==> node IPv4 addresses and routes"
  t ip -n "$node" -4 -o addr show | awk '{ print "  " $2, $4 }'
  t ip -n "$node" route | sed 's/^/  /'
  echo "==> node resolv.conf"
  cat "/etc/netns/$node/resolv.conf"
  echo "==> what dnsmasq saw"
  grep -E "DHCP[A-Z]+\(" "$dir/dnsmasq.log" || true
  return "$rc"
}

up() {
  need_lab
  if ns_exists "$up_node" || ns_exists "$up_router"; then
    die "a lab is already up ($up_node); scripts/lab.sh down first"
  fi
  build
  mkdir -p "$up_dir"
  trap 'down >/dev/null' EXIT # undo a half-built lab
  build_lab "$up_router" "$up_node" "$up_dir" "$up_ttl"
  trap - EXIT
  cat <<EOF
Lab up (dnsmasq stops by itself after $up_ttl). Node interfaces eth0 (DHCP) and eth1 (no DHCP)
are down, as a booting node finds them.

  enter the node:     ip netns exec $up_node bash
  run zos-netboot:    ip netns exec $up_node $bin net --state /tmp/zlab-state.json
                      (RUST_LOG=debug for more)
  one interface:      ip netns exec $up_node $bin dhcp4 eth0 --state /tmp/zlab-state.json
  router side:        ip netns exec $up_router bash
  dnsmasq log:        tail -f $up_dir/dnsmasq.log
  reset the node:     ip -n $up_node addr flush dev eth0; ip -n $up_node link set eth0 down
  remove it all:      scripts/lab.sh down
EOF
}

down() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  stop_dnsmasq "$up_dir"
  del_ns "$up_node"
  del_ns "$up_router"
  rm -rf "$up_dir"
  echo "lab down"
}

status() {
  t ip netns list | grep -E '^zlab-' || echo "no zlab- namespaces"
  if ns_exists "$up_node"; then
    t ip -n "$up_node" -br addr
    t ip -n "$up_node" route
  fi
}

case "${1:-}" in
  demo) demo ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
    ;;
esac
