#!/usr/bin/env bash
# Fresh machine to running sandbox: install the packages, build, bring it up. Extra arguments go
# to `kube-ovn-sandbox up` (e.g. --nodes 3 --raft --ic).
set -euo pipefail
cd "$(dirname "$0")/../.."
test/sandbox/install-deps.sh
cargo build -q -p kube-ovn-sandbox -p kube-ovn-controller -p kube-ovn-daemon -p kube-ovn-cni
exec target/debug/kube-ovn-sandbox up "$@"
