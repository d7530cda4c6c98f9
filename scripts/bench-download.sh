#!/usr/bin/env bash
# Verified download throughput of zos-netboot against curl, on one veth link, same server,
# same file, same run; and zos-netboot's peak RSS while it downloads.
#
#   bash scripts/bench-download.sh [SIZE_MIB] [RUNS]     (default 1024 MiB, 3 runs; needs root)
#
# A router namespace serves a random file with tests/grid/grid.py (HTTPS with a CA made for the
# run, and plain HTTP); a node namespace gets a lease from dnsmasq and fetches it:
#   zos-netboot  `boot --no-handoff --sysroot DIR` with a one-artifact manifest: download into
#                the cache while hashing (SHA-256), verify size + hash, rename. Its time is the
#                artifact's `ms` in the state JSON (first request → verified file in place); the
#                install copy that follows is not counted. Peak RSS: getrusage of the process.
#   curl         `curl -o FILE` (the same URL, --cacert), then `sha256sum FILE`: the fair peer
#                for a verified download is curl + sha256sum; curl alone is shown too.
# Medians of RUNS per protocol; ratios are zos-netboot / peer (> 1: zos-netboot faster).
# The server is Python (one thread per connection); if both clients show the same rate, the
# server is the limit, not the clients. Both clients write to a tmpfs, as the node does (its
# cache and next root are RAM); the served file is on disk (/var/tmp). Everything is removed at
# the end: files, the tmpfs, the namespaces and every process started here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
size_mib=${1:-1024}
runs=${2:-3}
py=/usr/bin/python3

