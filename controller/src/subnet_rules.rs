//! Pure subnet rules: upstream's normalisation of a Subnet spec (`formatSubnet`), its
//! validation, and which subnet a pod gets. No I/O, so every rule is unit-tested.

use std::collections::BTreeMap;

use kube::ResourceExt;
use kube_ovn_common::crd::subnet::SubnetSpec;
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_common::net::{self, first_usable, BlockError, CidrBlock};

/// What the controller needs besides the spec to normalise it.
#[derive(Debug, Clone)]
pub struct Defaults<'a> {
    /// `--cluster-router`.
    pub default_vpc: &'a str,
    /// `--node-switch`.
    pub join: &'a str,
    /// `--enable-lb`.
    pub enable_lb: bool,
}

/// Upstream's `formatSubnet`: canonical CIDRs, gateway defaulting to the first address, the
/// gateway in `excludeIps` (sorted), `protocol`, `provider` `ovn`, `vpc` the default VPC,
/// `gatewayType` `distributed` (default VPC, not join), `enableLb` the flag (not join).
/// Returns the normalised spec; the caller writes it back when it differs.
pub fn normalize(spec: &SubnetSpec, name: &str, d: &Defaults<'_>) -> Result<SubnetSpec, String> {
    let mut s = spec.clone();
    let block = CidrBlock::parse(&s.cidr_block).map_err(|e| match e {
        BlockError::Empty => "cidrBlock is empty".to_string(),
        e => format!("cidrBlock: {e}"),
    })?;
    let cidrs = block.nets();
    s.cidr_block = block.to_string();
    s.protocol = block.protocol().to_string();
    if s.gateway.trim().is_empty() {
        s.gateway = cidrs
            .iter()
            .map(|c| first_usable(c).to_string())
            .collect::<Vec<_>>()
            .join(",");
    } else {
        let gws = net::parse_ips(&s.gateway).map_err(|e| format!("gateway: {e}"))?;
        for gw in &gws {
            if !cidrs.iter().any(|c| c.contains(gw)) {
                return Err(format!("gateway {gw} is not in cidrBlock {}", s.cidr_block));
            }
        }
    }
    for gw in net::entries(&s.gateway) {
        if !s.exclude_ips.iter().any(|e| e == gw) {
            s.exclude_ips.push(gw.to_string());
        }
    }
    s.exclude_ips.sort();
    kube_ovn_ipam::addr::parse_list(&s.exclude_ips).map_err(|e| format!("excludeIps: {e}"))?;
    if s.provider.is_empty() {
        s.provider = "ovn".into();
    }
    if s.vpc.is_empty() {
        s.vpc = d.default_vpc.into();
    }
    let is_join = name == d.join;
    if s.vpc == d.default_vpc && !is_join && s.gateway_type.is_empty() {
        s.gateway_type = "distributed".into();
    }
    if !is_join && s.enable_lb.is_none() {
        s.enable_lb = Some(d.enable_lb);
    }
    if !matches!(s.gateway_type.as_str(), "" | "distributed" | "centralized") {
        return Err(format!(
            "gatewayType {:?} must be distributed or centralized",
            s.gateway_type
        ));
    }
    if s.gateway_type == "centralized"
        && s.gateway_node.trim().is_empty()
        && s.gateway_node_selectors.is_empty()
    {
        return Err("gatewayType centralized needs gatewayNode or gatewayNodeSelectors".into());
    }
    normalize_u2o(&mut s, name, &cidrs)?;
    Ok(s)
}

/// Upstream's u2o rules: only an underlay subnet interconnects, an address asked for only
/// while it does, and its `ValidateSubnet` errors (same text).
fn normalize_u2o(s: &mut SubnetSpec, name: &str, cidrs: &[ipnet::IpNet]) -> Result<(), String> {
    if s.vlan.is_empty() {
        s.u2o_interconnection = false;
    }
    if !s.u2o_interconnection {
        s.u2o_interconnection_ip.clear();
    }
    if s.logical_gateway && s.u2o_interconnection {
        return Err(
            "logicalGateway and u2oInterconnection can't be opened at the same time".into(),
        );
    }
    if s.u2o_features.overlay_only_routing {
        if !s.u2o_interconnection {
            return Err("u2oFeatures.overlayOnlyRouting can only be enabled when u2OInterconnection is true".into());
        }
        if s.vlan.is_empty() {
            return Err("u2oFeatures.overlayOnlyRouting can only be enabled on underlay subnets (vlan must be set)".into());
        }
    }
    if s.u2o_interconnection_ip.is_empty() {
        return Ok(());
    }
    let ips = net::parse_ips(&s.u2o_interconnection_ip)
        .map_err(|e| format!("u2oInterconnectionIP: {e}"))?;
    let gateways = net::parse_ips(&s.gateway).unwrap_or_default();
    for ip in ips {
        if !cidrs.iter().any(|c| c.contains(&ip)) {
            return Err(format!(
                "u2oInterconnectionIP {ip} is not in subnet {name} cidr {}",
                s.cidr_block
            ));
        }
        if gateways.contains(&ip) {
            return Err(format!(
                "u2oInterconnectionIP {ip} conflicts with subnet gateway {}",
                s.gateway
            ));
        }
    }
    Ok(())
}

