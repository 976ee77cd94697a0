//! A VPC's own rows: its router, its six load balancers, its default routes via the join
//! gateway, a custom VPC's static routes and policy routes, and the address sets of its
//! overlay CIDRs kept for U2O.

use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{
    AddressSet, LoadBalancer, LogicalRouter, LogicalRouterPolicy, LogicalRouterPort,
    LogicalRouterStaticRoute,
};
use ovsdb::{Datum, Row};

use super::names::{cidr_prefix, pg_name, router_switch_lrp};
use super::rows::{ext, key, map, ours, owned_map, row, string_map, strings, text, VENDOR};
use super::subnet::random_mac;
use crate::plan::{Parent, Plan, PlanError, RowRef};

type Route = LogicalRouterStaticRoute;

/// The default VPC's router (`ovn-cluster`), options as upstream's VPC worker sets them. An
/// existing router keeps its `always_learn_from_arp_request`, which depends on its u2o subnets
/// ([`router_arp_learning`], stated by their reconciles).
pub fn vpc_router(plan: &mut Plan<'_>, router: &str) -> Result<(), PlanError> {
    if plan.lookup(LogicalRouter::TABLE, router).is_none() {
        return custom_vpc_router(plan, router, false);
    }
    plan.set_map_entries(
        LogicalRouter::TABLE,
        router,
        LogicalRouter::OPTIONS,
        &[
            ("mac_binding_age_threshold".into(), "300".into()),
            ("dynamic_neigh_routers".into(), "true".into()),
        ],
        &[],
    )
}

/// Upstream's `learnFromARPRequest` on an existing router: without it the router carries
/// `always_learn_from_arp_request=false`; with it (a u2o underlay subnet) the key is absent.
pub fn router_arp_learning(
    plan: &mut Plan<'_>,
    router: &str,
    learn_from_arp_request: bool,
) -> Result<(), PlanError> {
    let k = "always_learn_from_arp_request".to_string();
    if learn_from_arp_request {
        plan.set_map_entries(
            LogicalRouter::TABLE,
            router,
            LogicalRouter::OPTIONS,
            &[],
            &[k],
        )
    } else {
        plan.set_map_entries(
            LogicalRouter::TABLE,
            router,
            LogicalRouter::OPTIONS,
            &[(k, "false".into())],
            &[],
        )
    }
}

/// A VPC's router, named like the VPC, with upstream's options: it learns from ARP requests
/// (no `always_learn_from_arp_request=false`) only when upstream's `learnFromARPRequest` holds
/// (external connection, peerings or a U2O underlay subnet).
pub fn custom_vpc_router(
    plan: &mut Plan<'_>,
    router: &str,
    learn_from_arp_request: bool,
) -> Result<(), PlanError> {
    let mut options = vec![
        ("mac_binding_age_threshold", "300"),
        ("dynamic_neigh_routers", "true"),
    ];
    if !learn_from_arp_request {
        options.push(("always_learn_from_arp_request", "false"));
    }
    let mut desired = row!(LogicalRouter {
        OPTIONS: map(options),
    });
    if plan.lookup(LogicalRouter::TABLE, router).is_none() {
        desired.insert(LogicalRouter::EXTERNAL_IDS, map([(key::VENDOR, VENDOR)]));
    }
    plan.ensure_root(LogicalRouter::TABLE, router, desired)?;
    Ok(())
}

/// Deletes a VPC's router (its ports, routes and policies go with it), its six load
/// balancers and its U2O overlay address sets.
pub fn delete_vpc_router(
    plan: &mut Plan<'_>,
    router: &str,
    lbs: &VpcLoadBalancers,
) -> Result<(), PlanError> {
    for (name, _, _) in lbs.all() {
        plan.delete_root(LoadBalancer::TABLE, name)?;
    }
    for fam in ["ip4", "ip6"] {
        plan.delete_root(AddressSet::TABLE, &u2o_set_name(router, fam))?;
    }
    plan.delete_root(LogicalRouter::TABLE, router)
}

