#!/usr/bin/env bash
# DHCPv4 time-to-address: zos-netboot against busybox udhcpc, ISC dhclient and dhcpcd.
#
#   bash scripts/bench-dhcp.sh [RUNS]        (default 10; root; from the repo root or anywhere)
#
# In a lab of its own (namespaces zlab-bench-<pid>-r/-n, veth rb0 <-> zb0, dnsmasq --no-ping
# on 10.77.0.0/24) each client runs RUNS times, the clients taking turns. Each run starts from a
# down link with no address and no client lease/state file (a fresh DISCOVER every time), and
# measures process start -> IPv4 address present on zb0, the same way for every client: the
# timestamp (`ip -ts monitor address`, microseconds) of the kernel's new-address event minus the
# wall clock just before the client was started (so process start-up, link-up and the DHCP
# exchange all count). busybox udhcpc does not bring the link up: its run includes an
# `ip link set zb0 up` first. dhcpcd ARP-probes an offered address by default (RFC 5227); it is
# measured as configured by default and with --noarp. zos-netboot's own timings_ms.dhcp4 (first
# DISCOVER to BOUND) is printed too.
#
# The harness itself (bash forking, `timeout`, `ip netns exec` entering the namespace and
# remounting /sys, exec) costs every client the same few milliseconds before the client's first
# instruction. A "harness floor" row measures it in the same run: a client that only adds an
# address (`ip addr add`) started the same way. The last column subtracts that floor's median
# from each client's: the client's own start -> address.
#
# BIN=/path/to/zos-netboot skips the build (default: cargo build --release).
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...

runs=${1:-10}
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [RUNS]" >&2; exit 2; }
cd "$(dirname "$0")/.."
repo=$(pwd)


[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in ip dnsmasq jq timeout awk date; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done

zos_bin release

tag="zlab-bench-$$"
router="$tag-r"
node="$tag-n"
ifn=zb0 # unusual name: dhcpcd keeps /var/lib/dhcpcd/<if>.lease and /run/dhcpcd/<if>-4.pid on the host fs
rif=rb0
dir=$(mktemp -d /tmp/zlab-bench.XXXXXX)
dnsmasq_pid=""
monitor_pid=""   # the `timeout` wrapper (our child)
monitor_ip_pid="" # the `ip monitor` under it, which lives in the node namespace
client_pid=""
dhcpcd_lease="/var/lib/dhcpcd/$ifn.lease"


# Kill every process in the node namespace except the address monitor (by PID).
sweep_node() {
  local pid
  for pid in $(t ip netns pids "$node" 2>/dev/null || true); do
    [ "$pid" = "$monitor_ip_pid" ] && continue
    kill -KILL "$pid" 2>/dev/null || true
  done
}

cleanup() {
  set +e
  kill_wait "$client_pid"
  if ns_exists "$node"; then
    t ip netns exec "$node" dhcpcd -x "$ifn" >/dev/null 2>&1
    sweep_node
  fi
  kill_wait "$monitor_pid" "$dnsmasq_pid"
  for ns in "$node" "$router"; do
    del_ns "$ns"
  done
  rm -f "$dhcpcd_lease"
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the lab ---------------------------------------------------------------------------------
for ns in "$router" "$node"; do make_ns "$ns"; done
# A distinct ifindex for the router end: when both veth ends have the same index in their
# namespaces, the kernel treats their carrier change as non-urgent and may delay activating the
# queue by up to a second, which drops whatever a client sends first (a lab artefact).
t ip -n "$router" link add "$rif" index 1001 type veth peer name "$ifn" netns "$node"
t ip -n "$router" addr add 10.77.0.1/24 dev "$rif"
t ip -n "$router" link set "$rif" up

timeout -k 5 3600 ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --interface="$rif" --bind-interfaces --except-interface=lo --no-ping --no-resolv --port=0 \
  --dhcp-range=10.77.0.10,10.77.0.250,255.255.255.0,1h --dhcp-leasefile="$dir/dnsmasq.leases" \
  --pid-file= --log-facility="$dir/dnsmasq.log" </dev/null >/dev/null 2>"$dir/dnsmasq.stderr" &
dnsmasq_pid=$!
for ((i = 0; i < 200; i++)); do
  grep -q "DHCP, IP range" "$dir/dnsmasq.log" 2>/dev/null && break
  kill -0 "$dnsmasq_pid" 2>/dev/null || { cat "$dir/dnsmasq.stderr" >&2; die "dnsmasq exited"; }
  sleep 0.05
done
grep -q "DHCP, IP range" "$dir/dnsmasq.log" || die "dnsmasq not ready"

# One address monitor for the whole benchmark, in the node namespace, with timestamps.
timeout -k 2 3600 ip -n "$node" -ts monitor address >"$dir/monitor.log" 2>&1 &
monitor_pid=$!
# Ready once it reports a probe address (added until it does: it may not be subscribed yet).
for ((i = 0; i < 100; i++)); do
  t ip -n "$node" addr add 127.0.0.2/8 dev lo
  sleep 0.02
  t ip -n "$node" addr del 127.0.0.2/8 dev lo
  grep -q "127.0.0.2" "$dir/monitor.log" && break
done
grep -q "127.0.0.2" "$dir/monitor.log" || die "ip monitor not ready"
monitor_ip_pid=$(cat "/proc/$monitor_pid/task/$monitor_pid/children" 2>/dev/null || true)
monitor_ip_pid=${monitor_ip_pid// /}
[ -n "$monitor_ip_pid" ] || die "cannot find the ip monitor process under $monitor_pid"

# --- clients -----------------------------------------------------------------------------------
cat >"$dir/udhcpc.sh" <<'EOF'
#!/bin/sh
case "$1" in bound|renew) ip addr add "$ip/$mask" dev "$interface" ;; esac
exit 0
EOF
cat >"$dir/dhclient.sh" <<'EOF'
#!/bin/sh
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
esac
exit 0
EOF
printf '#!/bin/sh\nexit 0\n' >"$dir/noop.sh"
: >"$dir/dhclient.conf"
chmod 755 "$dir/udhcpc.sh" "$dir/dhclient.sh" "$dir/noop.sh"

clients=(floor zos-netboot)
command -v busybox >/dev/null && busybox udhcpc --help >/dev/null 2>&1 && clients+=(udhcpc)
command -v dhclient >/dev/null && clients+=(dhclient)
command -v dhcpcd >/dev/null && clients+=(dhcpcd dhcpcd-noarp)
label() {
  case "$1" in
    floor) echo "harness floor" ;;
    zos-netboot) echo "zos-netboot dhcp4" ;;
    udhcpc) echo "busybox udhcpc" ;;
    dhclient) echo "ISC dhclient" ;;
    dhcpcd) echo "dhcpcd" ;;
    dhcpcd-noarp) echo "dhcpcd --noarp" ;;
  esac
}

