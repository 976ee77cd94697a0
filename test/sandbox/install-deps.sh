#!/usr/bin/env bash
# Installs what the sandbox and the test suite need on Debian bookworm (idempotent; only missing
# packages are installed), then stops the packages' own services: sandboxes and tests start
# their own daemons in private directories.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(openvswitch-switch ovn-central ovn-host ovn-ic ovn-ic-db iproute2 ethtool iputils-ping netcat-openbsd curl nftables containernetworking-plugins tcpdump qperf iperf3 iperf)
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_=sudo
  $sudo_ apt-get update -qq
  $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for s in ovn-central ovn-host openvswitch-switch ovn-ic ovn-ic-db iperf3; do
  service "$s" stop >/dev/null 2>&1 || true
done
