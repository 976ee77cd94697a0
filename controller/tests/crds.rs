//! The generated CRDs against upstream Kube-OVN v1.17's: names, scopes, short
//! names, subresources, printer columns, required fields and server-side
//! defaults, plus the committed bundle and the structural-schema rules.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_ovn_common::crd::{self, structural};
use serde_json::{json, Value};

/// Upstream's served kinds (`pkg/apis/kubeovn/v1/register.go`) with plural,
/// singular, scope and short names as its CRDs declare them.
const UPSTREAM: &[(&str, &str, &str, &str, &[&str])] = &[
    ("BgpConf", "bgp-confs", "bgp-conf", "Cluster", &[]),
    (
        "DNSNameResolver",
        "dnsnameresolvers",
        "dnsnameresolver",
        "Cluster",
        &["dnr"],
    ),
    ("EvpnConf", "evpn-confs", "evpn-conf", "Cluster", &[]),
    ("IP", "ips", "ip", "Cluster", &["ip"]),
    ("IPPool", "ippools", "ippool", "Cluster", &["ippool"]),
    (
        "IptablesDnatRule",
        "iptables-dnat-rules",
        "iptables-dnat-rule",
        "Cluster",
        &["dnat"],
    ),
    (
        "IptablesEIP",
        "iptables-eips",
        "iptables-eip",
        "Cluster",
        &["eip"],
    ),
    (
        "IptablesFIPRule",
        "iptables-fip-rules",
        "iptables-fip-rule",
        "Cluster",
        &["fip"],
    ),
    (
        "IptablesSnatRule",
        "iptables-snat-rules",
        "iptables-snat-rule",
        "Cluster",
        &["snat"],
    ),
    (
        "OvnDnatRule",
        "ovn-dnat-rules",
        "ovn-dnat-rule",
        "Cluster",
        &["odnat"],
    ),
    ("OvnEip", "ovn-eips", "ovn-eip", "Cluster", &["oeip"]),
    ("OvnFip", "ovn-fips", "ovn-fip", "Cluster", &["ofip"]),
    (
        "OvnSnatRule",
        "ovn-snat-rules",
        "ovn-snat-rule",
        "Cluster",
        &["osnat"],
    ),
    (
        "ProviderNetwork",
        "provider-networks",
        "provider-network",
        "Cluster",
        &["pn"],
    ),
    (
        "QoSPolicy",
        "qos-policies",
        "qos-policy",
        "Cluster",
        &["qos"],
    ),
    (
        "RouterLBRule",
        "router-lb-rules",
        "router-lb-rule",
        "Cluster",
        &["rlr"],
    ),
    (
        "SecurityGroup",
        "security-groups",
        "security-group",
        "Cluster",
        &["sg"],
    ),
    ("Subnet", "subnets", "subnet", "Cluster", &["subnet"]),
    (
        "SwitchLBRule",
        "switch-lb-rules",
        "switch-lb-rule",
        "Cluster",
        &["slr"],
    ),
    ("Vip", "vips", "vip", "Cluster", &["vip"]),
    ("Vlan", "vlans", "vlan", "Cluster", &["vlan"]),
    ("Vpc", "vpcs", "vpc", "Cluster", &["vpc"]),
    ("VpcDns", "vpc-dnses", "vpc-dns", "Cluster", &["vpc-dns"]),
    (
        "VpcEgressGateway",
        "vpc-egress-gateways",
        "vpc-egress-gateway",
        "Namespaced",
        &["vpc-egress-gw", "veg"],
    ),
    (
        "VpcNatGateway",
        "vpc-nat-gateways",
        "vpc-nat-gateway",
        "Cluster",
        &["vpc-nat-gw"],
    ),
];

fn by_kind() -> BTreeMap<String, CustomResourceDefinition> {
    crd::all()
        .into_iter()
        .map(|c| (c.spec.names.kind.clone(), c))
        .collect()
}

fn schema(c: &CustomResourceDefinition) -> Value {
    serde_json::to_value(
        c.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn committed_bundle_matches_the_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/crds/kube-ovn-crd.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == crd::bundle_yaml(),
        "{} is out of date with controller/src/crd; regenerate it from the workspace root with:\n    {}",
        crd::BUNDLE_PATH,
        crd::REGENERATE
    );
}

#[test]
fn kinds_names_scopes_and_short_names_match_upstream() {
    let crds = by_kind();
    let ours: Vec<&str> = crds.keys().map(String::as_str).collect();
    let mut upstream: Vec<&str> = UPSTREAM.iter().map(|u| u.0).collect();
    upstream.sort_unstable();
    assert_eq!(ours, upstream, "the set of kinds differs from upstream's");
    for (kind, plural, singular, scope, short) in UPSTREAM {
        let c = &crds[*kind];
        assert_eq!(
            c.metadata.name.as_deref(),
            Some(format!("{plural}.kubeovn.io").as_str())
        );
        assert_eq!(c.spec.group, "kubeovn.io");
        assert_eq!(c.spec.names.plural, *plural);
        assert_eq!(c.spec.names.singular.as_deref(), Some(*singular));
        assert_eq!(
            c.spec.names.list_kind.as_deref(),
            Some(format!("{kind}List").as_str())
        );
        assert_eq!(c.spec.scope, *scope, "{kind} scope");
        assert_eq!(
            c.spec.names.short_names.clone().unwrap_or_default(),
            *short,
            "{kind} short names"
        );
        assert_eq!(c.spec.versions.len(), 1);
        let v = &c.spec.versions[0];
        assert!(
            v.name == "v1" && v.served && v.storage,
            "{kind}: v1 must be served and stored"
        );
    }
}