# start_client NAME RUN: starts it in the background (client_pid), output to a per-run log.
start_client() {
  local log="$dir/$1-$2.log"
  case "$1" in
    floor)
      timeout -k 2 30 ip netns exec "$node" ip addr add 10.77.0.254/24 dev "$ifn" >"$log" 2>&1 &
      ;;
    zos-netboot)
      timeout -k 2 30 ip netns exec "$node" "$bin" dhcp4 "$ifn" --state "$dir/state.json" --timeout 25 >"$log" 2>&1 &
      ;;
    udhcpc)
      # shellcheck disable=SC2016 # $1/$2 are the inner sh's arguments
      timeout -k 2 30 ip netns exec "$node" sh -c 'ip link set "$1" up && exec busybox udhcpc -f -q -n -i "$1" -s "$2"' \
        sh "$ifn" "$dir/udhcpc.sh" >"$log" 2>&1 &
      ;;
    dhclient)
      timeout -k 2 30 ip netns exec "$node" dhclient -1 -4 -d -cf "$dir/dhclient.conf" -pf "$dir/dhclient.pid" \
        -lf "$dir/dhclient.leases" -sf "$dir/dhclient.sh" "$ifn" >"$log" 2>&1 &
      ;;
    dhcpcd)
      timeout -k 2 30 ip netns exec "$node" dhcpcd -f /dev/null -c "$dir/noop.sh" -4 -1 -w -B "$ifn" >"$log" 2>&1 &
      ;;
    dhcpcd-noarp)
      timeout -k 2 30 ip netns exec "$node" dhcpcd -f /dev/null -c "$dir/noop.sh" -4 -1 -w -B -A "$ifn" >"$log" 2>&1 &
      ;;
  esac
  client_pid=$!
}

