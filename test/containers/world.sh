#!/bin/bash
# Containerized conformance world (as root, with podman and the built image): ovn-central,
# two "nodes" and kube-ovn-controller run as containers of the kube-ovn image, started with
# the commands, arguments and environment upstream's install.sh gives them for its default
# settings (arguments read from common/upstream-flags/invocations.txt); the Kubernetes API
# fixture runs on the host. Each node is a network namespace held by an anchor container
# (its "host network"), shared by its install-cni, ovs-ovn and cni-server containers with
# per-node host directories for /run/openvswitch, /etc/cni/net.d, /opt/cni/bin, ... as the
# DaemonSets mount them. The script plays kubelet: it registers the Nodes, reports them
# Ready once a CNI configuration is installed, and runs pods as network namespaces inside
# the node's cni-server container through the CNI plugin install-cni put on the "host".
#
# Checks: both Nodes Ready and annotated by the controller, the NB topology, both chassis
# in the SB, one pod per node wired by the CNI and pinging the other across the Geneve
# tunnel, a ClusterIP Service answering pod0 from pod1; then each of the controller, a daemon, ovn-central and an ovs-ovn container is
# restarted and the pods must still ping each other, reach the Service and keep their
# addresses and NB ports.
#
#   dist/images/build-offline.sh && cargo build -p kube-ovn-apiserver-fixture && test/containers/world.sh
#
# IMAGE (localhost/kube-ovn:dev), FIXTURE (target/debug/kube-apiserver-fixture); KEEP=1
# leaves the world running for inspection (its names are printed). Exits 77 (SKIPPED,
# said loudly) without podman, root, the image or the fixture.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
IMAGE=${IMAGE:-localhost/kube-ovn:dev}
FIXTURE=${FIXTURE:-$repo/target/debug/kube-apiserver-fixture}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$repo/dist/images/containers.conf}
INVOCATIONS=$repo/common/upstream-flags/invocations.txt

skip() {
    echo "################################################################" >&2
    echo "# SKIPPED: test/containers/world.sh did not run: $1" >&2
    echo "# To run it (as root): apt-get install -y podman buildah debootstrap runc &&" >&2
    echo "#   dist/images/build-offline.sh && cargo build -p kube-ovn-apiserver-fixture &&" >&2
    echo "#   test/containers/world.sh" >&2
    echo "################################################################" >&2
    exit 77
}
command -v podman > /dev/null || skip "podman is not installed"
command -v kubectl > /dev/null || skip "kubectl is not installed"
command -v ethtool > /dev/null || skip "ethtool is not installed"
[[ $(id -u) == 0 ]] || skip "it must run as root"
podman image exists "$IMAGE" || skip "the image $IMAGE does not exist"
[[ -x "$FIXTURE" ]] || skip "the API fixture $FIXTURE is not built"

prefix="kovn-w$$"
tmp=$(mktemp -d /var/tmp/kovn-world.XXXXXX)
fixture_pid=
failures=0
started=$(date +%s.%N)

