#!/usr/bin/env bash
# Flist materialisation against a tarball of the same bytes from the same hub (issue 14's bench):
# MiB/s and peak RSS of zos-netboot's fetch stage each way, and their ratio.
#
#   bash scripts/bench-flist.sh [SIZE_MIB] [RUNS]     (default 200 MiB, 3 runs; needs root)
#
# The tree: many small files (1-64 KiB, ~60 % of the bytes) and four large ones, random bytes
# (incompressible: snappy gains nothing, as for binaries). Published on one test hub
# (tests/grid/grid.py, plain HTTP, in a router namespace) two ways:
#   tarball  bench.tar (uncompressed), a `rootfs` artifact of a one-artifact manifest
#   flist    bench.fl (rfs v2, tests/grid/flistgen.py), its blocks under /blocks on the same
#            hub (the flist's route: an http store)
# A run boots `zos-netboot boot --no-handoff --sysroot DIR --wait-ipv6 0` in a node namespace
# (veth to the router, dnsmasq for the lease) with `zos.manifest=` or `zos.flist=`; the time is
# from the console's "online in" line to the last "installed" line (download + verify + unpack
# or materialise), the size is the tree's bytes. Peak RSS: getrusage(RUSAGE_CHILDREN) of a
# python3 wrapper. The next roots are on a tmpfs (RAM, as on a node). Medians of RUNS; the
# ratio is flist / tarball (throughput >= 0.8 is the issue's goal).
# STORE=zdb puts the flist's blocks in a real Redis on the hub's address (port 9900, the flist's
# route) instead of the hub's http store (grid.py, Python: one request per block).
# BIN=/path/to/zos-netboot skips the build (default: scripts/build.sh, the static musl binary).
# Every command is bounded by `timeout`; on exit the servers are stopped by PID, the namespaces,
# /etc/netns/<ns>, the tmpfs and the work directory removed.
set -euo pipefail

size_mib=${1:-200}
runs=${2:-3}
[[ "$size_mib" =~ ^[1-9][0-9]*$ ]] && [[ "$runs" =~ ^[1-9][0-9]*$ ]] ||
  { echo "usage: $0 [SIZE_MIB] [RUNS]" >&2; exit 2; }
cd "$(dirname "$0")/.."
repo=$(pwd)
py=/usr/bin/python3

die() { printf 'bench-flist.sh: %s\n' "$*" >&2; exit 1; }
t() { timeout -k 2 60 "$@"; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, a tmpfs mount)"
for tool in ip dnsmasq jq timeout awk mountpoint tar sha256sum "$py"; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
t "$py" -c 'import snappy, cryptography' 2>/dev/null ||
  die "$py lacks python3-snappy or python3-cryptography (bash scripts/setup.sh)"

if [ -z "${BIN:-}" ]; then
  timeout 3600 bash scripts/build.sh >/dev/null
  BIN=$repo/target/x86_64-unknown-linux-musl/release/zos-netboot
fi
[ -x "$BIN" ] || die "$BIN is not executable"

