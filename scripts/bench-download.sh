#!/usr/bin/env bash
# Verified download throughput of zos-netboot against curl on one veth link (same servers, same
# file, same run), and zos-netboot's peak RSS while it downloads.
#
#   bash scripts/bench-download.sh [SIZE_MIB] [RUNS]     (default 1024 MiB, 3 runs; needs root)
#
# The lab (its own: namespaces zbench-dl-<pid>-r/-n): veth r0 (router, created with ifindex 1001)
# <-> eth0 (node, ifindex 2), 10.99.0.1/24 on r0, dnsmasq (DHCPv4 --no-ping) on r0. Servers in
# the router namespace, each serving the same random file of SIZE_MIB MiB from disk (/var/tmp):
#   grid.py https   tests/grid/grid.py --https :8443 (Python, a test CA made for the run)
#   openssl https   openssl s_server -WWW :8444 (C, OpenSSL; HTTP/1.0, no Content-Length)
#   grid.py http    the same grid.py process, --http :8080
#   busybox http    busybox httpd :8081 (C)
# The Python grid is the server the lab tests use; the two C servers show whether Python is
# the limit. A run takes, for every server in turn:
#   zos-netboot  `boot --no-handoff --sysroot DIR --wait-ipv6 0` in the node namespace with
#                `zos.manifest=` a one-artifact manifest (served by grid.py, the artifact URL
#                absolute to the server under test), `kind: file`. Its DHCP, manifest and install
#                copy do not count: the time is the artifact's `ms` in the state JSON (first
#                request -> size and SHA-256 verified, part file fsynced and renamed). Peak RSS:
#                getrusage(RUSAGE_CHILDREN).ru_maxrss of a python3 wrapper around it.
#   curl         Debian's curl in the node namespace, `-o FILE -w %{time_total}` (--cacert for
#                https), the same URL; then `sha256sum FILE` timed on its own. "curl+sha256sum"
#                = both, the fair peer for a verified download; curl alone verifies nothing.
# Medians of RUNS; ratios are zos-netboot's rate / the peer's (>= 1: zos-netboot faster).
# DEST=ram (default) writes both clients' files to a tmpfs mounted for the run (sized 2 x SIZE +
# 256 MiB, checked against MemAvailable): the node's cache and next root are RAM, where the
# fsync zos-netboot does before its rename costs nothing. DEST=disk writes them under /var/tmp
# instead; zos-netboot's time then includes fsyncing SIZE MiB to disk, curl's does not.
# LINK_RATE=1gbit (any tc rate) shapes the server -> node direction with a tbf qdisc on r0, for a
# link slower than the CPUs, as a real NIC is; unset, the veth is as fast as the CPUs allow.
# BENCH_LOGS=DIR keeps the lab's logs (servers, each client run). RUST_LOG reaches zos-netboot.
# BIN=/path/to/zos-netboot skips the build (default: scripts/build.sh, the static musl binary).
# Every command is bounded by `timeout`; on exit the servers and clients are stopped by PID, the
# namespaces, /etc/netns/<ns>, the tmpfs and the work directory (with the big files) removed.
set -euo pipefail
. "$(dirname "$0")/lib.sh" # die, t, make_ns, del_ns, kill_wait, ...

size_mib=${1:-1024}
runs=${2:-3}
[[ "$size_mib" =~ ^[1-9][0-9]*$ ]] && [[ "$runs" =~ ^[1-9][0-9]*$ ]] ||
  { echo "usage: $0 [SIZE_MIB] [RUNS]" >&2; exit 2; }
dest=${DEST:-ram}
case "$dest" in ram | disk) ;; *) echo "DEST is ram or disk" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
repo=$(pwd)
py=/usr/bin/python3 # Debian's: python3-cryptography is installed for it


[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, a tmpfs mount)"
[ -z "${LINK_RATE:-}" ] || command -v tc >/dev/null || die "LINK_RATE needs tc (iproute2)"
for tool in ip dnsmasq curl sha256sum jq timeout awk date mountpoint "$py"; do
  command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
done
t "$py" -c 'import cryptography' 2>/dev/null || die "$py lacks python3-cryptography (bash scripts/setup.sh)"
have_busybox=0 have_openssl=0
command -v busybox >/dev/null && t busybox httpd --help >/dev/null 2>&1 && have_busybox=1
command -v openssl >/dev/null && have_openssl=1

