//! The `kubeovn.io/v1` API: every custom resource upstream Kube-OVN serves,
//! with the same names, fields, defaults and printer columns, so a running
//! cluster's objects are read and written unchanged.
//!
//! [`all`] returns the CustomResourceDefinitions in their final form (see
//! [`schema`] for what is adjusted after derivation) and [`bundle_yaml`] renders
//! them as the multi-document file committed at `dist/crds/kube-ovn-crd.yaml`.

// kube's `printcolumn(...)` arguments repeat `type_ = "string"` across
// columns, which this lint mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod big_int;
pub mod condition;
pub mod go_duration;
mod omit;
pub mod schema;
pub mod structural;

pub mod admin_network_policy;
pub mod bgp_evpn;
pub mod cluster_network_policy;
pub mod dns_name_resolver;
pub mod ip;
pub mod ippool;
pub mod iptables_nat;
pub mod lb_rule;
pub mod ovn_nat;
pub mod provider_network;
pub mod qos_policy;
pub mod security_group;
pub mod subnet;
pub mod vip;
pub mod vlan;
pub mod vpc;
pub mod vpc_dns;
pub mod vpc_egress_gateway;
pub mod vpc_nat_gateway;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use kube::core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use kube::CustomResourceExt;
use schemars::generate::SchemaSettings;
use schemars::transform::AddNullable;
use schemars::JsonSchema;

pub use admin_network_policy::{AdminNetworkPolicy, BaselineAdminNetworkPolicy};
pub use bgp_evpn::{BgpConf, EvpnConf};
pub use big_int::BigInt;
pub use cluster_network_policy::ClusterNetworkPolicy;
pub use condition::Condition;
pub use dns_name_resolver::DnsNameResolver;
pub use go_duration::GoDuration;
pub use ip::Ip;
pub use ippool::IpPool;
pub use iptables_nat::{IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule};
pub use lb_rule::{RouterLbRule, SwitchLbRule};
pub use ovn_nat::{OvnDnatRule, OvnEip, OvnFip, OvnSnatRule};
pub use provider_network::ProviderNetwork;
pub use qos_policy::QoSPolicy;
pub use security_group::{SecurityGroup, SecurityGroupRule, SecurityGroupStatus};
pub use subnet::Subnet;
pub use vip::Vip;
pub use vlan::Vlan;
pub use vpc::Vpc;
pub use vpc_dns::VpcDns;
pub use vpc_egress_gateway::VpcEgressGateway;
pub use vpc_nat_gateway::VpcNatGateway;

/// API group of every Kube-OVN custom resource.
pub const GROUP: &str = "kubeovn.io";
/// The only version upstream serves.
pub const VERSION: &str = "v1";

/// Kinds whose CRD has an empty `subresources` (no status subresource) upstream:
/// IP has no status at all, Vip's status is written with a plain update.
const EMPTY_SUBRESOURCES: &[&str] = &["IP", "Vip"];

/// Every CRD, ordered by name as upstream's bundle is.
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![
        crd::<BgpConf>(),
        crd::<DnsNameResolver>(),
        crd::<EvpnConf>(),
        crd::<Ip>(),
        crd::<IpPool>(),
        crd::<IptablesDnatRule>(),
        crd::<IptablesEip>(),
        crd::<IptablesFipRule>(),
        crd::<IptablesSnatRule>(),
        crd::<OvnDnatRule>(),
        crd::<OvnEip>(),
        crd::<OvnFip>(),
        crd::<OvnSnatRule>(),
        crd::<ProviderNetwork>(),
        crd::<QoSPolicy>(),
        crd::<RouterLbRule>(),
        crd::<SecurityGroup>(),
        crd::<Subnet>(),
        crd::<SwitchLbRule>(),
        crd::<Vip>(),
        crd::<Vlan>(),
        crd::<Vpc>(),
        crd::<VpcDns>(),
        crd::<VpcEgressGateway>(),
        crd::<VpcNatGateway>(),
    ];
    crds.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    crds
}

/// The final CRD of one kind: kube's names, printer columns and subresources,
/// with the schema regenerated so the [`schema`] markers survive into [`schema::finalize`]
/// (kube's own `crd()` drops unknown keys when it types the schema).
pub fn crd<K: CustomResourceExt + JsonSchema>() -> CustomResourceDefinition {
    let mut crd = K::crd();
    let kind = crd.spec.names.kind.clone();
    crd.spec.names.list_kind = Some(format!("{kind}List"));
    let generator = SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(AddNullable::default())
        .with_transform(StructuralSchemaRewriter)
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .into_generator();
    let mut root = generator.into_root_schema_for::<K>().to_value();
    schema::finalize(&mut root);
    finish_root(&kind, &mut root);
    let props: JSONSchemaProps =
        serde_json::from_value(root).expect("finalized schema is a JSONSchemaProps");
    for version in &mut crd.spec.versions {
        version.schema = Some(CustomResourceValidation {
            open_api_v3_schema: Some(props.clone()),
        });
        if EMPTY_SUBRESOURCES.contains(&kind.as_str()) {
            version.subresources = Some(CustomResourceSubresources::default());
        }
    }
    crd
}

/// Kinds whose CRD insists on a `spec`; every other kind accepts objects without one.
const SPEC_REQUIRED: &[&str] = &["DNSNameResolver"];

/// The top level as controller-gen writes it: typed `apiVersion`/`kind`/`metadata`
/// and, for most kinds, no required `spec`.
fn finish_root(kind: &str, root: &mut serde_json::Value) {
    let obj = root.as_object_mut().expect("root schema is an object");
    if !SPEC_REQUIRED.contains(&kind) {
        obj.remove("required");
    }
    let props = obj
        .entry("properties")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .expect("properties is an object");
    props.insert(
        "apiVersion".into(),
        serde_json::json!({"type": "string", "description": "Schema version of this object, `kubeovn.io/v1`."}),
    );
    props.insert(
        "kind".into(),
        serde_json::json!({"type": "string", "description": "The object's kind, as registered in this CRD."}),
    );
    props.insert("metadata".into(), serde_json::json!({"type": "object"}));
}

/// Where the generated bundle is committed, relative to the workspace root.
pub const BUNDLE_PATH: &str = "dist/crds/kube-ovn-crd.yaml";
/// The command that rewrites [`BUNDLE_PATH`] from these types.
pub const REGENERATE: &str =
    "cargo run -p kube-ovn-controller --bin kube-ovn-crdgen -- --out dist/crds/kube-ovn-crd.yaml";

/// The CRDs as one multi-document YAML file, the form `kubectl apply -f` takes.
pub fn bundle_yaml() -> String {
    let mut out = format!(
        "# kubeovn.io/v1 CustomResourceDefinitions, generated from controller/src/crd by kube-ovn-crdgen.\n\
         # Do not edit; regenerate with: {REGENERATE}\n"
    );
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd).expect("CRDs serialise to YAML"));
    }
    out
}
