#!/bin/bash
# The ovn-ic-db role as a three-member raft cluster (as root, with podman and the built
# image): three containers of the kube-ovn image run /kube-ovn/start-ic-db.sh as
# install-ic-server.sh's Deployment does (uid 65534 with NET_BIND_SERVICE and SYS_NICE,
# NODE_IPS of all three, POD_IP, TS_NUM=3), each on its own address of a podman network.
#
# Checks: every member passes ovn-ic-healthcheck.sh; each IC database has one leader and
# three servers; the members keep TS_NUM transit switches with upstream's names and
# subnets; with the IC NB leader's container stopped, the other two elect a new leader and
# both databases take writes through the clients' remote lists (tcp:[ip]:6645/6646 of every
# member);
# the stopped member restarts on its files, rejoins and serves what was written meanwhile.
#
#   dist/images/build-offline.sh && test/containers/ic-db.sh
#
# IMAGE (localhost/kube-ovn:dev); KEEP=1 leaves it running. Exits 77 (SKIPPED, said loudly)
# without podman, root or the image.
set -euo pipefail

IMAGE=${IMAGE:-localhost/kube-ovn:dev}
repo=$(cd "$(dirname "$0")/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/dist/images/containers.conf}

skip() {
    echo "################################################################" >&2
    echo "# SKIPPED: test/containers/ic-db.sh did not run: $1" >&2
    echo "# To run it (as root): apt-get install -y podman buildah debootstrap runc &&" >&2
    echo "#   dist/images/build-offline.sh && test/containers/ic-db.sh" >&2
    echo "################################################################" >&2
    exit 77
}
command -v podman > /dev/null || skip "podman is not installed"
[[ $(id -u) == 0 ]] || skip "it must run as root"
podman image exists "$IMAGE" || skip "the image $IMAGE does not exist"

prefix="kovn-ic$$"
tmp=$(mktemp -d /var/tmp/kovn-icdb.XXXXXX)
failures=0
started=$(date +%s.%N)

cleanup() {
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "KEEP=1: containers $prefix-*, network $prefix, files $tmp"
        return
    fi
    local ids
    ids=$(podman ps -a --filter "name=^$prefix-" --format '{{.ID}}')
    # shellcheck disable=SC2086
    [[ -z "$ids" ]] || podman rm -f -t 0 $ids > /dev/null 2>&1 || true
    podman network rm -f "$prefix" > /dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=test/containers/lib.sh
. "$repo/test/containers/lib.sh"

section "network and three ovn-ic-db members"
podman network create "$prefix" > /dev/null
subnet=$(podman network inspect "$prefix" --format '{{range .Subnets}}{{.Subnet}}{{end}}')
base=${subnet%.*}
ips=("$base.31" "$base.32" "$base.33")
node_ips=$(IFS=,; echo "${ips[*]}")
nb_remotes="tcp:[${ips[0]}]:6645,tcp:[${ips[1]}]:6645,tcp:[${ips[2]}]:6645"
sb_remotes="tcp:[${ips[0]}]:6646,tcp:[${ips[1]}]:6646,tcp:[${ips[2]}]:6646"

# start_member I: (re)creates member I's container on its host directories.
start_member() {
    local i=$1 ip=${ips[$1]}
    podman rm -f -t 0 "$prefix-ic-db-$i" > /dev/null 2>&1 || true
    podman run -d --name "$prefix-ic-db-$i" --network "$prefix" --ip "$ip" \
        --user 65534:65534 --cap-drop ALL --cap-add NET_BIND_SERVICE,SYS_NICE \
        -e ENABLE_SSL=false -e TS_NUM=3 -e NODE_IPS="$node_ips" -e POD_IP="$ip" -e POD_IPS="$ip" \
        -e OVN_LEADER_PROBE_INTERVAL=1 -e POD_NAME="ovn-ic-server-$i" -e POD_NAMESPACE=kube-system \
        -v "$tmp/m$i/etc-ovn:/etc/ovn" -v "$tmp/m$i/log-ovn:/var/log/ovn" \
        -v "$tmp/m$i/run-ovn:/var/run/ovn" \
        "$IMAGE" /kube-ovn/start-ic-db.sh > /dev/null
}
for i in 0 1 2; do
    mkdir -p "$tmp/m$i/etc-ovn" "$tmp/m$i/log-ovn" "$tmp/m$i/run-ovn"
    chown -R 65534:65534 "$tmp/m$i"
    start_member "$i"
done
for i in 0 1 2; do
    if wait_for 120 "member $i healthy" x "ic-db-$i" bash /kube-ovn/ovn-ic-healthcheck.sh; then
        pass "member $i (${ips[$i]}) healthy"
    else
        fail "member $i not healthy"
        logs "ic-db-$i"
    fi
done
((failures == 0)) || exit 1

section "raft"
# status I DB: member I's cluster/status of DB (NB or SB).
status() {
    local short=${2,,}
    x "ic-db-$1" ovn-appctl -t "/var/run/ovn/ovn_ic_${short}_db.ctl" cluster/status "OVN_IC_$3"
}
# leader DB NAME: the index of the member leading DB.
leader() {
    local i
    for i in 0 1 2; do
        if status "$i" "$1" "$2" 2> /dev/null | grep -q '^Role: leader'; then
            echo "$i"
            return 0
        fi
    done
    return 1
}
# servers I DB NAME: how many servers member I's cluster lists.
servers() {
    status "$1" "$2" "$3" | awk '/^Servers:/ { on = 1; next } on && /^ / { n++ } END { print n + 0 }'
}
for db in NB:Northbound SB:Southbound; do
    short=${db%%:*} name=${db#*:}
    if wait_for 60 "an IC $short leader" leader "$short" "$name" > /dev/null; then
        l=$(leader "$short" "$name")
        n=$(servers "$l" "$short" "$name")
        if [[ "$n" == 3 ]]; then
            pass "IC $short: member $l leads a cluster of $n servers"
        else
            fail "IC $short: member $l's cluster lists $n servers"
            status "$l" "$short" "$name" >&2
        fi
    else
        fail "IC $short has no leader"
    fi
done

section "transit switches (TS_NUM=3)"
ts() { x ic-db-2 ovn-ic-nbctl --db="$nb_remotes" --bare --columns=name,external_ids list Transit_Switch; }
want_ts() {
    local out
    out=$(ts)
    grep -qx ts <<< "$out" && grep -qx ts1 <<< "$out" && grep -qx ts2 <<< "$out" &&
        grep -q 'subnet=169.254.100.0/24' <<< "$out" && grep -q 'subnet=169.254.102.0/24' <<< "$out" &&
        grep -q 'vendor=kube-ovn' <<< "$out"
}
if wait_for 60 "transit switches ts, ts1, ts2" want_ts; then
    pass "transit switches ts, ts1, ts2 with 169.254.100-102.0/24 and vendor=kube-ovn"
else
    fail "transit switches: $(ts | tr '\n' ' ')"
fi

section "leader loss"
# One member down keeps the majority: stop the IC NB leader's (two stopped would not).
nb_leader=$(leader NB Northbound)
t0=$(date +%s.%N)
podman stop -t 0 "$prefix-ic-db-$nb_leader" > /dev/null
alive=$(((nb_leader + 1) % 3))
writes() {
    x "ic-db-$alive" ovn-ic-nbctl --db="$nb_remotes" --timeout=5 set IC_NB_Global . external_ids:written-after-loss=yes &&
        x "ic-db-$alive" ovn-ic-sbctl --db="$sb_remotes" --timeout=5 set IC_SB_Global . external_ids:written-after-loss=yes
}
if wait_for 60 "writes through the remote list after the leader loss" writes; then
    pass "IC NB and SB take writes $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }') after member $nb_leader (the leader) stopped"
else
    fail "no writes after member $nb_leader stopped"
fi

section "rejoin"
podman start "$prefix-ic-db-$nb_leader" > /dev/null
seen() {
    x "ic-db-$nb_leader" bash /kube-ovn/ovn-ic-healthcheck.sh > /dev/null &&
        x "ic-db-$nb_leader" ovn-ic-nbctl --db=unix:/var/run/ovn/ovn_ic_nb_db.sock --no-leader-only \
            get IC_NB_Global . external_ids:written-after-loss | grep -q yes
}
if wait_for 120 "member $nb_leader rejoined with the write" seen; then
    n=$(servers "$nb_leader" NB Northbound)
    pass "member $nb_leader restarted on its files, rejoined ($n servers) and serves the write made without it"
else
    fail "member $nb_leader did not rejoin"
    logs "ic-db-$nb_leader"
fi

section "done"
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"