bytes=$((size_mib * 1048576))
# Disk: the served file always; with DEST=disk also zos-netboot's cache + next-root copy, then
# curl's file (one at a time). Never /run or /tmp, which may be small tmpfs mounts.
need_disk=$((size_mib + 512))
[ "$dest" = disk ] && need_disk=$((size_mib * 3 + 512))
free_disk=$(t df -m --output=avail /var/tmp | tail -n 1 | tr -d ' ')
[ "$free_disk" -gt "$need_disk" ] || die "/var/tmp has $free_disk MiB free; this needs $need_disk MiB"
[ "$(t stat -f -c %T /var/tmp)" != tmpfs ] || die "/var/tmp is a tmpfs here; the big file must go to disk"
tmpfs_mib=$((size_mib * 2 + 256))
if [ "$dest" = ram ]; then
  avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
  [ "$avail" -gt $((tmpfs_mib + size_mib + 1024)) ] ||
    die "$avail MiB of RAM available; DEST=ram needs $((tmpfs_mib + size_mib + 1024)) (or run with DEST=disk)"
fi

tag="zbench-dl-$$"
router="$tag-r"
node="$tag-n"
work=$(mktemp -d /var/tmp/zbench-dl.XXXXXX)
ram="$work/dest" # the clients' files: a tmpfs (DEST=ram) or a plain directory (DEST=disk)
mkdir -p "$ram"
server_pids=() # `timeout` wrappers of the lab's daemons (killing one kills its child)
client_pid=""


cleanup() {
  set +e
  if [ -n "${BENCH_LOGS:-}" ]; then # keep the logs (not the big files) for a post-mortem
    mkdir -p "$BENCH_LOGS" && find "$work" -maxdepth 1 -type f \( -name '*.log' -o -name '*.json' -o -name '*.leases' \) \
      -exec cp {} "$BENCH_LOGS/" \; 2>/dev/null
    cp "$work"/www/manifest-*.json "$BENCH_LOGS/" 2>/dev/null
  fi
  kill_wait "$client_pid" "${server_pids[@]}"
  for ns in "$node" "$router"; do
    del_ns "$ns"
  done
  if t mountpoint -q "$ram"; then t umount "$ram" || t umount -l "$ram"; fi
  rm -rf "${work:?}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  echo "==> bash scripts/build.sh (static musl release binary)" >&2
  timeout 1800 bash scripts/build.sh >"$work/build.log" 2>&1 || { tail -n 20 "$work/build.log" >&2; die "build failed"; }
  bin="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-musl/release/zos-netboot"
fi
[ -x "$bin" ] || die "$bin is not executable"

# --- the lab ---------------------------------------------------------------------------------
for ns in "$router" "$node"; do make_ns "$ns"; done
# A distinct ifindex for the router end (see docs/bench.md): with both ends at the same index
# the kernel may delay the node's carrier by up to 1 s.
t ip -n "$router" link add r0 index 1001 type veth peer name eth0 netns "$node"
t ip -n "$router" addr add 10.99.0.1/24 dev r0
t ip -n "$router" link set r0 up
node_index=$(t ip -n "$node" -o link show dev eth0 | awk -F': ' '{ print $1; exit }')
link_note="veth, unshaped"
if [ -n "${LINK_RATE:-}" ]; then # the server -> node direction shaped like a real NIC
  t ip netns exec "$router" tc qdisc add dev r0 root tbf rate "$LINK_RATE" burst 1mb latency 50ms ||
    die "tc tbf rate $LINK_RATE failed"
  link_note="veth, r0 egress shaped to $LINK_RATE (tbf)"
fi

timeout -k 5 7200 ip netns exec "$router" dnsmasq --no-daemon --conf-file=/dev/null --no-hosts \
  --interface=r0 --bind-interfaces --except-interface=lo --no-ping --no-resolv --port=0 \
  --dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h --dhcp-leasefile="$work/dnsmasq.leases" \
  --pid-file= --log-facility="$work/dnsmasq.log" </dev/null >/dev/null 2>"$work/dnsmasq.stderr" &
server_pids+=($!)
dnsmasq_pid=$!

echo "==> $size_mib MiB of random data in $work (disk), a test CA, the servers" >&2
mkdir -p "$work/www"
timeout 600 head -c "$bytes" /dev/urandom >"$work/www/big.bin"
sum=$(timeout 600 sha256sum "$work/www/big.bin" | awk '{ print $1 }') # also: now in page cache
timeout 60 "$py" tests/grid/grid.py --make-ca "$work/ca" --names 10.99.0.1 >/dev/null 2>&1 ||
  die "grid.py --make-ca failed"
ca="$work/ca/ca.pem"
if [ "$dest" = ram ]; then
  t mount -t tmpfs -o "size=${tmpfs_mib}m,mode=0755" zbench-dl "$ram"
fi

# Servers: name proto port, and the artifact URL of each.
servers=("grid-https https 8443")
[ "$have_openssl" -eq 1 ] && servers+=("openssl-https https 8444")
servers+=("grid-http http 8080")
[ "$have_busybox" -eq 1 ] && servers+=("busybox-http http 8081")
label() {
  case "$1" in
    grid-https) echo "grid.py https" ;;
    openssl-https) echo "openssl https" ;;
    grid-http) echo "grid.py http" ;;
    busybox-http) echo "busybox http" ;;
  esac
}
for s in "${servers[@]}"; do
  read -r name proto port <<<"$s"
  printf '{"version": 1, "artifacts": [{"name": "big", "url": "%s://10.99.0.1:%s/big.bin", "size": %s, "sha256": "%s", "kind": "file", "dest": "/big.bin"}]}\n' \
    "$proto" "$port" "$bytes" "$sum" >"$work/www/manifest-$name.json"
