#!/bin/sh
# A benign sample bundled with aegis: the kind of inventory a system script takes.
# It prints who and where it is, lists processes, writes a report file and cleans up a temp file.
echo "host: $(hostname), user: $(id -un), kernel: $(uname -r)"
ps -eo pid,comm | head -5
mkdir -p /var/tmp/inventory
df -h / > /var/tmp/inventory/disk.txt
echo "scratch" > /tmp/inventory.tmp
rm -f /tmp/inventory.tmp
echo "inventory written to /var/tmp/inventory/disk.txt"
