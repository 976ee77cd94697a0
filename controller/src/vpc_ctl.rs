//! Vpc reconciler for custom VPCs: the Logical_Router named like the Vpc, its peering ports,
//! its static routes (`spec.staticRoutes`), its policy routes (`spec.policyRoutes`), its load balancers under
//! `--enable-lb`, and the status upstream reports (`router`, `standby`, `subnets`,
//! `defaultLogicalSwitch`, `vpcPeerings`, the load balancer names) and the VPC's U2O overlay
//! CIDR address sets. A deleted Vpc keeps
//! upstream's finalizer until its last subnet is gone, then loses its router. The default VPC
//! (`ovn-cluster`) is start-up's and the subnet and node reconcilers'.

use std::net::IpAddr;
use std::sync::Arc;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_common::annotations::FINALIZER;
use kube_ovn_common::crd::vpc::{VpcSpec, POLICY_DST, POLICY_SRC};
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_common::net;
use kube_ovn_nb::objects::{self, VpcLoadBalancers, VpcPolicyRoute, VpcStaticRoute};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::{finalizer, Outcome};
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::{subnet_rules, vpc_external};

/// The Vpc queue's kind name.
pub const KIND: &str = "vpc";

/// What of a Vpc its reconciler acts on: the spec and metadata, not its own status.
pub fn signature(v: &Vpc) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(
        kube_ovn_runtime::trigger::hash_json(&v.spec),
        kube_ovn_runtime::trigger::meta_signature(v),
    ))
}

/// What of a Vpc its subnets depend on: whether it is ready (`status.standby`), its
/// namespaces and router (the subnets wait for the former and validate against the latter).
pub fn subnet_signature(v: &Vpc) -> u64 {
    let st = v.status.clone().unwrap_or_default();
    kube_ovn_runtime::trigger::hash_of(&(
        st.standby,
        st.router,
        &v.spec.namespaces,
        v.metadata.deletion_timestamp.is_some(),
    ))
}

/// The subnets of the Vpc `vpc` (the subnets' queue keys a Vpc change requeues).
pub fn subnets_of(subnets: &[Arc<Subnet>], vpc: &str) -> Vec<String> {
    subnets
        .iter()
        .filter(|s| s.spec.vpc == vpc)
        .map(|s| s.name_any())
        .collect()
}

/// The Vpc a subnet event concerns (its static route and the status list depend on it).
pub fn vpc_of_subnet(s: &Subnet, default_vpc: &str) -> Vec<String> {
    if s.spec.vpc.is_empty() || s.spec.vpc == default_vpc {
        Vec::new()
    } else {
        vec![s.spec.vpc.clone()]
    }
}

/// What of a Subnet its Vpc depends on: VPC, CIDRs, gateways, route table, provider and
/// deletion.
pub fn subnet_vpc_signature(s: &Subnet) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(
        &s.spec.vpc,
        &s.spec.cidr_block,
        &s.spec.gateway,
        &s.spec.route_table,
        &s.spec.provider,
        &s.spec.vlan,
        s.spec.default,
        s.metadata.deletion_timestamp.is_some(),
    ))
}

