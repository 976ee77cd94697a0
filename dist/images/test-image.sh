#!/bin/bash
# shellcheck disable=SC2016 # the bash -c programs run inside the image: literal on purpose
# Checks the kube-ovn image (as root, with podman): every entrypoint and binary at
# upstream's paths and no toolchain; each missing component's stub names it and fails;
# install-cni.sh puts the CNI plugins and conflist into host directories; start-db.sh
# brings up NB, SB and ovn-northd (standalone, and as a one-member raft cluster like
# install.sh's default), which keep their data across a container restart; start-ovs.sh
# brings up ovsdb-server, ovs-vswitchd and ovn-controller, whose chassis registers in the
# Southbound of the ovn-central container; ovn-healthcheck.sh and ovs-healthcheck.sh pass.
#
#   dist/images/build-offline.sh && dist/images/test-image.sh [IMAGE]
#
# IMAGE defaults to localhost/kube-ovn:dev (what build-offline.sh builds). Exits 0 when
# every check passed, 1 when one failed, 77 when podman or the image is absent (SKIPPED,
# said loudly). Containers are named kovn-test-<pid>-*; all are removed at the end.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${1:-${IMAGE:-localhost/kube-ovn:dev}}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/dist/images/containers.conf}

skip() {
    echo "################################################################" >&2
    echo "# SKIPPED: dist/images/test-image.sh did not run: $1" >&2
    echo "# To run it (as root): apt-get install -y podman buildah debootstrap runc &&" >&2
    echo "#   dist/images/build-offline.sh && dist/images/test-image.sh" >&2
    echo "################################################################" >&2
    exit 77
}
command -v podman > /dev/null || skip "podman is not installed"
[[ $(id -u) == 0 ]] || skip "it must run as root"
podman image exists "$IMAGE" || skip "the image $IMAGE does not exist"

prefix="kovn-test-$$"
tmp=$(mktemp -d /var/tmp/kovn-test.XXXXXX)
failures=0
started=$(date +%s.%N)

