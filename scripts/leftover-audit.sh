#!/usr/bin/env bash
# Fails when any analysis left something on the host: a per-analysis cgroup, a mount of the
# guest overlay or scratch tmpfs, a process running as a guest uid, a run directory, or a
# container, volume or network of the docker backend (label io.aegisai.sandbox=1; the
# imported guest images carry it too, but are a cache and stay).
set -uo pipefail
data="${AEGIS_TEST_DATA_DIR:-/var/tmp/aegis-test-data}"
bad=0

for dir in /sys/fs/cgroup/aegis /sys/fs/cgroup/*/aegis; do
  [ -d "$dir" ] || continue
  left=$(find "$dir" -mindepth 1 -maxdepth 1 -type d | head -5)
  if [ -n "$left" ]; then echo "leftover cgroups under $dir:"; echo "$left"; bad=1; fi
done
if grep -hE 'aegis-(guest|scratch)' /proc/[0-9]*/mountinfo 2>/dev/null | head -3 | grep -q .; then
  echo "leftover aegis mounts:"; grep -hE 'aegis-(guest|scratch)' /proc/[0-9]*/mountinfo | head -5; bad=1
fi
guest=$(ps -eo uid=,pid=,comm= | awk '$1 >= 1000000000 && $1 < 1000065536')
if [ -n "$guest" ]; then echo "processes running as guest uids:"; echo "$guest"; bad=1; fi
if [ -d "$data/runs" ] && [ -n "$(ls -A "$data/runs")" ]; then
  echo "leftover run directories:"; ls "$data/runs"; bad=1
fi
sock="${AEGIS_DOCKER_SOCKET:-/var/run/docker.sock}"
if [ -S "$sock" ] && command -v curl >/dev/null; then
  filter='%7B%22label%22%3A%5B%22io.aegisai.sandbox%3D1%22%5D%7D'
  for kind in "containers/json?all=1&filters=$filter" "volumes?filters=$filter" "networks?filters=$filter"; do
    left=$(curl -sf --max-time 10 --unix-socket "$sock" "http://localhost/$kind" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("Volumes") or [] if isinstance(d, dict) else d; print("\n".join(str(x.get("Names") or x.get("Name")) for x in d))')
    if [ -n "$left" ]; then echo "leftover docker objects (${kind%%\?*}):"; echo "$left"; bad=1; fi
  done
fi
if [ "$bad" = 0 ]; then echo "leftover audit: clean"; fi
exit "$bad"