/// A peering router port `<local>-<remote>` (upstream's `CreatePeerRouterPort`): the local
/// connect address(es), `peer` the remote router's twin, a random MAC at creation and
/// `external_ids{lr,vendor}`.
pub fn vpc_peer_port(
    plan: &mut Plan<'_>,
    local: &str,
    remote: &str,
    networks: &[String],
) -> Result<(), PlanError> {
    let name = router_switch_lrp(local, remote);
    let mut desired = row!(LogicalRouterPort {
        NETWORKS: strings(networks.to_vec()),
        EXTERNAL_IDS: map([(key::LR, local), (key::VENDOR, VENDOR)]),
    });
    if plan.lookup(LogicalRouterPort::TABLE, &name).is_none() {
        desired.insert(LogicalRouterPort::MAC, Datum::from(random_mac()));
        desired.insert(
            LogicalRouterPort::PEER,
            Datum::from(router_switch_lrp(remote, local)),
        );
    }
    plan.ensure_named_child(
        Parent {
            table: LogicalRouter::TABLE,
            name: local,
            column: LogicalRouter::PORTS,
        },
        LogicalRouterPort::TABLE,
        &name,
        desired,
    )?;
    Ok(())
}

/// Removes the peering port `<local>-<remote>` when present.
pub fn delete_vpc_peer_port(
    plan: &mut Plan<'_>,
    local: &str,
    remote: &str,
) -> Result<(), PlanError> {
    plan.monitored(LogicalRouterPort::TABLE)?;
    if let Some(RowRef::Existing(u)) =
        plan.lookup(LogicalRouterPort::TABLE, &router_switch_lrp(local, remote))
    {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::PORTS, u)?;
    }
    Ok(())
}

/// A static route of a custom VPC as upstream writes it (`AddLogicalRouterStaticRoute`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VpcStaticRoute {
    /// `dst-ip` or `src-ip`.
    pub policy: &'static str,
    /// `ip_prefix`: the CIDR (or address) matched.
    pub ip_prefix: String,
    /// The next hop.
    pub nexthop: String,
    /// `route_table` ("" is the main table).
    pub route_table: String,
}

/// Converges the kube-ovn static routes of a custom VPC's router on exactly `routes`
/// (upstream's `diffStaticRoute` keys: table, policy, prefix, next hop); routes without
/// `external_ids:vendor=kube-ovn` are left alone, as upstream lists only vendor routes.
pub fn vpc_static_routes(
    plan: &mut Plan<'_>,
    router: &str,
    routes: &[VpcStaticRoute],
) -> Result<(), PlanError> {
    let desired: Vec<Row> = routes
        .iter()
        .map(|r| {
            row!(Route {
                POLICY: Datum::from(r.policy),
                IP_PREFIX: Datum::from(r.ip_prefix.as_str()),
                NEXTHOP: Datum::from(r.nexthop.as_str()),
                ROUTE_TABLE: Datum::from(r.route_table.as_str()),
                EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
            })
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: router,
            column: LogicalRouter::STATIC_ROUTES,
        },
        Route::TABLE,
        &[
            Route::ROUTE_TABLE,
            Route::POLICY,
            Route::IP_PREFIX,
            Route::NEXTHOP,
        ],
        desired,
        None,
        ours,
    )
}

/// A policy route of a custom VPC (`spec.policyRoutes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcPolicyRoute {
    /// Priority.
    pub priority: i64,
    /// OVN match.
    pub matches: String,
    /// `allow`, `drop` or `reroute`.
    pub action: String,
    /// Next hops of a reroute.
    pub nexthops: Vec<String>,
}

/// The `external_ids` keys of policies a VPC's `policyRoutes` never own (upstream's
/// `diffPolicyRouteWithLogical` skips them): subnets', egress gateways' and U2O's.
const NOT_USER_POLICY: [&str; 2] = [key::SUBNET, "vpc-egress-gateway"];

/// Converges the user policies of a custom VPC's router on exactly `policies`, keyed by
/// priority and match as upstream's `AddLogicalRouterPolicy`, each with
/// `external_ids:vendor=kube-ovn`. Subnet, egress-gateway and U2O policies and rows without
/// the vendor mark are not touched.
pub fn vpc_policy_routes(
    plan: &mut Plan<'_>,
    router: &str,
    policies: &[VpcPolicyRoute],
) -> Result<(), PlanError> {
    let desired: Vec<Row> = policies
        .iter()
        .map(|p| {
            row!(LogicalRouterPolicy {
                PRIORITY: Datum::from(p.priority),
                MATCH: Datum::from(p.matches.as_str()),
                ACTION: Datum::from(p.action.as_str()),
                NEXTHOPS: strings(p.nexthops.clone()),
                EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
            })
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: router,
            column: LogicalRouter::POLICIES,
        },
        LogicalRouterPolicy::TABLE,
        &[LogicalRouterPolicy::PRIORITY, LogicalRouterPolicy::MATCH],
        desired,
        None,
        |r| {
            ours(r)
                && NOT_USER_POLICY
                    .iter()
                    .all(|k| ext(r, k).unwrap_or("").is_empty())
                && ext(r, "isU2ORoutePolicy") != Some("true")
        },
    )
}