/// Whether a provider means "logical switch" (`ovn`, `<nad>.<ns>.ovn`) rather than IPAM only.
pub fn is_ovn_provider(provider: &str) -> bool {
    provider.is_empty() || provider == "ovn" || provider.ends_with(".ovn")
}

/// Gateway node names of a centralized subnet (`gatewayNode` is `n1,n2` or `n1:ip,…`).
pub fn gateway_nodes(spec: &SubnetSpec) -> Vec<String> {
    net::entries(&spec.gateway_node)
        .map(|g| g.split(':').next().unwrap_or("").trim().to_string())
        .filter(|g| !g.is_empty())
        .collect()
}

/// Which subnet a pod in `namespace` gets, in upstream's order (its namespace worker's
/// `logical_switch` list, whose first entry pods take): the pod's `logical_switch` annotation;
/// else the `spec.defaultSubnet` of a custom Vpc listing the namespace (never `kube-system`);
/// else a subnet bound to the namespace (`spec.namespaces`, or the namespace's
/// `logical_switch` annotation, the first of its list); else the default subnet
/// (`status.defaultLogicalSwitch`) of a Vpc listing the namespace; else the default subnet.
pub fn choose_subnet(
    pod_annotations: &BTreeMap<String, String>,
    namespace: &str,
    namespace_annotations: &BTreeMap<String, String>,
    subnets: &[std::sync::Arc<Subnet>],
    vpcs: &[std::sync::Arc<Vpc>],
    default_subnet: &str,
    default_vpc: &str,
) -> Result<String, String> {
    if let Some(ls) = pod_annotations
        .get(kube_ovn_common::annotations::LOGICAL_SWITCH)
        .filter(|s| !s.is_empty())
    {
        return Ok(ls.clone());
    }
    let lists_ns = |v: &Vpc| v.spec.namespaces.iter().any(|n| n == namespace);
    let mut vpc_defaults: Vec<&str> = vpcs
        .iter()
        .filter(|v| v.metadata.name.as_deref() != Some(default_vpc) && lists_ns(v))
        .filter(|_| namespace != "kube-system")
        .filter_map(|v| {
            let name = v.metadata.name.as_deref()?;
            subnets
                .iter()
                .find(|s| {
                    s.metadata.name.as_deref() == Some(v.spec.default_subnet.as_str())
                        && s.spec.vpc == name
                })
                .and(Some(v.spec.default_subnet.as_str()))
        })
        .collect();
    vpc_defaults.sort();
    if let Some(first) = vpc_defaults.first() {
        return Ok(first.to_string());
    }
    let mut bound: Vec<&str> = subnets
        .iter()
        .filter(|s| {
            s.spec.namespaces.iter().any(|n| n == namespace) && is_ovn_provider(&s.spec.provider)
        })
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    bound.sort();
    if let Some(first) = bound.first() {
        return Ok(first.to_string());
    }
    if let Some(list) = namespace_annotations.get(kube_ovn_common::annotations::LOGICAL_SWITCH) {
        if let Some(first) = net::entries(list).next() {
            return Ok(first.to_string());
        }
    }
    if let Some(ls) = vpcs
        .iter()
        .filter(|v| lists_ns(v))
        .filter_map(|v| v.status.as_ref())
        .map(|st| st.default_logical_switch.as_str())
        .find(|ls| !ls.is_empty())
    {
        return Ok(ls.to_string());
    }
    if default_subnet.is_empty() {
        return Err("no default subnet".into());
    }
    Ok(default_subnet.to_string())
}

