#!/bin/sh
# File capabilities of the kube-ovn binaries, as upstream's image sets them, so the roles
# also run as a non-root user (upstream's charts use uid 65534) with only these capabilities.
set -eu
setcap CAP_NET_RAW,CAP_NET_BIND_SERVICE+eip /kube-ovn/kube-ovn-controller
setcap CAP_NET_ADMIN,CAP_NET_RAW,CAP_NET_BIND_SERVICE,CAP_SYS_ADMIN+eip /kube-ovn/kube-ovn-daemon
setcap CAP_NET_RAW,CAP_NET_BIND_SERVICE+eip /kube-ovn/kube-ovn-pinger
