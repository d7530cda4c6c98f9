# shellcheck shell=bash
# The helpers every lab script shares (source it: `. "$(dirname "$0")/lib.sh"`): bounded
# commands, namespaces that never touch the host (their own /etc/netns/NS/resolv.conf before
# anything runs in them), processes stopped by PID, the binary built once.
#
#   die MSG...            print "SCRIPT: MSG" on stderr and exit 1
#   t CMD...              CMD under `timeout -k 2 20` (every short command is bounded)
#   need_root             exit unless root (network namespaces need it)
#   need_tools TOOL...    exit naming the first missing tool and how to install it
#   ns_exists NS          true when the namespace exists
#   make_ns NS            /etc/netns/NS/resolv.conf, the namespace, lo up
#   del_ns NS             kill what still runs in NS (by PID), delete it and /etc/netns/NS
#   kill_wait PID...      SIGTERM, a bounded wait, SIGKILL, reap
#   zos_bin debug|release|static
#                         set $bin: $BIN if given, else build that flavour (cargo build,
#                         cargo build --release, scripts/build.sh) and point at it

lib_script=${0##*/}
lib_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { printf '%s: %s\n' "$lib_script" "$*" >&2; exit 1; }
t() { timeout -k 2 30 "$@"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"; }

need_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/setup.sh installs it)"
  done
}

ns_exists() { t ip netns list | awk '{ print $1 }' | grep -x -- "$1" >/dev/null; } # no -q: pipefail

make_ns() {
  mkdir -p "/etc/netns/$1"
  : >"/etc/netns/$1/resolv.conf" # before any `ip netns exec`: never the host's resolv.conf
  t ip netns add "$1"
  t ip -n "$1" link set lo up
}

del_ns() {
  local pid
  if [ -e "/run/netns/$1" ]; then
    for pid in $(t ip netns pids "$1" 2>/dev/null || true); do kill -KILL "$pid" 2>/dev/null || true; done
    t ip netns del "$1" 2>/dev/null || true
  fi
  rm -rf "/etc/netns/$1"
}

kill_wait() {
  local pid i
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

zos_bin() {
  if [ -n "${BIN:-}" ]; then
    bin=$BIN
  else
    case "$1" in
      debug)
        echo "==> cargo build" >&2
        (cd "$lib_repo" && timeout 1800 cargo build --quiet) || die "cargo build failed"
        bin="$lib_repo/target/debug/zos-netboot" ;;
      release)
        echo "==> cargo build --release" >&2
        (cd "$lib_repo" && timeout 1800 cargo build --release --quiet) || die "cargo build --release failed"
        bin="$lib_repo/target/release/zos-netboot" ;;
      static)
        echo "==> building the static release binary" >&2
        bash "$lib_repo/scripts/build.sh" >/dev/null || die "scripts/build.sh failed"
        bin="$lib_repo/target/x86_64-unknown-linux-musl/release/zos-netboot" ;;
      *) die "zos_bin: debug, release or static, not ${1:-nothing}" ;;
    esac
  fi
  [ -x "$bin" ] || die "$bin is not executable"
}