/// Upstream's `formatVpc`: a static route without policy is `policyDst`; a policy must be
/// `policyDst` or `policySrc`, a CIDR a prefix or an address, a next hop an address; a policy
/// route that is not `reroute` loses its next hop, a `reroute` one must list addresses.
/// Returns the spec to write back when it changed.
pub fn format_spec(spec: &VpcSpec) -> Result<Option<VpcSpec>, String> {
    let mut out = spec.clone();
    for r in &mut out.static_routes {
        if r.policy.is_empty() {
            r.policy = POLICY_DST.into();
        }
        if r.policy != POLICY_DST && r.policy != POLICY_SRC {
            return Err(format!("unknown policy type: {:?}", r.policy));
        }
        if r.cidr.contains('/') {
            if r.cidr.parse::<ipnet::IpNet>().is_err() {
                return Err(format!("invalid cidr {:?}", r.cidr));
            }
        } else if r.cidr.parse::<IpAddr>().is_err() {
            return Err(format!("invalid ip {:?}", r.cidr));
        }
        if r.next_hop_ip.parse::<IpAddr>().is_err() {
            return Err(format!("invalid next hop ip {:?}", r.next_hop_ip));
        }
    }
    for p in &mut out.policy_routes {
        if p.action != "reroute" {
            p.next_hop_ip.clear();
        } else if p
            .next_hop_ip
            .split(',')
            .any(|h| h.parse::<IpAddr>().is_err())
        {
            return Err(format!("invalid next hop ips: {}", p.next_hop_ip));
        }
    }
    for peering in &out.vpc_peerings {
        if net::parse_cidrs(&peering.local_connect_ip).is_err() {
            return Err(format!("invalid cidr {}", peering.local_connect_ip));
        }
    }
    Ok((out != *spec).then_some(out))
}

/// Whether a subnet is one of the VPC's (upstream's `getVpcSubnets`: an OVN subnet of the VPC
/// not being deleted).
fn in_vpc(s: &Subnet, vpc: &str) -> bool {
    s.spec.vpc == vpc
        && s.metadata.deletion_timestamp.is_none()
        && subnet_rules::is_ovn_provider(&s.spec.provider)
}

/// The VPC's subnets (sorted) and its default subnet: a subnet with `spec.default`, or the
/// Vpc's `spec.defaultSubnet` when that subnet is in it.
pub fn vpc_subnets(vpc: &str, spec: &VpcSpec, subnets: &[Arc<Subnet>]) -> (Vec<String>, String) {
    let mut names = Vec::new();
    let mut default = String::new();
    let mut mine: Vec<&Arc<Subnet>> = subnets.iter().filter(|s| in_vpc(s, vpc)).collect();
    mine.sort_by_key(|s| s.name_any());
    for s in mine {
        let name = s.name_any();
        if s.spec.default {
            default = name.clone();
        }
        if !spec.default_subnet.is_empty() && spec.default_subnet == name {
            default = name.clone();
        }
        names.push(name);
    }
    (names, default)
}

