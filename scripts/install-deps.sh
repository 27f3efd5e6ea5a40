#!/usr/bin/env bash
# Installs the Debian packages aegis and its tests need, when missing. Idempotent.
set -euo pipefail

need=()
# iproute2: the network tests' outer namespaces; gcc-mingw-w64-*: the Windows test fixtures
# (tests/windows.rs), compiled at test time.
for pkg in mmdebstrap gcc libc6-dev util-linux bubblewrap strace iproute2 \
  gcc-mingw-w64-x86-64 gcc-mingw-w64-i686; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
