#!/bin/sh
# Called by the stubs the Dockerfile installs for every name in /kube-ovn/missing-components:
# says which upstream component was started and that kube-ovn-rs does not have it yet, then
# fails, so the pod's log and status show the reason.
name=${1:-unknown}
echo "kube-ovn-rs: '$name' (an upstream Kube-OVN component) is not implemented in this image yet;" \
     "this container cannot do its job. See /kube-ovn/missing-components for the full list." >&2
exit 1
