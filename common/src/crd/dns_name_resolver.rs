//! `DNSNameResolver`: resolution results for the FQDNs named in admin network
//! policies' domain peers. The shape follows OpenShift's API of the same name,
//! except that upstream Kube-OVN makes it cluster-scoped.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};
use kube::CustomResource;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::omit::is_zero;

/// Valid DNS names, optionally with a single leading `*.` wildcard, always fully qualified.
const DNS_NAME_PATTERN: &str = r"^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.){2,}$";

/// The name to resolve.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubeovn.io",
    version = "v1",
    kind = "DNSNameResolver",
    root = "DnsNameResolver",
    plural = "dnsnameresolvers",
    singular = "dnsnameresolver",
    shortname = "dnr",
    status = "DnsNameResolverStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Addresses a DNS name (or wildcard) currently resolves to, for network policies."
)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsNameResolverSpec {
    /// Fully qualified name or `*.`-wildcard to track; immutable.
    #[schemars(length(max = 254), regex(pattern = DNS_NAME_PATTERN))]
    #[schemars(extend(
        "x-kubeovn-rs-required" = true,
        "x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "spec.name is immutable"}]
    ))]
    pub name: String,
}

/// Resolution results, one entry per matching name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct DnsNameResolverStatus {
    /// Names resolved, keyed by `dnsName`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["dnsName"]))]
    pub resolved_names: Vec<ResolvedName>,
}

/// One resolved name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ResolvedName {
    /// `Degraded` when the last lookup failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "meta_conditions")]
    pub conditions: Vec<MetaCondition>,
    /// The name (a wildcard match yields one entry per concrete name).
    #[schemars(length(max = 254), regex(pattern = DNS_NAME_PATTERN))]
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub dns_name: String,
    /// Addresses with their TTLs, keyed by `ip`.
    #[schemars(extend(
        "x-kubeovn-rs-required" = true,
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["ip"]
    ))]
    pub resolved_addresses: Vec<ResolvedAddress>,
    /// Consecutive failed lookups; the entry is dropped after five once TTLs expire.
    #[serde(skip_serializing_if = "is_zero")]
    pub resolution_failures: i32,
}

/// One address of a resolved name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ResolvedAddress {
    /// The address.
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub ip: String,
    /// Its TTL at the last lookup.
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub ttl_seconds: i32,
    /// When it was last looked up; validity ends at this plus the TTL.
    #[schemars(extend("x-kubeovn-rs-required" = true))]
    pub last_lookup_time: Option<Time>,
}

/// A list of standard `metav1.Condition`s keyed by type, with the API server's usual validation.
fn meta_conditions(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": { "type": "string", "format": "date-time" },
                "message": { "type": "string", "maxLength": 32768 },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "reason": {
                    "type": "string",
                    "maxLength": 1024,
                    "minLength": 1,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "type": {
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                }
            }
        },
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"]
    })
}
