#!/bin/bash
# Readiness and liveness probe of the ovs-ovn role: the local OVSDB answers, ovsdb-server,
# ovs-vswitchd and ovn-controller run. When ovn-controller's last log lines report a raft
# Southbound with stale data, it is told to reset its cluster state (as upstream's probe
# does), so it reconnects.
set -euo pipefail

ovsdb-client list-dbs > /dev/null
/usr/share/openvswitch/scripts/ovs-ctl status
/usr/share/ovn/scripts/ovn-ctl status_controller

log=/var/log/ovn/ovn-controller.log
if [[ -e "$log" ]] && tail -n 6 "$log" 2>/dev/null | grep -q "clustered database server has stale data"; then
    echo "ovn-controller reports a Southbound with stale data: resetting its cluster state"
    pid=$(cat /var/run/ovn/ovn-controller.pid)
    ovn-appctl -t "/var/run/ovn/ovn-controller.$pid.ctl" sb-cluster-state-reset
fi