die() { printf 'bench-download.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in dnsmasq curl sha256sum jq "$py"; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
"$py" -c 'import cryptography' 2>/dev/null || die "$py lacks python3-cryptography (bash scripts/setup.sh)"
free_mib=$(df -m --output=avail /var/tmp | tail -n 1)
[ "$free_mib" -gt $((size_mib + 512)) ] || die "/var/tmp has ${free_mib} MiB free; needs $((size_mib + 512))"
mem_mib=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
[ "$mem_mib" -gt $((size_mib * 3 + 1024)) ] || die "${mem_mib} MiB of RAM available; the tmpfs needs $((size_mib * 3 + 1024))"

t() { timeout -k 2 30 "$@"; }
router=zbench-dl-r node=zbench-dl-n
work=$(mktemp -d /var/tmp/zbench-dl.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "$node" "$router"; do
    if ip netns list | awk '{ print $1 }' | grep -qx "$ns"; then
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
      t ip netns del "$ns"
    fi
    rm -rf "/etc/netns/$ns"
  done
  mountpoint -q "$work/ram" && umount "$work/ram"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "==> building the static release binary"
bash scripts/build.sh >/dev/null
bin="$repo/target/x86_64-unknown-linux-musl/release/zos-netboot"

echo "==> lab: $router (10.88.0.1, grid.py, dnsmasq) <-> $node (eth0)"
for ns in "$router" "$node"; do
  mkdir -p "/etc/netns/$ns"
  : >"/etc/netns/$ns/resolv.conf" # before any `ip netns exec`: never the host's resolv.conf
  t ip netns add "$ns"
  t ip -n "$ns" link set lo up
done
# The router end gets its own ifindex: a pair sharing one makes the kernel treat the carrier
# change as non-urgent (up to 1 s late), see docs/bench.md.
t ip link add r0 netns "$router" index 1001 type veth peer name eth0 netns "$node"
t ip -n "$router" addr add 10.88.0.1/24 dev r0
t ip -n "$router" link set r0 up
timeout 3600 ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --no-resolv --port=0 --interface=r0 --bind-interfaces --no-ping \
  --dhcp-range=10.88.0.100,10.88.0.200,255.255.255.0,1h --dhcp-option=3,10.88.0.1 \
  --dhcp-leasefile="$work/leases" --pid-file= --log-facility="$work/dnsmasq.log" \
  2>"$work/dnsmasq.stderr" &
pids+=($!)

mkdir -p "$work/ram"
mount -t tmpfs -o size=$((size_mib * 3 + 256))m zbench-dl "$work/ram"

echo "==> ${size_mib} MiB of random data, a test CA, the grid"
head -c "$((size_mib * 1048576))" /dev/urandom >"$work/big.bin"
mkdir -p "$work/www"
mv "$work/big.bin" "$work/www/big.bin"
sum=$(sha256sum "$work/www/big.bin" | awk '{ print $1 }')
bytes=$((size_mib * 1048576))
"$py" tests/grid/grid.py --make-ca "$work/ca" --names 10.88.0.1 >/dev/null 2>&1
for proto in https http; do
  url="$proto://10.88.0.1:$([ "$proto" = https ] && echo 8443 || echo 8080)"
  printf '{"version": 1, "artifacts": [{"name": "big", "url": "%s/big.bin", "size": %s, "sha256": "%s", "kind": "file", "dest": "/big.bin"}]}\n' \
    "$url" "$bytes" "$sum" >"$work/www/manifest-$proto.json"
done
timeout 3600 ip netns exec "$router" "$py" tests/grid/grid.py --root "$work/www" \
  --https 10.88.0.1:8443 --http 10.88.0.1:8080 --cert "$work/ca/server.pem" \
  --key "$work/ca/server-key.pem" --ready-file "$work/grid.ready" --exit-after 3500 \
  2>"$work/grid.log" &
pids+=($!)
for _ in $(seq 200); do [ -f "$work/grid.ready" ] && break; sleep 0.05; done
[ -f "$work/grid.ready" ] || { cat "$work/grid.log" >&2; die "grid.py did not start"; }

# Peak RSS (KiB) of a command and its children, and its exit status, as "rss status"; its
# output goes to $work/zos.log.
rss_of() {
  LOG="$work/zos.log" "$py" -c 'import os, resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=open(os.environ["LOG"], "w"), stderr=subprocess.STDOUT)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)' "$@"
}
now_ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
rate() { awk -v b="$bytes" -v ms="$1" 'BEGIN { printf "%.1f", (ms > 0) ? b / 1048576 / (ms / 1000) : 0 }'; }

echo "==> $runs runs per protocol (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
declare -A res
for proto in https http; do
  : >"$work/zos.$proto" ; : >"$work/rss.$proto" ; : >"$work/curl.$proto" ; : >"$work/curlsha.$proto"
  url="$proto://10.88.0.1:$([ "$proto" = https ] && echo 8443 || echo 8080)/big.bin"
  for ((i = 1; i <= runs; i++)); do
    root="$work/ram/sysroot"
    rm -rf "$root"
    mkdir -p "$root/etc/zos"
    cp "$work/ca/ca.pem" "$root/etc/zos/ca.pem"
    read -r rss status < <(rss_of timeout -k 5 900 ip netns exec "$node" "$bin" boot --no-handoff \
      --sysroot "$root" --wait-ipv6 0 --cmdline "zos.iface=eth0 zos.probe=none \
      zos.manifest=$proto://10.88.0.1:$([ "$proto" = https ] && echo 8443 || echo 8080)/manifest-$proto.json \
      zos.ca=/etc/zos/ca.pem")
    state="$root/run/zos-netboot/state.json"
    [ "$status" = 0 ] || { cat "$work/zos.log" >&2; die "zos-netboot failed ($status) on $proto run $i"; }
    ms=$(jq -r '.fetch.artifacts[0].ms' "$state")
    [ "$(jq -r '.fetch.artifacts[0].bytes_received' "$state")" = "$bytes" ] || die "zos-netboot did not receive the whole file"
    echo "$ms" >>"$work/zos.$proto"
    echo "$rss" >>"$work/rss.$proto"
    rm -rf "$root"

    out="$work/ram/curl.bin"
    rm -f "$out"
    t0=$(now_ms)
    timeout -k 5 900 ip netns exec "$node" curl -sS --fail --cacert "$work/ca/ca.pem" -o "$out" "$url"
    t1=$(now_ms)
    got=$(sha256sum "$out" | awk '{ print $1 }')
    t2=$(now_ms)
    [ "$got" = "$sum" ] || die "curl's file does not match"
    echo $((t1 - t0)) >>"$work/curl.$proto"
    echo $((t2 - t0)) >>"$work/curlsha.$proto"
    rm -f "$out"
    printf '  %-5s run %d: zos-netboot %s ms (peak RSS %s KiB), curl %s ms, curl+sha256sum %s ms\n' \
      "$proto" "$i" "$ms" "$rss" $((t1 - t0)) $((t2 - t0))
  done
  res[$proto.zos]=$(median <"$work/zos.$proto")
  res[$proto.rss]=$(sort -n "$work/rss.$proto" | tail -n 1)
  res[$proto.curl]=$(median <"$work/curl.$proto")
  res[$proto.curlsha]=$(median <"$work/curlsha.$proto")
done

echo
echo "==> ${size_mib} MiB, medians of $runs (load after: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-6s %14s %12s %18s %10s %14s %12s\n' proto "zos-netboot" curl "curl+sha256sum" "zos/curl" "zos/(curl+sha)" "zos peak RSS"
for proto in https http; do
  z=${res[$proto.zos]} c=${res[$proto.curl]} cs=${res[$proto.curlsha]}
  printf '%-6s %9s MiB/s %6s MiB/s %12s MiB/s %10s %14s %8.1f MiB\n' "$proto" "$(rate "$z")" "$(rate "$c")" \
    "$(rate "$cs")" "$(awk -v a="$c" -v b="$z" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="$cs" -v b="$z" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v k="${res[$proto.rss]}" 'BEGIN { print k / 1024 }')"
done
echo "(ratios > 1: zos-netboot is faster; zos-netboot's time includes its SHA-256, curl's does not)"