/// Upstream's `validateVpcBySubnet` for a subnet of the custom VPC `vpc` (`None`: the Vpc
/// does not exist): the Vpc must be ready (`status.standby`) and list every namespace the
/// subnet binds.
pub fn validate_custom_vpc(subnet: &SubnetSpec, vpc: Option<&Vpc>) -> Result<(), String> {
    let Some(vpc) = vpc else {
        return Err(format!("vpc {:?} not found", subnet.vpc));
    };
    let name = vpc.name_any();
    if !vpc.status.as_ref().is_some_and(|s| s.standby) {
        return Err(format!("the vpc '{name}' not standby yet"));
    }
    if let Some(ns) = subnet
        .namespaces
        .iter()
        .find(|ns| !vpc.spec.namespaces.contains(ns))
    {
        return Err(format!(
            "namespace '{ns}' is out of range to custom vpc '{name}'"
        ));
    }
    Ok(())
}

/// Upstream's `validateVpcBySubnet` for a subnet of the default VPC: it may not bind a
/// namespace a custom Vpc lists.
pub fn validate_default_vpc(
    subnet: &SubnetSpec,
    vpcs: &[std::sync::Arc<Vpc>],
    default_vpc: &str,
) -> Result<(), String> {
    match vpcs.iter().find(|v| {
        v.metadata.name.as_deref() != Some(default_vpc)
            && !v.status.as_ref().is_some_and(|s| s.default)
            && v.spec
                .namespaces
                .iter()
                .any(|n| subnet.namespaces.contains(n))
    }) {
        Some(other) => Err(format!(
            "namespaces {:?} are overlap with vpc '{}'",
            subnet.namespaces,
            other.name_any()
        )),
        None => Ok(()),
    }
}

