#!/usr/bin/env bash
# Makes a Docker Engine reachable for the docker backend and its tests: installs Debian's
# docker.io and runsc (gVisor) when missing, registers runsc with the engine, and starts dockerd
# when its socket does not answer. Idempotent; run as root. The dockerd it starts keeps its
# hands off the host's firewall (no iptables rules, no IP forwarding, no masquerading), so no
# container it runs can reach beyond the host, and its pid is kept in /run/aegis-dockerd.pid.
set -euo pipefail

sock="${AEGIS_DOCKER_SOCKET:-/var/run/docker.sock}"
platform="${AEGIS_RUNSC_PLATFORM:-ptrace}"

need=()
for pkg in docker.io runsc curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  for try in 1 2 3 4 5 6; do
    if apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; then break; fi
    echo "apt-get failed (dpkg lock held?); retrying in 20 s"; sleep 20
  done
fi

answers() {
  curl -sf --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}

config=/etc/docker/daemon.json
want=$(cat <<JSON
{
  "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--platform=$platform", "--network=none"]}},
  "iptables": false,
  "ip-forward": false,
  "ip-masq": false
}
JSON
)
if [ ! -f "$config" ]; then
  mkdir -p /etc/docker
  printf '%s\n' "$want" >"$config"
elif ! grep -q '"runsc"' "$config" || ! grep -q 'network=none' "$config"; then
  echo "$config exists without runsc registered with --network=none; merge this by hand:" >&2
  printf '%s\n' "$want" >&2
fi

if answers; then
  echo "docker engine: reachable at $sock"
  exit 0
fi
echo "starting dockerd (log: /var/log/aegis-dockerd.log)"
nohup dockerd --host "unix://$sock" >/var/log/aegis-dockerd.log 2>&1 &
echo $! >/run/aegis-dockerd.pid
for _ in $(seq 1 60); do
  if answers; then echo "docker engine: started, pid $(cat /run/aegis-dockerd.pid)"; exit 0; fi
  sleep 1
done
echo "dockerd did not answer on $sock within 60 s; see /var/log/aegis-dockerd.log" >&2
tail -5 /var/log/aegis-dockerd.log >&2
exit 1