done

timeout -k 5 7200 ip netns exec "$router" "$py" tests/grid/grid.py --root "$work/www" \
  --https 10.99.0.1:8443 --http 10.99.0.1:8080 --cert "$work/ca/server.pem" \
  --key "$work/ca/server-key.pem" --ready-file "$work/grid.ready" --exit-after 7100 \
  </dev/null >/dev/null 2>"$work/grid.log" &
server_pids+=($!)
grid_pid=$!
if [ "$have_busybox" -eq 1 ]; then
  timeout -k 5 7200 ip netns exec "$router" busybox httpd -f -p 10.99.0.1:8081 -h "$work/www" \
    </dev/null >/dev/null 2>"$work/httpd.log" &
  server_pids+=($!)
fi
if [ "$have_openssl" -eq 1 ]; then
  # -WWW serves files relative to its working directory (-quiet: it does not say when it listens).
  (cd "$work/www" && exec timeout -k 5 7200 ip netns exec "$router" openssl s_server -WWW \
    -accept 10.99.0.1:8444 -cert "$work/ca/server.pem" -key "$work/ca/server-key.pem" -quiet \
    </dev/null >"$work/s_server.log" 2>&1) &
  server_pids+=($!)
fi

ready() {
  grep -q "DHCP, IP range" "$work/dnsmasq.log" 2>/dev/null || return 1
  [ -s "$work/grid.ready" ] || return 1
  local listening port
  listening=$(t ip netns exec "$router" busybox netstat -ltn 2>/dev/null || t ip netns exec "$router" ss -ltn 2>/dev/null) || return 1
  for port in $([ "$have_openssl" -eq 1 ] && echo 8444) $([ "$have_busybox" -eq 1 ] && echo 8081); do
    grep -q "10.99.0.1:$port " <<<"$listening" || return 1
  done
}
for ((i = 0; i < 300; i++)); do # bounded: 15 s
  ready && break
  for p in "$dnsmasq_pid" "$grid_pid"; do
    kill -0 "$p" 2>/dev/null || { cat "$work/dnsmasq.stderr" "$work/grid.log" >&2; die "a lab daemon exited"; }
  done
  sleep 0.05
done
ready || { cat "$work/dnsmasq.stderr" "$work/grid.log" "$work/s_server.log" "$work/httpd.log" >&2 2>/dev/null; die "the lab's servers did not come up"; }

# --- measuring -------------------------------------------------------------------------------
# rss_run LOG CMD...: runs CMD (stdin /dev/null, stdout+stderr to LOG) under a python3 wrapper
# that prints "PEAK_RSS_KIB EXIT_STATUS CPU_MS" once it is done (getrusage of its children: the
# `timeout` and what `ip netns exec` became; CPU = user + system time, start-up included).
cat >"$work/rss.py" <<'EOF'
import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    r = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(u.ru_maxrss, r.returncode, round((u.ru_utime + u.ru_stime) * 1000))
EOF
rss_run() { # LOG CMD... -> sets rss_kib rss_status cpu_ms (in this shell: cleanup sees client_pid)
  local out="$work/rss.out"
  rm -f "$out"
  "$py" "$work/rss.py" "$@" >"$out" &
  client_pid=$!
  wait "$client_pid" || true
  client_pid=""
  read -r rss_kib rss_status cpu_ms <"$out" || { rss_kib=0 rss_status=wrapper-failed cpu_ms=0; }
}
now_ns() { date +%s%N; }

