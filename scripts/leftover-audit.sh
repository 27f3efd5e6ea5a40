#!/usr/bin/env bash
# Fails when any analysis left something on the host: a per-analysis cgroup, a mount of the
# guest overlay or scratch tmpfs, a process running as a guest uid, or a run directory.
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
if [ "$bad" = 0 ]; then echo "leftover audit: clean"; fi
exit "$bad"
