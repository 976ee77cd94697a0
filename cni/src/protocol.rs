//! The wire types of kube-ovn-daemon's CNI API (`POST /api/v1/add`, `POST /api/v1/del` over
//! HTTP/1.1 on its unix socket), shared by this shim and the daemon so both ends agree by
//! construction. Field names, their order and Go's encoding quirks (`null` for an empty
//! list, `omitempty` members) follow upstream's `pkg/request` struct tags, so either end can
//! talk to the upstream Go counterpart during a mixed upgrade.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Path of the ADD endpoint; the daemon answers 200 with a [`CniResponse`].
pub const ADD_PATH: &str = "/api/v1/add";
/// Path of the DEL endpoint; the daemon answers 204 with no body.
pub const DEL_PATH: &str = "/api/v1/del";
/// Path of the CHECK endpoint (ours; upstream's daemon has none and answers 404); the daemon
/// answers 204 when the NIC is as a [`CheckRequest`] expects it.
pub const CHECK_PATH: &str = "/api/v1/check";
/// Host header value: the socket, not the URL, addresses the daemon, and upstream's client
/// sends this placeholder.
pub const DUMMY_HOST: &str = "dummy";
/// The daemon's socket when the configuration does not say otherwise (upstream's conflist).
pub const DEFAULT_SERVER_SOCKET: &str = "/run/openvswitch/kube-ovn-daemon.sock";

/// A route as kube-ovn passes them around (netconf `routes`, the routes pod annotation, the
/// daemon's answer): an empty `dst` means the default route of `gw`'s family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination CIDR; empty for a default route.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "go_null"
    )]
    pub dst: String,
    /// Next hop; empty for an on-link route.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "go_null"
    )]
    pub gw: String,
}

/// DNS settings in CNI's shape (`types.DNS`), which both the netconf and the daemon API use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Resolver addresses in priority order.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "go_null"
    )]
    pub nameservers: Vec<String>,
    /// Local domain for short names.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "go_null"
    )]
    pub domain: String,
    /// Search domains in priority order.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "go_null"
    )]
    pub search: Vec<String>,
    /// Resolver options such as `ndots:5`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "go_null"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set, in which case results leave `dns` out as libcni does.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// One address the daemon configured, one per family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `IPv4` or `IPv6`, kube-ovn's protocol names.
    #[serde(default, deserialize_with = "go_null")]
    pub protocol: String,
    /// The address without prefix.
    #[serde(default, deserialize_with = "go_null")]
    pub ip: String,
    /// The subnet's CIDR, whose prefix length the address gets.
    #[serde(default, deserialize_with = "go_null")]
    pub cidr: String,
    /// The subnet gateway when this NIC carries the default route, else empty.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "go_null"
    )]
    pub gateway: String,
}

/// The body of both endpoints. Every member is always encoded (upstream has no `omitempty`
/// here) and missing members decode as empty, as Go's decoder does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniRequest {
    /// The netconf `type`: `kube-ovn`, or the main plugin's type when kube-ovn is its IPAM.
    #[serde(deserialize_with = "go_null")]
    pub cni_type: String,
    /// `K8S_POD_NAME` from `CNI_ARGS`.
    #[serde(deserialize_with = "go_null")]
    pub pod_name: String,
    /// `K8S_POD_NAMESPACE` from `CNI_ARGS`.
    #[serde(deserialize_with = "go_null")]
    pub pod_namespace: String,
    /// `CNI_CONTAINERID`.
    #[serde(deserialize_with = "go_null")]
    pub container_id: String,
    /// `CNI_NETNS`; may be empty on DEL, which the daemon treats as nothing to do.
    #[serde(deserialize_with = "go_null")]
    pub net_ns: String,
    /// `CNI_IFNAME`.
    #[serde(deserialize_with = "go_null")]
    pub if_name: String,
    /// Which subnet provider's annotations describe this NIC (`ovn` for the primary one).
    #[serde(deserialize_with = "go_null")]
    pub provider: String,
    /// Extra routes from the netconf, applied before the pod's annotated ones.
    #[serde(serialize_with = "go_slice", deserialize_with = "go_null")]
    pub routes: Vec<Route>,
    /// The netconf's `dns`.
    #[serde(deserialize_with = "go_null")]
    pub dns: Dns,
    /// Driver to bind an SR-IOV VF to.
    #[serde(deserialize_with = "go_null")]
    pub vf_driver: String,
    /// PCI address of an SR-IOV VF (hardware offload).
    #[serde(rename = "deviceID", deserialize_with = "go_null")]
    pub device_id: String,
    /// DPDK: the emptyDir volume holding the vhost-user socket.
    #[serde(deserialize_with = "go_null")]
    pub vhost_user_socket_volume_name: String,
    /// DPDK: the vhost-user socket's file name.
    #[serde(deserialize_with = "go_null")]
    pub vhost_user_socket_name: String,
    /// DPDK: who consumes the socket (`kubevirt` changes the volume used).
    #[serde(deserialize_with = "go_null")]
    pub vhost_user_socket_consumption: String,
}

