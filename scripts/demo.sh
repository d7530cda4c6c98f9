#!/usr/bin/env bash
# The demo: installs what it needs, then boots zos-netboot as PID 1 of a real kernel in QEMU,
# wired to a router namespace with DHCPv4, IPv6 RAs, a probe target and the test grid over HTTPS
# (qemu/demo.sh), so the whole flow shows on the console: drivers → lease → SLAAC → probes →
# diagnosis → clock → manifest → verified downloads → install → registration → hand-off into the
# fetched next root.
#   bash scripts/demo.sh           the QEMU demo
#   bash scripts/demo.sh --lab     the quicker namespace-only demo (no VM)
#   bash scripts/demo.sh --pxe     network boot: iPXE → boot.ipxe → kernel → zos-netboot → online
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = --lab ]; then
  exec bash scripts/lab.sh demo
fi
if [ "${1:-}" = --pxe ]; then
  shift
  exec bash qemu/demo-pxe.sh "$@"
fi
exec bash qemu/demo.sh "$@"
