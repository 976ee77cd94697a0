#!/bin/bash
# ovn-central as a three-member raft cluster (as root, with podman and the built image): three
# containers of the kube-ovn image run /kube-ovn/start-db.sh with the environment upstream's
# install.sh gives a three-master ovn-central (uid 65534 with NET_BIND_SERVICE and SYS_NICE,
# NODE_IPS of all three, POD_IP, ENABLE_BIND_LOCAL_IP), each on its own address of a podman
# network.
#
# Checks: every member passes ovn-healthcheck.sh; NB and SB each have one leader and three
# servers; northd turns a logical switch written through the clients' NB remote list into a
# datapath in the SB; with the NB leader's container stopped, the other two elect a new leader,
# take writes through the remote lists and northd still translates them; the stopped member
# restarts on its files, rejoins and serves what was written meanwhile. Then `kubectl ko nb
# restore` rebuilds the NB cluster from the first member's file: the Kubernetes API fixture
# (`--exec-podman`) holds the ovn-central Deployment, its pods and the ovs-ovn pods (one
# container per member's node, sharing its /etc/ovn, as upstream's DaemonSet does), each pod's
# exec running in its container; this script plays the Deployment's controller (replicas 0 stops
# the members' containers and deletes their pods, 3 starts them again on their files and
# reports them available). After the restore the NB is a new cluster (another cluster ID) of
# three servers holding what was written before, and northd has filled the new SB again.
#
#   dist/images/build-offline.sh && cargo build -p kube-ovn-apiserver-fixture -p kube-ovn-controller &&
#   test/containers/central-raft.sh
#
# IMAGE (localhost/kube-ovn:dev), FIXTURE (target/debug/kube-apiserver-fixture), KO
# (target/debug/kubectl-ko); KEEP=1 leaves it running. Exits 77 (SKIPPED, said loudly)
# without podman, root, kubectl, the image, the fixture or kubectl-ko.
set -euo pipefail

IMAGE=${IMAGE:-localhost/kube-ovn:dev}
repo=$(cd "$(dirname "$0")/../.." && pwd)
FIXTURE=${FIXTURE:-$repo/target/debug/kube-apiserver-fixture}
KO=${KO:-$repo/target/debug/kubectl-ko}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/dist/images/containers.conf}

skip() {
    echo "################################################################" >&2
    echo "# SKIPPED: test/containers/central-raft.sh did not run: $1" >&2
    echo "# To run it (as root): apt-get install -y podman buildah debootstrap runc &&" >&2
    echo "#   dist/images/build-offline.sh && test/containers/central-raft.sh" >&2
    echo "################################################################" >&2
    exit 77
}
command -v podman > /dev/null || skip "podman is not installed"
[[ $(id -u) == 0 ]] || skip "it must run as root"
podman image exists "$IMAGE" || skip "the image $IMAGE does not exist"
command -v kubectl > /dev/null || skip "kubectl is not installed"
[[ -x "$FIXTURE" ]] || skip "the API fixture $FIXTURE is not built"
[[ -x "$KO" ]] || skip "kubectl-ko ($KO) is not built"

prefix="kovn-cr$$"
tmp=$(mktemp -d /var/tmp/kovn-central.XXXXXX)
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
    [[ -z "${fixture_pid:-}" ]] || kill "$fixture_pid" 2> /dev/null || true
    [[ -z "${controller_pid:-}" ]] || kill "$controller_pid" 2> /dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=test/containers/lib.sh
. "$repo/test/containers/lib.sh"

section "network and three ovn-central members"
podman network create "$prefix" > /dev/null
subnet=$(podman network inspect "$prefix" --format '{{range .Subnets}}{{.Subnet}}{{end}}')
base=${subnet%.*}
ips=("$base.41" "$base.42" "$base.43")
node_ips=$(IFS=,; echo "${ips[*]}")
nb_remotes="tcp:[${ips[0]}]:6641,tcp:[${ips[1]}]:6641,tcp:[${ips[2]}]:6641"
sb_remotes="tcp:[${ips[0]}]:6642,tcp:[${ips[1]}]:6642,tcp:[${ips[2]}]:6642"

# start_member I: (re)creates member I's container on its host directories.
start_member() {
    local i=$1 ip=${ips[$1]}
    podman rm -f -t 0 "$prefix-central-$i" > /dev/null 2>&1 || true
    podman run -d --name "$prefix-central-$i" --network "$prefix" --ip "$ip" \
        --user 65534:65534 --cap-drop ALL --cap-add NET_BIND_SERVICE,SYS_NICE \
        -e NODE_IPS="$node_ips" -e POD_IP="$ip" -e POD_IPS="$ip" \
        -e POD_NAME="ovn-central-$i" -e POD_NAMESPACE=kube-system -e ENABLE_BIND_LOCAL_IP=true \
        -e DEBUG_WRAPPER= -e PROBE_INTERVAL=180000 -e OVN_NORTHD_PROBE_INTERVAL=5000 \
        -e OVN_LEADER_PROBE_INTERVAL=5 -e OVN_NORTHD_N_THREADS=1 -e ENABLE_COMPACT=false \
        -v "$tmp/m$i/etc-ovn:/etc/ovn" -v "$tmp/m$i/log-ovn:/var/log/ovn" \
        -v "$tmp/m$i/run-ovn:/var/run/ovn" \
        "$IMAGE" bash /kube-ovn/start-db.sh > /dev/null
}
for i in 0 1 2; do
    mkdir -p "$tmp/m$i/etc-ovn" "$tmp/m$i/log-ovn" "$tmp/m$i/run-ovn"
    chown -R 65534:65534 "$tmp/m$i"
    start_member "$i"
