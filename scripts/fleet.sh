#!/usr/bin/env bash
# A fleet of nodes booting at the same instant against one dnsmasq, one radvd and one test grid.
#
#   bash scripts/fleet.sh [N] [--json FILE] [--keep-logs DIR]      (default N=100; needs root)
#
# A router namespace holds a bridge br0 (10.99.0.1/16, 2001:db8:99::1/64) with dnsmasq (DHCPv4),
# radvd (SLAAC + RDNSS) and tests/grid/grid.py (HTTPS with a CA made for the run: a manifest
# with one small artifact, and the registrar). Each of the N node namespaces has one veth
# (eth0) whose other end is a bridge port, and runs the static release binary:
#
#   zos-netboot boot --no-handoff --sysroot DIR --cmdline "zos.manifest=… zos.registrar=… …"
#
# All N processes are started, wait for one file to appear, and start together. Reported:
# leases obtained (state files and dnsmasq's lease file), time from release to bound
# (`timings_ms.bound`: the lease applied), to online
# (`timings_ms.total`) and to registered (the process's exit, which comes right after the
# registration), as median / p95 / max; duplicate registrations (records beyond one per node, must
# be 0); the registrar's peak of concurrent POSTs; failed nodes (must be 0). `--json FILE`
# writes the same as JSON (tests/fleet_lab.rs runs a small fleet and checks it). Every process
# runs under `timeout`; everything started is stopped by PID and every namespace removed.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...
cd "$(dirname "$0")/.."
repo=$(pwd)
n=100 json='' keep=''
while [ $# -gt 0 ]; do
  case "$1" in
    --json) json=${2:?--json needs a FILE}; shift 2 ;;
    --keep-logs) keep=${2:?--keep-logs needs a DIR}; shift 2 ;;
    [0-9]*) n=$1; shift ;;
    *) echo "usage: $0 [N] [--json FILE] [--keep-logs DIR]" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
[ "$n" -ge 1 ] && [ "$n" -le 2000 ] || die "N must be 1..2000"
for tool in dnsmasq radvd jq "$py"; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
"$py" -c 'import cryptography' 2>/dev/null || die "$py lacks python3-cryptography (bash scripts/setup.sh)"

tag="zfl$$"
router="$tag-r"
work=$(mktemp -d /tmp/zos-fleet.XXXXXX)
pids=()
nodes=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "${nodes[@]}" "$router"; do
    del_ns "$ns"
  done
  if [ -n "$keep" ]; then mkdir -p "$keep" && cp -a "$work/." "$keep/"; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

zos_bin static


echo "==> router $router: br0 10.99.0.1/16 + 2001:db8:99::1/64, dnsmasq, radvd, grid"
make_ns "$router"
t ip -n "$router" link add br0 type bridge
t ip netns exec "$router" sysctl -qw net.ipv6.conf.br0.accept_dad=0 net.ipv6.conf.br0.accept_ra=0 \
  net.ipv6.conf.all.forwarding=1 net.ipv6.conf.br0.forwarding=1
t ip -n "$router" addr add 10.99.0.1/16 dev br0
t ip -n "$router" addr add 2001:db8:99::1/64 dev br0 nodad
t ip -n "$router" link set br0 up
# A bridge port enters forwarding only after its forward delay (15 s by default): none here.
t ip -n "$router" link set br0 type bridge forward_delay 0 stp_state 0

timeout 1800 ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --no-resolv --port=0 --interface=br0 --bind-interfaces --no-ping \
  --dhcp-range=10.99.1.0,10.99.255.254,255.255.0.0,1h --dhcp-option=3,10.99.0.1 \
  --dhcp-lease-max=100000 --dhcp-leasefile="$work/leases" --pid-file= \
  --log-facility="$work/dnsmasq.log" --log-dhcp 2>"$work/dnsmasq.stderr" &