/// The kube-ovn static routes of a custom VPC's router: `spec.staticRoutes` (BFD routes are
/// stated without their BFD session, not served).
///
/// Upstream master also routes each subnet's CIDR `src-ip` to the subnet's own gateway
/// (`addCustomVPCStaticRouteForSubnet`). Its patched OVN gives `src-ip` routes the lowest
/// priority; stock OVN ranks them by prefix length, so that route beats the Vpc's shorter
/// `dst-ip` routes (seed 004's `0.0.0.0/0` via the NAT gateway) and connected routes of wider
/// subnets, and sends the traffic to the router's own address (upstream issue #5490). It is not
/// written, and an adopted one (kube-ovn's, like every route here) is removed.
pub fn static_routes(spec: &VpcSpec) -> Vec<VpcStaticRoute> {
    let mut out: Vec<VpcStaticRoute> = spec
        .static_routes
        .iter()
        .map(|r| VpcStaticRoute {
            policy: if r.policy == POLICY_SRC {
                "src-ip"
            } else {
                "dst-ip"
            },
            ip_prefix: r.cidr.clone(),
            nexthop: r.next_hop_ip.clone(),
            route_table: r.route_table.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The VPC's policy routes as rows: next hops of a `reroute` split on commas.
pub fn policy_routes(spec: &VpcSpec) -> Vec<VpcPolicyRoute> {
    spec.policy_routes
        .iter()
        .map(|p| VpcPolicyRoute {
            priority: p.priority,
            matches: p.match_.clone(),
            action: p.action.clone(),
            nexthops: p
                .next_hop_ip
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_string)
                .collect(),
        })
        .collect()
}

/// The CIDRs of the VPC's overlay subnets (upstream's `buildU2OOverlayCIDRs`), for its
/// `<vpc>.u2o_overlay_cidrs.ip4|ip6` address sets.
pub fn overlay_cidrs(vpc: &str, subnets: &[Arc<Subnet>]) -> Vec<String> {
    subnets
        .iter()
        .filter(|s| s.spec.vpc == vpc && s.spec.vlan.is_empty())
        .flat_map(|s| {
            net::entries(&s.spec.cidr_block)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Upstream's `learnFromARPRequest`: external connection, peerings, or a U2O underlay subnet.
fn learns_from_arp(vpc: &str, spec: &VpcSpec, subnets: &[Arc<Subnet>]) -> bool {
    spec.enable_external
        || !spec.vpc_peerings.is_empty()
        || subnets
            .iter()
            .any(|s| in_vpc(s, vpc) && !s.spec.vlan.is_empty() && s.spec.u2o_interconnection)
}

/// Reconciles the Vpc `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    if name == ctx.config.cluster_router {
        return Ok(Outcome::Done);
    }
    let Some(vpc) = ctx.stores.vpcs.get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    let api: Api<Vpc> = Api::all(ctx.client.clone());
    let subnets = ctx.stores.subnets.state();
    let lbs = VpcLoadBalancers::for_custom_vpc(&name);
    if vpc.metadata.deletion_timestamp.is_some() {
        let (left, _) = vpc_subnets(&name, &vpc.spec, &subnets);
        if let Some(first) = left.first() {
            // Upstream refuses until the subnets are gone; their deletion requeues the Vpc.
            ctx.event(
                &vpc.object_ref(&()),
                EventType::Warning,
                "DeleteVpcFailed",
                &format!("failed to delete vpc {name}, please delete subnet {first} first"),
            )
            .await;
            return Ok(Outcome::Done);
        }
        let ext = &ctx.config.external_gateway_switch;
        let mut external = vpc_external::connected(&vpc, ext);
        external.extend(vpc_external::wanted(&vpc, ext));
        external.sort();
        external.dedup();
        for subnet in &external {
            vpc_external::disconnect(&ctx, &name, subnet).await?;
        }
        ctx.apply(&format!("delete vpc {name}"), |plan| {
            objects::delete_vpc_router(plan, &name, &lbs)
        })
        .await?;
        finalizer::remove(&api, &*vpc, FINALIZER).await?;
        return Ok(Outcome::Done);
    }
    let mut vpc = vpc;
    if let Some(patched) = finalizer::add(&api, &*vpc, FINALIZER).await? {
        vpc = Arc::new(patched);
    }
    match format_spec(&vpc.spec) {
        Err(why) => {
            ctx.event(
                &vpc.object_ref(&()),
                EventType::Warning,
                "ValidateVpcFailed",
                &why,
            )
            .await;
            return Ok(Outcome::Done);
        }
        Ok(Some(spec)) => {
            // Upstream writes the formatted spec back.
            let mut updated = (*vpc).clone();
            updated.spec = spec;
            vpc = Arc::new(api.replace(&name, &Default::default(), &updated).await?);
        }
        Ok(None) => {}
    }
    let spec = &vpc.spec;
    let learn = learns_from_arp(&name, spec, &subnets);
    let routes = static_routes(spec);
    let policies = policy_routes(spec);
    let overlay_cidrs = overlay_cidrs(&name, &subnets);
    let enable_lb = ctx.config.enable_lb;
    let prefer_local = ctx.config.enable_ovn_lb_prefer_local;
    let peerings: Vec<(String, Vec<String>)> = spec
        .vpc_peerings
        .iter()
        .map(|p| {
            let nets = p.local_connect_ip.split(',').map(str::to_string).collect();
            (p.remote_vpc.clone(), nets)
        })
        .collect();
    let old_peers: Vec<String> = vpc
        .status
        .as_ref()
        .map(|s| s.vpc_peerings.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !peerings.iter().any(|(r, _)| r == p))
        .collect();
    ctx.apply(&format!("vpc {name}"), |plan| {
        objects::custom_vpc_router(plan, &name, learn)?;
        for (remote, nets) in &peerings {
            objects::vpc_peer_port(plan, &name, remote, nets)?;
        }
        for remote in &old_peers {
            objects::delete_vpc_peer_port(plan, &name, remote)?;
        }
        objects::vpc_static_routes(plan, &name, &routes)?;
        objects::u2o_overlay_cidrs(plan, &name, &overlay_cidrs)?;
        objects::vpc_policy_routes(plan, &name, &policies)?;
        if enable_lb {
            objects::vpc_load_balancers(plan, &lbs, prefer_local)?;
        }
        Ok(())
    })
    .await?;
    let ext = &ctx.config.external_gateway_switch;
    let wanted = vpc_external::wanted(&vpc, ext);
    for subnet in vpc_external::connected(&vpc, ext) {
        if !wanted.contains(&subnet) {
            vpc_external::disconnect(&ctx, &name, &subnet).await?;
        }
    }
    let mut external_failed = None;
    for subnet in &wanted {
        if let Err(e) = vpc_external::connect(&ctx, &name, subnet).await {
            external_failed = Some(e.to_string());
        }
    }
    let (enable_external, extra_external) = match &external_failed {
        None => {
            let mut extra = spec.extra_external_subnets.clone();
            extra.sort();
            (
                spec.enable_external,
                if spec.enable_external {
                    extra
                } else {
                    Vec::new()
                },
            )
        }
        Some(why) => {
            ctx.event(
                &vpc.object_ref(&()),
                EventType::Warning,
                "ConnectExternalFailed",
                why,
            )
            .await;
            let st = vpc.status.clone().unwrap_or_default();
            (st.enable_external, st.extra_external_subnets)
        }
    };
    let (names, default) = vpc_subnets(&name, spec, &subnets);
    let mut status = json!({
        "enableExternal": enable_external,
        "extraExternalSubnets": extra_external,
        "router": name,
        "standby": true,
        "default": false,
        "subnets": names,
        "defaultLogicalSwitch": default,
        "vpcPeerings": peerings.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>(),
    });
    if enable_lb {
        for (k, v) in [
            ("tcpLoadBalancer", &lbs.tcp),
            ("tcpSessionLoadBalancer", &lbs.tcp_session),
            ("udpLoadBalancer", &lbs.udp),
            ("udpSessionLoadBalancer", &lbs.udp_session),
            ("sctpLoadBalancer", &lbs.sctp),
            ("sctpSessionLoadBalancer", &lbs.sctp_session),
        ] {
            status[k] = json!(v);
        }
    }
    let current = serde_json::to_value(vpc.status.clone().unwrap_or_default()).unwrap_or_default();
    let same = status
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| current.get(k) == Some(v)));
    if !same {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    }
    Ok(match external_failed {
        // A gateway node or the external subnet may come.
        Some(_) => Outcome::After(std::time::Duration::from_secs(5)),
        None => Outcome::Done,
    })
}

#[cfg(test)]
mod tests {
    use kube_ovn_common::crd::subnet::SubnetSpec;
    use kube_ovn_common::crd::vpc::{PolicyRoute, StaticRoute};

    use super::*;

    fn subnet(name: &str, vpc: &str, cidr: &str, gw: &str, table: &str) -> Arc<Subnet> {
        let mut s = Subnet::new(
            name,
            SubnetSpec {
                vpc: vpc.into(),
                cidr_block: cidr.into(),
                gateway: gw.into(),
                provider: "ovn".into(),
                route_table: table.into(),
                ..Default::default()
            },
        );
        s.metadata.name = Some(name.into());
        Arc::new(s)
    }

    fn spec() -> VpcSpec {
        VpcSpec {
            static_routes: vec![
                StaticRoute {
                    cidr: "0.0.0.0/0".into(),
                    next_hop_ip: "10.0.1.254".into(),
                    policy: POLICY_DST.into(),
                    ..Default::default()
                },
                StaticRoute {
                    cidr: "172.31.0.0/24".into(),
                    next_hop_ip: "10.0.1.253".into(),
                    policy: POLICY_SRC.into(),
                    route_table: "rtb1".into(),
                    ..Default::default()
                },
            ],
            policy_routes: vec![
                PolicyRoute {
                    action: "drop".into(),
                    match_: "ip4.src==10.0.1.0/24 && ip4.dst==10.0.1.250".into(),
                    priority: 11,
                    ..Default::default()
                },
                PolicyRoute {
                    action: "reroute".into(),
                    match_: "ip4.src==10.0.1.0/24".into(),
                    next_hop_ip: "10.0.1.252,10.0.1.251".into(),
                    priority: 10,
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn seed_routes_become_upstream_rows() {
        let subnets = vec![
            subnet(
                "net1",
                "vpc1",
                "10.0.1.0/24,fd00::/120",
                "10.0.1.1,fd00::1",
                "",
            ),
            subnet("net3", "vpc1", "10.0.3.0/24", "", "rtb1"),
            subnet("net2", "vpc2", "10.0.1.0/24", "10.0.1.1", ""),
        ];
        let r = static_routes(&spec());
        let got: Vec<(&str, &str, &str, &str)> = r
            .iter()
            .map(|r| {
                (
                    r.route_table.as_str(),
                    r.policy,
                    r.ip_prefix.as_str(),
                    r.nexthop.as_str(),
                )
            })
            .collect();
        // No src-ip route of a subnet's CIDR to its own gateway (see static_routes).
        assert_eq!(
            got,
            vec![
                ("", "dst-ip", "0.0.0.0/0", "10.0.1.254"),
                ("rtb1", "src-ip", "172.31.0.0/24", "10.0.1.253"),
            ]
        );
        assert_eq!(
            overlay_cidrs("vpc1", &subnets),
            vec!["10.0.1.0/24", "fd00::/120", "10.0.3.0/24"]
        );
        let p = policy_routes(&spec());
        assert_eq!(p[0].action, "drop");
        assert!(p[0].nexthops.is_empty());
        assert_eq!(p[1].nexthops, vec!["10.0.1.252", "10.0.1.251"]);
        let (names, default) = vpc_subnets("vpc1", &spec(), &subnets);
        assert_eq!(names, vec!["net1", "net3"]);
        assert_eq!(default, "");
        let with_default = VpcSpec {
            default_subnet: "net3".into(),
            ..spec()
        };
        assert_eq!(vpc_subnets("vpc1", &with_default, &subnets).1, "net3");
    }

    #[test]
    fn format_spec_defaults_and_rejects_like_upstream() {
        let mut s = spec();
        s.static_routes[0].policy.clear();
        s.policy_routes[0].next_hop_ip = "1.1.1.1".into();
        let f = format_spec(&s).unwrap().expect("changed");
        assert_eq!(f.static_routes[0].policy, POLICY_DST);
        assert_eq!(f.policy_routes[0].next_hop_ip, "");
        assert_eq!(format_spec(&f).unwrap(), None);
        let mut bad = spec();
        bad.static_routes[0].policy = "policyAny".into();
        assert!(format_spec(&bad).is_err());
        let mut bad = spec();
        bad.static_routes[0].next_hop_ip = "nope".into();
        assert!(format_spec(&bad).is_err());
        let mut bad = spec();
        bad.static_routes[0].cidr = "10.0.0.0/33".into();
        assert!(format_spec(&bad).is_err());
        let mut bad = spec();
        bad.policy_routes[1].next_hop_ip = "10.0.1.252,x".into();
        assert!(format_spec(&bad).is_err());
    }
}
