#!/bin/bash
# Entrypoint of the ovs-ovn role (one per node): the node's ovsdb-server and ovs-vswitchd
# (database in /etc/openvswitch, sockets in /run/openvswitch) and ovn-controller, pointed
# at the Southbound database: OVN_SB_ADDR, else OVN_DB_IPS on KUBE_OVN_SB_PORT (6642), else
# the ovn-sb Service's environment.
#
# Also read: NODE_NAME (the chassis hostname), TUNNEL_TYPE (geneve), HW_OFFLOAD (false),
# OVN_REMOTE_PROBE_INTERVAL (ms, 10000), OVN_REMOTE_OPENFLOW_INTERVAL (s, 180).
# ENABLE_SSL=true is refused (not supported by this image yet).
# OVS_DATAPATH_TYPE (a kube-ovn-rs addition; upstream has only the kernel datapath here):
# `system` (default) needs the kernel's openvswitch module and fails with the reason when it
# is missing; `netdev` makes ovn-controller build br-int on OVS's userspace datapath, for
# hosts (like these test machines) whose kernel has no openvswitch module; it needs the
# device /dev/net/tun in the container.
set -euo pipefail
# shellcheck source=dist/images/kube-ovn-lib.sh
. /kube-ovn/kube-ovn-lib.sh
refuse_ssl ovs-ovn

OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
OVN_CTL=/usr/share/ovn/scripts/ovn-ctl
HW_OFFLOAD=${HW_OFFLOAD:-false}
TUNNEL_TYPE=${TUNNEL_TYPE:-geneve}
OVN_REMOTE_PROBE_INTERVAL=${OVN_REMOTE_PROBE_INTERVAL:-10000}
OVN_REMOTE_OPENFLOW_INTERVAL=${OVN_REMOTE_OPENFLOW_INTERVAL:-180}
NODE_NAME=${NODE_NAME:-$(hostname)}
OVS_DATAPATH_TYPE=${OVS_DATAPATH_TYPE:-system}
case "$OVS_DATAPATH_TYPE" in
    system | netdev) ;;
    *)
        echo "ovs-ovn: OVS_DATAPATH_TYPE=$OVS_DATAPATH_TYPE is neither system nor netdev" >&2
        exit 1
        ;;
esac

sb_addr=${OVN_SB_ADDR:-}
if [[ -z "$sb_addr" ]]; then
    sb_addr=$(ovsdb_remotes "${KUBE_OVN_SB_PORT:-6642}" "${OVN_SB_SERVICE_HOST:-}" "${OVN_SB_SERVICE_PORT:-}")
fi

# On stop, ovn-controller exits for a restart (its chassis, ports and flows stay) and OVS
# stops without cleaning its datapath, so pods keep forwarding while the container is away.
stop_node() {
    echo "stopping ovn-controller (for restart) and OVS"
    "$OVN_CTL" --restart stop_controller || true
    "$OVS_CTL" stop || true
}
trap 'stop_node; exit 0' TERM INT

echo "iptables in use: $(iptables -V)"

"$OVS_CTL" restart --no-ovs-vswitchd --system-id=random
if [[ "$HW_OFFLOAD" == "true" ]]; then
    ovs-vsctl --no-wait set Open_vSwitch . other_config:hw-offload=true
else
    ovs-vsctl --no-wait set Open_vSwitch . other_config:hw-offload=false
fi
ovsdb_ctl="/var/run/openvswitch/ovsdb-server.$(cat /var/run/openvswitch/ovsdb-server.pid).ctl"
ovs-appctl -t "$ovsdb_ctl" vlog/set jsonrpc:file:err
ovs-appctl -t "$ovsdb_ctl" vlog/set reconnect:file:err

"$OVS_CTL" restart --no-ovsdb-server --system-id=random --no-mlockall
# ovs-ctl has tried to load the kernel module by now.
if [[ "$OVS_DATAPATH_TYPE" == system && ! -d /sys/module/openvswitch ]]; then
    echo "ovs-ovn: the kernel has no openvswitch module (modprobe failed, or the host's" \
         "/lib/modules is not mounted), so OVS's kernel datapath cannot work; load the module" \
         "or set OVS_DATAPATH_TYPE=netdev for the userspace datapath" >&2
    stop_node
    exit 1
fi
# Let Geneve through the host firewall.
"$OVS_CTL" --protocol=udp --dport=6081 enable-protocol

ovs-vsctl set Open_vSwitch . \
    external-ids:ovn-remote="$sb_addr" \
    external-ids:ovn-remote-probe-interval="$OVN_REMOTE_PROBE_INTERVAL" \
    external-ids:ovn-openflow-probe-interval="$OVN_REMOTE_OPENFLOW_INTERVAL" \
    external-ids:ovn-match-northd-version=true \
    external-ids:ovn-encap-type="$TUNNEL_TYPE" \
    external-ids:hostname="$NODE_NAME"
if [[ "$OVS_DATAPATH_TYPE" == netdev ]]; then
    ovs-vsctl set Open_vSwitch . external-ids:ovn-bridge-datapath-type=netdev
else
    ovs-vsctl remove Open_vSwitch . external-ids ovn-bridge-datapath-type
fi

"$OVN_CTL" restart_controller
chmod 600 /etc/openvswitch/*

echo "ovs-ovn: ovsdb-server, ovs-vswitchd and ovn-controller are running on $NODE_NAME (SB $sb_addr)"
tail -n 0 -F /var/log/ovn/ovn-controller.log /var/log/openvswitch/ovs-vswitchd.log &

# Stay up while the three daemons run; if one dies, say which and fail.
while true; do
    for pidfile in /var/run/openvswitch/ovsdb-server.pid /var/run/openvswitch/ovs-vswitchd.pid \
                   /var/run/ovn/ovn-controller.pid; do
        pid=$(cat "$pidfile" 2>/dev/null || true)
        if [[ -z "$pid" ]] || ! kill -0 "$pid" 2>/dev/null; then
            echo "ovs-ovn: the daemon of $pidfile is no longer running" >&2
            stop_node
            exit 1
        fi
    done
    sleep 5 & wait $!
done