#[test]
fn subresources_match_upstream() {
    let crds = by_kind();
    let without_status = ["BgpConf", "EvpnConf", "IP", "Vip"];
    for (kind, c) in &crds {
        let sub = c.spec.versions[0].subresources.as_ref();
        let has_status = sub.is_some_and(|s| s.status.is_some());
        assert_eq!(
            has_status,
            !without_status.contains(&kind.as_str()),
            "{kind} status subresource"
        );
        let has_scale = sub.is_some_and(|s| s.scale.is_some());
        assert_eq!(
            has_scale,
            kind == "VpcEgressGateway",
            "{kind} scale subresource"
        );
    }
    let scale = crds["VpcEgressGateway"].spec.versions[0]
        .subresources
        .clone()
        .unwrap()
        .scale
        .unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.labelSelector")
    );
    // Upstream's IP and Vip carry an explicitly empty subresources block.
    for kind in ["IP", "Vip"] {
        let sub = serde_json::to_value(&crds[kind].spec.versions[0].subresources).unwrap();
        assert_eq!(sub, json!({}), "{kind}");
    }
}

#[test]
fn printer_columns_match_upstream() {
    let crds = by_kind();
    let columns = |kind: &str| -> Vec<(String, String, String, i32)> {
        crds[kind].spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.name, c.type_, c.json_path, c.priority.unwrap_or(0)))
            .collect()
    };
    let expect = |cols: &[(&str, &str, &str, i32)]| -> Vec<(String, String, String, i32)> {
        cols.iter()
            .map(|(n, t, p, pr)| (n.to_string(), t.to_string(), p.to_string(), *pr))
            .collect()
    };
    assert_eq!(
        columns("Subnet"),
        expect(&[
            ("Provider", "string", ".spec.provider", 0),
            ("Vpc", "string", ".spec.vpc", 0),
            ("Vlan", "string", ".spec.vlan", 0),
            ("Protocol", "string", ".spec.protocol", 0),
            ("CIDR", "string", ".spec.cidrBlock", 0),
            ("Private", "boolean", ".spec.private", 0),
            ("NAT", "boolean", ".spec.natOutgoing", 0),
            ("Default", "boolean", ".spec.default", 0),
            ("GatewayType", "string", ".spec.gatewayType", 0),
            ("V4Used", "number", ".status.v4usingIPs", 0),
            ("V4Available", "number", ".status.v4availableIPs", 0),
            ("V6Used", "number", ".status.v6usingIPs", 0),
            ("V6Available", "number", ".status.v6availableIPs", 0),
            ("ExcludeIPs", "string", ".spec.excludeIps", 0),
            (
                "U2OInterconnectionIP",
                "string",
                ".status.u2oInterconnectionIP",
                0
            ),
        ])
    );
    assert_eq!(
        columns("Vpc"),
        expect(&[
            ("EnableExternal", "boolean", ".status.enableExternal", 0),
            ("EnableBfd", "boolean", ".status.enableBfd", 0),
            ("Standby", "boolean", ".status.standby", 0),
            ("Subnets", "string", ".status.subnets", 0),
            (
                "ExtraExternalSubnets",
                "string",
                ".status.extraExternalSubnets",
                0
            ),
            ("Namespaces", "string", ".spec.namespaces", 0),
            ("DefaultSubnet", "string", ".status.defaultLogicalSwitch", 0),
            ("Age", "date", ".metadata.creationTimestamp", 0),
        ])
    );
    assert_eq!(
        columns("IP"),
        expect(&[
            ("V4IP", "string", ".spec.v4IpAddress", 0),
            ("V6IP", "string", ".spec.v6IpAddress", 0),
            ("Mac", "string", ".spec.macAddress", 0),
            ("Node", "string", ".spec.nodeName", 0),
            ("Subnet", "string", ".spec.subnet", 0),
        ])
    );
    let veg = columns("VpcEgressGateway");
    assert_eq!(veg.len(), 10);
    assert_eq!(
        veg.iter()
            .filter(|c| c.3 == 1)
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        ["Internal IPs", "External IPs", "Working Nodes"]
    );
    assert!(columns("SecurityGroup").is_empty());
    assert!(columns("BgpConf").is_empty());
}

