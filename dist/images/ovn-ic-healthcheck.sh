#!/bin/bash
# Readiness and liveness probe of the ovn-ic-db role (install-ic-server.sh's probes run
# `bash /kube-ovn/ovn-ic-healthcheck.sh`): both IC databases run; standalone ones report
# consistent storage; raft members are neither failed, nor disconnected candidates, nor
# still joining.
set -euo pipefail

for db in nb:OVN_IC_Northbound sb:OVN_IC_Southbound; do
    short=${db%%:*} name=${db#*:}
    ctl=/var/run/ovn/ovn_ic_${short}_db.ctl
    pid=$(cat "/var/run/ovn/ovn_ic_${short}_db.pid" 2>/dev/null || true)
    if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
        echo "IC $short database is not running"
        exit 1
    fi
    if [[ -z "${NODE_IPS:-}" && -z "${LOCAL_IP:-${POD_IP:-}}" ]]; then
        storage=$(ovn-appctl -t "$ctl" ovsdb-server/get-db-storage-status "$name")
        if grep -q inconsistent <<< "$storage"; then
            echo "IC $short database storage is inconsistent: $storage"
            exit 1
        fi
        continue
    fi
    cluster=$(ovn-appctl -t "$ctl" cluster/status "$name")
    status=$(grep '^Status:' <<< "$cluster" || true)
    role=$(grep '^Role:' <<< "$cluster" || true)
    if grep -qE 'failed|joining' <<< "$status"; then
        echo "IC $short raft member is not serving: $status"
        exit 1
    fi
    if grep -q disconnected <<< "$status" && grep -q candidate <<< "$role"; then
        echo "IC $short raft member is a disconnected candidate: $status, $role"
        exit 1
    fi
done