declare -A vals=()    # KEY -> space-separated values; keys SERVER.{zos,curl,sha,zrss,crss}
declare -A notes=()
add() { vals[$1]="${vals[$1]:-} $2"; }

reset_node() { # a fresh DHCP exchange for every zos-netboot run
  t ip -n "$node" addr flush dev eth0
  t ip -n "$node" link set eth0 down
}

run_zos() { # NAME PROTO RUN -> sets zms zrss
  local name=$1 proto=$2 run=$3 root="$ram/sysroot" state ms got tries mport
  rm -rf "$root"
  mkdir -p "$root/etc/zos"
  cp "$ca" "$root/etc/zos/ca.pem"
  reset_node
  timeout 300 sync
  mport=8443
  [ "$proto" = http ] && mport=8080
  rss_run "$work/zos-$name-$run.log" timeout -k 5 900 ip netns exec "$node" \
    "$bin" boot --no-handoff --sysroot "$root" --wait-ipv6 0 \
    --cmdline "zos.iface=eth0 zos.probe=none zos.manifest=$proto://10.99.0.1:$mport/manifest-$name.json zos.ca=/etc/zos/ca.pem"
  state="$root/run/zos-netboot/state.json"
  if [ "$rss_status" != 0 ] || [ ! -s "$state" ]; then
    tail -n 20 "$work/zos-$name-$run.log" >&2
    die "zos-netboot exited with $rss_status ($name, run $run)"
  fi
  ms=$(jq -r '.fetch.artifacts[0].ms // empty' "$state")
  got=$(jq -r '.fetch.artifacts[0].bytes_received // empty' "$state")
  tries=$(jq -r '.fetch.artifacts[0].attempts // empty' "$state")
  [ -n "$ms" ] && [ "$got" = "$bytes" ] ||
    die "zos-netboot's state has no complete artifact ($name, run $run): ms=$ms bytes_received=$got"
  timeout 300 cmp -s "$root/next-root/big.bin" "$work/www/big.bin" || die "zos-netboot's installed file differs ($name, run $run)"
  [ "$tries" = 1 ] || notes[$name]="${notes[$name]:-}zos-netboot took $tries attempts in run $run; "
  add "$name.zos" "$ms"
  add "$name.zrss" "$rss_kib"
  add "$name.zcpu" "$cpu_ms"
  rm -rf "$root"
  zms=$ms zrss=$rss_kib zcpu=$cpu_ms
}

run_curl() { # NAME PROTO PORT RUN -> sets cms sms crss
  local name=$1 proto=$2 port=$3 run=$4 out="$ram/curl.bin" total s0 s1 got cacert=()
  [ "$proto" = https ] && cacert=(--cacert "$ca")
  rm -f "$out"
  t ip -n "$node" -4 -o addr show dev eth0 | grep -q 'inet ' || die "the node has no IPv4 address for curl"
  timeout 300 sync
  rss_run "$work/curl-$name-$run.log" timeout -k 5 900 ip netns exec "$node" \
    curl -sS --fail "${cacert[@]}" -o "$out" -w '%{time_total}\n' "$proto://10.99.0.1:$port/big.bin"
  [ "$rss_status" = 0 ] || { cat "$work/curl-$name-$run.log" >&2; die "curl exited with $rss_status ($name, run $run)"; }
  total=$(tail -n 1 "$work/curl-$name-$run.log")
  s0=$(now_ns)
  got=$(timeout 600 sha256sum "$out" | awk '{ print $1 }')
  s1=$(now_ns)
  [ "$got" = "$sum" ] || die "curl's file does not match ($name, run $run)"
  rm -f "$out"
  local curl_ms sha_ms
  curl_ms=$(awk -v s="$total" 'BEGIN { printf "%.0f", s * 1000 }')
  sha_ms=$(( (s1 - s0) / 1000000 ))
  add "$name.curl" "$curl_ms"
  add "$name.sha" $((curl_ms + sha_ms))
  add "$name.crss" "$rss_kib"
  add "$name.ccpu" "$cpu_ms"
  cms=$curl_ms sms=$sha_ms crss=$rss_kib ccpu=$cpu_ms
}

