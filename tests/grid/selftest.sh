#!/usr/bin/env bash
# Self-test of the test grid (tests/grid/grid.py): a fresh test CA, HTTPS and HTTP on 127.0.0.1
# (and HTTP on [::1] when the host has it), static files and ranges, every fault switch, and
# registrations. Loopback only; the whole run is bounded by `timeout`, every curl by --max-time,
# every grid by --exit-after, and each grid is stopped by its PID with SIGTERM.
# Needs: python3-cryptography, curl. Prints "N passed, N failed"; exit 1 on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${GRID_SELFTEST_INNER:-}" ]; then
  exec timeout --kill-after=5 240 env GRID_SELFTEST_INNER=1 bash "$0" "$@"
fi
py=/usr/bin/python3
grid="$here/grid.py"
T=$(mktemp -d /tmp/grid-selftest.XXXXXX)
pids=()
passed=0
failed=0

cleanup() {
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$T"
}
trap cleanup EXIT

ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # what, command...
  local what=$1
  shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}
field() { "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]][0])' "$@"; }

# start NAME [grid options]: a grid on 127.0.0.1 (HTTPS and HTTP, ports picked by the kernel);
# sets pid, port (HTTPS), http_url.
start() {
  local name=$1
  shift
  "$py" "$grid" --root "$T/root" --https 127.0.0.1:0 --http 127.0.0.1:0 \
    --cert "$T/ca/server.pem" --key "$T/ca/server-key.pem" --records "$T/$name.records" \
    --ready-file "$T/$name.ready" --exit-after 120 "$@" 2>"$T/$name.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do # up to 10 s for the ready file
    [ -s "$T/$name.ready" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ ! -s "$T/$name.ready" ]; then
    cat "$T/$name.log" >&2
    echo "grid $name did not start" >&2
    exit 1
  fi
  local https
  https=$(field "$T/$name.ready" https)
  port=${https##*:}
  http_url=$(field "$T/$name.ready" http)
}

# stop PID: SIGTERM, then it must exit 0 within 5 s.
stop() {
  local p=$1
  kill -TERM "$p"
  for _ in $(seq 100); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$p" 2>/dev/null && return 1
  wait "$p"
}

c() { # curl against the running grid's HTTPS listener as hub.lab.test
  curl -sS --max-time 10 --cacert "$T/ca/ca.pem" \
    --resolve "hub.lab.test:$port:127.0.0.1" "$@"
}
hub() { echo "https://hub.lab.test:$port$1"; }
size_is() { [ "$(stat -c %s "$1")" = "$2" ]; }
log_has() { grep -q -- "$2" "$T/$1.log"; }

# --- the CA and the files ---------------------------------------------------------------------
"$py" "$grid" --make-ca "$T/ca" --names hub.lab.test,grid.lab.test,127.0.0.1,::1 2>"$T/ca.log"
check "make-ca wrote ca.pem, server.pem and 0600 keys" \
  test -s "$T/ca/ca.pem" -a -s "$T/ca/server.pem" -a "$(stat -c %a "$T/ca/server-key.pem")" = 600
if command -v openssl >/dev/null; then
  check "server.pem verifies against ca.pem" \
    bash -c "openssl verify -CAfile '$T/ca/ca.pem' '$T/ca/server.pem' >/dev/null"
fi
mkdir -p "$T/root/artifacts"
head -c 200000 /dev/urandom >"$T/root/artifacts/zos.bin"
echo '{"artifacts": [{"path": "artifacts/zos.bin", "size": 200000}]}' >"$T/root/manifest.json"
art="$T/root/artifacts/zos.bin"

# --- a well-behaved grid ----------------------------------------------------------------------
start plain
check "HTTPS by name with --cacert: the artifact, byte for byte" \
  bash -c "$(declare -f c); port=$port T=$T; c -o '$T/a' '$(hub /artifacts/zos.bin)' && cmp -s '$T/a' '$art'"
check "HTTPS by IP SAN" bash -c "curl -sS --max-time 10 --cacert '$T/ca/ca.pem' \
  https://127.0.0.1:$port/manifest.json | cmp -s - '$T/root/manifest.json'"
check "plain HTTP listener" bash -c "curl -sS --max-time 10 $http_url/manifest.json | grep -q artifacts"
set +e
curl -sS --max-time 10 --resolve "hub.lab.test:$port:127.0.0.1" -o /dev/null "$(hub /manifest.json)" 2>/dev/null
rc=$?
set -e
check "untrusted without the test CA (curl exit $rc)" test "$rc" = 60
headers=$(c -D - -o "$T/r" -H 'Range: bytes=150000-' "$(hub /artifacts/zos.bin)")
check "Range bytes=150000- → 206 + Content-Range" \
  grep -qi '^content-range: bytes 150000-199999/200000' <<<"$headers"
check "range body is the file's tail" bash -c "tail -c +150001 '$art' | cmp -s - '$T/r'"
code=$(c -o /dev/null -w '%{http_code}' -H 'Range: bytes=200000-' "$(hub /artifacts/zos.bin)")
check "range past the end → 416 ($code)" test "$code" = 416
code=$(c -o /dev/null -w '%{http_code}' --path-as-is "$(hub /../../etc/passwd)")
check "no escape from --root ($code)" test "$code" = 404
check "registrations (selftest_registration.py)" \
  "$py" "$here/selftest_registration.py" "https://127.0.0.1:$port" "$T/ca/ca.pem"
check "records file holds the node" grep -q d75a980182b10ab7 "$T/plain.records"
check "one log line per request" log_has plain "GET /artifacts/zos.bin 206 50000B"
check "SIGTERM: exits 0" stop "$pid"

# --- faults -----------------------------------------------------------------------------------
start slow --slow-body 100000 --fault-path '/artifacts/*'
t0=$(date +%s%N)
c -o "$T/s" "$(hub /artifacts/zos.bin)"
ms=$((($(date +%s%N) - t0) / 1000000))
check "slow-body 100000 B/s: 200000 bytes took ${ms} ms (≥ 1800), intact" \
  bash -c "[ $ms -ge 1800 ] && cmp -s '$T/s' '$art'"
t0=$(date +%s%N)
c -o /dev/null "$(hub /manifest.json)"
ms=$((($(date +%s%N) - t0) / 1000000))
check "slow-body spares paths outside --fault-path (${ms} ms)" test "$ms" -lt 1000
stop "$pid"

start drop --drop-after 50000
rm -f "$T/d"
set +e
c -o "$T/d" "$(hub /artifacts/zos.bin)" 2>/dev/null
rc=$?
set -e
check "drop-after 50000: first download cut (curl exit $rc) at 50000 bytes" \
  bash -c "[ $rc = 18 ] || [ $rc = 56 ] || [ $rc = 92 ]; [ \$(stat -c %s '$T/d') = 50000 ]"
check "drop-after: resume with a range completes the file" \
  bash -c "$(declare -f c); port=$port T=$T; c -C - -o '$T/d' '$(hub /artifacts/zos.bin)' && cmp -s '$T/d' '$art'"
check "drop-after: once per path, then served whole" \
  bash -c "$(declare -f c); port=$port T=$T; c -o '$T/d2' '$(hub /artifacts/zos.bin)' && cmp -s '$T/d2' '$art'"
stop "$pid"

start corrupt --corrupt-byte 1234
c -o "$T/x" "$(hub /artifacts/zos.bin)"
diffs=$({ cmp -l "$T/x" "$art" || true; } | awk '{print $1}' | tr '\n' ' ')
check "corrupt-byte 1234: exactly byte 1234 differs (cmp: ${diffs% })" test "${diffs% }" = 1235
c -o "$T/x2" -H 'Range: bytes=100000-' "$(hub /artifacts/zos.bin)"
check "corrupt-byte: a range after it is clean" bash -c "tail -c +100001 '$art' | cmp -s - '$T/x2'"
stop "$pid"

start longer --wrong-length +100
set +e
c -o "$T/w" "$(hub /artifacts/zos.bin)" 2>/dev/null
rc=$?
set -e
check "wrong-length +100: short body (curl exit $rc, got $(stat -c %s "$T/w") bytes)" \
  bash -c "[ $rc = 18 ] && [ \$(stat -c %s '$T/w') = 200000 ]"
stop "$pid"

start shorter --wrong-length -100
set +e
c -o "$T/w" "$(hub /artifacts/zos.bin)" 2>/dev/null
rc=$?
set -e
check "wrong-length -100: client reads the 199900 bytes announced (curl exit $rc)" \
  bash -c "[ \$(stat -c %s '$T/w') = 199900 ]"
check "wrong-length: logged" log_has shorter "fault=wrong-length(-100)"
stop "$pid"

start fail --fail-5xx 2
codes=""
for _ in 1 2 3; do
  codes="$codes $(c -o /dev/null -w '%{http_code}' "$(hub /artifacts/zos.bin)")"
done
check "fail-5xx 2: codes$codes" test "$codes" = " 503 503 200"
code=$(c -o /dev/null -w '%{http_code}' "$(hub /manifest.json)")
check "fail-5xx counts per path: manifest first request $code" test "$code" = 503
stop "$pid"

start redirect --redirect /moved.json=/manifest.json --redirect 307:/api/v1/old=/api/v1/nodes
got=$(c -o /dev/null -w '%{http_code} %{redirect_url}' "$(hub /moved.json)")
check "redirect: 302 to /manifest.json ($got)" test "$got" = "302 $(hub /manifest.json)"
check "redirect: followed, the manifest" bash -c "$(declare -f c hub); port=$port T=$T; \
  c -L '$(hub /moved.json)' | grep -q artifacts"
got=$(c -o /dev/null -w '%{http_code} %{redirect_url}' -H 'Content-Type: application/json' \
  --data '{}' "$(hub /api/v1/old)")
check "redirect: 307 for a POST ($got)" test "$got" = "307 $(hub /api/v1/nodes)"
stop "$pid"

start regfail --registrar-fail 1
check "registrar-fail 1: first POST 503, then registered" \
  "$py" "$here/selftest_registration.py" "https://127.0.0.1:$port" "$T/ca/ca.pem" --registrar-fail 1
stop "$pid"

start stall --stall-accept 3 --stall-count 1
set +e
t0=$(date +%s%N)
c --max-time 1 -o /dev/null "$(hub /manifest.json)" 2>/dev/null
rc=$?
set -e
check "stall-accept 3: a client with a 1 s timeout gives up (curl exit $rc)" test "$rc" = 28
t0=$(date +%s%N)
c -o /dev/null "$(hub /manifest.json)"
ms=$((($(date +%s%N) - t0) / 1000000))
check "stall-count 1: the next connection is served at once (${ms} ms)" test "$ms" -lt 1000
check "stall logged" log_has stall "stalling 3.0s before reading"
stop "$pid"

# --- SNTP ------------------------------------------------------------------------------------
# sntp_offset READY: one SNTP (RFC 4330) request to the grid's NTP listener; prints
# "mode stratum leap echo offset_s" of the answer.
sntp_offset() {
  "$py" - "$1" <<'PY'
import json, socket, struct, sys, time
host, port = json.load(open(sys.argv[1]))["ntp"][0][len("ntp://"):].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
t1 = time.time()
req = bytes([0x23]) + bytes(39) + struct.pack("!II", int(t1) + 2208988800, 4242)
s.sendto(req, (host, int(port)))
data = s.recv(512)
t4 = time.time()
unix = lambda off: struct.unpack("!I", data[off:off + 4])[0] - 2208988800 + struct.unpack(
    "!I", data[off + 4:off + 8])[0] / 2**32
offset = ((unix(32) - t1) + (unix(40) - t4)) / 2
print(data[0] & 7, data[1], data[0] >> 6, int(data[24:32] == req[40:48]), round(offset))
PY
}
"$py" "$grid" --ntp 127.0.0.1:0 --ntp-offset 3600 --ready-file "$T/ntp.ready" --exit-after 60 \
  2>"$T/ntp.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 200); do [ -s "$T/ntp.ready" ] && break; sleep 0.05; done
got=$(timeout 10 bash -c "$(declare -f sntp_offset); py=$py; sntp_offset '$T/ntp.ready'" || true)
check "ntp-offset 3600: mode 4, stratum 1, leap 0, our timestamp echoed, +3600 s ($got)" \
  test "$got" = "4 1 0 1 3600"
stop "$pid"
"$py" "$grid" --ntp 127.0.0.1:0 --ntp-stratum 0 --ready-file "$T/kod.ready" --exit-after 60 \
  2>"$T/kod.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 200); do [ -s "$T/kod.ready" ] && break; sleep 0.05; done
got=$(timeout 10 bash -c "$(declare -f sntp_offset); py=$py; sntp_offset '$T/kod.ready'" || true)
check "ntp-stratum 0: a kiss-o'-death (stratum 0, leap 3): ${got% *}" test "${got% *}" = "4 0 3 1"
stop "$pid"

# --- the hub API (0-hub's layout under --root) --------------------------------------------------
H=$T/hubroot
mkdir -p "$H/tf-autobuilder/.tag-v1" "$H/tf-zos"
printf 'flist one\n' >"$H/tf-autobuilder/zos-1.flist"
ln -s zos-1.flist "$H/tf-autobuilder/zos:latest.flist"
ln -s ../../tf-autobuilder/zos-1.flist "$H/tf-autobuilder/.tag-v1/zos.flist"
ln -s ../tf-autobuilder/.tag-v1 "$H/tf-zos/production"
"$py" "$grid" --root "$H" --http 127.0.0.1:0 --ready-file "$T/hub.ready" --exit-after 60 \
  --wrong-md5 /tf-autobuilder/zos:latest.flist 2>"$T/hub.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 200); do [ -s "$T/hub.ready" ] && break; sleep 0.05; done
url=$(field "$T/hub.ready" http)
api() { curl -sS --max-time 10 "$url$1"; }
md5=$(md5sum "$H/tf-autobuilder/zos-1.flist" | cut -d' ' -f1)
check "hub: /api/flist lists repo/name" bash -c "$(declare -f api); url=$url; api /api/flist | grep -q '\"tf-zos/production\"'"
check "hub: a taglink with its cleaned target" bash -c "$(declare -f api); url=$url; api /api/flist/tf-zos | grep -q '\"target\": \"tf-autobuilder/tags/v1\", \"type\": \"taglink\"'"
check "hub: a tag listed in its repository" bash -c "$(declare -f api); url=$url; api /api/flist/tf-autobuilder | grep -q '\"name\": \"v1\", \"size\": \"0 KB\", \"type\": \"tag\"'"
check "hub: the tag's symlinks" bash -c "$(declare -f api); url=$url; api /api/flist/tf-autobuilder/tags/v1 | grep -q '\"target\": \"tf-autobuilder/zos-1.flist\", \"type\": \"symlink\"'"
check "hub: /light carries the md5" bash -c "$(declare -f api); url=$url; api /api/flist/tf-autobuilder/zos-1.flist/light | grep -q '\"md5\": \"$md5\"'"
check "hub: .flist.md5" bash -c "test \"\$(curl -sS --max-time 10 $url/tf-autobuilder/zos-1.flist.md5)\" = $md5"
check "hub: --wrong-md5 lies for that path only" bash -c "test \"\$(curl -sS --max-time 10 '$url/tf-autobuilder/zos:latest.flist.md5')\" != $md5"
check "hub: an unknown repository is 404" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url/api/flist/nobody")" = 404
stop "$pid"

# --- IPv6 loopback ----------------------------------------------------------------------------
if ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; then
  "$py" "$grid" --root "$T/root" --http '[::1]:0' --ready-file "$T/v6.ready" --exit-after 60 \
    2>"$T/v6.log" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do [ -s "$T/v6.ready" ] && break; sleep 0.05; done
  url=$(field "$T/v6.ready" http)
  check "HTTP on [::1] ($url)" bash -c "curl -sS --max-time 10 '$url/manifest.json' | grep -q artifacts"
  stop "$pid"
else
  echo "SKIP IPv6 listener: no ::1 on lo"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
