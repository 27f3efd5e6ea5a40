#!/bin/sh
# Entry point of the orchestrator's image: put the bundled guest image into the data
# directory on first start (owners kept: the backend shifts them back on import), then run
# aegis with the image's configuration. The API listens on 0.0.0.0:8002 only here, inside the
# container, where the published port is the way in; samples run in their own containers
# without a network.
set -eu
data=/var/lib/aegis
if [ -f /opt/aegis-guest/linux.tar ] && [ ! -f "$data/images/linux/image.json" ]; then
  mkdir -p "$data/images/linux.unpack"
  tar -xpf /opt/aegis-guest/linux.tar -C "$data/images/linux.unpack" --numeric-owner
  mv "$data/images/linux.unpack" "$data/images/linux"
fi
exec /usr/local/bin/aegis --data-dir "$data" --config /etc/aegis/config.json "$@"