/// Every `default` in a schema, by path.
fn defaults(schema: &Value, path: &str, out: &mut BTreeMap<String, Value>) {
    let Some(obj) = schema.as_object() else {
        return;
    };
    if let Some(d) = obj.get("default") {
        out.insert(path.to_owned(), d.clone());
    }
    if let Some(Value::Object(props)) = obj.get("properties") {
        for (name, sub) in props {
            defaults(sub, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = obj.get("items") {
        defaults(items, &format!("{path}[]"), out);
    }
}

#[test]
fn server_side_defaults_are_exactly_upstreams() {
    // Upstream sets these through `+kubebuilder:default`; nothing else is
    // defaulted by the API server. In particular a Subnet's `protocol`,
    // `provider` ("ovn"), `vpc`, `gatewayType` ("distributed", default VPC
    // only) and `enableLb` are filled in by the controller's formatSubnet, so
    // the CRD must not default them.
    let bfd = |p: &str| {
        vec![
            (format!("{p}.enabled"), json!(false)),
            (format!("{p}.minRX"), json!(1000)),
            (format!("{p}.minTX"), json!(1000)),
            (format!("{p}.multiplier"), json!(3)),
        ]
    };
    let mut expected: BTreeMap<&str, Vec<(String, Value)>> = BTreeMap::new();
    expected.insert(
        "IPPool",
        vec![(".spec.enableAddressSet".into(), json!(false))],
    );
    expected.insert(
        "IptablesDnatRule",
        vec![(".spec.type".into(), json!("exclusive"))],
    );
    expected.insert(
        "VpcDns",
        vec![(".spec.corefile".into(), json!("vpc-dns-corefile"))],
    );
    expected.insert("Vpc", vec![(".spec.bfdPort.enabled".into(), json!(false))]);
    let mut nat = bfd(".spec.bfd");
    nat.push((".spec.replicas".into(), json!(1)));
    expected.insert("VpcNatGateway", nat);
    let mut veg = bfd(".spec.bfd");
    veg.extend([
        (".spec.replicas".into(), json!(1)),
        (".spec.trafficPolicy".into(), json!("Cluster")),
        (".spec.podAntiAffinity".into(), json!("Required")),
        (".spec.policies[].snat".into(), json!(false)),
        (".status.phase".into(), json!("Pending")),
        (".status.ready".into(), json!(false)),
    ]);
    expected.insert("VpcEgressGateway", veg);

    for (kind, c) in by_kind() {
        let mut found = BTreeMap::new();
        defaults(&schema(&c), "", &mut found);
        let want: BTreeMap<String, Value> = expected
            .get(kind.as_str())
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(found, want, "{kind}: CRD defaults differ from upstream's");
    }
    let subnet = schema(&by_kind()["Subnet"]);
    for field in ["protocol", "provider", "gatewayType", "vpc", "enableLb"] {
        let prop = &subnet["properties"]["spec"]["properties"][field];
        assert!(
            prop.is_object() && prop.get("default").is_none(),
            "subnet {field}"
        );
    }
}

#[test]
fn required_fields_match_upstream() {
    let crds = by_kind();
    let required = |kind: &str, pointer: &str| -> Vec<String> {
        let mut r: Vec<String> = schema(&crds[kind])
            .pointer(pointer)
            .and_then(|v| v.get("required"))
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        r.sort();
        r
    };
    assert_eq!(required("IPPool", "/properties/spec"), ["ips", "subnet"]);
    assert_eq!(required("Vlan", "/properties/spec"), ["provider"]);
    assert_eq!(
        required("ProviderNetwork", "/properties/spec"),
        ["defaultInterface"]
    );
    assert_eq!(
        required("VpcEgressGateway", "/properties/spec"),
        ["externalSubnet"]
    );
    assert_eq!(
        required("VpcEgressGateway", "/properties/status"),
        ["conditions", "phase"]
    );
    assert_eq!(
        required(
            "QoSPolicy",
            "/properties/spec/properties/bandwidthLimitRules/items"
        ),
        ["name"]
    );
    assert_eq!(required("DNSNameResolver", ""), ["spec"]);
    assert_eq!(required("DNSNameResolver", "/properties/spec"), ["name"]);
    // Everything else upstream leaves optional, including the object's spec.
    for kind in [
        "Subnet",
        "Vpc",
        "IP",
        "VpcNatGateway",
        "OvnEip",
        "SecurityGroup",
    ] {
        assert!(required(kind, "").is_empty(), "{kind} root");
        assert!(required(kind, "/properties/spec").is_empty(), "{kind} spec");
    }
}

#[test]
fn every_crd_is_structural() {
    let violations: Vec<String> = crd::all().iter().flat_map(structural::check_crd).collect();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn schemas_carry_no_generator_artifacts() {
    let text = crd::bundle_yaml();
    for artifact in [
        "x-kubeovn-rs-",
        "nullable",
        "$ref",
        "title:",
        "uint32",
        "definitions",
    ] {
        assert!(!text.contains(artifact), "bundle contains {artifact:?}");
    }
}
