#!/bin/bash
# Entrypoint of the ovn-central role: OVN Northbound and Southbound ovsdb-servers and
# ovn-northd, from Debian's OVN packages, with their databases in /etc/ovn (the hostPath or
# PVC upstream mounts there).
#
# NODE_IPS empty: one standalone NB and SB (upstream's single-replica mode), listening on
# NB_PORT/SB_PORT (6641/6642) through their Connection tables.
# NODE_IPS set (comma-separated, must contain DB_CLUSTER_ADDR, default POD_IP): raft
# clusters on NB_CLUSTER_PORT/SB_CLUSTER_PORT (6643/6644). The first address of NODE_IPS
# creates the clusters; the others join them. Existing database files are reused as they
# are, so a restarted container keeps its data.
#
# Also read: PROBE_INTERVAL (ms, 180000), OVN_NORTHD_N_THREADS (1),
# OVN_NORTHD_PROBE_INTERVAL (ms, 5000), OVN_VERSION_COMPATIBILITY, ENABLE_BIND_LOCAL_IP
# (listen on POD_IPS instead of every address), and for kube-ovn-leader-checker (started last,
# as upstream's start-db.sh does) OVN_LEADER_PROBE_INTERVAL (s, 5) and ENABLE_COMPACT (true). ENABLE_SSL=true is refused (not supported
# by this image yet).
set -euo pipefail
# shellcheck source=dist/images/kube-ovn-lib.sh
. /kube-ovn/kube-ovn-lib.sh
refuse_ssl ovn-central

OVN_CTL=/usr/share/ovn/scripts/ovn-ctl
PROBE_INTERVAL=${PROBE_INTERVAL:-180000}
OVN_NORTHD_N_THREADS=${OVN_NORTHD_N_THREADS:-1}
OVN_NORTHD_PROBE_INTERVAL=${OVN_NORTHD_PROBE_INTERVAL:-5000}
OVN_VERSION_COMPATIBILITY=${OVN_VERSION_COMPATIBILITY:-}
NB_PORT=${NB_PORT:-6641}
SB_PORT=${SB_PORT:-6642}
NB_CLUSTER_PORT=${NB_CLUSTER_PORT:-6643}
SB_CLUSTER_PORT=${SB_CLUSTER_PORT:-6644}
NODE_IPS=$(printf '%s' "${NODE_IPS:-}" | tr -d '[:space:]')
DB_CLUSTER_ADDR=${DB_CLUSTER_ADDR:-${POD_IP:-}}
NB_DB=/etc/ovn/ovnnb_db.db
SB_DB=/etc/ovn/ovnsb_db.db

# The addresses the databases listen on for clients.
listen_addrs="::"
if [[ "${ENABLE_BIND_LOCAL_IP:-false}" == "true" ]]; then
    listen_addrs=${POD_IPS:-${POD_IP:?ENABLE_BIND_LOCAL_IP=true needs POD_IP or POD_IPS}}
fi

