#!/usr/bin/env bash
# Builds aegisai/sandbox-orchestrator:latest on a machine without registry access: the local
# Debian base (scripts/docker-base.sh), a binary built here, and the guest image of the data
# directory bundled, sent to the engine's build API with the Dockerfile's build arguments.
# With registry access, `docker build -t aegisai/sandbox-orchestrator:latest .` is enough.
set -euo pipefail
cd "$(dirname "$0")/.."
sock="${AEGIS_DOCKER_SOCKET:-/var/run/docker.sock}"
base="${AEGIS_BASE_TAG:-aegis-local/debian:bookworm}"
tag="${1:-aegisai/sandbox-orchestrator:latest}"
data="${AEGIS_DATA_DIR:-/var/lib/aegis}"

./scripts/docker-base.sh
cargo build --release --locked
work=$(mktemp -d /var/tmp/aegis-image.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/docker/guest"
cp Dockerfile "$work/"
cp docker/config.json docker/entrypoint.sh "$work/docker/"
cp target/release/aegis "$work/aegis"
if [ -f "$data/images/linux/image.json" ]; then
  echo "bundling the guest image of $data"
  tar -cf "$work/docker/guest/linux.tar" --numeric-owner -C "$data/images/linux" image.json rootfs
else
  echo "no guest image in $data: the image will need a data directory that has one"
fi
args=$(python3 -c 'import json,sys,urllib.parse; print(urllib.parse.quote(json.dumps({"BASE_IMAGE": sys.argv[1], "BUILD_IMAGE": sys.argv[1], "PREBUILT": "aegis"})))' "$base")
tar -C "$work" -cf "$work.tar" .
curl -sf --unix-socket "$sock" -X POST -H 'Content-Type: application/x-tar' \
  --data-binary "@$work.tar" "http://localhost/build?t=$tag&rm=1&forcerm=1&buildargs=$args" \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if "error" in m: sys.exit("build failed: " + m["error"])
    sys.stdout.write(m.get("stream", ""))'
rm -f "$work.tar"
echo "built $tag"
