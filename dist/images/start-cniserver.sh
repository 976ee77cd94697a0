#!/bin/bash
# Entrypoint of the cni-server container of the kube-ovn-cni DaemonSet: waits until the
# node's ovsdb-server and ovs-vswitchd (started by the ovs-ovn pod) answer, lets forwarded
# traffic through the host firewall as upstream does, then runs kube-ovn-daemon on
# upstream's sockets with every argument passed on.
set -euo pipefail

CNI_SOCK=/run/openvswitch/kube-ovn-daemon.sock
OVS_SOCK=/run/openvswitch/db.sock

remove_socket() {
    rm -f "$CNI_SOCK"
}
trap remove_socket EXIT

if [[ -e "$CNI_SOCK" ]]; then
    echo "removing the socket a previous kube-ovn-daemon left: $CNI_SOCK"
    rm -f "$CNI_SOCK"
fi

# ovs_daemon_answers NAME: true when NAME's pid file names a process whose control
# socket answers.
ovs_daemon_answers() {
    local pid=""
    read -r pid _ < "/run/openvswitch/$1.pid" 2>/dev/null || return 1
    [[ -n "$pid" ]] || return 1
    ovs-appctl -T 1 -t "/run/openvswitch/$1.$pid.ctl" version > /dev/null 2>&1
}

waited=0
until [[ -S "$OVS_SOCK" ]] && ovs_daemon_answers ovsdb-server && ovs_daemon_answers ovs-vswitchd; do
    if (( waited % 10 == 0 )); then
        echo "waiting for the node's OVS (ovsdb-server and ovs-vswitchd of the ovs-ovn pod) to answer"
    fi
    waited=$((waited + 1))
    sleep 1
done

# Pods' traffic is forwarded by the host; a DROP policy on FORWARD (docker sets one)
# would cut it. Either iptables backend may be the one in use.
iptables -P FORWARD ACCEPT || echo "iptables (default backend): could not set the FORWARD policy"
iptables-nft -P FORWARD ACCEPT || echo "iptables-nft: could not set the FORWARD policy"

cd /kube-ovn
./kube-ovn-daemon --ovs-socket="$OVS_SOCK" --bind-socket="$CNI_SOCK" "$@"