ns_r=zbench-fl-$$-r
ns_n=zbench-fl-$$-n
work=$(mktemp -d /var/tmp/zos-bench-flist.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # A node that just exited can keep the tmpfs busy for a moment.
  for _ in $(seq 20); do
    mountpoint -q "$work/ram" || break
    umount "$work/ram" 2>/dev/null || sleep 0.2
  done
  mountpoint -q "$work/ram" && umount -l "$work/ram"
  for ns in "$ns_r" "$ns_n"; do
    t ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$ns_r" "$ns_n"; do
  mkdir -p "/etc/netns/$ns"
  : >"/etc/netns/$ns/resolv.conf"
  t ip netns add "$ns"
  t ip -n "$ns" link set lo up
done
t ip -n "$ns_r" link add r0 type veth peer name eth0 netns "$ns_n"
t ip -n "$ns_r" addr add 10.98.0.1/24 dev r0
t ip -n "$ns_r" link set r0 up
timeout 3600 ip netns exec "$ns_r" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --no-resolv --port=0 --interface=r0 --bind-interfaces --no-ping \
  --dhcp-range=10.98.0.100,10.98.0.200,255.255.255.0,1h --dhcp-option=3,10.98.0.1 \
  --dhcp-leasefile="$work/leases" 2>"$work/dnsmasq.log" &
pids+=($!)

echo "bench-flist: making a ${size_mib} MiB tree"
hub=$work/hub
mkdir -p "$hub"
timeout 600 "$py" - "$work/tree" "$size_mib" <<'EOF'
import os, random, sys
root, size = sys.argv[1], int(sys.argv[2]) << 20
rnd = random.Random(14)
small_total, n = int(size * 0.6), 0
done = 0
while done < small_total:
    d = os.path.join(root, "usr/lib/d%03d" % (n // 100))
    os.makedirs(d, exist_ok=True)
    k = rnd.randint(1024, 64 * 1024)
    with open(os.path.join(d, "f%05d" % n), "wb") as f:
        f.write(os.urandom(k))
    done += k
    n += 1
big = (size - done) // 4
os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
for i in range(4):
    with open(os.path.join(root, "usr/bin/big%d" % i), "wb") as f:
        for _ in range(big >> 20):
            f.write(os.urandom(1 << 20))
        f.write(os.urandom(big & ((1 << 20) - 1)))
print("bench-flist: %d small files, 4 large of %d MiB" % (n, big >> 20))
EOF
bytes=$(du -sb --apparent-size "$work/tree" | awk '{ print $1 }')
files=$(find "$work/tree" -type f | wc -l)

echo "bench-flist: publishing the tarball and the flist"
timeout 600 tar -C "$work/tree" -cf "$hub/bench.tar" .
sha=$(timeout 600 sha256sum "$hub/bench.tar" | awk '{ print $1 }')
tsize=$(stat -c %s "$hub/bench.tar")
printf '{"version": 1, "artifacts": [{"name": "bench", "kind": "rootfs", "url": "bench.tar", "size": %s, "sha256": "%s"}]}\n' \
  "$tsize" "$sha" >"$hub/manifest.json"
# Outside prod a plain-http manifest must be signed: a key for this run, named on the cmdline.
pubkey=$(t "$BIN" manifest-keygen "$work/manifest.key" | grep -oE '^[0-9a-f]{64}' | head -1)
[ -n "$pubkey" ] || die "manifest-keygen printed no public key"
t "$BIN" sign-manifest --key "$work/manifest.key" "$hub/manifest.json" >/dev/null
store=${STORE:-http}
case $store in
  http)
    timeout 1800 "$py" "$repo/tests/grid/flistgen.py" v2 "$work/tree" "$hub/bench.fl" \
      --blocks "$hub/blocks" --route http://10.98.0.1:8080/blocks >"$work/flistgen.json"
    ;;
  zdb)
    command -v redis-server >/dev/null || die "STORE=zdb needs redis-server"
    timeout 3600 ip netns exec "$ns_r" redis-server --port 9900 --bind 10.98.0.1 --save "" \
      --appendonly no --protected-mode no --dir "$work" >"$work/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
      t ip netns exec "$ns_r" bash -c 'exec 3<>/dev/tcp/10.98.0.1/9900' 2>/dev/null && break
      sleep 0.1
    done
    timeout 1800 ip netns exec "$ns_r" "$py" "$repo/tests/grid/flistgen.py" v2 "$work/tree" \
      "$hub/bench.fl" --redis 10.98.0.1:9900 --route zdb://10.98.0.1:9900 >"$work/flistgen.json"
    ;;
  *) die "STORE is http or zdb" ;;
esac
rm -rf "$work/tree"

timeout 3600 ip netns exec "$ns_r" "$py" "$repo/tests/grid/grid.py" --root "$hub" \
  --http 10.98.0.1:8080 --ready-file "$work/grid.ready" --exit-after 3500 2>"$work/grid.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/grid.ready" ] && break; sleep 0.1; done
