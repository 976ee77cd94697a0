//! `Subnet`: one OVN logical switch plus its IPAM range; the object most of
//! kube-ovn-controller revolves around.
//!
//! Upstream sets no CRD defaults here. `provider` ("ovn"), `vpc` (the cluster
//! router), `gatewayType` ("distributed", default VPC only), `protocol`
//! (derived from `cidrBlock`) and `enableLb` are filled in by the controller
//! when it formats a subnet, so the API server must leave them empty.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::big_int::BigInt;
use super::condition::Condition;
use super::omit::{is_false, is_zero};
use super::schema;

/// `spec.protocol` of an IPv4-only subnet.
pub const PROTOCOL_IPV4: &str = "IPv4";
/// `spec.protocol` of an IPv6-only subnet.
pub const PROTOCOL_IPV6: &str = "IPv6";
/// `spec.protocol` of a dual-stack subnet.
pub const PROTOCOL_DUAL: &str = "Dual";
/// `spec.protocol` of an underlay subnet without a CIDR that hands out MACs only (external DHCP).
pub const PROTOCOL_MAC: &str = "Mac";
/// Gateway type where every node routes its own pods' egress.
pub const GATEWAY_DISTRIBUTED: &str = "distributed";
/// Gateway type where egress leaves through the selected gateway nodes.
pub const GATEWAY_CENTRALIZED: &str = "centralized";