cleanup() {
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "KEEP=1: containers $prefix-*, network $prefix, fixture pid $fixture_pid, files $tmp"
        return
    fi
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
    podman network rm -f "$prefix" > /dev/null 2>&1 || true
    awk -v t="$tmp/" 'index($2, t) == 1 { print $2 }' /proc/self/mounts | sort -r |
        while read -r m; do umount -l "$m" 2> /dev/null || true; done
    if [[ -n "$fixture_pid" ]]; then
        kill "$fixture_pid" 2> /dev/null || true
        wait "$fixture_pid" 2> /dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=test/containers/lib.sh
. "$repo/test/containers/lib.sh"
k() { kubectl --kubeconfig "$tmp/host.kubeconfig" "$@"; }

# upstream_args SECTION: the arguments install.sh gives a container (after its command),
# one per line, from invocations.txt's [SECTION].
upstream_args() {
    awk -v want="[$1]" '
        /^\[/ { on = index($0, want) == 1; first = 1; next }
        on && /^arg / { if (first) { first = 0; next } sub(/^arg /, ""); print }
    ' "$INVOCATIONS"
}

# ---------------------------------------------------------------------------------------
section "network and ovn-central"
podman network create "$prefix" > /dev/null
subnet=$(podman network inspect "$prefix" --format '{{range .Subnets}}{{.Subnet}}{{end}}')
gateway=$(podman network inspect "$prefix" --format '{{range .Subnets}}{{.Gateway}}{{end}}')
base=${subnet%.*}
central_ip=$base.10
controller_ip=$base.11
nodes=(kube-ovn-worker1 kube-ovn-worker2)
node_ips=("$base.21" "$base.22")
echo "network $prefix: $subnet, gateway $gateway"

# As install.sh runs it: uid 65534 (its hostpath-init container chowns the host
# directories) with NET_BIND_SERVICE and SYS_NICE only.
mkdir -p "$tmp/central/etc-ovn" "$tmp/central/log-ovn" "$tmp/central/run-ovn"
chown -R 65534:65534 "$tmp/central"
podman run -d --name "$prefix-ovn-central" --network "$prefix" --ip "$central_ip" \
    --user 65534:65534 --cap-drop ALL --cap-add NET_BIND_SERVICE,SYS_NICE \
    -e NODE_IPS="$central_ip" -e POD_IP="$central_ip" -e POD_IPS="$central_ip" \
    -e POD_NAME=ovn-central-0 -e POD_NAMESPACE=kube-system -e ENABLE_BIND_LOCAL_IP=true \
    -e DEBUG_WRAPPER= -e PROBE_INTERVAL=180000 -e OVN_NORTHD_PROBE_INTERVAL=5000 \
    -e OVN_LEADER_PROBE_INTERVAL=5 -e OVN_NORTHD_N_THREADS=1 -e ENABLE_COMPACT=false \
    -v "$tmp/central/etc-ovn:/etc/ovn" -v "$tmp/central/log-ovn:/var/log/ovn" \
    -v "$tmp/central/run-ovn:/var/run/ovn" \
    "$IMAGE" bash /kube-ovn/start-db.sh > /dev/null

# ---------------------------------------------------------------------------------------
section "API fixture on the host"
"$FIXTURE" --listen 0.0.0.0:0 --kubeconfig-out "$tmp/fixture.kubeconfig" > "$tmp/fixture.out" 2> "$tmp/fixture.err" &
fixture_pid=$!
wait_for 30 "the fixture's address" grep -q 'listening on' "$tmp/fixture.out"
port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$tmp/fixture.out")
sed "s|server: .*|server: http://127.0.0.1:$port|" "$tmp/fixture.kubeconfig" > "$tmp/host.kubeconfig"
# Containers reach the host through the network's gateway. (In a cluster they would use
# their ServiceAccount; the fixture has no in-cluster endpoint, so KUBECONFIG points here.)
sed "s|server: .*|server: http://$gateway:$port|" "$tmp/fixture.kubeconfig" > "$tmp/kubeconfig"
k apply -f "$repo/dist/crds/kube-ovn-crd.yaml" > /dev/null
pass "fixture on port $port with the kube-ovn CRDs"

# node_status NAME IP READY REASON: what kubelet reports for its Node.
node_status() {
    local now
    now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    k patch node "$1" --subresource=status --type=merge -p "{\"status\": {
        \"addresses\": [{\"type\": \"InternalIP\", \"address\": \"$2\"}, {\"type\": \"Hostname\", \"address\": \"$1\"}],
        \"conditions\": [{\"type\": \"Ready\", \"status\": \"$3\", \"reason\": \"$4\",
            \"lastHeartbeatTime\": \"$now\", \"lastTransitionTime\": \"$now\"}],
        \"nodeInfo\": {\"architecture\": \"amd64\", \"operatingSystem\": \"linux\", \"kubeletVersion\": \"v1.33.0\",
            \"osImage\": \"kube-ovn-rs container world\", \"kernelVersion\": \"$(uname -r)\",
            \"containerRuntimeVersion\": \"podman\", \"kubeProxyVersion\": \"\", \"machineID\": \"$1\",
            \"systemUUID\": \"$1\", \"bootID\": \"$1\"}}}" > /dev/null
}

for i in 0 1; do
    node=${nodes[$i]}
    labels="\"kubernetes.io/hostname\": \"$node\", \"kubernetes.io/os\": \"linux\""
    if ((i == 0)); then
        labels="$labels, \"node-role.kubernetes.io/control-plane\": \"\", \"kube-ovn/role\": \"master\""
    fi
    k create -f - > /dev/null <<EOF
{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "$node", "labels": {$labels}}, "spec": {}}
EOF
    node_status "$node" "${node_ips[$i]}" False NetworkPluginNotReady
done

# ---------------------------------------------------------------------------------------
section "kube-ovn-controller"
mapfile -t controller_args < <(upstream_args "controller install.sh")
# As the charts run it: uid 65534 with NET_BIND_SERVICE and NET_RAW only.
mkdir -p "$tmp/controller/log"
chown 65534:65534 "$tmp/controller/log"
chmod 0644 "$tmp/kubeconfig"
podman run -d --name "$prefix-controller" --network "$prefix" --ip "$controller_ip" \
    --user 65534:65534 --cap-drop ALL --cap-add NET_RAW,NET_BIND_SERVICE \
    -e ENABLE_SSL=false -e KUBE_OVN_TLS_ROTATION_INTERVAL=8760h \
    -e POD_NAME=kube-ovn-controller-0 -e POD_NAMESPACE=kube-system -e NODE_NAME="${nodes[0]}" \
    -e OVN_DB_IPS="$central_ip" -e POD_IP="$controller_ip" -e POD_IPS="$controller_ip" \
    -e ENABLE_BIND_LOCAL_IP=true -e KUBECONFIG=/kubeconfig \
    -v "$tmp/kubeconfig:/kubeconfig:ro" -v "$tmp/controller/log:/var/log/kube-ovn" \
    "$IMAGE" /kube-ovn/start-controller.sh "${controller_args[@]}" > /dev/null

if wait_for 120 "ovn-central healthy" x ovn-central bash /kube-ovn/ovn-healthcheck.sh; then
    pass "ovn-central (raft, NODE_IPS=$central_ip) healthy"
else
    fail "ovn-central"
    logs ovn-central
fi
nbctl() { x ovn-central ovn-nbctl "$@"; }
if wait_for 120 "the controller's NB topology" bash -c "
    podman exec $prefix-ovn-central ovn-nbctl lr-list | grep -qw ovn-cluster &&
    podman exec $prefix-ovn-central ovn-nbctl ls-list | grep -qw ovn-default &&
    podman exec $prefix-ovn-central ovn-nbctl ls-list | grep -qw join"; then
    pass "controller: ovn-cluster, ovn-default and join in the NB"
else
    fail "controller: NB topology"
    logs controller
fi

# ---------------------------------------------------------------------------------------
mapfile -t daemon_args < <(upstream_args "daemon install.sh")
mapfile -t install_cni_args < <(upstream_args "install-cni install.sh")

# start_node I: the anchor (the node's host network), install-cni, ovs-ovn, cni-server.
start_node() {
    local i=$1 node=${nodes[$1]} ip=${node_ips[$1]} d=$tmp/${nodes[$1]}
    mkdir -p "$d"/{etc-ovs,run-ovs,run-ovn,log-ovs,log-ovn,log-kube-ovn,cni-bin,net.d,local-bin,netns}
    # The node's /run/netns, where its pods' namespaces are mounted, is shared between the
    # anchor (which creates them, as a runtime on the host does) and the cni-server
    # container (the chart's host-ns mount), so it is a shared mount point.
    mount --bind "$d/netns" "$d/netns"
    mount --make-rshared "$d/netns"
    podman run -d --name "$prefix-$node" --hostname "$node" --network "$prefix" --ip "$ip" --privileged \
        -v "$d/netns:/run/netns:rshared" -v "$d/cni-bin:/opt/cni/bin" -v "$d/run-ovs:/run/openvswitch" \
        "$IMAGE" sleep infinity > /dev/null
    # The host's end of the node's veth: OVS's userspace datapath reads eth0 with AF_PACKET and
    # forwards frames as they are, so a TCP checksum the host left to offload arrives unfinished
    # at br-phy and is dropped (pings work, connections do not). A NIC would have finished it.
    local idx veth
    idx=$(x "$node" cat /sys/class/net/eth0/iflink)
    veth=$(ip -o link | awk -F': ' -v i="$idx" '$1 == i { sub(/@.*/, "", $2); print $2 }')
    [[ -n "$veth" ]] || fail "$node: no host end of eth0 (ifindex $idx)"
    ethtool -K "$veth" tx off > /dev/null
    local net="container:$prefix-$node"
    podman run --rm --name "$prefix-$node-install-cni" --network "$net" --privileged \
        -e POD_IPS="$ip" -v "$d/cni-bin:/opt/cni/bin" -v "$d/net.d:/etc/cni/net.d" \
        -v "$d/local-bin:/usr/local/bin" \
        "$IMAGE" /kube-ovn/install-cni.sh "${install_cni_args[@]}" > "$d/install-cni.log" 2>&1 ||
        fail "$node: install-cni: $(tail -n 3 "$d/install-cni.log")"
    podman run -d --name "$prefix-$node-ovs" --network "$net" \
        --cap-add NET_ADMIN,NET_BIND_SERVICE,SYS_MODULE,SYS_NICE,SYS_ADMIN --device /dev/net/tun \
        -e ENABLE_SSL=false -e POD_IP="$ip" -e POD_NAME="ovs-ovn-$i" -e POD_NAMESPACE=kube-system \
        -e HW_OFFLOAD=false -e TUNNEL_TYPE=geneve -e NODE_NAME="$node" -e OVN_DB_IPS="$central_ip" \
        -e DEBUG_WRAPPER= -e OVN_REMOTE_PROBE_INTERVAL=10000 -e OVN_REMOTE_OPENFLOW_INTERVAL=180 \
        -e OVS_DATAPATH_TYPE=netdev \
        -v "$d/etc-ovs:/etc/openvswitch" -v "$d/run-ovs:/run/openvswitch" -v "$d/run-ovn:/run/ovn" \
        -v "$d/log-ovs:/var/log/openvswitch" -v "$d/log-ovn:/var/log/ovn" \
        "$IMAGE" /kube-ovn/start-ovs.sh > /dev/null
}

# userspace_uplink I: the node's address onto an OVS bridge br-phy holding eth0 — what OVS's
# userspace datapath needs to tunnel (it only routes through OVS-owned ports). A machine
# with the openvswitch kernel module does not need this.
userspace_uplink() {
    local node=${nodes[$1]} ip=${node_ips[$1]} mac
    mac=$(x "$node-ovs" cat /sys/class/net/eth0/address)
    # eth0 shares its MAC with br-phy, and the kernel would still answer ARP on it for any
    # local address (br-phy's included) and speak IPv6 there: frames with br-phy's own MAC
    # then reach OVS as input from eth0, br-phy learns its MAC on eth0 and drops what arrives
    # for it (seen: a node cut off a few seconds after start). eth0 is only OVS's uplink; keep
    # the kernel quiet on it (the anchor container is privileged; its namespace is the node's).
    x "$node" sysctl -q -w net.ipv4.conf.eth0.arp_ignore=8 net.ipv6.conf.eth0.disable_ipv6=1
    x "$node-ovs" ovs-vsctl --may-exist add-br br-phy -- set Bridge br-phy datapath_type=netdev \
        other_config:hwaddr="\"$mac\"" -- --may-exist add-port br-phy eth0
    wait_for 20 "$node br-phy" x "$node-ovs" ip link show br-phy > /dev/null
    x "$node-ovs" ip addr flush dev eth0
    x "$node-ovs" ip addr replace "$ip/${subnet#*/}" dev br-phy
    x "$node-ovs" ip link set br-phy up
    x "$node-ovs" ip route replace default via "$gateway" dev br-phy
}

start_cniserver() {
    local i=$1 node=${nodes[$1]} ip=${node_ips[$1]} d=$tmp/${nodes[$1]}
    podman run -d --name "$prefix-$node-cni" --network "container:$prefix-$node" --privileged \
        -e ENABLE_SSL=false -e POD_IP="$ip" -e NODE_NAME="$node" -e POD_IPS="$ip" \
        -e POD_NAME="kube-ovn-cni-$i" -e POD_NAMESPACE=kube-system -e ENABLE_BIND_LOCAL_IP=true \
        -e DBUS_SYSTEM_BUS_ADDRESS=unix:path=/host/var/run/dbus/system_bus_socket \
        -e KUBECONFIG=/kubeconfig -v "$tmp/kubeconfig:/kubeconfig:ro" \
        -v "$d/etc-ovs:/etc/openvswitch" -v "$d/run-ovs:/run/openvswitch" -v "$d/run-ovn:/run/ovn" \
        -v "$d/log-ovs:/var/log/openvswitch" -v "$d/log-ovn:/var/log/ovn" \
        -v "$d/log-kube-ovn:/var/log/kube-ovn" -v "$d/cni-bin:/opt/cni/bin" -v "$d/net.d:/etc/cni/net.d" \
        -v "$d/netns:/run/netns:rshared" \
        "$IMAGE" bash /kube-ovn/start-cniserver.sh "${daemon_args[@]}" > /dev/null
}

for i in 0 1; do
    section "node ${nodes[$i]}"
    start_node "$i"
    node=${nodes[$i]}
    if wait_for 90 "$node ovs-healthcheck" x "$node-ovs" bash /kube-ovn/ovs-healthcheck.sh; then
        pass "$node: ovs-ovn healthy"
    else
        fail "$node: ovs-ovn"
        logs "$node-ovs"
    fi
    userspace_uplink "$i"
    start_cniserver "$i"
    # kubelet: Ready once a CNI configuration is in the node's /etc/cni/net.d.
    if [[ -s "$tmp/$node/net.d/01-kube-ovn.conflist" && -x "$tmp/$node/cni-bin/kube-ovn" ]]; then
        node_status "$node" "${node_ips[$i]}" True KubeletReady
        pass "$node: install-cni put the plugin and 01-kube-ovn.conflist on the host; Node Ready"
    else
        fail "$node: no CNI configuration on the host"
    fi
done

section "nodes"
for i in 0 1; do
    node=${nodes[$i]}
    if wait_for 90 "$node annotated by the controller" bash -c \
        "[[ \$(kubectl --kubeconfig $tmp/host.kubeconfig get node $node -o jsonpath='{.metadata.annotations.ovn\.kubernetes\.io/allocated}') == true ]]"; then
        pass "$node: join address allocated by the controller"
    else
        fail "$node: not annotated"
        logs controller
    fi
    if wait_for 90 "$node encap ip" bash -c \
        "[[ \$(podman exec $prefix-$node-ovs ovs-vsctl get Open_vSwitch . external-ids:ovn-encap-ip) == '\"${node_ips[$i]}\"' ]]"; then
        pass "$node: kube-ovn-daemon set ovn-encap-ip ${node_ips[$i]}"
    else
        fail "$node: ovn-encap-ip"
        logs "$node-cni"
    fi
    ready=$(k get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
    if [[ "$ready" == True ]]; then pass "$node: Ready"; else fail "$node: Ready=$ready"; fi
done
# The charts' readiness and liveness probes: HTTP GET /readyz and /livez on the controller's
# port 10660 and each daemon's port 10665, each GET given the charts' timeoutSeconds (5) as
# kubelet gives it: a GET that hangs fails that probe only, the next one opens a new connection.
# (Without a bound one curl once sat 135 s in TCP's SYN retries and outlived the deadline.)
probe_targets=("controller $controller_ip:10660 controller" "${nodes[0]} ${node_ips[0]}:10665 ${nodes[0]}-cni"
    "${nodes[1]} ${node_ips[1]}:10665 ${nodes[1]}-cni")
for target in "${probe_targets[@]}"; do
    read -r who addr ctr <<< "$target"
    for path in readyz livez; do
        if wait_for 60 "$who /$path" curl -fsS --max-time 5 -o /dev/null "http://$addr/$path"; then
            pass "$who: the charts' probe GET http://$addr/$path answers 200"
        else
            fail "$who: GET http://$addr/$path"
            logs "$ctr"
            if [[ $ctr == *-cni ]]; then
                # The path to the node's address: the host's neighbour entry, then br-phy's
                # MAC table (OVS's userspace datapath carries the node's address).
                ip neigh show "${addr%:*}" >&2 || true
                x "${ctr%-cni}-ovs" ovs-appctl fdb/show br-phy >&2 || true
                logs "${ctr%-cni}-ovs"
            fi
        fi
    done
done
if wait_for 60 "both chassis in the SB" bash -c \
    "[[ \$(podman exec $prefix-ovn-central ovn-sbctl --bare --columns=hostname list Chassis | grep -c kube-ovn-worker) == 2 ]]"; then
    pass "both chassis in the SB"
else
    fail "chassis: $(x ovn-central ovn-sbctl --bare --columns=hostname list Chassis | tr '\n' ' ')"
fi

# ---------------------------------------------------------------------------------------
section "pods"
# pod_add NAME I: the Pod on node I, then what a runtime does on the node: a network
# namespace in its /run/netns and CNI ADD through the plugin install-cni put in its
# /opt/cni/bin, which talks to kube-ovn-daemon over /run/openvswitch/kube-ovn-daemon.sock.
pod_add() {
    local name=$1 node=${nodes[$2]} ctr
    ctr=$(printf '%s' "$name" | sha256sum | cut -c1-64)
    k create -f - > /dev/null <<EOF
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "$name", "namespace": "default", "uid": "uid-$name"},
 "spec": {"nodeName": "$node", "containers": [{"name": "c", "image": "none"}]}}
EOF
    wait_for 60 "$name allocated" bash -c \
        "[[ \$(kubectl --kubeconfig $tmp/host.kubeconfig get pod $name -o jsonpath='{.metadata.annotations.ovn\.kubernetes\.io/allocated}') == true ]]" ||
        return 1
    x "$node" ip netns add "$name"
    jq '{cniVersion, name} + .plugins[0]' "$tmp/$node/net.d/01-kube-ovn.conflist" |
        podman exec -i -e CNI_COMMAND=ADD -e CNI_CONTAINERID="$ctr" -e CNI_NETNS="/var/run/netns/$name" \
            -e CNI_IFNAME=eth0 -e CNI_PATH=/opt/cni/bin \
            -e CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$name;K8S_POD_INFRA_CONTAINER_ID=$ctr;K8S_POD_UID=uid-$name" \
            "$prefix-$node" /opt/cni/bin/kube-ovn > "$tmp/$name.cni.json"
}
pod_ip() { k get pod "$1" -o jsonpath='{.metadata.annotations.ovn\.kubernetes\.io/ip_address}'; }
ping_ok() { x "$1" ip netns exec "$2" ping -c 1 -W 1 "$3" > /dev/null; }