[ -s "$work/grid.ready" ] || die "grid.py did not start: $(cat "$work/grid.log")"

ram_mib=$((size_mib * 3 + 256))
avail=$(awk '/MemAvailable/ { print int($2 / 1024) }' /proc/meminfo)
[ "$avail" -gt "$((ram_mib + 512))" ] || die "needs ${ram_mib} MiB of RAM for the next roots ($avail available)"
mkdir -p "$work/ram"
t mount -t tmpfs -o size=${ram_mib}m tmpfs "$work/ram"

# One boot; prints "SECONDS RSS_KIB".
run_one() {
  local mode=$1 n=$2 cmdline
  local sys=$work/ram/node
  rm -rf "$sys"
  mkdir -p "$sys"
  case $mode in
    tarball) cmdline="zos.iface=eth0 zos.probe=none runmode=test zos.manifest_key=$pubkey zos.manifest=http://10.98.0.1:8080/manifest.json" ;;
    flist) cmdline="zos.iface=eth0 zos.probe=none runmode=test zos.flist=http://10.98.0.1:8080/bench.fl" ;;
  esac
  timeout 900 "$py" - "$ns_n" "$BIN" "$sys" "$cmdline" "$work/resolv.conf" "$work/$mode-$n.log" <<'EOF'
import re, resource, subprocess, sys
ns, binary, sysroot, cmdline, resolv, log = sys.argv[1:]
p = subprocess.run(["ip", "netns", "exec", ns, binary, "boot", "--no-handoff", "--wait-ipv6", "0",
                    "--resolv", resolv, "--sysroot", sysroot, "--cmdline", cmdline],
                   capture_output=True, text=True, timeout=850)
open(log, "w").write(p.stdout + p.stderr)
if p.returncode != 0:
    # The work directory goes on exit: the console's end is the evidence.
    tail = "\n".join((p.stdout + p.stderr).splitlines()[-15:])
    sys.exit("boot failed (%d):\n%s" % (p.returncode, tail))
stamp = lambda l: float(re.match(r"\[\s*([0-9.]+)\]", l).group(1))
lines = p.stdout.splitlines()
start = [stamp(l) for l in lines if "online in" in l][0]
end = [stamp(l) for l in lines if "installed" in l and l.startswith("[")][-1]
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print("%.3f %d" % (end - start, rss))
EOF
  rm -rf "$sys"
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A secs rss
for mode in tarball flist; do
  : >"$work/$mode.secs"
  : >"$work/$mode.rss"
done
# Interleaved (tarball, flist, tarball, ...): the machine's other load hits both alike.
for n in $(seq "$runs"); do
  for mode in tarball flist; do
    read -r s r < <(run_one "$mode" "$n")
    echo "bench-flist: $mode run $n: ${s} s, peak RSS ${r} KiB"
    echo "$s" >>"$work/$mode.secs"
    echo "$r" >>"$work/$mode.rss"
  done
done
for mode in tarball flist; do
  secs[$mode]=$(median <"$work/$mode.secs")
  rss[$mode]=$(median <"$work/$mode.rss")
done

awk -v b="$bytes" -v f="$files" -v ts="${secs[tarball]}" -v fs="${secs[flist]}" \
  -v tr="${rss[tarball]}" -v fr="${rss[flist]}" -v runs="$runs" -v store="$store" 'BEGIN {
  mib = b / 1048576
  printf "bench-flist: %.1f MiB in %d files, medians of %d runs, flist blocks from the %s store\n", mib, f, runs, store
  printf "  tarball  %6.2f s  %7.1f MiB/s  peak RSS %6d KiB\n", ts, mib / ts, tr
  printf "  flist    %6.2f s  %7.1f MiB/s  peak RSS %6d KiB\n", fs, mib / fs, fr
  printf "  ratio flist/tarball: throughput %.2fx (goal >= 0.8), time %.2fx, RSS %.2fx\n", ts / fs, fs / ts, fr / tr
}'
