#!/bin/bash
# Readiness and liveness probe of the ovn-central role: ovn-northd and both databases run;
# standalone (NODE_IPS empty) databases report consistent storage; raft members are neither
# failed, nor disconnected candidates, nor stuck joining.
set -euo pipefail

/usr/share/ovn/scripts/ovn-ctl status_northd
/usr/share/ovn/scripts/ovn-ctl status_ovnnb | grep -q '^running'
/usr/share/ovn/scripts/ovn-ctl status_ovnsb | grep -q '^running'

for db in nb:OVN_Northbound sb:OVN_Southbound; do
    short=${db%%:*} name=${db#*:}
    ctl=/var/run/ovn/ovn${short}_db.ctl
    if [[ -z "${NODE_IPS:-}" ]]; then
        storage=$(ovn-appctl -t "$ctl" ovsdb-server/get-db-storage-status "$name")
        if grep -q inconsistent <<< "$storage"; then
            echo "$short database storage is inconsistent: $storage"
            exit 1
        fi
        continue
    fi
    cluster=$(ovn-appctl -t "$ctl" cluster/status "$name")
    status=$(grep '^Status:' <<< "$cluster" || true)
    role=$(grep '^Role:' <<< "$cluster" || true)
    if grep -q failed <<< "$status"; then
        echo "$short raft member failed: $status"
        exit 1
    fi
    if grep -q disconnected <<< "$status" && grep -q candidate <<< "$role"; then
        echo "$short raft member is a disconnected candidate: $status, $role"
        exit 1
    fi
    if grep -q joining <<< "$status"; then
        echo "$short raft member is stuck joining: $status"
        exit 1
    fi
done
