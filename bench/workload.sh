#!/bin/sh
# Fork- and syscall-heavy workload: hundreds of short execs, then a tar of a large directory.
set -e
dir=$(mktemp -d /tmp/bench.XXXXXX)
i=0
while [ $i -lt 400 ]; do
  /bin/true
  i=$((i + 1))
done
mkdir -p "$dir/tree"
j=0
while [ $j -lt 40 ]; do
  mkdir -p "$dir/tree/d$j"
  head -c 200000 /dev/urandom > "$dir/tree/d$j/blob"
  j=$((j + 1))
done
cp -r /usr/share/perl "$dir/tree/perl"
tar -cf - -C "$dir" tree | wc -c > /dev/null
rm -rf "$dir"