/// The six load balancers of a VPC.
#[derive(Debug, Clone)]
pub struct VpcLoadBalancers {
    /// TCP.
    pub tcp: String,
    /// TCP with ClientIP affinity.
    pub tcp_session: String,
    /// UDP.
    pub udp: String,
    /// UDP with ClientIP affinity.
    pub udp_session: String,
    /// SCTP.
    pub sctp: String,
    /// SCTP with ClientIP affinity.
    pub sctp_session: String,
}

impl VpcLoadBalancers {
    /// Upstream's names for a non-default VPC.
    pub fn for_custom_vpc(vpc: &str) -> VpcLoadBalancers {
        VpcLoadBalancers {
            tcp: format!("vpc-{vpc}-tcp-load"),
            tcp_session: format!("vpc-{vpc}-tcp-sess-load"),
            udp: format!("vpc-{vpc}-udp-load"),
            udp_session: format!("vpc-{vpc}-udp-sess-load"),
            sctp: format!("vpc-{vpc}-sctp-load"),
            sctp_session: format!("vpc-{vpc}-sctp-sess-load"),
        }
    }

    /// (name, protocol, session) of each.
    pub fn all(&self) -> [(&str, &'static str, bool); 6] {
        [
            (&self.tcp, "tcp", false),
            (&self.tcp_session, "tcp", true),
            (&self.udp, "udp", false),
            (&self.udp_session, "udp", true),
            (&self.sctp, "sctp", false),
            (&self.sctp_session, "sctp", true),
        ]
    }
}

/// Creates a VPC's load balancers if absent and keeps the option keys upstream manages.
pub fn vpc_load_balancers(
    plan: &mut Plan<'_>,
    lbs: &VpcLoadBalancers,
    prefer_local: bool,
) -> Result<(), PlanError> {
    for (name, protocol, session) in lbs.all() {
        let current = match plan.lookup(LoadBalancer::TABLE, name) {
            Some(RowRef::Existing(u)) => plan
                .monitored(LoadBalancer::TABLE)?
                .get(&u)
                .map(|r| (**r).clone()),
            _ => None,
        };
        let mut options = current
            .as_ref()
            .map(|r| string_map(r, LoadBalancer::OPTIONS))
            .unwrap_or_default();
        options.insert("prefer_local_backend".into(), prefer_local.to_string());
        if session {
            options.insert("affinity_timeout".into(), "10800".into());
        } else if protocol == "udp" {
            options.insert("ct_flush".into(), "true".into());
        }
        let mut desired = row!(LoadBalancer {
            OPTIONS: owned_map(&options)
        });
        if current.is_none() {
            desired.insert(LoadBalancer::PROTOCOL, Datum::from(protocol));
            desired.insert(LoadBalancer::EXTERNAL_IDS, map([(key::VENDOR, VENDOR)]));
            if session {
                desired.insert(LoadBalancer::SELECTION_FIELDS, strings(["ip_src"]));
            }
        }
        plan.ensure_root(LoadBalancer::TABLE, name, desired)?;
    }
    Ok(())
}

/// The VPC's default route(s) via the join gateway: `0.0.0.0/0` (and `::/0`), `dst-ip`, main
/// route table. Other vendor default routes are removed; foreign and user routes stay.
pub fn default_routes(
    plan: &mut Plan<'_>,
    router: &str,
    join_gateways: &[IpAddr],
) -> Result<(), PlanError> {
    let desired: Vec<Row> = join_gateways
        .iter()
        .map(|gw| {
            row!(Route {
                IP_PREFIX: Datum::from(if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }),
                NEXTHOP: Datum::from(gw.to_string()),
                POLICY: Datum::from("dst-ip"),
                ROUTE_TABLE: Datum::from(""),
                EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
            })
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: router,
            column: LogicalRouter::STATIC_ROUTES,
        },
        Route::TABLE,
        &[Route::IP_PREFIX, Route::NEXTHOP, Route::ROUTE_TABLE],
        desired,
        None,
        |r| {
            ours(r)
                && matches!(text(r, Route::IP_PREFIX), Some("0.0.0.0/0" | "::/0"))
                && text(r, Route::ROUTE_TABLE).unwrap_or("").is_empty()
        },
    )
}