cleanup() {
    local ids
    # Containers sharing another's network go first, so a few rounds remove them all.
    for _ in 1 2 3; do
        ids=$(podman ps -a --filter "name=^$prefix-" --format '{{.ID}}')
        [[ -n "$ids" ]] || break
        # shellcheck disable=SC2086
        podman rm -f -t 0 $ids > /dev/null 2>&1 || true
    done
    if [[ -n "$ids" ]]; then
        echo "could not remove containers $prefix-*" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

pass() { echo "ok   $1"; }
fail() {
    echo "FAIL $1" >&2
    failures=$((failures + 1))
}
section() { echo "== $1 ($(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'))"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s until it succeeds;
# false (and the last output shown) when SECONDS pass first.
wait_for() {
    local deadline=$(($(date +%s) + $1)) what=$2 out
    shift 2
    while true; do
        if out=$("$@" 2>&1); then
            return 0
        fi
        if (($(date +%s) >= deadline)); then
            echo "timed out after waiting for: $what; last output:" >&2
            printf '%s\n' "$out" | tail -n 15 >&2
            return 1
        fi
        sleep 0.2
    done
}

# logs NAME: the last lines of a container's output, for a failure's context.
logs() { podman logs --tail 30 "$prefix-$1" 2>&1 | sed "s/^/    [$1] /" >&2 || true; }

run() { podman run --rm "$@"; }

# ---------------------------------------------------------------------------------------
section "contents"
entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$IMAGE")
if [[ "$entrypoint" == '["/usr/bin/dumb-init","--"]' ]]; then
    pass "entrypoint is dumb-init"
else
    fail "entrypoint is $entrypoint"
fi
paths=(
    /kube-ovn/start-controller.sh /kube-ovn/start-ic-controller.sh /kube-ovn/start-cniserver.sh
    /kube-ovn/install-cni.sh
    /kube-ovn/start-db.sh /kube-ovn/start-ic-db.sh /kube-ovn/start-ovs.sh /kube-ovn/ovn-healthcheck.sh /kube-ovn/ovn-ic-healthcheck.sh
    /kube-ovn/ovs-healthcheck.sh /kube-ovn/kube-ovn /kube-ovn/kube-ovn-controller
    /kube-ovn/kube-ovn-daemon /kube-ovn/kube-ovn-lb-svc /kube-ovn/kube-ovn-vpc-nat-gw /kube-ovn/kube-ovn-ic-controller /kube-ovn/kubectl-ko /loopback /portmap /macvlan /ipvlan /usr/bin/dumb-init
    /kube-ovn/kube-ovn-pinger /kube-ovn/kube-ovn-leader-checker /kube-ovn/env-check.sh
    /usr/share/ovn/scripts/ovn-ctl /usr/share/openvswitch/scripts/ovs-ctl
    /usr/bin/ovs-vsctl /usr/bin/ovs-appctl /usr/bin/ovsdb-client /usr/sbin/ovsdb-server
    /usr/sbin/ovs-vswitchd /usr/bin/ovn-nbctl /usr/bin/ovn-sbctl /usr/bin/ovn-appctl
    /usr/bin/ovn-northd /usr/bin/ovn-controller /usr/bin/ovn-ic /usr/sbin/iptables
    /usr/sbin/nft /usr/sbin/ipset /usr/sbin/conntrack /usr/bin/ip /usr/bin/tcpdump /usr/bin/nsenter
)
while read -r name; do
    [[ -n "$name" && "$name" != \#* ]] && paths+=("/kube-ovn/$name")
done < "$repo/dist/images/missing-components"
missing=$(run "$IMAGE" bash -c 'for p in "$@"; do [[ -x "$p" ]] || echo "$p"; done;
    [[ -f /kube-ovn/01-kube-ovn.conflist ]] || echo /kube-ovn/01-kube-ovn.conflist' _ "${paths[@]}")
if [[ -z "$missing" ]]; then
    pass "${#paths[@]} entrypoints and binaries at upstream's paths, and the conflist"
else
    fail "missing or not executable: $(tr '\n' ' ' <<< "$missing")"
fi
toolchain=$(run "$IMAGE" bash -c 'for t in cargo rustc cc gcc ld; do command -v "$t" || true; done')
if [[ -z "$toolchain" ]]; then pass "no toolchain in the image"; else fail "toolchain in the image: $toolchain"; fi
# The binaries carry upstream's file capabilities, so (as in upstream's charts) a container
# must grant them: the daemon's include CAP_SYS_ADMIN, which podman does not grant by default.
for bin in kube-ovn-controller kube-ovn-daemon kube-ovn-lb-svc kube-ovn-vpc-nat-gw kube-ovn-pinger kube-ovn-leader-checker kube-ovn-ic-controller; do
    if out=$(run --cap-add NET_ADMIN,NET_RAW,NET_BIND_SERVICE,SYS_ADMIN "$IMAGE" "/kube-ovn/$bin" --version 2>&1) && [[ "$out" == *"$bin"* ]]; then
        pass "$bin --version: $out"
    else
        fail "$bin --version: $out"
    fi
done
if out=$(run -e CNI_COMMAND=VERSION "$IMAGE" /kube-ovn/kube-ovn < /dev/null 2>&1) &&
    jq -e '.supportedVersions | index("0.3.1")' <<< "$out" > /dev/null; then
    pass "CNI plugin answers VERSION with 0.3.1 among its versions"
else
    fail "CNI plugin VERSION: $out"
fi

# ---------------------------------------------------------------------------------------
section "missing components"
bad=$(run "$IMAGE" bash -c 'while read -r n; do
    [[ -z "$n" || "$n" == \#* ]] && continue
    if out=$("/kube-ovn/$n" --some-flag 2>&1); then echo "$n exited 0"; fi
    [[ "$out" == *"$n"*"not implemented"* ]] || echo "$n said: $out"
done < /kube-ovn/missing-components')
if [[ -z "$bad" ]]; then
    pass "every missing component's stub names it and exits non-zero"
else
    fail "missing-component stubs: $bad"
fi
# env-check.sh (what `kubectl ko env-check` runs in kube-ovn-cni): its six sections, exit 0.
if out=$(run "$IMAGE" bash /kube-ovn/env-check.sh 2>&1) && [[ "$out" == *"1) check cni configuration"* && "$out" == *"6) check geneve 6081 connection"* ]]; then
    pass "env-check.sh runs its checks in the image"
else
    fail "env-check.sh: $out"
fi

# start-ic-controller.sh: without an OVN address it says which settings are missing; with
# OVN_DB_IPS it runs kube-ovn-ic-controller with the flags it was given (here a kubeconfig that
# does not exist, which the binary names).
set +e
out=$(run "$IMAGE" /kube-ovn/start-ic-controller.sh 2>&1)
rc=$?
out2=$(run -e OVN_DB_IPS=10.0.0.1 "$IMAGE" /kube-ovn/start-ic-controller.sh --kubeconfig=/no/such/kubeconfig 2>&1)
rc2=$?
set -e
if ((rc != 0)) && [[ "$out" == *OVN_DB_IPS* ]]; then
    pass "start-ic-controller.sh without an OVN address exits $rc: $out"
else
    fail "start-ic-controller.sh without an OVN address: rc=$rc, $out"
fi
if ((rc2 != 0)) && [[ "$out2" == *kube-ovn-ic-controller*/no/such/kubeconfig* ]]; then
    pass "start-ic-controller.sh runs kube-ovn-ic-controller with its flags: $out2"
else
    fail "start-ic-controller.sh with OVN_DB_IPS: rc=$rc2, $out2"
fi

# ---------------------------------------------------------------------------------------
section "install-cni"
mkdir -p "$tmp/cni-bin" "$tmp/net.d" "$tmp/local-bin" "$tmp/ref"
install_cni() {
    run --privileged --network none -e POD_IPS=10.0.0.2,fd00::2 \
        -v "$tmp/cni-bin:/opt/cni/bin" -v "$tmp/net.d:/etc/cni/net.d" -v "$tmp/local-bin:/usr/local/bin" \
        "$IMAGE" /kube-ovn/install-cni.sh --cni-conf-dir=/etc/cni/net.d \
        --cni-conf-file=/kube-ovn/01-kube-ovn.conflist --cni-conf-name=01-kube-ovn.conflist
}
if out=$(install_cni 2>&1) && out2=$(install_cni 2>&1); then
    pass "install-cni.sh with the chart's arguments exits 0, twice"
else
    fail "install-cni.sh: $out ${out2:-}"
fi
run -v "$tmp/ref:/ref" "$IMAGE" cp /kube-ovn/kube-ovn /kube-ovn/01-kube-ovn.conflist /ref/
for plugin in kube-ovn loopback portmap macvlan ipvlan; do
    if [[ -x "$tmp/cni-bin/$plugin" ]]; then pass "host /opt/cni/bin/$plugin"; else fail "no host /opt/cni/bin/$plugin"; fi
done
if cmp -s "$tmp/cni-bin/kube-ovn" "$tmp/ref/kube-ovn"; then
    pass "host /opt/cni/bin/kube-ovn is the image's plugin"
else
    fail "host /opt/cni/bin/kube-ovn differs from the image's"
fi
conf="$tmp/net.d/01-kube-ovn.conflist"
if [[ -f "$conf" ]] && jq -e --slurpfile want "$tmp/ref/01-kube-ovn.conflist" '. == $want[0]' "$conf" > /dev/null &&
    jq -e '.plugins[0].type == "kube-ovn" and .plugins[0].server_socket == "/run/openvswitch/kube-ovn-daemon.sock"' "$conf" > /dev/null; then
    pass "host /etc/cni/net.d/01-kube-ovn.conflist is the image's conflist (mode $(stat -c %a "$conf"))"
else
    fail "host conflist: $(cat "$conf" 2>&1)"
fi
if [[ -x "$tmp/local-bin/kubectl-ko" ]] && "$tmp/local-bin/kubectl-ko" --help | grep -q '^  trace'; then
    pass "host /usr/local/bin/kubectl-ko runs (its help lists trace)"
else
    fail "host kubectl-ko: $("$tmp/local-bin/kubectl-ko" --help 2>&1 | head -n 3)"
fi
if out=$(CNI_COMMAND=VERSION "$tmp/cni-bin/kube-ovn" < /dev/null) && jq -e .cniVersion <<< "$out" > /dev/null; then
    pass "the installed plugin runs on the host"
else
    fail "the installed plugin on the host: $out"
fi

# ---------------------------------------------------------------------------------------
# One network namespace for the OVN roles: an anchor container holds it, so the others
# keep it while they are restarted.
podman run -d --name "$prefix-anchor" --network none "$IMAGE" sleep infinity > /dev/null
net="container:$prefix-anchor"

# central NAME ENV...: an ovn-central container as the chart runs it (`bash
# /kube-ovn/start-db.sh`), its /etc/ovn and /var/log/ovn on host directories.
central() {
    local name=$1
    shift
    mkdir -p "$tmp/$name/etc-ovn" "$tmp/$name/log-ovn"
    podman run -d --name "$prefix-$name" --network "$net" \
        -v "$tmp/$name/etc-ovn:/etc/ovn" -v "$tmp/$name/log-ovn:/var/log/ovn" "$@" \
        "$IMAGE" bash /kube-ovn/start-db.sh > /dev/null
}
x() { podman exec "$prefix-$1" "${@:2}"; }

# check_central NAME WHAT: healthcheck passes, northd turns a new logical switch into a
# Southbound datapath, and the database files are on the host.
check_central() {
    local name=$1 what=$2
    if wait_for 90 "$what healthcheck" x "$name" bash /kube-ovn/ovn-healthcheck.sh; then
        pass "$what: ovn-healthcheck.sh passes"
    else
        fail "$what: ovn-healthcheck.sh"
        logs "$name"
        return 0
    fi
    x "$name" ovn-nbctl ls-add "probe-$name"
    if wait_for 30 "$what northd" bash -c "[[ -n \$(podman exec $prefix-$name ovn-sbctl --bare --columns=_uuid find Datapath_Binding external_ids:name=probe-$name) ]]"; then
        pass "$what: ovn-northd turns an NB logical switch into an SB datapath"
    else
        fail "$what: no SB datapath for the NB switch"
        logs "$name"
    fi
    if [[ -s "$tmp/$name/etc-ovn/ovnnb_db.db" && -s "$tmp/$name/etc-ovn/ovnsb_db.db" ]]; then
        pass "$what: NB and SB database files in the host's /etc/ovn"
    else
        fail "$what: database files: $(ls "$tmp/$name/etc-ovn")"
    fi
}

# check_restart NAME WHAT: a stopped and started container comes back healthy with its data.
check_restart() {
    local name=$1 what=$2 rc
    podman stop -t 30 "$prefix-$name" > /dev/null
    rc=$(podman inspect --format '{{.State.ExitCode}}' "$prefix-$name")
    if [[ "$rc" == 0 ]]; then pass "$what: stops cleanly on SIGTERM"; else fail "$what: exit code $rc on SIGTERM"; logs "$name"; fi
    podman start "$prefix-$name" > /dev/null
    if wait_for 90 "$what healthcheck after restart" x "$name" bash /kube-ovn/ovn-healthcheck.sh &&
        wait_for 30 "$what data after restart" bash -c "podman exec $prefix-$name ovn-nbctl ls-list | grep -q probe-$name"; then
        pass "$what: healthy after a restart, NB data kept"
    else
        fail "$what: after restart"
        logs "$name"
    fi
}

section "start-db.sh standalone (NODE_IPS empty)"
central db -e NODE_IPS= -e POD_IP=127.0.0.1 -e POD_IPS=127.0.0.1
check_central db "standalone ovn-central"
conn=$(x db ovn-nbctl get-connection || true)
if [[ "$conn" == *"ptcp:6641:[::]"* ]]; then pass "standalone NB listens on $conn"; else fail "standalone NB connection: $conn"; fi
opts=$(x db ovn-nbctl get NB_Global . options || true)
if [[ "$opts" == *"use_logical_dp_groups=\"true\""* && "$opts" == *'northd_probe_interval="5000"'* ]]; then
    pass "NB_Global options set: $opts"
else
    fail "NB_Global options: $opts"
fi

section "start-ovs.sh against that ovn-central"
mkdir -p "$tmp/node/etc-ovs" "$tmp/node/run-ovs" "$tmp/node/log-ovs" "$tmp/node/log-ovn"
# The chart mounts the host's /lib/modules for modprobe; hosts with a built-in or already
# loaded openvswitch module may have none.
modules=()
[[ -d /lib/modules ]] && modules=(-v /lib/modules:/lib/modules:ro)
# Without the openvswitch kernel module, the default kernel datapath must fail with the
# reason, and the node runs on OVS's userspace datapath.
datapath=system
tun=()
if ! [[ -d /sys/module/openvswitch ]] && ! modprobe openvswitch 2> /dev/null; then
    datapath=netdev
    tun=(--device /dev/net/tun)
    set +e
    out=$(run --network none --cap-add NET_ADMIN,NET_BIND_SERVICE,SYS_MODULE,SYS_NICE,SYS_ADMIN \
        "${modules[@]}" -e OVN_DB_IPS=127.0.0.1 "$IMAGE" /kube-ovn/start-ovs.sh 2>&1)
    rc=$?
    set -e
    if ((rc != 0)) && [[ "$out" == *"no openvswitch module"* ]]; then
        pass "no openvswitch kernel module: start-ovs.sh exits $rc saying so"
    else
        fail "no openvswitch kernel module: start-ovs.sh rc=$rc: $(tail -n 3 <<< "$out")"
    fi
fi
podman run -d --name "$prefix-ovs" --network "$net" \
    --cap-add NET_ADMIN,NET_BIND_SERVICE,SYS_MODULE,SYS_NICE,SYS_ADMIN \
    -e OVN_DB_IPS=127.0.0.1 -e NODE_NAME=node-a -e POD_IP=127.0.0.1 -e OVS_DATAPATH_TYPE="$datapath" \
    "${modules[@]}" "${tun[@]}" -v "$tmp/node/etc-ovs:/etc/openvswitch" \
    -v "$tmp/node/run-ovs:/run/openvswitch" -v "$tmp/node/log-ovs:/var/log/openvswitch" \
    -v "$tmp/node/log-ovn:/var/log/ovn" "$IMAGE" /kube-ovn/start-ovs.sh > /dev/null
if wait_for 90 "ovs-healthcheck" x ovs bash /kube-ovn/ovs-healthcheck.sh; then
    pass "ovs-ovn: ovs-healthcheck.sh passes"
else
    fail "ovs-ovn: ovs-healthcheck.sh"
    logs ovs
fi
remote=$(x ovs ovs-vsctl get Open_vSwitch . external-ids:ovn-remote external-ids:ovn-encap-type external-ids:hostname 2>&1 | tr '\n' ' ')
if [[ "$remote" == '"tcp:[127.0.0.1]:6642" geneve node-a ' ]]; then
    pass "ovs-ovn: ovn-remote, encap type and hostname from the environment: $remote"
else
    fail "ovs-ovn external-ids: $remote"
fi
# The tunnel endpoint is kube-ovn-daemon's to set (from --iface or the Node's address).
x ovs ovs-vsctl set Open_vSwitch . external-ids:ovn-encap-ip=127.0.0.1
if wait_for 60 "chassis node-a in the SB" bash -c "podman exec $prefix-db ovn-sbctl --bare --columns=hostname list Chassis | grep -qx node-a"; then
    pass "ovs-ovn: ovn-controller's chassis node-a is in ovn-central's Southbound"
else
    fail "ovs-ovn: no chassis node-a in the SB"
    logs ovs
fi
if wait_for 30 "br-int" x ovs ovs-vsctl br-exists br-int; then pass "ovs-ovn: ovn-controller made br-int"; else fail "ovs-ovn: no br-int"; fi
if [[ -S "$tmp/node/run-ovs/db.sock" ]]; then
    pass "ovs-ovn: db.sock in the host's /run/openvswitch (what start-cniserver.sh waits for)"
else
    fail "ovs-ovn: no db.sock in the host's /run/openvswitch"
fi

section "restarts"
check_restart db "standalone ovn-central"
if wait_for 60 "chassis after the central's restart" bash -c "podman exec $prefix-db ovn-sbctl --bare --columns=hostname list Chassis | grep -qx node-a"; then
    pass "ovs-ovn: chassis node-a kept across ovn-central's restart"
else
    fail "ovs-ovn: chassis lost across ovn-central's restart"
fi
system_id=$(x ovs ovs-vsctl get Open_vSwitch . external-ids:system-id)
podman stop -t 30 "$prefix-ovs" > /dev/null
rc=$(podman inspect --format '{{.State.ExitCode}}' "$prefix-ovs")
if [[ "$rc" == 0 ]]; then pass "ovs-ovn: stops cleanly on SIGTERM"; else fail "ovs-ovn: exit code $rc on SIGTERM"; logs ovs; fi
podman start "$prefix-ovs" > /dev/null
if wait_for 90 "ovs-healthcheck after restart" x ovs bash /kube-ovn/ovs-healthcheck.sh &&
    [[ "$(x ovs ovs-vsctl get Open_vSwitch . external-ids:system-id)" == "$system_id" ]]; then
    pass "ovs-ovn: healthy after a restart with the same system-id $system_id"
else
    fail "ovs-ovn: after restart"
    logs ovs
fi
podman rm -f -t 0 "$prefix-ovs" "$prefix-db" > /dev/null

section "start-db.sh standalone as uid 65534 (the charts' runAsUser)"
# The charts run ovn-central as nobody with NET_BIND_SERVICE and SYS_NICE only, after an
# init container chowned the host directories.
mkdir -p "$tmp/nonroot/etc-ovn" "$tmp/nonroot/log-ovn" "$tmp/nonroot/run-ovn"
chown -R 65534:65534 "$tmp/nonroot"
podman run -d --name "$prefix-nonroot" --network "$net" --user 65534:65534 \
    --cap-drop ALL --cap-add NET_BIND_SERVICE,SYS_NICE -e NODE_IPS= \
    -v "$tmp/nonroot/etc-ovn:/etc/ovn" -v "$tmp/nonroot/log-ovn:/var/log/ovn" \
    -v "$tmp/nonroot/run-ovn:/var/run/ovn" "$IMAGE" bash /kube-ovn/start-db.sh > /dev/null
if wait_for 90 "non-root healthcheck" x nonroot bash /kube-ovn/ovn-healthcheck.sh &&
    x nonroot ovn-nbctl ls-add probe-nonroot &&
    wait_for 30 "non-root northd" bash -c "[[ -n \$(podman exec $prefix-nonroot ovn-sbctl --bare --columns=_uuid find Datapath_Binding external_ids:name=probe-nonroot) ]]"; then
    pass "ovn-central as uid 65534: healthy, northd at work"
else
    fail "ovn-central as uid 65534"
    logs nonroot
fi
podman rm -f -t 0 "$prefix-nonroot" > /dev/null

section "start-db.sh raft (NODE_IPS=127.0.0.1, install.sh's default shape)"
central raft -e NODE_IPS=127.0.0.1 -e POD_IP=127.0.0.1 -e POD_IPS=127.0.0.1 -e ENABLE_BIND_LOCAL_IP=true
check_central raft "raft ovn-central"
for db in nb:OVN_Northbound sb:OVN_Southbound; do
    status=$(x raft ovn-appctl -t "/var/run/ovn/ovn${db%%:*}_db.ctl" cluster/status "${db#*:}" 2>&1 || true)
    if grep -q '^Role: leader' <<< "$status" && grep -q 'tcp:\[127.0.0.1\]:664[34]' <<< "$status"; then
        pass "raft ${db#*:}: leader of a one-member cluster on its cluster port"
    else
        fail "raft ${db#*:} cluster/status: $status"
    fi
done
check_restart raft "raft ovn-central"

section "done"
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
