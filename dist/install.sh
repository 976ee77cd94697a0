#!/usr/bin/env bash
# Installs kube-ovn-rs on a fresh cluster with kubectl: the CRDs (dist/crds), then the
# generated manifests of dist/manifests in upstream install.sh's order. Like upstream, the
# nodes labelled node-role.kubernetes.io/control-plane (or the older .../master) get
# kube-ovn/role=master and run ovn-central and kube-ovn-controller; their InternalIPs become
# NODE_IPS/OVN_DB_IPS and their number the replicas.
#
# Environment:
#   IMAGE   image of every kube-ovn container (default: the manifests', localhost/kube-ovn:dev)
#   WAIT    true (default) waits for each rollout like upstream; false only applies
#   KUBECTL kubectl command (default: kubectl)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifests="$here/manifests"
crds="$here/crds/kube-ovn-crd.yaml"
WAIT=${WAIT:-true}
KUBECTL=${KUBECTL:-kubectl}
IMAGE=${IMAGE:-}
default_image="localhost/kube-ovn:dev"
label="node-role.kubernetes.io/control-plane"
deprecated_label="node-role.kubernetes.io/master"

k() { $KUBECTL "$@"; }

echo "[1/4] Label the ovn-central nodes kube-ovn/role=master"
node_label=$label
if [ -z "$(k get no -l"$label" -o name)" ]; then
  node_label=$deprecated_label
  if [ -z "$(k get no -l"$deprecated_label" -o name)" ]; then
    echo "ERROR: no node is labelled $label or $deprecated_label" >&2
    exit 1
  fi
fi
k label no -l"$node_label" kube-ovn/role=master --overwrite
addresses=$(k get no -lkube-ovn/role=master \
  -o jsonpath='{range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}' \
  | sed '/^$/d' | paste -sd, -)
count=$(k get no -lkube-ovn/role=master -o name | wc -l)
echo "OVN databases on: $addresses ($count)"

# One manifest with the image replaced, an environment variable set to the database
# addresses and, for Deployments, the replicas set to the number of ovn-central nodes.
render() {
  local file=$1 env=$2 replicas=${3:-}
  local text
  text=$(sed "s#image: $default_image\$#image: ${IMAGE:-$default_image}#" "$manifests/$file")
  text=$(printf '%s\n' "$text" | k set env --local -f - "$env=$addresses" -o yaml)
  if [ -n "$replicas" ]; then
    text=$(printf '%s\n' "$text" | k patch --local -f - --type merge \
      -p "{\"spec\":{\"replicas\":$replicas}}" -o yaml)
  fi
  printf '%s\n' "$text"
}

plain() {
  sed "s#image: $default_image\$#image: ${IMAGE:-$default_image}#" "$manifests/$1"
}

echo "[2/4] CRDs and service accounts"
k apply -f "$crds"
for f in ovn-ovs-sa.yaml kube-ovn-sa.yaml kube-ovn-cni-sa.yaml kube-ovn-app-sa.yaml; do
  k apply -f "$manifests/$f"
done

echo "[3/4] OVN"
k apply -f "$manifests/ovn-svc.yaml"
render ovn-central.yaml NODE_IPS "$count" | k apply -f -
render ovs-ovn-ds.yaml OVN_DB_IPS | k apply -f -
if [ "$WAIT" = true ]; then
  k rollout status deployment/ovn-central -n kube-system --timeout 300s
  k rollout status daemonset/ovs-ovn -n kube-system --timeout 120s
fi

echo "[4/4] kube-ovn"
plain kube-ovn-config.yaml | k apply -f -
render kube-ovn-controller.yaml OVN_DB_IPS "$count" | k apply -f -
plain kube-ovn-cni-ds.yaml | k apply -f -
if [ "$WAIT" = true ]; then
  k rollout status deployment/kube-ovn-controller -n kube-system --timeout 300s
  k rollout status daemonset/kube-ovn-cni -n kube-system --timeout 300s
fi
# The connectivity prober `kubectl ko diagnose` runs, in the pod network once the CNI is up.
plain kube-ovn-pinger.yaml | k apply -f -
if [ "$WAIT" = true ]; then
  k rollout status daemonset/kube-ovn-pinger -n kube-system --timeout 120s
fi
echo "kube-ovn-rs installed"