# listen_targets PORT: ptcp targets for every listen address on PORT.
listen_targets() {
    local ip
    for ip in ${listen_addrs//,/ }; do
        printf 'ptcp:%s:%s\n' "$1" "$(in_brackets "$ip")"
    done
}

stop_ovn() {
    echo "stopping ovn-northd and the OVN databases"
    "$OVN_CTL" stop_northd || true
    "$OVN_CTL" stop_ovsdb || true
}
trap 'stop_ovn; exit 0' TERM INT

# A previous container on this host (or a pod that moved here) may have left pid files and
# control sockets in the shared run directory; they would stop ovn-ctl from starting.
rm -f /var/run/ovn/*.pid /var/run/ovn/*.ctl

db_files=(--db-nb-file="$NB_DB" --db-sb-file="$SB_DB")

if [[ -z "$NODE_IPS" ]]; then
    echo "ovn-central: standalone databases (NODE_IPS is empty)"
    "$OVN_CTL" "${db_files[@]}" --ovn-northd-n-threads="$OVN_NORTHD_N_THREADS" restart_northd
    mapfile -t nb_targets < <(listen_targets "$NB_PORT")
    mapfile -t sb_targets < <(listen_targets "$SB_PORT")
    ovn-nbctl --no-leader-only set-connection "${nb_targets[@]}"
    ovn-nbctl --no-leader-only set Connection . inactivity_probe="$PROBE_INTERVAL"
    ovn-sbctl --no-leader-only set-connection "${sb_targets[@]}"
    ovn-sbctl --no-leader-only set Connection . inactivity_probe="$PROBE_INTERVAL"
else
    if [[ -z "$DB_CLUSTER_ADDR" ]]; then
        echo "ovn-central: NODE_IPS is set but neither DB_CLUSTER_ADDR nor POD_IP is" >&2
        exit 1
    fi
    if [[ ",$NODE_IPS," != *",$DB_CLUSTER_ADDR,"* ]]; then
        echo "ovn-central: this member's address $DB_CLUSTER_ADDR is not in NODE_IPS=$NODE_IPS" >&2
        exit 1
    fi
    first=${NODE_IPS%%,*}
    cluster_args=(
        --db-nb-cluster-local-addr="$(in_brackets "$DB_CLUSTER_ADDR")"
        --db-sb-cluster-local-addr="$(in_brackets "$DB_CLUSTER_ADDR")"
        --db-nb-cluster-local-port="$NB_CLUSTER_PORT"
        --db-sb-cluster-local-port="$SB_CLUSTER_PORT"
        --db-nb-use-remote-in-db=no
        --db-sb-use-remote-in-db=no
        --ovn-northd-nb-db="$(remotes "$NB_PORT")"
        --ovn-northd-sb-db="$(remotes "$SB_PORT")"
    )
    # A member without a database joins through the first member; the first member creates
    # the clusters. With a database file, ovn-ctl starts it as it is.
    if [[ "$DB_CLUSTER_ADDR" != "$first" ]]; then
        cluster_args+=(
            --db-nb-cluster-remote-addr="$(in_brackets "$first")"
            --db-sb-cluster-remote-addr="$(in_brackets "$first")"
            --db-nb-cluster-remote-port="$NB_CLUSTER_PORT"
            --db-sb-cluster-remote-port="$SB_CLUSTER_PORT"
        )
    fi
    echo "ovn-central: raft member $DB_CLUSTER_ADDR of $NODE_IPS"
    "$OVN_CTL" stop_northd || true
    # One client listener per address, on the NB/SB ports.
    remote_args=()
    for ip in ${listen_addrs//,/ }; do
        remote_args+=(--remote="ptcp:$NB_PORT:$(in_brackets "$ip")")
    done
    "$OVN_CTL" "${db_files[@]}" "${cluster_args[@]}" start_nb_ovsdb -- "${remote_args[@]}"
    remote_args=()
    for ip in ${listen_addrs//,/ }; do
        remote_args+=(--remote="ptcp:$SB_PORT:$(in_brackets "$ip")")
    done
    "$OVN_CTL" "${db_files[@]}" "${cluster_args[@]}" start_sb_ovsdb -- "${remote_args[@]}"
    "$OVN_CTL" "${db_files[@]}" "${cluster_args[@]}" --ovn-manage-ovsdb=no \
        --ovn-northd-n-threads="$OVN_NORTHD_N_THREADS" start_northd
    ovn-sbctl --no-leader-only set SB_Global . options:inactivity_probe="$PROBE_INTERVAL"
fi

ovn-nbctl --no-leader-only set NB_Global . options:inactivity_probe="$PROBE_INTERVAL" \
    options:northd_probe_interval="$OVN_NORTHD_PROBE_INTERVAL" options:use_logical_dp_groups=true
if [[ -n "$OVN_VERSION_COMPATIBILITY" ]]; then
    ovn-nbctl --no-leader-only set NB_Global . options:version_compatibility="$OVN_VERSION_COMPATIBILITY"
fi
# Give memory back to the system after each compaction.
ovn-appctl -t /var/run/ovn/ovnnb_db.ctl ovsdb-server/memory-trim-on-compaction on
ovn-appctl -t /var/run/ovn/ovnsb_db.ctl ovsdb-server/memory-trim-on-compaction on
chmod 600 /etc/ovn/*

echo "ovn-central: NB, SB and ovn-northd are running."

# kube-ovn-leader-checker labels this pod with the roles its member holds (ovn-nb-leader,
# ovn-sb-leader, ovn-northd-leader: what the ovn-nb/ovn-sb/ovn-northd Services and kubectl ko
# select) and compacts the databases, with upstream's arguments. It needs the API, which a pod
# always has (KUBERNETES_SERVICE_HOST); a container started outside Kubernetes runs without it.
checker_pid=
if [[ -n "${KUBERNETES_SERVICE_HOST:-}" || -n "${KUBECONFIG:-}" ]]; then
    /kube-ovn/kube-ovn-leader-checker \
        --probeInterval="${OVN_LEADER_PROBE_INTERVAL:-5}" \
        --enableCompact="${ENABLE_COMPACT:-true}" \
        --remoteAddresses="$NODE_IPS" &
    checker_pid=$!
else
    echo "ovn-central: no Kubernetes API (KUBERNETES_SERVICE_HOST, KUBECONFIG): kube-ovn-leader-checker does not run"
fi

tail -n 0 -F /var/log/ovn/ovn-northd.log /var/log/ovn/ovsdb-server-nb.log /var/log/ovn/ovsdb-server-sb.log &

# Stay up while all three daemons and the leader checker run; if one dies, say which and fail,
# so the kubelet restarts the container.
while true; do
    for name in ovnnb_db ovnsb_db ovn-northd; do
        pid=$(cat "/var/run/ovn/$name.pid" 2>/dev/null || true)
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "ovn-central: $name is no longer running" >&2
            stop_ovn
            exit 1
        fi
    done
    if [[ -n "$checker_pid" ]] && ! kill -0 "$checker_pid" 2>/dev/null; then
        echo "ovn-central: kube-ovn-leader-checker is no longer running" >&2
        stop_ovn
        exit 1
    fi
    sleep 5 & wait $!
done