for p in 0 1; do
    if pod_add "pod$p" "$p"; then
        pass "pod$p on ${nodes[$p]}: CNI ADD gave $(jq -c '[.ips[].address]' "$tmp/pod$p.cni.json")"
    else
        fail "pod$p: CNI ADD: $(cat "$tmp/pod$p.cni.json" 2> /dev/null)"
        logs "${nodes[$p]}-cni"
    fi
done
ip0=$(pod_ip pod0)
ip1=$(pod_ip pod1)
check_ping() {
    local when=$1 before=$failures
    if wait_for 60 "pod0 -> pod1 $when" ping_ok "${nodes[0]}" pod0 "$ip1" &&
        wait_for 30 "pod1 -> pod0 $when" ping_ok "${nodes[1]}" pod1 "$ip0"; then
        pass "pods on two nodes ping each other ($ip0 <-> $ip1) $when"
    else
        fail "no ping between pod0 $ip0 and pod1 $ip1 $when"
    fi
    if [[ "$(pod_ip pod0) $(pod_ip pod1)" == "$ip0 $ip1" ]]; then
        pass "pods keep their addresses $when"
    else
        fail "pod addresses changed $when: $(pod_ip pod0) $(pod_ip pod1)"
    fi
    ((failures == before))
}
# A ClusterIP Service in front of an HTTP server in pod1, with the EndpointSlice that
# kube-controller-manager would write; pod0 must get an answer through the Service address.
x "${nodes[1]}" ip netns exec pod1 python3 -m http.server 8080 --bind 0.0.0.0 > /dev/null 2>&1 &
k create -f - > /dev/null <<EOF
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
 "spec": {"type": "ClusterIP", "ports": [{"name": "80-8080", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}
EOF
vip=$(k get service web -o jsonpath='{.spec.clusterIP}')
k create -f - > /dev/null <<EOF
{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
 "metadata": {"name": "web-1", "namespace": "default", "labels": {"kubernetes.io/service-name": "web",
   "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
 "addressType": "IPv4",
 "endpoints": [{"addresses": ["$ip1"], "conditions": {"ready": true}, "nodeName": "${nodes[1]}",
   "targetRef": {"kind": "Pod", "namespace": "default", "name": "pod1", "uid": "uid-pod1"}}],
 "ports": [{"name": "80-8080", "port": 8080, "protocol": "TCP"}]}
EOF
service_ok() {
    x "${nodes[0]}" ip netns exec pod0 python3 -c \
        "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://$vip:80/', timeout=2).status != 200)"
}
check_service() {
    if wait_for 60 "Service $vip from pod0 $1" service_ok; then
        pass "pod0 gets pod1's HTTP answer through Service web ($vip:80 -> $ip1:8080) $1"
    else
        fail "no answer from Service web $vip:80 $1"
    fi
}
check_service ""

if ! check_ping ""; then
    echo "$failures check(s) failed; restarts not tried" >&2
    exit 1
fi

# ---------------------------------------------------------------------------------------
section "restarts"
# The pods' NB rows (names, addresses, port security) must come through every restart as
# they were.
nb_ports() {
    x ovn-central ovn-nbctl --bare --columns=name,addresses,port_security list Logical_Switch_Port |
        paste -sd ' ' | tr -s ' ' '\n' | sort
}
ports_before=$(nb_ports)
if grep -qx pod0.default <<< "$ports_before" && grep -qx pod1.default <<< "$ports_before"; then
    pass "the pods' logical switch ports pod0.default and pod1.default are in the NB"
else
    fail "pods' ports missing from the NB: $(tr '\n' ' ' <<< "$ports_before")"
fi
for c in controller "${nodes[0]}-cni" ovn-central "${nodes[1]}-ovs"; do
    podman restart -t 30 "$prefix-$c" > /dev/null
    case "$c" in
        ovn-central) wait_for 120 "ovn-central healthy" x ovn-central bash /kube-ovn/ovn-healthcheck.sh || fail "ovn-central after restart" ;;
        *-ovs)
            wait_for 90 "$c healthy" x "$c" bash /kube-ovn/ovs-healthcheck.sh || fail "$c after restart"
            ;;
    esac
    check_ping "after restarting $c" || true
    check_service "after restarting $c"
    if [[ "$(nb_ports)" == "$ports_before" ]]; then
        pass "NB ports unchanged after restarting $c"
    else
        fail "NB ports changed after restarting $c: $(diff <(echo "$ports_before") <(nb_ports) | tr '\n' ' ')"
    fi
done

section "done"
if ((failures > 0)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
