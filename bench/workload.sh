#!/bin/sh
# The workload: hundreds of short execs, then a tar of a large directory.
i=0
while [ $i -lt 300 ]; do
  /bin/true
  i=$((i + 1))
done
tar -cf - /usr/share 2>/dev/null | wc -c > /dev/null