/// Desired state of a subnet, as users and upstream tooling write it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "Subnet",
    plural = "subnets",
    singular = "subnet",
    shortname = "subnet",
    status = "SubnetStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "A Kube-OVN subnet: an OVN logical switch together with the address range pods on it draw from.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Vpc", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "Vlan", type_ = "string", json_path = ".spec.vlan"),
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(name = "CIDR", type_ = "string", json_path = ".spec.cidrBlock"),
    printcolumn(name = "Private", type_ = "boolean", json_path = ".spec.private"),
    printcolumn(name = "NAT", type_ = "boolean", json_path = ".spec.natOutgoing"),
    printcolumn(name = "Default", type_ = "boolean", json_path = ".spec.default"),
    printcolumn(
        name = "GatewayType",
        type_ = "string",
        json_path = ".spec.gatewayType"
    ),
    printcolumn(name = "V4Used", type_ = "number", json_path = ".status.v4usingIPs"),
    printcolumn(
        name = "V4Available",
        type_ = "number",
        json_path = ".status.v4availableIPs"
    ),
    printcolumn(name = "V6Used", type_ = "number", json_path = ".status.v6usingIPs"),
    printcolumn(
        name = "V6Available",
        type_ = "number",
        json_path = ".status.v6availableIPs"
    ),
    printcolumn(name = "ExcludeIPs", type_ = "string", json_path = ".spec.excludeIps"),
    printcolumn(
        name = "U2OInterconnectionIP",
        type_ = "string",
        json_path = ".status.u2oInterconnectionIP"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct SubnetSpec {
    /// Marks the subnet pods fall back to when their namespace names none.
    pub default: bool,
    /// VPC (logical router) the switch attaches to; immutable once created.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vpc: String,
    /// `IPv4`, `IPv6`, `Dual` or `Mac`; the controller derives it from `cidrBlock`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Namespaces whose pods are placed in this subnet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Comma-separated CIDRs (one per family); immutable once created.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cidr_block: String,
    /// Comma-separated gateway addresses; derived from the CIDR when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Addresses and `a..b` ranges IPAM must never hand out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_ips: Vec<String>,
    /// `ovn`, or `<nad>.<namespace>[.ovn]` for attachment networks.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// `distributed` or `centralized` egress.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway_type: String,
    /// Comma-separated gateway nodes (optionally `node:ip`) for centralized egress.
    pub gateway_node: String,
    /// Label selectors choosing centralized gateway nodes instead of naming them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub gateway_node_selectors: Vec<LabelSelector>,
    /// Masquerade traffic leaving the cluster from this subnet.
    pub nat_outgoing: bool,
    /// Next-hop addresses sending this subnet's egress to an external gateway.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_egress_gateway: String,
    /// Logical-router policy priority used with `externalEgressGateway`.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub policy_routing_priority: u32,
    /// Node routing table used with `externalEgressGateway`.
    #[serde(rename = "policyRoutingTableID", skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub policy_routing_table_id: u32,
    /// MTU given to pod interfaces on this subnet.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub mtu: u32,
    /// Isolate the subnet from all but `allowSubnets`.
    pub private: bool,
    /// CIDRs still reachable when the subnet is private.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_subnets: Vec<String>,
    /// Vlan object making this an underlay subnet.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vlan: String,
    /// Addresses reserved as virtual IPs (OVN virtual ports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<String>,
    /// Let OVN answer for the gateway of an underlay subnet.
    #[serde(skip_serializing_if = "is_false")]
    pub logical_gateway: bool,
    /// Skip the gateway reachability check pods do on start.
    #[serde(skip_serializing_if = "is_false")]
    pub disable_gateway_check: bool,
    /// Keep this subnet out of OVN interconnection.
    #[serde(skip_serializing_if = "is_false")]
    pub disable_inter_connection: bool,
    /// Serve DHCP from OVN on this subnet.
    #[serde(rename = "enableDHCP", skip_serializing_if = "is_false")]
    pub enable_dhcp: bool,
    /// Extra DHCPv4 options, `key=value` comma-separated.
    #[serde(rename = "dhcpV4Options", skip_serializing_if = "String::is_empty")]
    pub dhcp_v4_options: String,
    /// Extra DHCPv6 options, `key=value` comma-separated.
    #[serde(rename = "dhcpV6Options", skip_serializing_if = "String::is_empty")]
    pub dhcp_v6_options: String,
    /// Send IPv6 router advertisements from the gateway port.
    #[serde(rename = "enableIPv6RA", skip_serializing_if = "is_false")]
    pub enable_ipv6_ra: bool,
    /// Router-advertisement settings, `key=value` comma-separated.
    #[serde(rename = "ipv6RAConfigs", skip_serializing_if = "String::is_empty")]
    pub ipv6_ra_configs: String,
    /// ACLs applied to the subnet's logical switch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
    /// Allow east-west traffic inside a private subnet.
    #[serde(rename = "allowEWTraffic", skip_serializing_if = "is_false")]
    pub allow_ew_traffic: bool,
    /// Finer-grained control over which flows `natOutgoing` masquerades.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nat_outgoing_policy_rules: Vec<NatOutgoingPolicyRule>,
    /// Address the underlay-to-overlay interconnection port should use.
    #[serde(
        rename = "u2oInterconnectionIP",
        skip_serializing_if = "String::is_empty"
    )]
    pub u2o_interconnection_ip: String,
    /// Route between this underlay subnet and overlay subnets through OVN.
    #[serde(rename = "u2oInterconnection", skip_serializing_if = "is_false")]
    pub u2o_interconnection: bool,
    /// Tuning of the underlay-to-overlay interconnection (always written, as Go does for structs).
    #[serde(rename = "u2oFeatures")]
    pub u2o_features: U2oFeatures,
    /// Attach the VPC load balancers to this switch; unset means the controller's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_lb: Option<bool>,
    /// Use ECMP across the centralized gateway nodes.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_ecmp: bool,
    /// Enable IGMP/MLD snooping on the switch.
    #[serde(skip_serializing_if = "is_false")]
    pub enable_multicast_snoop: bool,
    /// Allow LoadBalancer services to take addresses from this subnet.
    #[serde(rename = "enableExternalLBAddress", skip_serializing_if = "is_false")]
    pub enable_external_lb_address: bool,
    /// Logical-router route table the subnet's traffic uses.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub route_table: String,
    /// Namespaces, chosen by label, whose pods are placed in this subnet.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::label_selectors")]
    pub namespace_selectors: Vec<LabelSelector>,
    /// Node network used to reach this underlay subnet.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_network: String,
}

/// Knobs of the underlay-to-overlay interconnection.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct U2oFeatures {
    /// Route only overlay CIDRs through the interconnection.
    #[serde(skip_serializing_if = "is_false")]
    pub overlay_only_routing: bool,
}