pids+=($!)
cat >"$work/radvd.conf" <<CONF
interface br0 {
  AdvSendAdvert on; MinRtrAdvInterval 30; MaxRtrAdvInterval 60; AdvRASolicitedUnicast on;
  prefix 2001:db8:99::/64 { AdvOnLink on; AdvAutonomous on; };
  RDNSS 2001:db8:99::1 { };
};
CONF
chmod 644 "$work/radvd.conf"
timeout 1800 ip netns exec "$router" radvd -n -C "$work/radvd.conf" -p "$work/radvd.pid" \
  -m stderr 2>"$work/radvd.log" &
pids+=($!)

"$py" tests/grid/grid.py --make-ca "$work/ca" --names 10.99.0.1,2001:db8:99::1 >/dev/null 2>&1 ||
  die "cannot make the test CA"
mkdir -p "$work/www/zos"
head -c 65536 /dev/urandom >"$work/www/zos/motd"
size=$(stat -c %s "$work/www/zos/motd")
sum=$(sha256sum "$work/www/zos/motd" | awk '{ print $1 }')
printf '{"version": 1, "artifacts": [{"name": "motd", "url": "motd", "size": %s, "sha256": "%s", "kind": "file", "dest": "/etc/motd"}]}\n' \
  "$size" "$sum" >"$work/www/zos/manifest.json"
timeout 1800 ip netns exec "$router" "$py" tests/grid/grid.py --root "$work/www" \
  --https 10.99.0.1:443 --https '[2001:db8:99::1]:443' --cert "$work/ca/server.pem" \
  --key "$work/ca/server-key.pem" --records "$work/records.json" \
  --ready-file "$work/grid.ready" --exit-after 1790 2>"$work/grid.log" &
pids+=($!)
for _ in $(seq 200); do [ -f "$work/grid.ready" ] && break; sleep 0.05; done
[ -f "$work/grid.ready" ] || { cat "$work/grid.log" >&2; die "grid.py did not start"; }
for _ in $(seq 200); do grep -q "DHCP, IP range" "$work/dnsmasq.log" 2>/dev/null && break; sleep 0.05; done

echo "==> $n node namespaces, one veth each on br0"
for ((i = 1; i <= n; i++)); do
  ns="$tag-n$i"
  make_ns "$ns"
  nodes+=("$ns")
  # The bridge end gets its own ifindex (see docs/bench.md: a pair sharing one delays carrier).
  t ip link add "p$i" netns "$router" index $((10000 + i)) type veth peer name eth0 netns "$ns"
  t ip -n "$router" link set "p$i" master br0 up
  mkdir -p "$work/n$i/etc/zos"
  cp "$work/ca/ca.pem" "$work/n$i/etc/zos/ca.pem"
done

cmdline="zos.iface=eth0 zos.probe=https://10.99.0.1/ zos.manifest=https://10.99.0.1/zos/manifest.json \
zos.ca=/etc/zos/ca.pem zos.registrar=https://10.99.0.1/api/v1/nodes farmer_id=1 runmode=test"
echo "==> starting $n zos-netboot processes, released together"
for ((i = 1; i <= n; i++)); do
  # Each says it is ready, then waits for the go file (polling every 5 ms: the release is
  # spread over at most that). Its exit time (ms since the epoch) is when it was registered.
  timeout -k 5 300 sh -c ': >"$4/ready"; while [ ! -e "$1" ]; do sleep 0.005; done
      ip netns exec "$2" "$3" boot --no-handoff --sysroot "$4" --wait-ipv6 3 --cmdline "$5" \
        >"$4/console.log" 2>&1
      echo $? "$(date +%s%3N)" >"$4/exit"' \
    _ "$work/go" "${nodes[$((i - 1))]}" "$bin" "$work/n$i" "$cmdline" &
  pids+=($!)
done
for _ in $(seq 1200); do
  ready=$(find "$work" -maxdepth 2 -name ready | wc -l)
  [ "$ready" -ge "$n" ] && break
  sleep 0.05
done
[ "$ready" -ge "$n" ] || die "only $ready of $n nodes got ready"
released=$(date +%s%3N)
: >"$work/go"
echo "==> released at $released; waiting for all of them (at most 300 s)"
for p in "${pids[@]:3}"; do wait "$p" 2>/dev/null || true; done

