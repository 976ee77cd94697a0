#!/bin/bash
# Entrypoint of the ovn-ic-controller role (upstream's ovn-ic-controller Deployment runs it as
# `/kube-ovn/start-ic-controller.sh <flags>`): the NB/SB addresses come from OVN_NB_ADDR /
# OVN_SB_ADDR, else OVN_DB_IPS with KUBE_OVN_NB_PORT/KUBE_OVN_SB_PORT (6641/6642), else the
# ovn-nb/ovn-sb Services' environment; every argument is passed on. kube-ovn-ic-controller
# starts and stops ovn-ic itself (upstream's `ovn-ctl start_ic`), with its pidfile and log
# under OVN_RUNDIR/OVN_LOGDIR (/var/run/ovn, /var/log/ovn).
set -euo pipefail
# shellcheck source=dist/images/kube-ovn-lib.sh
. /kube-ovn/kube-ovn-lib.sh

nb_addr=${OVN_NB_ADDR:-}
if [[ -z "$nb_addr" ]]; then
    nb_addr=$(ovsdb_remotes "${KUBE_OVN_NB_PORT:-6641}" "${OVN_NB_SERVICE_HOST:-}" "${OVN_NB_SERVICE_PORT:-}")
fi
sb_addr=${OVN_SB_ADDR:-}
if [[ -z "$sb_addr" ]]; then
    sb_addr=$(ovsdb_remotes "${KUBE_OVN_SB_PORT:-6642}" "${OVN_SB_SERVICE_HOST:-}" "${OVN_SB_SERVICE_PORT:-}")
fi

cd /kube-ovn
exec ./kube-ovn-ic-controller --ovn-nb-addr="$nb_addr" --ovn-sb-addr="$sb_addr" "$@"