/// The ADD answer, and on failure (any status) the carrier of `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniResponse {
    /// Addresses configured on the NIC, IPv4 first.
    #[serde(serialize_with = "go_slice", deserialize_with = "go_null")]
    pub ips: Vec<IpConfig>,
    /// The NIC's MAC; empty when the daemon did not create a NIC (IPAM use).
    #[serde(deserialize_with = "go_null")]
    pub mac_address: String,
    /// Routes installed in the pod; when empty the result gets one default route per
    /// address that has a gateway.
    #[serde(serialize_with = "go_slice", deserialize_with = "go_null")]
    pub routes: Vec<Route>,
    /// The NIC's MTU, 0 when not set.
    #[serde(deserialize_with = "go_null")]
    pub mtu: i64,
    /// The NIC's name inside the pod; empty when no NIC was created.
    #[serde(rename = "nicname", deserialize_with = "go_null")]
    pub nic_name: String,
    /// DNS settings for the result (upstream's daemon never fills them).
    #[serde(deserialize_with = "go_null")]
    pub dns: Dns,
    /// The daemon's error message on a non-success status.
    #[serde(rename = "error", deserialize_with = "go_null")]
    pub error: String,
}

/// The body of CHECK: the request as for ADD and what that ADD's result (the runtime's
/// `prevResult`) says the NIC has, which the daemon compares with the pod and OVS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckRequest {
    /// Pod, container, netns, interface and provider, as ADD sent them.
    pub request: CniRequest,
    /// The interface's MAC; empty when the result has none.
    pub mac: String,
    /// The interface's addresses in CIDR notation (`10.16.0.5/16`).
    pub addresses: Vec<String>,
    /// Routes the result lists; each must be in the pod's main table.
    pub routes: Vec<Route>,
}

/// Go encodes a nil slice as `null`; the upstream daemon and shim send that for "none", so
/// we do too, keeping the bytes identical.
fn go_slice<T: Serialize, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