/// The VPC-wide address sets of overlay CIDRs upstream keeps for U2O
/// (`<vpc>.u2o_overlay_cidrs.ip4|ip6`, dots for dashes).
pub fn u2o_overlay_cidrs(
    plan: &mut Plan<'_>,
    vpc: &str,
    cidrs: &[String],
) -> Result<(), PlanError> {
    for fam in ["ip4", "ip6"] {
        let name = u2o_set_name(vpc, fam);
        let addrs: Vec<String> = cidrs
            .iter()
            .filter(|c| cidr_prefix(c) == fam)
            .cloned()
            .collect();
        u2o_overlay_cidrs_one(plan, vpc, &name, addrs)?;
    }
    Ok(())
}

/// Creates the U2O address sets empty when absent (at start-up, so concurrent subnet
/// reconciles only ever update them and never race to insert).
pub fn ensure_u2o_sets(plan: &mut Plan<'_>, vpc: &str) -> Result<(), PlanError> {
    for fam in ["ip4", "ip6"] {
        let name = u2o_set_name(vpc, fam);
        if plan.lookup(AddressSet::TABLE, &name).is_none() {
            u2o_overlay_cidrs_one(plan, vpc, &name, Vec::new())?;
        }
    }
    Ok(())
}

fn u2o_set_name(vpc: &str, fam: &str) -> String {
    format!("{}.u2o_overlay_cidrs.{fam}", pg_name(vpc))
}

fn u2o_overlay_cidrs_one(
    plan: &mut Plan<'_>,
    vpc: &str,
    name: &str,
    addrs: Vec<String>,
) -> Result<(), PlanError> {
    let mut r = row!(AddressSet {
        ADDRESSES: strings(addrs)
    });
    if plan.lookup(AddressSet::TABLE, name).is_none() {
        r.insert(
            AddressSet::EXTERNAL_IDS,
            map([
                (key::IS_U2O_OVERLAY_CIDRS, "true"),
                (key::VPC, vpc),
                (key::VENDOR, VENDOR),
            ]),
        );
    }
    plan.ensure_root(AddressSet::TABLE, name, r)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::objects::testing::{empty_nb, inserted, ops};

    #[test]
    fn custom_vpc_rows_match_upstream() {
        let cache = empty_nb();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        custom_vpc_router(&mut plan, "vpc1", true).unwrap();
        vpc_static_routes(
            &mut plan,
            "vpc1",
            &[VpcStaticRoute {
                policy: "src-ip",
                ip_prefix: "172.31.0.0/24".into(),
                nexthop: "10.0.1.253".into(),
                route_table: "rtb1".into(),
            }],
        )
        .unwrap();
        vpc_policy_routes(
            &mut plan,
            "vpc1",
            &[VpcPolicyRoute {
                priority: 10,
                matches: "ip4.src==10.0.1.0/24".into(),
                action: "reroute".into(),
                nexthops: vec!["10.0.1.252".into(), "10.0.1.251".into()],
            }],
        )
        .unwrap();
        vpc_peer_port(&mut plan, "vpc1", "vpc2", &["169.254.0.1/30".into()]).unwrap();
        let ops = ops(plan);
        let lr = inserted(&ops, "Logical_Router", "vpc1");
        // Learning from ARP requests: no always_learn_from_arp_request=false.
        assert_eq!(
            lr["row"]["options"],
            json!([
                "map",
                [
                    ["dynamic_neigh_routers", "true"],
                    ["mac_binding_age_threshold", "300"]
                ]
            ])
        );
        let of = |table: &str| -> Vec<&Value> {
            ops.iter()
                .filter(|o| o["op"] == "insert" && o["table"] == table)
                .collect()
        };
        let route = of("Logical_Router_Static_Route")[0];
        assert_eq!(route["row"]["policy"], "src-ip");
        assert_eq!(route["row"]["route_table"], "rtb1");
        assert_eq!(route["row"]["nexthop"], "10.0.1.253");
        assert_eq!(
            route["row"]["external_ids"],
            json!(["map", [["vendor", "kube-ovn"]]])
        );
        let policy = of("Logical_Router_Policy")[0];
        assert_eq!(policy["row"]["action"], "reroute");
        assert_eq!(
            policy["row"]["nexthops"],
            json!(["set", ["10.0.1.251", "10.0.1.252"]])
        );
        assert_eq!(
            policy["row"]["external_ids"],
            json!(["map", [["vendor", "kube-ovn"]]])
        );
        let peer = inserted(&ops, "Logical_Router_Port", "vpc1-vpc2");
        assert_eq!(peer["row"]["peer"], "vpc2-vpc1");
        assert_eq!(peer["row"]["networks"], "169.254.0.1/30");
        assert_eq!(
            peer["row"]["external_ids"],
            json!(["map", [["lr", "vpc1"], ["vendor", "kube-ovn"]]])
        );
    }
}
