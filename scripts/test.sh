#!/usr/bin/env bash
# Runs the whole test suite (unit, sandbox end-to-end on the native and docker backends, image
# build, API, the orchestrator's container image), then checks that no sandbox left anything
# behind on this host. Run as root from the repository's top directory.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
# The docker backend's tests need an engine with runsc: installed and started when missing.
./scripts/start-docker.sh
cargo test --all-targets -- --test-threads=2
./scripts/leftover-audit.sh