"$py" - "$work" "$n" "$released" "${json:-}" <<'PY'
import json, os, sys
work, n, released, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]
online, registered, bound, failed, reasons = [], [], 0, [], {}
bound_ms = []
for i in range(1, n + 1):
    d = os.path.join(work, "n%d" % i)
    try:
        code, at = open(os.path.join(d, "exit")).read().split()
        code, at = int(code), int(at)
    except (OSError, ValueError):
        code, at = None, None
    state = {}
    try:
        state = json.load(open(os.path.join(d, "run/zos-netboot/state.json")))
    except (OSError, ValueError):
        pass
    if any(i.get("lease") for i in state.get("interfaces", [])):
        bound += 1
    if state.get("timings_ms", {}).get("bound") is not None:
        bound_ms.append(state["timings_ms"]["bound"])
    if state.get("online") and state.get("timings_ms", {}).get("total") is not None:
        online.append(state["timings_ms"]["total"])
    reg = state.get("registration") or {}
    if code == 0 and reg.get("node_id") and not reg.get("error"):
        registered.append(at - released)
    else:
        failed.append(i)
        why = (reg.get("error") or (state.get("fetch") or {}).get("error")
               or state.get("error") or "exit %s, no state" % code)
        reasons[why[:120]] = reasons.get(why[:120], 0) + 1
records = json.load(open(os.path.join(work, "records.json"))) if os.path.exists(
    os.path.join(work, "records.json")) else {}
posts = sum(r["registrations"] for r in records.values())
leases = sum(1 for l in open(os.path.join(work, "leases")) if l.strip()) if os.path.exists(
    os.path.join(work, "leases")) else 0
summary = {
    "nodes": n, "leases_in_state": bound, "leases_in_dnsmasq": leases,
    "online": len(online), "registered": len(registered), "failed": len(failed),
    "failed_nodes": failed[:20], "failure_reasons": reasons,
    "records": len(records), "duplicate_registrations": posts - len(records),
    "bound_ms": {"median": pct(bound_ms, 50), "p95": pct(bound_ms, 95), "max": max(bound_ms) if bound_ms else None},
    "online_ms": {"median": pct(online, 50), "p95": pct(online, 95), "max": max(online) if online else None},
    "registered_ms": {"median": pct(registered, 50), "p95": pct(registered, 95),
                      "max": max(registered) if registered else None},
}
json.dump(summary, open(os.path.join(work, "summary.json"), "w"), indent=1)
PY
# The registrar's own counters (peak concurrent POSTs), asked inside the router namespace.
state=$(t ip netns exec "$router" curl -s --noproxy '*' --cacert "$work/ca/ca.pem" \
  https://10.99.0.1/_grid/state || echo '{}')
peak=$(jq -r '.counters.registrations_in_flight_peak // "null"' <<<"$state")
jq --argjson peak "$peak" '. + {registrar_peak_concurrent_posts: $peak}' "$work/summary.json" >"$work/summary2.json"
mv "$work/summary2.json" "$work/summary.json"
[ -z "$json" ] || cp "$work/summary.json" "$json"

jq -r '"
nodes                        \(.nodes)
leases (state / dnsmasq)     \(.leases_in_state) / \(.leases_in_dnsmasq)   ms from release to bound: median \(.bound_ms.median), p95 \(.bound_ms.p95), max \(.bound_ms.max)
online                       \(.online)   ms from release: median \(.online_ms.median), p95 \(.online_ms.p95), max \(.online_ms.max)
registered                   \(.registered)   ms from release: median \(.registered_ms.median), p95 \(.registered_ms.p95), max \(.registered_ms.max)
registration records         \(.records)   duplicates: \(.duplicate_registrations)
registrar peak concurrency   \(.registrar_peak_concurrent_posts) POSTs at once
failed nodes                 \(.failed) \(if .failed > 0 then (.failure_reasons | tostring) else "" end)"' "$work/summary.json"
echo "(load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$(jq -r '.failed' "$work/summary.json")" = 0 ] && [ "$(jq -r '.duplicate_registrations' "$work/summary.json")" = 0 ]
