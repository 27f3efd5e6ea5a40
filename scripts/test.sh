#!/usr/bin/env bash
# Runs the whole test suite (unit, sandbox end-to-end, image build, API), then checks that no
# sandbox left anything behind on this host. Run as root from the repository's top directory.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo test --all-targets -- --test-threads=2
./scripts/leftover-audit.sh
