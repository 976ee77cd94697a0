//! `VpcEgressGateway`: scalable egress gateway pods for a VPC, optionally with
//! BFD, BGP or EVPN. The only namespaced kubeovn.io kind, and the only one with
//! a scale subresource.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::condition::Condition;
use super::omit::{is_false, is_zero};
use super::schema;

/// Traffic policy steering pods to a gateway instance on their own node when there is one.
pub const TRAFFIC_POLICY_LOCAL: &str = "Local";
/// Traffic policy spreading pods over all gateway instances (the default).
pub const TRAFFIC_POLICY_CLUSTER: &str = "Cluster";
/// Anti-affinity forcing instances onto distinct nodes (the default).
pub const POD_ANTI_AFFINITY_REQUIRED: &str = "Required";
/// Anti-affinity allowing instances to share a node.
pub const POD_ANTI_AFFINITY_PREFERRED: &str = "Preferred";
/// Phase before the controller has looked at the gateway.
pub const PHASE_PENDING: &str = "Pending";
/// Phase while the workload and routes are being set up.
pub const PHASE_PROCESSING: &str = "Processing";
/// Phase once everything is in place.
pub const PHASE_COMPLETED: &str = "Completed";

/// The gateway workload and the traffic it carries.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "VpcEgressGateway",
    plural = "vpc-egress-gateways",
    singular = "vpc-egress-gateway",
    shortname = "vpc-egress-gw",
    shortname = "veg",
    namespaced,
    status = "VpcEgressGatewayStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    derive = "PartialEq",
    derive = "Default",
    doc = "Egress gateway pods forwarding a VPC's traffic to an external network.",
    printcolumn(name = "Vpc", type_ = "string", json_path = ".spec.vpc"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "bfd", type_ = "boolean", json_path = ".spec.bfd.enabled"),
    printcolumn(
        name = "External Subnet",
        type_ = "string",
        json_path = ".spec.externalSubnet"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready"),
    printcolumn(
        name = "Internal IPs",
        type_ = "string",
        json_path = ".status.internalIPs",
        priority = 1
    ),
    printcolumn(
        name = "External IPs",
        type_ = "string",
        json_path = ".status.externalIPs",
        priority = 1
    ),
    printcolumn(
        name = "Working Nodes",
        type_ = "string",
        json_path = ".status.workload.nodes",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!has(self.internalIPs) || size(self.internalIPs) == 0 || size(self.internalIPs) >= self.replicas",
        "message": "Size of Internal IPs MUST be equal to or greater than Replicas",
        "fieldPath": ".internalIPs"
    },
    {
        "rule": "!has(self.externalIPs) || size(self.externalIPs) == 0 || size(self.externalIPs) >= self.replicas",
        "message": "Size of External IPs MUST be equal to or greater than Replicas",
        "fieldPath": ".externalIPs"
    },
    {
        "rule": "!(has(self.internalIPs) && size(self.internalIPs) != 0 && has(self.internalIPPool) && size(self.internalIPPool) > 0)",
        "message": "internalIPs and internalIPPool are mutually exclusive",
        "fieldPath": ".internalIPPool"
    },
    {
        "rule": "!(has(self.externalIPs) && size(self.externalIPs) != 0 && has(self.externalIPPool) && size(self.externalIPPool) > 0)",
        "message": "externalIPs and externalIPPool are mutually exclusive",
        "fieldPath": ".externalIPPool"
    },
    {
        "rule": "(has(self.policies) && size(self.policies) != 0) || (has(self.selectors) && size(self.selectors) != 0)",
        "message": "Each VPC Egress Gateway MUST have at least one policy or selector"
    }
]))]
pub struct VpcEgressGatewaySpec {
    /// VPC served; empty means the default VPC.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub vpc: String,
    /// BgpConf to announce routes with.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bgp_conf: String,
    /// EvpnConf to use.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub evpn_conf: String,
    /// Gateway instances.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 10), extend("x-kubeovn-rs-default" = 1))]
    pub replicas: i32,
    /// Prefix of the workload name (`<prefix><name>`); immutable.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(regex(
        pattern = r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*[-\.]?$"
    ))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "This field is immutable."}]))]
    pub prefix: String,
    /// Gateway image; empty means the controller's.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    /// VPC-side subnet; empty means the VPC's default subnet.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub internal_subnet: String,
    /// Subnet the traffic leaves through.
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub external_subnet: String,
    /// Fixed VPC-side addresses, at least one per replica.
    #[serde(rename = "internalIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub internal_ips: Vec<String>,
    /// Fixed external addresses, at least one per replica.
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub external_ips: Vec<String>,
    /// IPPool on the internal subnet to allocate from instead.
    #[serde(rename = "internalIPPool", skip_serializing_if = "String::is_empty")]
    pub internal_ip_pool: String,
    /// IPPool on the external subnet to allocate from instead.
    #[serde(rename = "externalIPPool", skip_serializing_if = "String::is_empty")]
    pub external_ip_pool: String,
    /// Pods whose egress goes through the gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<VpcEgressGatewaySelector>,
    /// `Local` or `Cluster` instance choice.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["Local", "Cluster"], "x-kubeovn-rs-default" = "Cluster"))]
    pub traffic_policy: String,
    /// `Required` or `Preferred` spreading of instances over nodes.
    #[serde(skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["Required", "Preferred"], "x-kubeovn-rs-default" = "Required"))]
    pub pod_anti_affinity: String,
    /// BFD between instances and the VPC's BFD port.
    pub bfd: VpcEgressGatewayBfdConfig,
    /// Sources (CIDRs or subnets) whose egress goes through the gateway.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<VpcEgressGatewayPolicy>,
    /// Nodes the instances may run on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_selector: Vec<VpcEgressGatewayNodeSelector>,
    /// Tolerations for the instances.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Container resources; unset lets the controller choose.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::resource_requirements")]
    pub resources: Option<ResourceRequirements>,
    /// Per-instance bandwidth limits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthLimit>,
    /// Metrics and flow-log sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observability: Option<VpcEgressGatewayObservability>,
}

