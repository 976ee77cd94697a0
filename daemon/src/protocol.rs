//! The shim ↔ daemon wire format (upstream `pkg/request/cniserver.go`), field for field, so the Go
//! CNI shim and ours can talk to this daemon unchanged.

use serde::{Deserialize, Serialize};

/// A route handed to or returned by the daemon; both fields are omitted when empty, as upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination CIDR; empty for a default route.
    #[serde(rename = "dst", default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// Next hop; empty for an on-link route.
    #[serde(rename = "gw", default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// One address of the pod, per IP family.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `IPv4` or `IPv6`.
    pub protocol: String,
    /// The bare address.
    pub ip: String,
    /// The subnet CIDR the address belongs to.
    pub cidr: String,
    /// Set only for the interface carrying the default route.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
}

/// CNI's DNS section (`types.DNS` of the CNI library), passed through untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// Body of `POST /api/v1/add` and `/api/v1/del`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniRequest {
    /// The netconf `type` (`kube-ovn`, or another CNI using kube-ovn as IPAM).
    pub cni_type: String,
    /// Pod name (`K8S_POD_NAME`).
    pub pod_name: String,
    /// Pod namespace (`K8S_POD_NAMESPACE`).
    pub pod_namespace: String,
    /// `CNI_CONTAINERID`; its first 12 characters name the veth.
    pub container_id: String,
    /// `CNI_NETNS`: path of the pod's network namespace.
    pub net_ns: String,
    /// `CNI_IFNAME`.
    pub if_name: String,
    /// Annotation provider (`ovn` for the default network).
    pub provider: String,
    /// Extra routes from the netconf.
    pub routes: Vec<Route>,
    /// DNS from the netconf.
    pub dns: Dns,
    /// SR-IOV VF driver (unsupported here, accepted).
    pub vf_driver: String,
    /// SR-IOV PCI address (unsupported here, accepted).
    #[serde(rename = "deviceID")]
    pub device_id: String,
    /// DPDK vhost-user volume (unsupported here, accepted).
    pub vhost_user_socket_volume_name: String,
    /// DPDK vhost-user socket (unsupported here, accepted).
    pub vhost_user_socket_name: String,
    /// DPDK vhost-user consumer (unsupported here, accepted).
    pub vhost_user_socket_consumption: String,
}

/// Body of the ADD reply; on errors only `error` is meaningful.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniResponse {
    /// The pod's addresses.
    pub ips: Vec<IpConfig>,
    /// The MAC set on the pod interface (it must match the logical switch port).
    pub mac_address: String,
    /// Routes configured in the pod.
    pub routes: Vec<Route>,
    /// Interface MTU.
    pub mtu: u32,
    /// Name of the pod-side interface.
    #[serde(rename = "nicname")]
    pub nic_name: String,
    /// DNS settings to report.
    pub dns: Dns,
    /// Error text; empty on success.
    #[serde(rename = "error")]
    pub error: String,
}

impl CniResponse {
    /// The reply for a failed request: upstream sends a `CniResponse` whose `error` the shim shows.
    pub fn failure(error: impl Into<String>) -> CniResponse {
        CniResponse {
            error: error.into(),
            ..CniResponse::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uses_upstream_field_names() {
        let body = r#"{"cni_type":"kube-ovn","pod_name":"p","pod_namespace":"ns","container_id":"abc",
            "net_ns":"/var/run/netns/x","if_name":"eth0","provider":"ovn",
            "routes":[{"dst":"10.0.0.0/8","gw":"10.16.0.1"}],"dns":{"nameservers":["10.96.0.10"]},
            "vf_driver":"","deviceID":"0000:01:00.1","vhost_user_socket_volume_name":"v",
            "vhost_user_socket_name":"s","vhost_user_socket_consumption":"c"}"#;
        let r: CniRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.pod_name, "p");
        assert_eq!(r.device_id, "0000:01:00.1");
        assert_eq!(r.routes[0].gateway, "10.16.0.1");
        assert_eq!(r.dns.nameservers, ["10.96.0.10"]);
        assert_eq!(r.vhost_user_socket_consumption, "c");
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["deviceID"], "0000:01:00.1");
        assert_eq!(back["net_ns"], "/var/run/netns/x");
    }

    #[test]
    fn response_uses_upstream_field_names() {
        let resp = CniResponse {
            ips: vec![IpConfig {
                protocol: "IPv4".into(),
                ip: "10.16.0.5".into(),
                cidr: "10.16.0.0/16".into(),
                gateway: "10.16.0.1".into(),
            }],
            mac_address: "00:00:00:aa:bb:cc".into(),
            routes: vec![Route {
                destination: String::new(),
                gateway: "10.16.0.1".into(),
            }],
            mtu: 1400,
            nic_name: "eth0".into(),
            ..CniResponse::default()
        };
        let v = serde_json::to_value(&resp).unwrap();
        assert_eq!(v["nicname"], "eth0");
        assert_eq!(v["mac_address"], "00:00:00:aa:bb:cc");
        assert_eq!(v["ips"][0]["gateway"], "10.16.0.1");
        assert_eq!(v["routes"][0], serde_json::json!({"gw": "10.16.0.1"}));
        assert_eq!(v["error"], "");
        assert_eq!(v["mtu"], 1400);
    }
}
