# shellcheck shell=bash
# Shared by the entrypoints of the kube-ovn image (sourced, not run): OVSDB remote lists
# from the environment upstream's charts and install.sh set.

# ovsdb_remotes PORT SERVICE_HOST SERVICE_PORT: the OVSDB remote list a client uses —
# one tcp:/ssl: remote per address of OVN_DB_IPS (comma-separated) on PORT, or, when
# OVN_DB_IPS is empty, the Kubernetes Service address SERVICE_HOST:SERVICE_PORT.
ovsdb_remotes() {
    _port=$1 _svc_host=$2 _svc_port=$3
    _proto=tcp
    if [ "${ENABLE_SSL:-false}" != "false" ]; then
        _proto=ssl
    fi
    _ips=$(printf '%s' "${OVN_DB_IPS:-}" | tr -d '[:space:]')
    if [ -z "$_ips" ]; then
        if [ -z "$_svc_host" ] || [ -z "$_svc_port" ]; then
            echo "neither OVN_DB_IPS nor the OVN database Service's environment is set" >&2
            return 1
        fi
        printf '%s:[%s]:%s\n' "$_proto" "$_svc_host" "$_svc_port"
        return 0
    fi
    _out=
    _old_ifs=$IFS
    IFS=,
    for _ip in $_ips; do
        [ -n "$_ip" ] || continue
        _out="${_out:+$_out,}$_proto:[$_ip]:$_port"
    done
    IFS=$_old_ifs
    printf '%s\n' "$_out"
}

# refuse_ssl ROLE: TLS towards OVN is not wired into this image's OVS/OVN roles yet; fail
# with the reason instead of starting insecure.
refuse_ssl() {
    if [ "${ENABLE_SSL:-false}" != "false" ]; then
        echo "kube-ovn-rs: ENABLE_SSL=${ENABLE_SSL} is not supported by the $1 role of this image yet" >&2
        exit 1
    fi
}

# in_brackets ADDR: IP addresses in brackets as OVSDB remotes write them, names as they are.
in_brackets() {
    if [[ "$1" =~ ^[0-9.]+$ || "$1" == *:* ]]; then
        printf '[%s]' "$1"
    else
        printf '%s' "$1"
    fi
}

# remotes PORT: tcp remotes of every NODE_IPS member (the raft roles) on PORT.
remotes() {
    local out="" ip
    for ip in ${NODE_IPS//,/ }; do
        out="${out:+$out,}tcp:$(in_brackets "$ip"):$1"
    done
    printf '%s' "$out"
}
