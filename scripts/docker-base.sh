#!/usr/bin/env bash
# Makes a Debian 12 base image for the orchestrator's Dockerfile on a machine without registry
# access: mmdebstrap (minbase, from this host's apt sources) imported into the engine as
# aegis-local/debian:bookworm over the engine's API. Idempotent: does nothing when the image
# is there. Run as root.
set -euo pipefail
sock="${AEGIS_DOCKER_SOCKET:-/var/run/docker.sock}"
tag="${AEGIS_BASE_TAG:-aegis-local/debian:bookworm}"
api() { curl -sf --unix-socket "$sock" "$@"; }

if api "http://localhost/images/$tag/json" >/dev/null; then
  echo "base image $tag: present"
  exit 0
fi
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
work=$(mktemp -d /var/tmp/aegis-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building $tag with mmdebstrap (minbase, mirrors from $sources)"
mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$work/rootfs.tar" - <"$sources"
repo="${tag%%:*}"; version="${tag##*:}"
api -X POST -H 'Content-Type: application/x-tar' --data-binary "@$work/rootfs.tar" \
  "http://localhost/images/create?fromSrc=-&repo=$repo&tag=$version&changes=LABEL%20io.aegisai.base%3D1" >/dev/null
api "http://localhost/images/$tag/json" >/dev/null
echo "base image $tag: imported"
