//! `Vpc`: a tenant logical router. The default one, `ovn-cluster`, is created
//! by the controller itself; custom VPCs carry their own routes and peerings.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::{is_false, is_zero};
use super::schema;

/// Static-route policy matching on the source address.
pub const POLICY_SRC: &str = "policySrc";
/// Static-route policy matching on the destination address (OVN's default).
pub const POLICY_DST: &str = "policyDst";

/// Desired routing of a VPC.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Vpc",
    plural = "vpcs",
    singular = "vpc",
    shortname = "vpc",
    status = "VpcStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Kube-OVN VPC: an OVN logical router isolating a tenant's subnets.",
    printcolumn(
        name = "EnableExternal",
        type_ = "boolean",
        json_path = ".status.enableExternal"
    ),
    printcolumn(name = "EnableBfd", type_ = "boolean", json_path = ".status.enableBfd"),
    printcolumn(name = "Standby", type_ = "boolean", json_path = ".status.standby"),
    printcolumn(name = "Subnets", type_ = "string", json_path = ".status.subnets"),
    printcolumn(
        name = "ExtraExternalSubnets",
        type_ = "string",
        json_path = ".status.extraExternalSubnets"
    ),
    printcolumn(name = "Namespaces", type_ = "string", json_path = ".spec.namespaces"),
    printcolumn(
        name = "DefaultSubnet",
        type_ = "string",
        json_path = ".status.defaultLogicalSwitch"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcSpec {
    /// Subnet pods in the VPC's namespaces land in when they name none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub default_subnet: String,
    /// Namespaces bound to this VPC.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Static routes installed on the router.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub static_routes: Vec<StaticRoute>,
    /// Logical-router policies installed on the router.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_routes: Vec<PolicyRoute>,
    /// Direct router-to-router links to other VPCs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vpc_peerings: Vec<VpcPeering>,
    /// Connect the router to the default external subnet.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_external: bool,
    /// Further provider-network subnets the router connects to; immutable once created.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_external_subnets: Vec<String>,
    /// Use BFD to watch external next hops.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_bfd: bool,
    /// BFD logical router port used by the VPC's external gateways (Go writes `null` when unset).
    pub bfd_port: Option<BfdPort>,
}

/// Where the VPC's BFD logical router port lives.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BfdPort {
    /// Create the BFD port.
    #[schemars(extend("x-kubeovn-rs-default" = false))]
    pub enabled: bool,
    /// Address(es) of the BFD port.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Nodes that may host the port; unset picks at most three.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::label_selector")]
    pub node_selector: Option<LabelSelector>,
}

/// Peering with another VPC over a point-to-point router link.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcPeering {
    /// The VPC at the other end.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_vpc: String,
    /// This router's address on the peering link.
    #[serde(rename = "localConnectIP", skip_serializing_if = "String::is_empty")]
    pub local_connect_ip: String,
}

/// A logical-router static route.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct StaticRoute {
    /// `policySrc` or `policyDst`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub policy: String,
    /// Prefix the route matches.
    pub cidr: String,
    /// Next hop address.
    #[serde(rename = "nextHopIP")]
    pub next_hop_ip: String,
    /// `ecmp` or `ecmp_symmetric_reply` for multi-path routes.
    pub ecmp_mode: String,
    /// BFD session guarding the next hop.
    pub bfd_id: String,
    /// Route table the route belongs to.
    pub route_table: String,
}

/// A logical-router policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyRoute {
    /// Policy priority (0–32767).
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub priority: i64,
    /// OVN match expression.
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    pub match_: String,
    /// `allow`, `drop` or `reroute`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// Next hop, only for `reroute`.
    #[serde(rename = "nextHopIP", skip_serializing_if = "String::is_empty")]
    pub next_hop_ip: String,
}

/// The BFD port as realised.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BfdPortStatus {
    /// Logical router port name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Port address(es).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// Nodes the port is bound to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// What the controller created for the VPC in OVN.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcStatus {
    /// Ready/Validated/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the controller has finished setting the VPC up.
    pub standby: bool,
    /// Whether this is the cluster's default VPC.
    pub default: bool,
    /// The default subnet's logical switch.
    pub default_logical_switch: String,
    /// Name of the OVN logical router.
    pub router: String,
    /// TCP load balancer attached to the VPC's switches.
    #[serde(rename = "tcpLoadBalancer")]
    pub tcp_load_balancer: String,
    /// UDP load balancer.
    #[serde(rename = "udpLoadBalancer")]
    pub udp_load_balancer: String,
    /// SCTP load balancer.
    pub sctp_load_balancer: String,
    /// TCP load balancer for session-affinity services.
    #[serde(rename = "tcpSessionLoadBalancer")]
    pub tcp_session_load_balancer: String,
    /// UDP load balancer for session-affinity services.
    #[serde(rename = "udpSessionLoadBalancer")]
    pub udp_session_load_balancer: String,
    /// SCTP load balancer for session-affinity services.
    pub sctp_session_load_balancer: String,
    /// Subnets attached to the router.
    pub subnets: Vec<String>,
    /// Peerings in place.
    pub vpc_peerings: Vec<String>,
    /// Whether the router is connected externally.
    pub enable_external: bool,
    /// Extra external subnets connected.
    pub extra_external_subnets: Vec<String>,
    /// Whether BFD is active.
    pub enable_bfd: bool,
    /// The BFD port as realised.
    pub bfd_port: BfdPortStatus,
}