/// Upstream's `checkSubnetConflict` on CIDRs: another subnet of the same VPC and VLAN whose
/// CIDRs overlap this one's (subnets of different VPCs may overlap).
pub fn cidr_conflict(
    name: &str,
    spec: &SubnetSpec,
    subnets: &[std::sync::Arc<Subnet>],
) -> Option<String> {
    let mine = net::parse_cidrs(&spec.cidr_block).ok()?;
    subnets
        .iter()
        .filter(|s| {
            s.metadata.name.as_deref() != Some(name)
                && s.spec.vpc == spec.vpc
                && s.spec.vlan == spec.vlan
        })
        .find_map(|s| {
            let theirs = net::parse_cidrs(&s.spec.cidr_block).ok()?;
            mine.iter()
                .any(|a| {
                    theirs
                        .iter()
                        .any(|b| a.contains(&b.network()) || b.contains(&a.network()))
                })
                .then(|| {
                    format!(
                        "subnet {name} cidr {} is conflict with subnet {} cidr {}",
                        spec.cidr_block,
                        s.name_any(),
                        s.spec.cidr_block
                    )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Defaults<'static> {
        Defaults {
            default_vpc: "ovn-cluster",
            join: "join",
            enable_lb: true,
        }
    }

    #[test]
    fn u2o_only_on_underlay_subnets_and_validated_as_upstream() {
        let base = SubnetSpec {
            cidr_block: "172.19.100.0/24".into(),
            vlan: "vlan100".into(),
            u2o_interconnection: true,
            ..Default::default()
        };
        let overlay = SubnetSpec {
            vlan: String::new(),
            u2o_interconnection_ip: "172.19.100.9".into(),
            ..base.clone()
        };
        let s = normalize(&overlay, "s1", &d()).unwrap();
        assert!(!s.u2o_interconnection, "no u2o without a vlan");
        assert_eq!(s.u2o_interconnection_ip, "", "no address without u2o");
        let off = SubnetSpec {
            u2o_interconnection: false,
            u2o_interconnection_ip: "172.19.100.9".into(),
            ..base.clone()
        };
        assert_eq!(
            normalize(&off, "s1", &d()).unwrap().u2o_interconnection_ip,
            ""
        );
        let err = |spec: SubnetSpec| normalize(&spec, "s1", &d()).unwrap_err();
        assert_eq!(
            err(SubnetSpec {
                logical_gateway: true,
                ..base.clone()
            }),
            "logicalGateway and u2oInterconnection can't be opened at the same time"
        );
        let mut only = SubnetSpec {
            u2o_interconnection: false,
            ..base.clone()
        };
        only.u2o_features.overlay_only_routing = true;
        assert_eq!(
            err(only),
            "u2oFeatures.overlayOnlyRouting can only be enabled when u2OInterconnection is true"
        );
        assert_eq!(
            err(SubnetSpec {
                u2o_interconnection_ip: "172.19.101.9".into(),
                ..base.clone()
            }),
            "u2oInterconnectionIP 172.19.101.9 is not in subnet s1 cidr 172.19.100.0/24"
        );
        assert_eq!(
            err(SubnetSpec {
                u2o_interconnection_ip: "172.19.100.1".into(),
                ..base.clone()
            }),
            "u2oInterconnectionIP 172.19.100.1 conflicts with subnet gateway 172.19.100.1"
        );
        let ok = normalize(
            &SubnetSpec {
                u2o_interconnection_ip: "172.19.100.9".into(),
                ..base
            },
            "s1",
            &d(),
        )
        .unwrap();
        assert!(ok.u2o_interconnection);
        assert_eq!(ok.u2o_interconnection_ip, "172.19.100.9");
    }

    #[test]
    fn normalizes_like_upstream() {
        let spec = SubnetSpec {
            cidr_block: "10.1.0.1/23".into(),
            exclude_ips: vec!["10.1.1.2".into()],
            ..Default::default()
        };
        let s = normalize(&spec, "s1", &d()).unwrap();
        assert_eq!(s.cidr_block, "10.1.0.0/23");
        assert_eq!(s.gateway, "10.1.0.1");
        assert_eq!(s.exclude_ips, vec!["10.1.0.1", "10.1.1.2"]);
        assert_eq!(s.protocol, "IPv4");
        assert_eq!(s.provider, "ovn");
        assert_eq!(s.vpc, "ovn-cluster");
        assert_eq!(s.gateway_type, "distributed");
        assert_eq!(s.enable_lb, Some(true));
        // Idempotent: normalising the result changes nothing.
        assert_eq!(normalize(&s, "s1", &d()).unwrap(), s);
        let join = normalize(
            &SubnetSpec {
                cidr_block: "100.64.0.0/16".into(),
                ..Default::default()
            },
            "join",
            &d(),
        )
        .unwrap();
        assert_eq!(join.gateway_type, "");
        assert_eq!(join.enable_lb, None);
    }

    #[test]
    fn dual_stack_orders_v4_first() {
        let s = normalize(
            &SubnetSpec {
                cidr_block: "fd00::/120,10.0.0.0/24".into(),
                ..Default::default()
            },
            "d",
            &d(),
        )
        .unwrap();
        assert_eq!(s.cidr_block, "10.0.0.0/24,fd00::/120");
        assert_eq!(s.gateway, "10.0.0.1,fd00::1");
        assert_eq!(s.protocol, "Dual");
    }

    #[test]
    fn invalid_specs_say_why() {
        for (cidr, gw, ex, gwt, why) in [
            ("nope", "", "", "", "cidrBlock"),
            ("", "", "", "", "empty"),
            ("10.0.0.0/24,10.1.0.0/24", "", "", "", "one IPv4"),
            ("10.0.0.0/24", "10.9.0.1", "", "", "not in cidrBlock"),
            ("10.0.0.0/24", "", "10.0.0.9..10.0.0.2", "", "excludeIps"),
            ("10.0.0.0/24", "", "", "sideways", "gatewayType"),
            ("10.0.0.0/24", "", "", "centralized", "gatewayNode"),
        ] {
            let spec = SubnetSpec {
                cidr_block: cidr.into(),
                gateway: gw.into(),
                exclude_ips: if ex.is_empty() {
                    vec![]
                } else {
                    vec![ex.into()]
                },
                gateway_type: gwt.into(),
                ..Default::default()
            };
            let err = normalize(&spec, "x", &d()).unwrap_err();
            assert!(err.contains(why), "{cidr} {gw} {ex} {gwt}: {err}");
        }
    }

    #[test]
    fn subnet_choice() {
        let bound: Subnet = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s-bound"},
            "spec": {"cidrBlock": "10.1.0.0/24", "namespaces": ["team"]}
        }))
        .unwrap();
        let subnets = vec![std::sync::Arc::new(bound)];
        let none = BTreeMap::new();
        assert_eq!(
            choose_subnet(
                &none,
                "team",
                &none,
                &subnets,
                &[],
                "ovn-default",
                "ovn-cluster"
            )
            .unwrap(),
            "s-bound"
        );
        assert_eq!(
            choose_subnet(
                &none,
                "other",
                &none,
                &subnets,
                &[],
                "ovn-default",
                "ovn-cluster"
            )
            .unwrap(),
            "ovn-default"
        );
        let pod: BTreeMap<String, String> = [(
            kube_ovn_common::annotations::LOGICAL_SWITCH.to_string(),
            "mine".to_string(),
        )]
        .into();
        assert_eq!(
            choose_subnet(
                &pod,
                "team",
                &none,
                &subnets,
                &[],
                "ovn-default",
                "ovn-cluster"
            )
            .unwrap(),
            "mine"
        );
        let ns: BTreeMap<String, String> = [(
            kube_ovn_common::annotations::LOGICAL_SWITCH.to_string(),
            "a,b".to_string(),
        )]
        .into();
        assert_eq!(
            choose_subnet(
                &none,
                "other",
                &ns,
                &subnets,
                &[],
                "ovn-default",
                "ovn-cluster"
            )
            .unwrap(),
            "a"
        );
    }

    fn vpc(
        name: &str,
        namespaces: &[&str],
        default_subnet: &str,
        status: serde_json::Value,
    ) -> std::sync::Arc<Vpc> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": name},
                "spec": {"namespaces": namespaces, "defaultSubnet": default_subnet},
                "status": status,
            }))
            .unwrap(),
        )
    }

    fn subnet(name: &str, vpc: &str, cidr: &str, namespaces: &[&str]) -> std::sync::Arc<Subnet> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                "spec": {"cidrBlock": cidr, "vpc": vpc, "namespaces": namespaces}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn namespaces_of_a_vpc_get_its_default_subnet() {
        let subnets = vec![
            subnet("net1", "vpc1", "10.0.1.0/24", &[]),
            subnet("bound", "ovn-cluster", "10.2.0.0/24", &["ns1"]),
        ];
        let none = BTreeMap::new();
        let with_default = vec![vpc("vpc1", &["ns1"], "net1", serde_json::json!({}))];
        let pick = |ns: &str, vpcs: &[std::sync::Arc<Vpc>]| {
            choose_subnet(
                &none,
                ns,
                &none,
                &subnets,
                vpcs,
                "ovn-default",
                "ovn-cluster",
            )
            .unwrap()
        };
        assert_eq!(pick("ns1", &with_default), "net1");
        assert_eq!(pick("ns2", &with_default), "ovn-default");
        let by_status = vec![vpc(
            "vpc1",
            &["ns3"],
            "",
            serde_json::json!({"defaultLogicalSwitch": "net1"}),
        )];
        assert_eq!(pick("ns3", &by_status), "net1");
        assert_eq!(pick("ns1", &by_status), "bound");
    }

    #[test]
    fn vpc_validation_and_overlap_like_upstream() {
        let ready = serde_json::json!({"standby": true});
        let v1 = vpc("vpc1", &["ns1"], "", ready.clone());
        let dflt = vpc(
            "ovn-cluster",
            &[],
            "",
            serde_json::json!({"standby": true, "default": true}),
        );
        let vpcs = vec![v1.clone(), dflt.clone()];
        let mut spec = subnet("net1", "vpc1", "10.0.1.0/24", &["ns1"]).spec.clone();
        assert_eq!(validate_custom_vpc(&spec, Some(&v1)), Ok(()));
        spec.namespaces.push("ns2".into());
        assert!(validate_custom_vpc(&spec, Some(&v1))
            .unwrap_err()
            .contains("out of range"));
        let not_ready = vpc("vpc1", &["ns1"], "", serde_json::json!({}));
        assert!(validate_custom_vpc(&spec, Some(&not_ready))
            .unwrap_err()
            .contains("standby"));
        assert!(validate_custom_vpc(&spec, None).is_err());
        let in_default = subnet("d", "ovn-cluster", "10.3.0.0/24", &["ns1"])
            .spec
            .clone();
        assert!(validate_default_vpc(&in_default, &vpcs, "ovn-cluster")
            .unwrap_err()
            .contains("overlap"));
        let elsewhere = subnet("d", "ovn-cluster", "10.3.0.0/24", &["ns9"])
            .spec
            .clone();
        assert_eq!(
            validate_default_vpc(&elsewhere, &vpcs, "ovn-cluster"),
            Ok(())
        );

        let subnets = vec![
            subnet("net1", "vpc1", "10.0.1.0/24", &[]),
            subnet("net2", "vpc2", "10.0.1.0/24", &[]),
        ];
        assert_eq!(cidr_conflict("net2", &subnets[1].spec, &subnets), None);
        let clash = subnet("net3", "vpc1", "10.0.0.0/16", &[]);
        assert!(cidr_conflict("net3", &clash.spec, &subnets)
            .unwrap()
            .contains("net1"));
    }
}