done
for i in 0 1 2; do
    if wait_for 120 "member $i healthy" x "central-$i" bash /kube-ovn/ovn-healthcheck.sh; then
        pass "member $i (${ips[$i]}) healthy"
    else
        fail "member $i not healthy"
        logs "central-$i"
    fi
done
((failures == 0)) || exit 1

section "raft"
# status I DB: member I's cluster/status of DB (NB or SB).
status() {
    local short=${2,,}
    x "central-$1" ovn-appctl -t "/var/run/ovn/ovn${short}_db.ctl" cluster/status "OVN_$3"
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
    if wait_for 60 "an $short leader" leader "$short" "$name" > /dev/null; then
        l=$(leader "$short" "$name")
        n=$(servers "$l" "$short" "$name")
        if [[ "$n" == 3 ]]; then
            pass "$short: member $l leads a cluster of $n servers"
        else
            fail "$short: member $l's cluster lists $n servers"
            status "$l" "$short" "$name" >&2
        fi
    else
        fail "$short has no leader"
    fi
done

section "northd"
# datapath NAME: the SB has a datapath for logical switch NAME (northd at work).
datapath() {
    x central-2 ovn-sbctl --db="$sb_remotes" --bare --columns=external_ids list Datapath_Binding |
        grep -q "name=$1"
}
x central-2 ovn-nbctl --db="$nb_remotes" ls-add before-loss
if wait_for 60 "northd to translate switch before-loss" datapath before-loss; then
    pass "a switch written through the NB remote list becomes an SB datapath"
else
    fail "northd did not translate before-loss"
fi

section "leader loss"
# One member down keeps the majority: stop the IC NB leader's (two stopped would not).
nb_leader=$(leader NB Northbound)
t0=$(date +%s.%N)
podman stop -t 0 "$prefix-central-$nb_leader" > /dev/null
alive=$(((nb_leader + 1) % 3))
writes() {
    x "central-$alive" ovn-nbctl --db="$nb_remotes" --timeout=5 ls-add after-loss 2> /dev/null ||
        x "central-$alive" ovn-nbctl --db="$nb_remotes" --timeout=5 ls-list | grep -q after-loss
}
since() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'; }
if wait_for 60 "writes through the remote list after the leader loss" writes &&
    written=$(since) &&
    wait_for 60 "northd to translate after-loss" datapath after-loss; then
    pass "NB takes writes $written and northd translates them $(since) after member $nb_leader (the leader) stopped"
else
    fail "no writes or no translation after member $nb_leader stopped"
fi

section "rejoin"
podman start "$prefix-central-$nb_leader" > /dev/null
seen() {
    x "central-$nb_leader" bash /kube-ovn/ovn-healthcheck.sh > /dev/null &&
        x "central-$nb_leader" ovn-nbctl --db=unix:/var/run/ovn/ovnnb_db.sock --no-leader-only \
            ls-list | grep -q after-loss
}
if wait_for 120 "member $nb_leader rejoined with the write" seen; then
    n=$(servers "$nb_leader" NB Northbound)
    pass "member $nb_leader restarted on its files, rejoined ($n servers) and serves the write made without it"
else
    fail "member $nb_leader did not rejoin"
    logs "central-$nb_leader"
fi

section "nb restore"
# The API: the fixture on the host, serving exec through podman.
"$FIXTURE" --listen 127.0.0.1:0 --kubeconfig-out "$tmp/kubeconfig" --exec-podman > "$tmp/fixture.log" 2>&1 &
fixture_pid=$!
k() { kubectl --kubeconfig "$tmp/kubeconfig" -n kube-system "$@"; }
wait_for 30 "the API fixture" k get --raw /readyz > /dev/null
k create namespace kube-system > /dev/null 2>&1 || true
# pod NAME CONTAINER IP LABELS: a Running pod on the node at IP whose exec runs in CONTAINER.
pod() {
    k apply -f - > /dev/null << END
{"apiVersion": "v1", "kind": "Pod",
 "metadata": {"name": "$1", "labels": {$4},
              "annotations": {"test.kube-ovn-rs/podman-container": "$prefix-$2"}},
 "spec": {"nodeName": "node-$3", "hostNetwork": true, "containers": [{"name": "c", "image": "$IMAGE"}]}}
END
    k patch pod "$1" --subresource=status --type=merge \
        -p "{\"status\": {\"phase\": \"Running\", \"hostIP\": \"$3\", \"podIP\": \"$3\"}}" > /dev/null
}
# central_pods: the members' pods, the NB leader's labelled as the leader checker labels it.
central_pods() {
    local i l labels
    l=$(leader NB Northbound)
    for i in 0 1 2; do
        labels='"app": "ovn-central"'
        [[ "$i" != "$l" ]] || labels="$labels, \"ovn-nb-leader\": \"true\""
        pod "ovn-central-$i" "central-$i" "${ips[$i]}" "$labels"
    done
}
available() {
    k patch deployment ovn-central --subresource=status --type=merge \
        -p "{\"status\": {\"replicas\": $1, \"readyReplicas\": $1, \"availableReplicas\": $1}}" > /dev/null
}
k apply -f - > /dev/null << END
{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ovn-central"},
 "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "ovn-central"}},
          "template": {"metadata": {"labels": {"app": "ovn-central"}},
                       "spec": {"containers": [{"name": "ovn-central", "image": "$IMAGE",
                                "env": [{"name": "ENABLE_SSL", "value": "false"},
                                        {"name": "NODE_IPS", "value": "$node_ips"}]}]}}}}