# reset: stop the client, forget every lease, no address, link down.
reset_node() {
  kill_wait "$client_pid"
  client_pid=""
  t ip netns exec "$node" dhcpcd -x "$ifn" >/dev/null 2>&1 || true
  sweep_node
  rm -f "$dir/state.json" "$dir/dhclient.leases" "$dir/dhclient.pid" "$dhcpcd_lease"
  t ip -n "$node" addr flush dev "$ifn"
  t ip -n "$node" link set "$ifn" down
}

# ns of an `ip -ts` timestamp line "[2026-11-25T04:15:14.861471] ...".
ts_ns() { date -d "$(printf '%s' "$1" | sed -E 's/^\[([^]]+)\].*/\1/')" +%s%N; }

declare -A results=()
declare -A failures=()
own_timings=()

echo "==> $runs runs per client: ${clients[*]}" >&2
for ((run = 1; run <= runs; run++)); do
  for c in "${clients[@]}"; do
    reset_node
    offset=$(wc -l <"$dir/monitor.log")
    t0=$(date +%s%N)
    start_client "$c" "$run"
    line=""
    for ((i = 0; i < 3000; i++)); do # ≤ 30 s
      line=$(awk -v off="$offset" -v ifn="$ifn" 'NR > off && $0 !~ /Deleted/ && $3 == ifn && $4 == "inet" { print; exit }' "$dir/monitor.log")
      [ -n "$line" ] && break
      kill -0 "$client_pid" 2>/dev/null || { sleep 0.05; line=$(awk -v off="$offset" -v ifn="$ifn" 'NR > off && $0 !~ /Deleted/ && $3 == ifn && $4 == "inet" { print; exit }' "$dir/monitor.log"); break; }
      sleep 0.01
    done
    if [ -z "$line" ]; then
      failures[$c]=$((${failures[$c]:-0} + 1))
      echo "  run $run $c: no address (log: $(tr '\n' ' ' <"$dir/$c-$run.log" | cut -c1-300))" >&2
      continue
    fi
    t1=$(ts_ns "$line")
    ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')
    results[$c]="${results[$c]:-} $ms"
    if [ "$c" = zos-netboot ]; then
      # Let it finish writing its state file (it exits once bound), bounded.
      for ((i = 0; i < 500; i++)); do kill -0 "$client_pid" 2>/dev/null || break; sleep 0.01; done
      own=$(jq -r '.timings_ms.dhcp4 // empty' "$dir/state.json" 2>/dev/null || true)
      [ -n "$own" ] && own_timings+=("$own")
    fi
    printf '  run %2d %-14s %8s ms\n' "$run" "$c" "$ms" >&2
  done
done
reset_node

# --- table -------------------------------------------------------------------------------------
stats() { # values... -> "n median p90" (p90: nearest rank)
  [ "$#" -gt 0 ] || { echo "0 - -"; return; }
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.9 * NR); if (r < 0.9 * NR) r++; if (r < 1) r = 1
    printf "%d %.1f %.1f\n", NR, m, v[r] }'
}

# shellcheck disable=SC2086 # word-split the list of numbers
read -r _ zos_median _ <<<"$(stats ${results[zos-netboot]:-})"
read -r _ floor_median _ <<<"$(stats ${results[floor]:-})"
echo
printf '%-20s %5s %11s %9s %16s %22s\n' client ok "median ms" "p90 ms" "vs zos-netboot" "median − floor ms"
for c in "${clients[@]}"; do
  # shellcheck disable=SC2086
  read -r n median p90 <<<"$(stats ${results[$c]:-})"
  ratio=$(awk -v a="$median" -v z="$zos_median" 'BEGIN { if (a == "-" || z == "-" || z == 0) print "-"; else printf "%.1fx", a / z }')
  own=$(awk -v a="$median" -v f="$floor_median" 'BEGIN { if (a == "-" || f == "-") print "-"; else printf "%.1f", a - f }')
  [ "$c" = floor ] && ratio="-" && own="-"
  printf '%-20s %2d/%-2d %11s %9s %16s %22s\n' "$(label "$c")" "$n" "$runs" "$median" "$p90" "$ratio" "$own"
done
if [ "${#own_timings[@]}" -gt 0 ]; then
  read -r n median p90 <<<"$(stats "${own_timings[@]}")"
  printf '\nzos-netboot timings_ms.dhcp4 (its own clock, first DISCOVER -> BOUND): median %s ms, p90 %s ms (%d runs)\n' \
    "$median" "$p90" "$n"
fi
echo "(process start -> IPv4 address on the interface, from ip monitor timestamps; $(uname -r))"
