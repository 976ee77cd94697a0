//! Routing settings referenced by name from `VpcEgressGateway`: `BgpConf`
//! (BGP sessions) and `EvpnConf` (EVPN identifiers). Neither has a status.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::go_duration::GoDuration;
use super::omit::is_false;
use super::schema;

/// BGP session parameters.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "BgpConf",
    plural = "bgp-confs",
    singular = "bgp-conf",
    derive = "PartialEq",
    derive = "Default",
    doc = "BGP settings shared by egress gateways."
)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpConfSpec {
    /// Local AS number.
    #[serde(rename = "localASN")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub local_asn: u32,
    /// Peer AS number.
    #[serde(rename = "peerASN")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub peer_asn: u32,
    /// BGP router id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub router_id: String,
    /// Peer addresses.
    pub neighbours: Vec<String>,
    /// TCP MD5 password.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Hold timer (Go writes it even when zero).
    pub hold_time: GoDuration,
    /// Keepalive timer.
    pub keepalive_time: GoDuration,
    /// Connect-retry timer.
    pub connect_time: GoDuration,
    /// Allow multi-hop eBGP.
    #[serde(skip_serializing_if = "is_false")]
    pub ebgp_multi_hop: bool,
    /// Enable graceful restart.
    #[serde(skip_serializing_if = "is_false")]
    pub graceful_restart: bool,
}

/// EVPN identifiers.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "EvpnConf",
    plural = "evpn-confs",
    singular = "evpn-conf",
    derive = "PartialEq",
    derive = "Default",
    doc = "EVPN settings shared by egress gateways."
)]
#[serde(rename_all = "camelCase", default)]
pub struct EvpnConfSpec {
    /// VXLAN network identifier.
    #[serde(rename = "vni")]
    #[schemars(schema_with = "schema::go_uint32")]
    pub vni: u32,
    /// Route targets imported and exported.
    pub route_targets: Vec<String>,
}
