#!/usr/bin/env bash
# Signs boot manifests for the hub: writes MANIFEST.sig next to every manifest.json under DIR
# (or the files given), with the ed25519 key made by `zos-netboot manifest-keygen KEYFILE`.
#
#   bash scripts/sign-manifests.sh --key KEYFILE DIR|MANIFEST...      (BIN= to use a given binary)
#
# Sign on the machine that holds the key, then copy the .sig files to the hub beside their
# manifests; a node fetches <manifest URL>.sig and checks it against the public keys built into
# its image (keys/manifest-keys.txt; README "Signed manifests"). Re-sign after every change to
# a manifest: a signature covers its exact bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
key=''
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --key) key=${2:?--key needs a FILE}; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ -n "$key" ] && [ ${#targets[@]} -gt 0 ] || { sed -n '2,10p' "$0" >&2; exit 2; }
bin=${BIN:-target/x86_64-unknown-linux-musl/release/zos-netboot}
if [ ! -x "$bin" ]; then
  bin=target/debug/zos-netboot
  [ -x "$bin" ] || timeout 900 cargo build --quiet
fi
manifests=()
for t in "${targets[@]}"; do
  if [ -d "$t" ]; then
    while IFS= read -r -d '' m; do manifests+=("$m"); done < <(find "$t" -name manifest.json -type f -print0)
  else
    manifests+=("$t")
  fi
done
[ ${#manifests[@]} -gt 0 ] || { echo "sign-manifests.sh: no manifest.json found" >&2; exit 1; }
timeout 60 "$bin" sign-manifest --key "$key" "${manifests[@]}"
