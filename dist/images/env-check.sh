#!/bin/bash
# The node checks `kubectl ko env-check` runs in each kube-ovn-cni pod (upstream's entrypoint
# name and numbering): settings of the node that are known to break or slow pod traffic. Each
# finding is one line starting with "WARNING:"; the script always exits 0 (it reports, the
# operator decides). Reads /proc and files directly, so it needs no netstat or nmap.
set -u

warn() { echo "WARNING: $*"; }

echo "1) check cni configuration"
conf_dir=/etc/cni/net.d
if [ ! -d "$conf_dir" ]; then
  warn "$conf_dir does not exist; is the kube-ovn-cni pod's install-cni container done?"
else
  for f in "$conf_dir"/*; do
    [ -e "$f" ] || continue
    case "$(basename "$f")" in
      *kube-ovn.conflist) ;;
      *) warn "$f is another CNI configuration; the runtime may pick it instead of kube-ovn's" ;;
    esac
  done
fi

echo "2) check system ipv4 config"
if [ "$(cat /proc/sys/net/ipv4/tcp_mtu_probing 2>/dev/null)" = "0" ]; then
  warn "net.ipv4.tcp_mtu_probing is 0; with an overlay MTU below the path's, set it to 1"
fi
if [ "$(cat /proc/sys/net/ipv4/tcp_tw_recycle 2>/dev/null)" = "1" ]; then
  warn "net.ipv4.tcp_tw_recycle is 1; it drops NodePort connections behind NAT, set it to 0"
fi

echo "3) check checksum value"
# The InCsumErrors columns of /proc/net/snmp (Tcp: and Udp:), what `netstat -s` prints.
csum=$(awk '
  $1 == "Tcp:" || $1 == "Udp:" {
    if (!(($1) in hdr)) { for (i = 2; i <= NF; i++) hdr[$1, $i] = i; hdr[$1] = 1; next }
    if (($1, "InCsumErrors") in hdr) { n = $(hdr[$1, "InCsumErrors"]); if (n > 0) print $1 n }
  }' /proc/net/snmp 2>/dev/null)
if [ -n "$csum" ]; then
  warn "checksum errors counted ($(echo $csum)); if they grow, turn TX checksum offload off on the NIC carrying pod traffic (ethtool -K <nic> tx off)"
fi

echo "4) check dns config"
if grep -qE '^search .*\.com' /etc/resolv.conf 2>/dev/null; then
  warn "/etc/resolv.conf searches a .com domain; pods inherit it and may resolve names outside the cluster first"
fi

echo "5) check firewall config"
for pattern in firewalld security qax safe defence vmsec; do
  for comm in /proc/[0-9]*/comm; do
    name=$(cat "$comm" 2>/dev/null) || continue
    case "$name" in
      *"$pattern"*)
        warn "process '$name' ($(basename "$(dirname "$comm")")) may filter traffic between nodes or pods"
        ;;
    esac
  done
done

echo "6) check geneve 6081 connection"
# A UDP socket bound to 6081 (0x17C1) in /proc/net/udp{,6}: OVS's Geneve port.
if ! awk 'NR > 1 { split($2, a, ":"); if (a[2] == "17C1") found = 1 } END { exit !found }' \
    /proc/net/udp /proc/net/udp6 2>/dev/null; then
  warn "nothing listens on UDP 6081 (Geneve) here; with more than one node, check the ovs-ovn pod"
fi
exit 0