/// A subnet ACL, written into OVN as-is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Acl {
    /// `from-lport` or `to-lport`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub direction: String,
    /// OVN ACL priority.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "schema::go_int")]
    pub priority: i64,
    /// OVN match expression.
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    pub match_: String,
    /// OVN ACL action (`allow`, `drop`, …).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub action: String,
}

/// Decides, per flow, whether `natOutgoing` applies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NatOutgoingPolicyRule {
    /// Which flows the rule covers.
    #[serde(rename = "match")]
    pub match_: NatOutgoingPolicyMatch,
    /// `nat` or `forward`.
    pub action: String,
}

/// Source and destination address sets a NAT policy rule matches.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NatOutgoingPolicyMatch {
    /// Comma-separated source CIDRs or addresses.
    #[serde(rename = "srcIPs", skip_serializing_if = "String::is_empty")]
    pub src_ips: String,
    /// Comma-separated destination CIDRs or addresses.
    #[serde(rename = "dstIPs", skip_serializing_if = "String::is_empty")]
    pub dst_ips: String,
}

/// A NAT policy rule as applied, with the id its OVN objects are tagged with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct NatOutgoingPolicyRuleStatus {
    /// Identifier linking the rule to its OVN address sets and policies.
    #[serde(rename = "ruleID")]
    pub rule_id: String,
    /// The rule itself.
    #[serde(flatten)]
    pub rule: NatOutgoingPolicyRule,
}

/// What the controller has realised for a subnet; kubectl and kubectl-ko read it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(default)]
pub struct SubnetStatus {
    /// Ready/Validated/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// IPv4 addresses still free.
    #[serde(rename = "v4availableIPs")]
    pub v4_available_ips: BigInt,
    /// Free IPv4 ranges, `a-b,c` form.
    #[serde(rename = "v4availableIPrange")]
    pub v4_available_ip_range: String,
    /// IPv4 addresses in use.
    #[serde(rename = "v4usingIPs")]
    pub v4_using_ips: BigInt,
    /// Used IPv4 ranges.
    #[serde(rename = "v4usingIPrange")]
    pub v4_using_ip_range: String,
    /// IPv6 addresses still free.
    #[serde(rename = "v6availableIPs")]
    pub v6_available_ips: BigInt,
    /// Free IPv6 ranges.
    #[serde(rename = "v6availableIPrange")]
    pub v6_available_ip_range: String,
    /// IPv6 addresses in use.
    #[serde(rename = "v6usingIPs")]
    pub v6_using_ips: BigInt,
    /// Used IPv6 ranges.
    #[serde(rename = "v6usingIPrange")]
    pub v6_using_ip_range: String,
    /// Gateway node currently carrying centralized egress.
    #[serde(rename = "activateGateway")]
    pub activate_gateway: String,
    /// UUID of the OVN DHCP_Options row for IPv4.
    #[serde(rename = "dhcpV4OptionsUUID")]
    pub dhcp_v4_options_uuid: String,
    /// UUID of the OVN DHCP_Options row for IPv6.
    #[serde(rename = "dhcpV6OptionsUUID")]
    pub dhcp_v6_options_uuid: String,
    /// Address the underlay-to-overlay interconnection port got.
    #[serde(rename = "u2oInterconnectionIP")]
    pub u2o_interconnection_ip: String,
    /// MAC of the underlay-to-overlay interconnection port.
    #[serde(rename = "u2oInterconnectionMAC")]
    pub u2o_interconnection_mac: String,
    /// VPC the interconnection port is attached to.
    #[serde(rename = "u2oInterconnectionVPC")]
    pub u2o_interconnection_vpc: String,
    /// NAT policy rules as applied.
    #[serde(rename = "natOutgoingPolicyRules")]
    pub nat_outgoing_policy_rules: Vec<NatOutgoingPolicyRuleStatus>,
    /// Address of the multicast querier.
    #[serde(rename = "mcastQuerierIP")]
    pub mcast_querier_ip: String,
    /// MAC of the multicast querier.
    #[serde(rename = "mcastQuerierMAC")]
    pub mcast_querier_mac: String,
}
