#!/bin/sh
# A harsher mix: execs, files written, a tree copied, archived and deleted (every deletion is
# hashed and kept before it happens).
set -e
dir=$(mktemp -d /tmp/bench.XXXXXX)
i=0
while [ $i -lt 300 ]; do
  /bin/true
  i=$((i + 1))
done
j=0
while [ $j -lt 40 ]; do
  head -c 200000 /dev/urandom > "$dir/blob$j"
  j=$((j + 1))
done
cp -r /usr/share/perl "$dir/perl"
tar -cf - -C "$dir" . | wc -c > /dev/null
rm -rf "$dir"