END
k apply -f - > /dev/null << END
{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ovs-ovn"},
 "spec": {"selector": {"matchLabels": {"app": "ovs"}},
          "template": {"metadata": {"labels": {"app": "ovs"}},
                       "spec": {"containers": [{"name": "openvswitch", "image": "$IMAGE"}]}}}}
END
for i in 0 1 2; do
    # A node's ovs-ovn container: the node's /etc/ovn, as upstream's DaemonSet mounts it.
    podman run -d --name "$prefix-ovs-$i" --network none -v "$tmp/m$i/etc-ovn:/etc/ovn" \
        "$IMAGE" sleep infinity > /dev/null
    pod "ovs-ovn-$i" "ovs-$i" "${ips[$i]}" '"app": "ovs"'
done
central_pods
available 3
# The Deployment's controller, as far as the restore needs one.
controller() {
    local up=1 want i
    while true; do
        want=$(k get deployment ovn-central -o jsonpath='{.spec.replicas}' 2> /dev/null || true)
        if [[ "$want" == 0 && $up == 1 ]]; then
            for i in 0 1 2; do podman stop -t 10 "$prefix-central-$i" > /dev/null; done
            k delete pod -l app=ovn-central --wait=false > /dev/null
            available 0
            up=0
        elif [[ "$want" == 3 && $up == 0 ]]; then
            # The pod's init container (the manifests' `chown -R nobody: ...`) first: the
            # restore wrote the NB file as root.
            for i in 0 1 2; do
                chown -R 65534:65534 "$tmp/m$i"
                podman start "$prefix-central-$i" > /dev/null
            done
            for i in 0 1 2; do
                wait_for 120 "member $i healthy again" x "central-$i" bash /kube-ovn/ovn-healthcheck.sh > /dev/null
            done
            wait_for 60 "an NB leader again" leader NB Northbound > /dev/null
            central_pods
            available 3
            up=1
        fi
        sleep 0.5
    done
}
controller > "$tmp/controller.log" 2>&1 &
controller_pid=$!
x central-0 ovn-nbctl --db="$nb_remotes" ls-add before-restore
wait_for 60 "northd to translate before-restore" datapath before-restore > /dev/null
cid=$(x central-0 ovsdb-tool db-cid /etc/ovn/ovnnb_db.db)
if out=$(timeout 600 "$KO" --kubeconfig "$tmp/kubeconfig" nb restore 2>&1) &&
    grep -q "finish restore nb db file and ovn-central replicas" <<< "$out"; then
    pass "kubectl ko nb restore finished"
    sed 's/^/    [kubectl ko] /' <<< "$out"
else
    fail "kubectl ko nb restore: $out"
    sed 's/^/    [controller] /' "$tmp/controller.log" >&2
    for i in 0 1 2; do logs "central-$i"; done
fi
new_cid=$(x central-0 ovsdb-tool db-cid /etc/ovn/ovnnb_db.db 2> /dev/null || true)
l=$(leader NB Northbound || echo none)
if [[ -n "$new_cid" && "$new_cid" != "$cid" && "$l" != none && $(servers "$l" NB Northbound) == 3 ]]; then
    pass "NB is a new cluster ($cid -> $new_cid) of three servers, led by member $l"
else
    fail "NB after the restore: cluster $cid -> ${new_cid:-none}, leader $l"
fi
if x central-1 ovn-nbctl --db="$nb_remotes" ls-list | grep -q before-restore &&
    wait_for 60 "northd to fill the new SB" datapath before-restore; then
    pass "the restored NB holds what was written before, and northd translated it into the new SB"
else
    fail "before-restore is missing from the restored NB or the new SB"
fi
restarted=$(k get daemonset ovs-ovn -o jsonpath='{.spec.template.metadata.annotations.kubectl\.kubernetes\.io/restartedAt}')
if [[ -n "$restarted" ]]; then pass "ovs-ovn restarted ($restarted)"; else fail "ovs-ovn was not restarted"; fi

section "done"
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"