load_before=$(uptime | sed 's/.*load average: //')
echo "==> lab $tag: router end r0 ifindex 1001, node eth0 ifindex $node_index; DEST=$dest; $runs runs of ${size_mib} MiB per server, servers taking turns (load average before: $load_before)" >&2
for ((run = 1; run <= runs; run++)); do
  for s in "${servers[@]}"; do
    read -r name proto port <<<"$s"
    run_zos "$name" "$proto" "$run"
    run_curl "$name" "$proto" "$port" "$run"
    printf '  run %d %-14s zos-netboot %6s ms (CPU %6s ms, peak RSS %6s KiB) | curl %6s ms (CPU %6s ms, RSS %6s KiB) + sha256sum %6s ms\n' \
      "$run" "$(label "$name")" "$zms" "$zcpu" "$zrss" "$cms" "$ccpu" "$crss" "$sms" >&2
  done
done
load_after=$(uptime | sed 's/.*load average: //')

# --- table -------------------------------------------------------------------------------------
median() { # values... -> median
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }
rate() { awk -v b="$bytes" -v ms="$1" 'BEGIN { printf "%.1f", (ms > 0) ? b / 1048576 / (ms / 1000) : 0 }'; }
ratio() { awk -v peer="$1" -v zos="$2" 'BEGIN { printf "%.2f", peer / zos }'; } # of times: peer/zos
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "${size_mib} MiB, medians of $runs runs, MiB/s; DEST=$dest; $link_note; load average $load_before before, $load_after after ($(nproc) CPUs)"
printf '%-14s %11s %9s %14s %8s %14s %9s %9s %7s %7s\n' server zos-netboot curl curl+sha256sum zos/curl "zos/(curl+sha)" "zos RSS" "curl RSS" "zos CPU" "curl CPU"
worst_ratio=""
worst_rss=0
for s in "${servers[@]}"; do
  read -r name _ _ <<<"$s"
  # shellcheck disable=SC2086 # word-split the lists of numbers
  { z=$(median ${vals[$name.zos]}); c=$(median ${vals[$name.curl]}); cs=$(median ${vals[$name.sha]})
    zr=$(maxof ${vals[$name.zrss]}); cr=$(maxof ${vals[$name.crss]})
    zc=$(median ${vals[$name.zcpu]}); cc=$(median ${vals[$name.ccpu]}); }
  r=$(ratio "$c" "$z")
  printf '%-14s %11s %9s %14s %8s %14s %5s MiB %5s MiB %6.2fs %7.2fs\n' "$(label "$name")" "$(rate "$z")" "$(rate "$c")" \
    "$(rate "$cs")" "$r" "$(ratio "$cs" "$z")" "$(mib "$zr")" "$(mib "$cr")" \
    "$(awk -v m="$zc" 'BEGIN { print m / 1000 }')" "$(awk -v m="$cc" 'BEGIN { print m / 1000 }')"
  if [ -z "$worst_ratio" ] || awk -v a="$r" -v b="$worst_ratio" 'BEGIN { exit !(a < b) }'; then worst_ratio=$r; fi
  [ "$zr" -le "$worst_rss" ] || worst_rss=$zr
done
echo
echo "zos-netboot: artifact 'ms' of its state JSON (first request -> verified rename, SHA-256 included);"
echo "curl: %{time_total}; curl+sha256sum: that plus sha256sum's wall time. RSS: peak (max of the runs)."
echo "CPU: user + system seconds of the whole process (zos-netboot's includes its DHCP, manifest and"
echo "install copy; curl's excludes sha256sum), median."
awk -v r="$worst_ratio" 'BEGIN { printf "target zos/curl >= 0.9: %s (lowest %.2f)\n", (r >= 0.9) ? "met" : "NOT met", r }'
awk -v k="$worst_rss" 'BEGIN { printf "target peak RSS <= 16 MiB: %s (%.1f MiB)\n", (k <= 16384) ? "met" : "NOT met", k / 1024 }'
for k in "${!notes[@]}"; do echo "note ($(label "$k")): ${notes[$k]}"; done
echo "(zos-netboot $(basename "$bin") $(stat -c %s "$bin") bytes; curl $(curl --version | awk 'NR == 1 { print $2 }'); kernel $(uname -r))"
