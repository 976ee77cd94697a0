//! `VpcNatGateway`: a pod (StatefulSet, or Deployment when replicated) that
//! NATs a custom VPC to external networks with iptables. Spec changes roll
//! the pod; only the QoS policy is applied in place.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::go_duration::GoDuration;
use super::omit::is_zero;
use super::schema;

/// How the gateway pod is placed and wired.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "VpcNatGateway",
    plural = "vpc-nat-gateways",
    singular = "vpc-nat-gateway",
    shortname = "vpc-nat-gw",
    status = "VpcNatGatewayStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "An iptables NAT gateway pod serving a custom VPC's EIPs, SNAT, DNAT and FIP rules.",
    printcolumn(name = "Namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(name = "Vpc", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "Subnet", type_ = "string", json_path = ".spec.subnet"),
    printcolumn(name = "IPs", type_ = "string", json_path = ".status.lanIp"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(name = "BFD", type_ = "boolean", json_path = ".spec.bfd.enabled"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcNatGatewaySpec {
    /// Namespace for the workload; empty means the controller's own.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// VPC served; immutable once created.
    pub vpc: String,
    /// VPC subnet the gateway's LAN side sits on; immutable once created.
    pub subnet: String,
    /// External subnets the gateway gets a leg in.
    pub external_subnets: Vec<String>,
    /// LAN address when not replicated; immutable once created.
    pub lan_ip: String,
    /// Instances; more than one switches to a Deployment with anti-affinity.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1), extend("x-kubeovn-rs-default" = 1))]
    pub replicas: i32,
    /// Node selector as `key: value` strings.
    pub selector: Vec<String>,
    /// Tolerations for the gateway pod.
    pub tolerations: Vec<Toleration>,
    /// Affinity for the gateway pod.
    #[schemars(schema_with = "schema::affinity")]
    pub affinity: Affinity,
    /// QoS policy applied to the gateway's external traffic.
    pub qos_policy: String,
    /// BGP speaker sidecar announcing the EIPs.
    pub bgp_speaker: VpcBgpSpeaker,
    /// BFD towards the VPC's BFD port, for replicated gateways.
    pub bfd: VpcNatGatewayBfdConfig,
    /// Subnets whose default route should go through the gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub internal_subnets: Vec<String>,
    /// CIDRs whose default route should go through the gateway.
    #[serde(rename = "internalCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub internal_cidrs: Vec<String>,
    /// Routes installed inside the gateway pod.
    pub routes: Vec<Route>,
    /// Do not allocate a default EIP for the gateway.
    #[serde(rename = "noDefaultEIP")]
    pub no_default_eip: bool,
    /// Annotations for the pod template, read at creation only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The BGP speaker sidecar's settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcBgpSpeaker {
    /// Run the speaker.
    pub enabled: bool,
    /// Local AS number.
    #[schemars(schema_with = "schema::go_uint32")]
    pub asn: u32,
    /// Peer AS number.
    #[schemars(schema_with = "schema::go_uint32")]
    pub remote_asn: u32,
    /// Peer addresses.
    pub neighbors: Vec<String>,
    /// BGP hold time, Go duration syntax.
    pub hold_time: GoDuration,
    /// BGP router id.
    pub router_id: String,
    /// TCP MD5 password for the sessions.
    pub password: String,
    /// Enable graceful restart.
    pub enable_graceful_restart: bool,
    /// Extra speaker command-line arguments.
    pub extra_args: Vec<String>,
}

/// BFD timers for gateway failover.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcNatGatewayBfdConfig {
    /// Run BFD (the VPC's BFD port must be enabled too).
    #[schemars(extend("x-kubeovn-rs-default" = false))]
    pub enabled: bool,
    /// Minimum receive interval, milliseconds.
    #[serde(rename = "minRX", skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 3600000), extend("x-kubeovn-rs-default" = 1000))]
    pub min_rx: i32,
    /// Minimum transmit interval, milliseconds.
    #[serde(rename = "minTX", skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 3600000), extend("x-kubeovn-rs-default" = 1000))]
    pub min_tx: i32,
    /// Missed packets before the session is declared down.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 255), extend("x-kubeovn-rs-default" = 3))]
    pub multiplier: i32,
}

/// What the controller last rolled out, compared against the spec to decide on a restart.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcNatGatewayStatus {
    /// QoS policy applied.
    pub qos_policy: String,
    /// External subnets configured.
    pub external_subnets: Vec<String>,
    /// Node selector configured.
    pub selector: Vec<String>,
    /// Instances running.
    pub replicas: i32,
    /// Whether the gateway is serving.
    pub ready: bool,
    /// LAN address(es), comma-separated when replicated.
    pub lan_ip: String,
    /// Tolerations configured.
    pub tolerations: Vec<Toleration>,
    /// Affinity configured.
    #[schemars(schema_with = "schema::affinity")]
    pub affinity: Affinity,
    /// The workload behind the gateway (always written, as Go does for structs).
    pub workload: VpcNatWorkload,
    /// Internal subnets routed through the gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub internal_subnets: Vec<String>,
    /// Internal CIDRs routed through the gateway.
    #[serde(rename = "internalCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub internal_cidrs: Vec<String>,
}

/// The Deployment or StatefulSet running the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcNatWorkload {
    /// Workload API version, e.g. `apps/v1`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// `Deployment` or `StatefulSet`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Workload name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Nodes running instances.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// A route inside the gateway pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Route {
    /// Destination prefix.
    pub cidr: String,
    /// Next hop.
    #[serde(rename = "nextHopIP")]
    pub next_hop_ip: String,
}
