#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and analyses the bundled benign sample.
# Run as root from the repository's top directory.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo build --release
./target/release/aegis doctor || true
./target/release/aegis image list | grep -q '^linux' || ./target/release/aegis image build linux
./target/release/aegis analyze samples/benign-inventory.sh --timeout 30 --out out/benign-inventory
