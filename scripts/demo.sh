#!/usr/bin/env bash
# The demo: installs what it needs, then boots zos-netboot's network stage in a namespace lab
# (router namespace with dnsmasq + radvd, node namespace with two NICs) and shows the console.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec bash scripts/lab.sh demo