/// Bandwidth limits in both directions; unset means unlimited.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct BandwidthLimit {
    /// Limit on traffic into the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<BandwidthRate>,
    /// Limit on traffic out of the gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<BandwidthRate>,
}

/// A rate: an integer in Mbit/s, or a string that is either such an integer
/// or a quantity with unit `M`, `Mi`, `G` or `Gi` in bit/s.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum BandwidthRate {
    /// Whole Mbit/s.
    Int(i64),
    /// Text form, kept as written.
    Str(String),
}

impl JsonSchema for BandwidthRate {
    fn schema_name() -> Cow<'static, str> {
        "BandwidthRate".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "pattern": r"^([0-9]+|([0-9]+(\.[0-9]+)?|\.[0-9]+)(M|Mi|G|Gi))$",
            "x-kubernetes-validations": [{
                "rule": "type(self) == int ? self >= 0 && self <= 9223372036854 : true",
                "message": "integer bandwidth must be between 0 and 9223372036854 Mbps"
            }]
        })
    }
}

/// The observability sidecar's settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressGatewayObservability {
    /// Sidecar resources.
    #[schemars(schema_with = "schema::resource_requirements")]
    pub resources: ResourceRequirements,
    /// Interface counters.
    pub interface_metrics: ObservabilityFeature,
    /// Conntrack metrics and flow logs.
    pub conntrack: ConntrackObservability,
    /// Labels and annotations of the generated ServiceMonitor.
    pub service_monitor: ServiceMonitorMeta,
}

/// An on/off collector switch.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ObservabilityFeature {
    /// Run the collector.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
}

/// Conntrack-based observability.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackObservability {
    /// Conntrack metrics.
    pub metrics: ObservabilityFeature,
    /// JSON-lines flow log on stdout.
    pub log: ConntrackLog,
}

/// Flow-log settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackLog {
    /// Write the log.
    #[serde(skip_serializing_if = "is_false")]
    pub enabled: bool,
    /// Flow events logged (`start`, `end`); both when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "events_schema")]
    pub events: Vec<String>,
    /// Records-per-second cap.
    pub rate_limit: ConntrackLogRateLimit,
    /// Which flows are logged.
    pub filters: ConntrackLogFilters,
}

/// Include and exclude rules; exclusion wins.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackLogFilters {
    /// Flows to log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub include: Vec<ConntrackLogFilter>,
    /// Flows never to log.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub exclude: Vec<ConntrackLogFilter>,
}

/// A filter rule; every set field must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackLogFilter {
    /// `ipv4`, `ipv6`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "address_families_schema")]
    pub address_families: Vec<String>,
    /// `tcp`, `udp`, `sctp`, `icmp`, `icmpv6`, `other`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "protocols_schema")]
    pub protocols: Vec<String>,
    /// `snat`, `dnat`, `snat_dnat`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "nat_types_schema")]
    pub nat_types: Vec<String>,
    /// Match on the original tuple.
    pub original: ConntrackTupleFilter,
    /// Match on the translated tuple.
    pub translated: ConntrackTupleFilter,
}

/// Address and port matches on one direction of a flow.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackTupleFilter {
    /// Source prefixes.
    #[serde(rename = "sourceCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub source_cidrs: Vec<String>,
    /// Destination prefixes.
    #[serde(rename = "destinationCIDRs", skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), extend("x-kubernetes-list-type" = "set"))]
    pub destination_cidrs: Vec<String>,
    /// Source port ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub source_ports: Vec<PortRange>,
    /// Destination port ranges.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub destination_ports: Vec<PortRange>,
}

