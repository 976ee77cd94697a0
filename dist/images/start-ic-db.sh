#!/bin/bash
# Entrypoint of the ovn-ic-db role (upstream's ovn-ic-server Deployment from
# install-ic-server.sh runs `/kube-ovn/start-ic-db.sh`): the interconnection databases
# OVN_IC_Northbound and OVN_IC_Southbound from Debian's OVN packages, their files in /etc/ovn.
#
# NODE_IPS and LOCAL_IP empty: standalone databases serving clients on 6645 (IC NB) and 6646
# (IC SB) on every address.
# NODE_IPS set (comma-separated; LOCAL_IP, default POD_IP, must be one of them): raft clusters
# on 6647/6648 between the NODE_IPS members, clients served on 6645/6646 at POD_IP (or on every
# address with ENABLE_BIND_LOCAL_IP=false). The first address of NODE_IPS creates the
# clusters, the others join through it (a raft follower points a joiner at its leader). An
# existing database file is started as it is, so a restarted container keeps its data.
#
# Then, as upstream's leader checker does in IC mode (`updateTS`), the member keeps TS_NUM
# (default 1) kube-ovn transit switches (`ts`, `ts1`…, 169.254.(100+i).0/24, or the IPv6 /
# dual-stack form by POD_IPS) in the IC NB: `kube-ovn-ic-controller ts-sync` every
# OVN_LEADER_PROBE_INTERVAL seconds (default 5); the write goes to the raft leader.
# ENABLE_SSL=true is refused (not supported by this image yet).
set -euo pipefail
# shellcheck source=dist/images/kube-ovn-lib.sh
. /kube-ovn/kube-ovn-lib.sh
refuse_ssl ovn-ic-db

OVN_CTL=/usr/share/ovn/scripts/ovn-ctl
NODE_IPS=$(printf '%s' "${NODE_IPS:-}" | tr -d '[:space:]')
LOCAL_IP=${LOCAL_IP:-${POD_IP:-}}
TS_NUM=${TS_NUM:-1}
PROBE=${OVN_LEADER_PROBE_INTERVAL:-5}
IC_NB_PORT=6645
IC_SB_PORT=6646
IC_NB_CLUSTER_PORT=6647
IC_SB_CLUSTER_PORT=6648

stop_ic_db() {
    echo "stopping the OVN IC databases"
    "$OVN_CTL" stop_ic_ovsdb || true
}
trap 'stop_ic_db; exit 0' TERM INT

# A previous container on this host may have left pid files and control sockets behind.
rm -f /var/run/ovn/ovn_ic_nb_db.pid /var/run/ovn/ovn_ic_sb_db.pid \
      /var/run/ovn/ovn_ic_nb_db.ctl /var/run/ovn/ovn_ic_sb_db.ctl

# The database files live in /etc/ovn (upstream's mount), not Debian's default /var/lib/ovn.
common=(--db-ic-nb-file=/etc/ovn/ovn_ic_nb_db.db --db-ic-sb-file=/etc/ovn/ovn_ic_sb_db.db
        --db-ic-nb-create-insecure-remote=yes --db-ic-sb-create-insecure-remote=yes
        --db-ic-nb-port="$IC_NB_PORT" --db-ic-sb-port="$IC_SB_PORT")
if [[ -z "$NODE_IPS" && -z "$LOCAL_IP" ]]; then
    echo "ovn-ic-db: standalone databases (NODE_IPS is empty)"
    "$OVN_CTL" "${common[@]}" --db-ic-nb-addr="[::]" --db-ic-sb-addr="[::]" start_ic_ovsdb
    ic_nb=unix:/var/run/ovn/ovn_ic_nb_db.sock
else
    NODE_IPS=${NODE_IPS:-$LOCAL_IP}
    if [[ -z "$LOCAL_IP" ]]; then
        echo "ovn-ic-db: NODE_IPS is set but neither LOCAL_IP nor POD_IP is" >&2
        exit 1
    fi
    if [[ ",$NODE_IPS," != *",$LOCAL_IP,"* ]]; then
        echo "ovn-ic-db: this member's address $LOCAL_IP is not in NODE_IPS=$NODE_IPS" >&2
        exit 1
    fi
    listen=$LOCAL_IP
    if [[ "${ENABLE_BIND_LOCAL_IP:-true}" != "true" ]]; then
        listen="::"
    fi
    first=${NODE_IPS%%,*}
    cluster=(
        --db-ic-nb-cluster-local-addr="$(in_brackets "$LOCAL_IP")"
        --db-ic-sb-cluster-local-addr="$(in_brackets "$LOCAL_IP")"
        --db-ic-nb-cluster-local-port="$IC_NB_CLUSTER_PORT"
        --db-ic-sb-cluster-local-port="$IC_SB_CLUSTER_PORT"
        --db-ic-nb-addr="$(in_brackets "$listen")"
        --db-ic-sb-addr="$(in_brackets "$listen")"
    )
    if [[ "$LOCAL_IP" != "$first" ]]; then
        cluster+=(
            --db-ic-nb-cluster-remote-addr="$(in_brackets "$first")"
            --db-ic-sb-cluster-remote-addr="$(in_brackets "$first")"
            --db-ic-nb-cluster-remote-port="$IC_NB_CLUSTER_PORT"
            --db-ic-sb-cluster-remote-port="$IC_SB_CLUSTER_PORT"
        )
    fi
    echo "ovn-ic-db: raft member $LOCAL_IP of $NODE_IPS"
    "$OVN_CTL" "${common[@]}" "${cluster[@]}" start_ic_ovsdb
    ic_nb=$(remotes "$IC_NB_PORT")
fi
chmod 600 /etc/ovn/*

# kube-ovn-leader-checker in IC mode labels this pod ovn-ic-nb-leader/ovn-ic-sb-leader, as
# upstream's start-ic-db.sh has it do; it needs the API (see start-db.sh).
checker_pid=
if [[ -n "${KUBERNETES_SERVICE_HOST:-}" || -n "${KUBECONFIG:-}" ]]; then
    /kube-ovn/kube-ovn-leader-checker \
        --probeInterval="$PROBE" \
        --remoteAddresses="$NODE_IPS" \
        --isICDBServer=true &
    checker_pid=$!
else
    echo "ovn-ic-db: no Kubernetes API (KUBERNETES_SERVICE_HOST, KUBECONFIG): kube-ovn-leader-checker does not run"
fi

tail -n 0 -F /var/log/ovn/ovsdb-server-ic-nb.log /var/log/ovn/ovsdb-server-ic-sb.log &

# Stay up while both servers and the leader checker run (if one dies, say which and fail, so
# the kubelet restarts the container), keeping the transit switches at TS_NUM.
while true; do
    for name in ovn_ic_nb_db ovn_ic_sb_db; do
        pid=$(cat "/var/run/ovn/$name.pid" 2>/dev/null || true)
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "ovn-ic-db: $name is no longer running" >&2
            stop_ic_db
            exit 1
        fi
    done
    if [[ -n "$checker_pid" ]] && ! kill -0 "$checker_pid" 2>/dev/null; then
        echo "ovn-ic-db: kube-ovn-leader-checker is no longer running" >&2
        stop_ic_db
        exit 1
    fi
    /kube-ovn/kube-ovn-ic-controller ts-sync --ic-nb-db="$ic_nb" --ts-num="$TS_NUM" ||
        echo "ovn-ic-db: transit switch sync failed; retrying in ${PROBE}s" >&2
    sleep "$PROBE" & wait $!
done
