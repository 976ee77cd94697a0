#!/bin/bash
# The install-cni init container of the kube-ovn-cni DaemonSet: turns on forwarding for the
# node's address families (POD_IPS), installs the kube-ovn CNI plugin and the plugins its
# conflist chains (loopback, portmap, macvlan, ipvlan) into the host's /opt/cni/bin, and has
# kube-ovn-daemon write the conflist (`--cni-conf-dir`, `--cni-conf-file`, `--cni-conf-name`
# are passed on as given).
set -euo pipefail

fail() {
    echo "install-cni: $1" >&2
    exit 1
}

# install_file SRC DST: copies next to DST and renames over it, so a runtime executing DST
# never sees a half-written file.
install_file() {
    local tmp="$2.tmp.$$"
    rm -f "$2".tmp.*
    if ! cp -f "$1" "$tmp" || ! chmod 0755 "$tmp" || ! mv -f "$tmp" "$2"; then
        rm -f "$tmp"
        fail "could not install $1 as $2"
    fi
}

POD_IPS=${POD_IPS:-}
for ip in ${POD_IPS//,/ }; do
    if [[ "$ip" == *:* ]]; then
        echo "IPv6 node address $ip: enabling IPv6 forwarding"
        echo 1 > /proc/sys/net/ipv6/conf/all/forwarding
    else
        echo "IPv4 node address $ip: enabling IPv4 forwarding, disabling rp_filter"
        echo 1 > /proc/sys/net/ipv4/ip_forward
        echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter
    fi
done

mkdir -p /opt/cni/bin /usr/local/bin
install_file /kube-ovn/kube-ovn /opt/cni/bin/kube-ovn
for plugin in loopback portmap macvlan ipvlan; do
    install_file "/$plugin" "/opt/cni/bin/$plugin"
done
# The kubectl plugin, as upstream's install-cni puts it on the host (`kubectl ko …`).
install_file /kube-ovn/kubectl-ko /usr/local/bin/kubectl-ko

cd /kube-ovn
./kube-ovn-daemon --install-cni-config "$@" || fail "kube-ovn-daemon could not install the CNI configuration"