/// An inclusive port range.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.start <= self.end", "message": "start must not be greater than end"}]))]
pub struct PortRange {
    /// First port.
    #[schemars(range(min = 0, max = 65535))]
    pub start: i32,
    /// Last port.
    #[schemars(range(min = 0, max = 65535))]
    pub end: i32,
}

/// Flow-log rate limiting per gateway pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackLogRateLimit {
    /// Sustained records per second.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 100000))]
    pub records_per_second: i32,
    /// Burst size.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: i32,
}

/// Metadata for the per-gateway ServiceMonitor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceMonitorMeta {
    /// Extra labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Pods whose egress goes through the gateway: a namespace and/or pod selector.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressGatewaySelector {
    /// Namespaces selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "namespace_selector_schema")]
    pub namespace_selector: Option<LabelSelector>,
    /// Pods selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pod_selector_schema")]
    pub pod_selector: Option<LabelSelector>,
}

/// BFD timers towards the VPC's BFD port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressGatewayBfdConfig {
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
    #[schemars(range(min = 1, max = 3600000), extend("x-kubeovn-rs-default" = 3))]
    pub multiplier: i32,
}

/// Destinations whose traffic is sent through the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(self.ipBlocks) || has(self.subnets)", "message": "Each policy MUST have at least one ipBlocks or subnets"}]))]
pub struct VpcEgressGatewayPolicy {
    /// Masquerade the traffic behind the gateway's external address.
    #[serde(rename = "snat")]
    #[schemars(extend("x-kubeovn-rs-default" = false))]
    pub snat: bool,
    /// Source CIDRs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub ip_blocks: Vec<String>,
    /// Source subnets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub subnets: Vec<String>,
}

/// A node selector term.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressGatewayNodeSelector {
    /// Required node labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Node label expressions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "node_selector_requirements")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Node field expressions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "node_selector_requirements")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// Progress of the gateway, also feeding the scale subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressGatewayStatus {
    /// Replicas running, for `kubectl scale`.
    #[serde(skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// Selector of the instances, for `kubectl scale`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub label_selector: String,
    /// Serving traffic.
    #[schemars(extend("x-kubeovn-rs-default" = false))]
    pub ready: bool,
    /// `Pending`, `Processing` or `Completed`.
    #[schemars(extend(
        "enum" = ["Pending", "Processing", "Completed"],
        "x-kubeovn-rs-default" = "Pending",
        "x-kubeovn-rs-required" = true
    ))]
    pub phase: String,
    /// VPC-side addresses in use.
    #[serde(rename = "internalIPs", skip_serializing_if = "Vec::is_empty")]
    pub internal_ips: Vec<String>,
    /// External addresses in use.
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// Ready/Error conditions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub conditions: Vec<Condition>,
    /// The Deployment behind the gateway.
    pub workload: VpcEgressWorkload,
}

/// The workload running the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct VpcEgressWorkload {
    /// Workload API version.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Workload kind.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Workload name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Nodes running instances.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

/// A string set limited to `allowed`, at most `allowed.len()` long.
fn enum_set(allowed: &[&str]) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "string", "enum": allowed },
        "maxItems": allowed.len(),
        "x-kubernetes-list-type": "set"
    })
}

fn events_schema(_: &mut SchemaGenerator) -> Schema {
    enum_set(&["start", "end"])
}

fn address_families_schema(_: &mut SchemaGenerator) -> Schema {
    enum_set(&["ipv4", "ipv6"])
}

fn protocols_schema(_: &mut SchemaGenerator) -> Schema {
    enum_set(&["tcp", "udp", "sctp", "icmp", "icmpv6", "other"])
}

fn nat_types_schema(_: &mut SchemaGenerator) -> Schema {
    enum_set(&["snat", "dnat", "snat_dnat"])
}

/// A label selector that must say something, as upstream's CEL rule demands.
fn non_empty_selector(generator: &mut SchemaGenerator, what: &str) -> Schema {
    let mut s = schema::label_selector(generator);
    s.insert(
        "x-kubernetes-validations".into(),
        serde_json::json!([{
            "rule": "has(self.matchLabels) || has(self.matchExpressions)",
            "message": format!("Each {what} selector MUST have at least one matchLabels or matchExpressions")
        }]),
    );
    s
}

fn namespace_selector_schema(generator: &mut SchemaGenerator) -> Schema {
    non_empty_selector(generator, "namespace")
}

fn pod_selector_schema(generator: &mut SchemaGenerator) -> Schema {
    non_empty_selector(generator, "pod")
}

/// `corev1.NodeSelectorRequirement` lists as controller-gen renders them here.
fn node_selector_requirements(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["key", "operator"],
            "properties": {
                "key": { "type": "string" },
                "operator": { "type": "string" },
                "values": {
                    "type": "array",
                    "items": { "type": "string" },
                    "x-kubernetes-list-type": "atomic"
                }
            }
        }
    })
}
