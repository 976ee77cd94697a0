//! A VPC's own rows: its router, its six load balancers, its default routes via the join
//! gateway and the address sets of its overlay CIDRs kept for U2O.

use std::net::IpAddr;

use ovsdb::model::Model;
use ovsdb::models::nb::{AddressSet, LoadBalancer, LogicalRouter, LogicalRouterStaticRoute};
use ovsdb::{Datum, Row};

use super::names::{cidr_prefix, pg_name};
use super::rows::{key, map, ours, owned_map, row, string_map, strings, text, VENDOR};
use crate::plan::{Parent, Plan, PlanError, RowRef};

type Route = LogicalRouterStaticRoute;

/// The default VPC's router (`ovn-cluster`), options exactly as upstream's VPC worker sets them.
pub fn vpc_router(plan: &mut Plan<'_>, router: &str) -> Result<(), PlanError> {
    let mut desired = row!(LogicalRouter {
        OPTIONS: map([
            ("mac_binding_age_threshold", "300"),
            ("dynamic_neigh_routers", "true"),
            ("always_learn_from_arp_request", "false"),
        ]),
    });
    if plan.lookup(LogicalRouter::TABLE, router).is_none() {
        desired.insert(LogicalRouter::EXTERNAL_IDS, map([(key::VENDOR, VENDOR)]));
    }
    plan.ensure_root(LogicalRouter::TABLE, router, desired)?;
    Ok(())
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