/// Go's decoder leaves a member at its zero value for `null`; accept that wherever Go would.
pub(crate) fn go_null<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The fixtures below are the exact bytes Go's encoding/json (Go 1.19) produced for
    // structs declared with upstream's JSON tags (kube-ovn pkg/request/cniserver.go, CNI
    // pkg/types.DNS), filled the way upstream's shim and daemon fill them.

    /// Upstream's shim, ADD for the primary NIC with a plain conflist.
    const GO_ADD_REQUEST: &str = r#"{"cni_type":"kube-ovn","pod_name":"web-0","pod_namespace":"default","container_id":"7c1e5b0d2a9f4e3c8b6a1d0f9e8c7b6a5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a","net_ns":"/var/run/netns/cni-1234","if_name":"eth0","provider":"ovn","routes":null,"dns":{},"vf_driver":"","deviceID":"","vhost_user_socket_volume_name":"","vhost_user_socket_name":"","vhost_user_socket_consumption":""}"#;

    /// Every member set.
    const GO_FULL_REQUEST: &str = r#"{"cni_type":"macvlan","pod_name":"vm-1","pod_namespace":"ns1","container_id":"abc","net_ns":"/proc/42/ns/net","if_name":"net1","provider":"attach.ns1.ovn","routes":[{"dst":"10.20.0.0/16","gw":"10.16.0.1"},{"gw":"10.16.0.254"}],"dns":{"nameservers":["10.96.0.10"],"domain":"cluster.local","search":["ns1.svc.cluster.local"],"options":["ndots:5"]},"vf_driver":"vfio-pci","deviceID":"0000:03:00.1","vhost_user_socket_volume_name":"vhostuser-sockets","vhost_user_socket_name":"sock1","vhost_user_socket_consumption":"kubevirt"}"#;

    /// Upstream's daemon, ADD success for a dual-stack primary NIC.
    const GO_DUAL_STACK_RESPONSE: &str = r#"{"ips":[{"protocol":"IPv4","ip":"10.16.0.5","cidr":"10.16.0.0/16","gateway":"10.16.0.1"},{"protocol":"IPv6","ip":"fd00:10:16::5","cidr":"fd00:10:16::/64","gateway":"fd00:10:16::1"}],"mac_address":"00:00:00:5e:11:ab","routes":null,"mtu":1400,"nicname":"eth0","dns":{},"error":""}"#;

    /// Upstream's daemon, ADD success when it only allocated (no NIC, a custom route).
    const GO_IPAM_RESPONSE: &str = r#"{"ips":[{"protocol":"IPv4","ip":"172.18.0.7","cidr":"172.18.0.0/16"}],"mac_address":"","routes":[{"dst":"192.168.0.0/24","gw":"172.18.0.254"}],"mtu":0,"nicname":"","dns":{},"error":""}"#;

    /// Upstream's daemon, any failure: only `error` set.
    const GO_ERROR_RESPONSE: &str = r#"{"ips":null,"mac_address":"","routes":null,"mtu":0,"nicname":"","dns":{},"error":"no address allocated to pod default/web-0 provider ovn, please see kube-ovn-controller logs to find errors"}"#;

    fn round_trip<T>(go: &str) -> T
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        let v: T = serde_json::from_str(go).unwrap();
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            go,
            "re-encoding differs from Go"
        );
        v
    }

    #[test]
    fn add_request_is_byte_identical_to_go() {
        let r: CniRequest = round_trip(GO_ADD_REQUEST);
        assert_eq!(r.cni_type, "kube-ovn");
        assert_eq!(r.pod_name, "web-0");
        assert_eq!(r.net_ns, "/var/run/netns/cni-1234");
        assert!(r.routes.is_empty());
        assert!(r.dns.is_empty());
    }

    #[test]
    fn full_request_is_byte_identical_to_go() {
        let r: CniRequest = round_trip(GO_FULL_REQUEST);
        assert_eq!(r.device_id, "0000:03:00.1");
        assert_eq!(r.vhost_user_socket_consumption, "kubevirt");
        assert_eq!(
            r.routes[1],
            Route {
                dst: String::new(),
                gw: "10.16.0.254".into()
            }
        );
        assert_eq!(r.dns.options, ["ndots:5"]);
    }

    #[test]
    fn responses_are_byte_identical_to_go() {
        let ok: CniResponse = round_trip(GO_DUAL_STACK_RESPONSE);
        assert_eq!(ok.ips.len(), 2);
        assert_eq!(ok.ips[1].protocol, "IPv6");
        assert_eq!(ok.mtu, 1400);
        assert_eq!(ok.nic_name, "eth0");
        let ipam: CniResponse = round_trip(GO_IPAM_RESPONSE);
        assert_eq!(ipam.ips[0].gateway, "");
        assert_eq!(ipam.routes[0].gw, "172.18.0.254");
        let err: CniResponse = round_trip(GO_ERROR_RESPONSE);
        assert!(err.ips.is_empty());
        assert!(err.error.starts_with("no address allocated"));
    }

    #[test]
    fn decoding_is_as_lenient_as_go() {
        // Missing members, nulls and unknown members are all fine for Go's decoder.
        let r: CniRequest = serde_json::from_str(
            r#"{"pod_name":"p","routes":null,"dns":null,"vf_driver":null,"future":1}"#,
        )
        .unwrap();
        assert_eq!(r.pod_name, "p");
        assert_eq!(r.cni_type, "");
        assert!(r.routes.is_empty());
        let resp: CniResponse = serde_json::from_str("{}").unwrap();
        assert_eq!(resp, CniResponse::default());
    }
}
