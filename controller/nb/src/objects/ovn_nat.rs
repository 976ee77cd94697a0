//! OVN-native external access as upstream lays it out: a VPC router's gateway port on an
//! external switch (`<vpc>-<ext>` with `Gateway_Chassis` rows, peer `<ext>-<vpc>`), the `lsp`
//! OvnEip's bare port, and the NAT family on the router — `dnat_and_snat` (OvnFip) and `snat`
//! (OvnSnatRule) rows without `external_ids`, and OvnDnatRule's load balancer named after the
//! rule, one `eip:port` VIP, attached to the router.
//!
//! Difference from upstream: stale `Gateway_Chassis` rows of a gateway port (a node no longer
//! labelled) are removed and priorities kept at `100 - index` — upstream only adds missing
//! rows, so its gateway never leaves a node that lost the label.

use ovsdb::model::Model;
use ovsdb::models::nb::{
    GatewayChassis, LoadBalancer, LogicalRouter, LogicalRouterPort, LogicalRouterStaticRoute,
    LogicalSwitch, LogicalSwitchPort, Nat,
};
use ovsdb::{Datum, Row, Uuid};

use super::names::{router_switch_lrp, switch_router_lsp};
use super::rows::{key, map, owned_map, row, string_map, strings, text, VENDOR};
use crate::plan::{Parent, Plan, PlanError, RowRef};

/// Upstream's highest `Gateway_Chassis` priority (`GwChassisMaxPriority`).
pub const GATEWAY_CHASSIS_MAX_PRIORITY: i64 = 100;

/// A router's gateway port on an external switch.
#[derive(Debug, Clone)]
pub struct ExternalPort<'a> {
    /// The external switch (the external Subnet's name).
    pub switch: &'a str,
    /// The router (the VPC's name).
    pub router: &'a str,
    /// The port's `networks` (`<ip>/<prefix>` per family).
    pub networks: Vec<String>,
    /// The port's MAC (its `lrp` OvnEip's).
    pub mac: &'a str,
    /// The SB chassis names of the gateway nodes, most preferred first.
    pub chassis: Vec<String>,
}

fn router_ports(router: &str) -> Parent<'_> {
    Parent {
        table: LogicalRouter::TABLE,
        name: router,
        column: LogicalRouter::PORTS,
    }
}

/// The `Gateway_Chassis` name of a chassis on a gateway port (`<lrp>-<chassis>`).
pub fn gateway_chassis_name(lrp: &str, chassis: &str) -> String {
    format!("{lrp}-{chassis}")
}

/// States the gateway port pair and its `Gateway_Chassis` rows (upstream's
/// `CreateLogicalPatchPort` + `CreateGatewayChassises`): LSP `<ext>-<vpc>` (`router`, ext
/// `ls`, `vendor`), LRP `<vpc>-<ext>` (ext `vendor`, `lr`), chassis `<lrp>-<chassis>` with
/// priority `100 - i` and ext `lrp`.
pub fn external_gateway_port(plan: &mut Plan<'_>, p: &ExternalPort<'_>) -> Result<(), PlanError> {
    let lsp = switch_router_lsp(p.switch, p.router);
    let lrp = router_switch_lrp(p.router, p.switch);
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: p.switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &lsp,
        row!(LogicalSwitchPort {
            TYPE: Datum::from("router"),
            ADDRESSES: strings(["router"]),
            OPTIONS: map([("router-port", lrp.as_str())]),
            EXTERNAL_IDS: map([(key::LS, p.switch), (key::VENDOR, VENDOR)]),
        }),
    )?;
    plan.ensure_named_child(
        router_ports(p.router),
        LogicalRouterPort::TABLE,
        &lrp,
        row!(LogicalRouterPort {
            MAC: Datum::from(p.mac),
            NETWORKS: strings(p.networks.clone()),
            EXTERNAL_IDS: map([(key::VENDOR, VENDOR), (key::LR, p.router)]),
        }),
    )?;
    let parent = Parent {
        table: LogicalRouterPort::TABLE,
        name: &lrp,
        column: LogicalRouterPort::GATEWAY_CHASSIS,
    };
    let wanted: Vec<String> = p
        .chassis
        .iter()
        .map(|c| gateway_chassis_name(&lrp, c))
        .collect();
    let table = plan.monitored(GatewayChassis::TABLE)?;
    let stale: Vec<Uuid> = plan
        .children(&parent)
        .into_iter()
        .filter(|u| {
            table
                .get(u)
                .and_then(|r| text(r, GatewayChassis::NAME))
                .is_none_or(|n| !wanted.iter().any(|w| w == n))
        })
        .collect();
    for u in stale {
        plan.remove_child(
            LogicalRouterPort::TABLE,
            LogicalRouterPort::GATEWAY_CHASSIS,
            u,
        )?;
    }
    for (i, (name, chassis)) in wanted.iter().zip(&p.chassis).enumerate() {
        let priority = GATEWAY_CHASSIS_MAX_PRIORITY - i as i64;
        plan.ensure_named_child(
            Parent {
                table: LogicalRouterPort::TABLE,
                name: &lrp,
                column: LogicalRouterPort::GATEWAY_CHASSIS,
            },
            GatewayChassis::TABLE,
            name,
            row!(GatewayChassis {
                CHASSIS_NAME: Datum::from(chassis.as_str()),
                PRIORITY: Datum::from(priority),
                EXTERNAL_IDS: map([("lrp", lrp.as_str())]),
            }),
        )?;
    }
    Ok(())
}

/// Removes a router's gateway port pair (upstream's `RemoveLogicalPatchPort`); its
/// `Gateway_Chassis` rows go with it.
pub fn remove_external_gateway_port(
    plan: &mut Plan<'_>,
    switch: &str,
    router: &str,
) -> Result<(), PlanError> {
    super::subnet::remove_router_ports(plan, switch, router)
}

/// States an `lsp` OvnEip's bare port on its external switch (upstream's
/// `CreateBareLogicalSwitchPort`): `addresses = ["<mac> <ips…>"]`, ext `ls`, `vendor`.
pub fn bare_port(
    plan: &mut Plan<'_>,
    switch: &str,
    name: &str,
    mac: &str,
    ips: &[String],
) -> Result<(), PlanError> {
    let mut address = mac.to_string();
    for ip in ips {
        address.push(' ');
        address.push_str(ip);
    }
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        name,
        row!(LogicalSwitchPort {
            ADDRESSES: strings([address]),
            EXTERNAL_IDS: map([(key::LS, switch), (key::VENDOR, VENDOR)]),
        }),
    )?;
    Ok(())
}

/// Removes the port `name` from whatever switch holds it (an `lsp` OvnEip's).
pub fn remove_port(plan: &mut Plan<'_>, name: &str) -> Result<(), PlanError> {
    plan.monitored(LogicalSwitchPort::TABLE)?;
    if let Some(RowRef::Existing(u)) = plan.lookup(LogicalSwitchPort::TABLE, name) {
        plan.remove_child(LogicalSwitch::TABLE, LogicalSwitch::PORTS, u)?;
    }
    Ok(())
}

/// Removes the router port `name` from whatever router holds it (an `lrp` OvnEip's).
pub fn remove_router_port(plan: &mut Plan<'_>, name: &str) -> Result<(), PlanError> {
    plan.monitored(LogicalRouterPort::TABLE)?;
    if let Some(RowRef::Existing(u)) = plan.lookup(LogicalRouterPort::TABLE, name) {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::PORTS, u)?;
    }
    Ok(())
}

/// One NAT row of a router as upstream's OvnFip/OvnSnatRule write it (no `external_ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    /// `dnat_and_snat` or `snat`.
    pub kind: &'static str,
    /// The OvnEip's address.
    pub external_ip: String,
    /// The internal address or CIDR.
    pub logical_ip: String,
    /// `dnat_and_snat` only: the pod's port, which makes the rule distributed with `external_mac`.
    pub logical_port: String,
    /// `dnat_and_snat` only: the pod's MAC.
    pub external_mac: String,
    /// `dnat_and_snat` only: `options:stateless`.
    pub stateless: Option<bool>,
}

/// `dnat_and_snat` (one floating IP).
pub const NAT_FIP: &str = "dnat_and_snat";
/// `snat`.
pub const NAT_SNAT: &str = "snat";

fn router_nats(router: &str) -> Parent<'_> {
    Parent {
        table: LogicalRouter::TABLE,
        name: router,
        column: LogicalRouter::NAT,
    }
}

/// The router's NAT rows whose type and external IP are given, and logical IP if `logical` is.
fn nats_matching(
    plan: &Plan<'_>,
    router: &str,
    kind: &str,
    external: &str,
    logical: Option<&str>,
) -> Vec<Uuid> {
    let Some(table) = plan.cache().table(Nat::TABLE) else {
        return Vec::new();
    };
    plan.children(&router_nats(router))
        .into_iter()
        .filter(|u| {
            table.get(u).is_some_and(|r| {
                text(r, Nat::TYPE) == Some(kind)
                    && text(r, Nat::EXTERNAL_IP) == Some(external)
                    && logical.is_none_or(|l| text(r, Nat::LOGICAL_IP) == Some(l))
            })
        })
        .collect()
}

/// States one NAT row on `router`: a `dnat_and_snat` is the only one of its external IP (a row
/// of that IP for another address is updated in place, extras removed), a `snat` is keyed by
/// external and logical IP.
pub fn nat_rule(plan: &mut Plan<'_>, router: &str, r: &NatRule) -> Result<(), PlanError> {
    plan.monitored(Nat::TABLE)?;
    let mut desired = row!(Nat {
        TYPE: Datum::from(r.kind),
        EXTERNAL_IP: Datum::from(r.external_ip.as_str()),
        LOGICAL_IP: Datum::from(r.logical_ip.as_str()),
    });
    let logical = (r.kind != NAT_FIP).then_some(r.logical_ip.as_str());
    let mut found = nats_matching(plan, router, r.kind, &r.external_ip, logical);
    found.sort();
    if r.kind == NAT_FIP {
        let opt = |v: &str| {
            if v.is_empty() {
                Datum::empty_set()
            } else {
                Datum::from(v)
            }
        };
        desired.insert(Nat::LOGICAL_PORT, opt(&r.logical_port));
        desired.insert(Nat::EXTERNAL_MAC, opt(&r.external_mac));
        if let Some(stateless) = r.stateless {
            let existing = found
                .first()
                .and_then(|u| plan.cache().table(Nat::TABLE)?.get(u))
                .map(|row| string_map(row, Nat::OPTIONS))
                .unwrap_or_default();
            let mut options = existing;
            options.insert("stateless".into(), stateless.to_string());
            desired.insert(Nat::OPTIONS, owned_map(&options));
        }
    }
    for extra in found.iter().skip(1) {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::NAT, *extra)?;
    }
    match found.first() {
        Some(u) => plan.update_row(Nat::TABLE, &RowRef::Existing(*u), desired),
        None => {
            let new = plan.insert_referenced(Nat::TABLE, desired)?;
            plan.set_members(
                LogicalRouter::TABLE,
                router,
                LogicalRouter::NAT,
                &[new.atom()],
                &[],
            )
        }
    }
}

/// Removes the NAT rows of `router` with this type, external IP and logical IP (absent ones
/// and an absent router are fine).
pub fn delete_nat_rule(
    plan: &mut Plan<'_>,
    router: &str,
    kind: &str,
    external_ip: &str,
    logical_ip: &str,
) -> Result<(), PlanError> {
    plan.monitored(Nat::TABLE)?;
    for u in nats_matching(plan, router, kind, external_ip, Some(logical_ip)) {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::NAT, u)?;
    }
    Ok(())
}

/// An OvnDnatRule's load balancer (upstream's `AddDnatRule`).
#[derive(Debug, Clone)]
pub struct DnatLb<'a> {
    /// The rule's name, the load balancer's.
    pub name: &'a str,
    /// The router it hangs from.
    pub router: &'a str,
    /// `tcp` or `udp` (written on insert only, as upstream).
    pub protocol: &'a str,
    /// `<eip>:<port>` (IPv6 in brackets).
    pub vip: String,
    /// `<ip>:<port>`.
    pub backend: String,
}

/// States a DNAT load balancer: created with `protocol` and ext `vendor`, `ct_flush=true` for
/// UDP, its VIP set, attached to the router.
pub fn dnat_lb(plan: &mut Plan<'_>, d: &DnatLb<'_>) -> Result<(), PlanError> {
    let current = match plan.lookup(LoadBalancer::TABLE, d.name) {
        Some(RowRef::Existing(u)) => plan
            .monitored(LoadBalancer::TABLE)?
            .get(&u)
            .map(|r| (**r).clone()),
        _ => None,
    };
    let mut desired = Row::new();
    if current.is_none() {
        desired.insert(LoadBalancer::PROTOCOL, Datum::from(d.protocol));
        desired.insert(LoadBalancer::EXTERNAL_IDS, map([(key::VENDOR, VENDOR)]));
    }
    if d.protocol.eq_ignore_ascii_case("udp") {
        let mut options = current
            .as_ref()
            .map(|r| string_map(r, LoadBalancer::OPTIONS))
            .unwrap_or_default();
        options.insert("ct_flush".into(), "true".into());
        desired.insert(LoadBalancer::OPTIONS, owned_map(&options));
    }
    let lb = plan.ensure_root(LoadBalancer::TABLE, d.name, desired)?;
    let vips = current
        .as_ref()
        .map(|r| string_map(r, LoadBalancer::VIPS))
        .unwrap_or_default();
    let stale: Vec<String> = vips.keys().filter(|k| **k != d.vip).cloned().collect();
    plan.set_map_entries(
        LoadBalancer::TABLE,
        d.name,
        LoadBalancer::VIPS,
        &[(d.vip.clone(), d.backend.clone())],
        &stale,
    )?;
    plan.set_members(
        LogicalRouter::TABLE,
        d.router,
        LogicalRouter::LOAD_BALANCER,
        &[lb.atom()],
        &[],
    )
}

/// Deletes a DNAT load balancer (upstream detaches it and leaves the empty row to its GC; the
/// row is deleted here at once, which detaches it from every router).
pub fn delete_dnat_lb(plan: &mut Plan<'_>, name: &str) -> Result<(), PlanError> {
    plan.monitored(LoadBalancer::TABLE)?;
    if let Some(RowRef::Existing(u)) = plan.lookup(LoadBalancer::TABLE, name) {
        plan.remove_child(LogicalRouter::TABLE, LogicalRouter::LOAD_BALANCER, u)?;
        plan.delete_root_uuid(LoadBalancer::TABLE, u)?;
    }
    Ok(())
}

/// States the external switch as upstream's `CreateGatewayLogicalSwitch` does when no vlan
/// Subnet owns it: the switch (ext `vendor`) and its localnet port `localnet.<ls>`
/// (`network_name` = `--external-gateway-net`, `tag` when 1–4095, ext `ls`, `vendor`).
pub fn external_switch(
    plan: &mut Plan<'_>,
    switch: &str,
    network: &str,
    vlan: i64,
) -> Result<(), PlanError> {
    if plan.lookup(LogicalSwitch::TABLE, switch).is_none() {
        plan.ensure_root(
            LogicalSwitch::TABLE,
            switch,
            row!(LogicalSwitch {
                EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
            }),
        )?;
    }
    let mut port = row!(LogicalSwitchPort {
        TYPE: Datum::from("localnet"),
        ADDRESSES: strings(["unknown"]),
        OPTIONS: map([("network_name", network)]),
        EXTERNAL_IDS: map([(key::LS, switch), (key::VENDOR, VENDOR)]),
    });
    if (1..4096).contains(&vlan)
        && plan
            .lookup(LogicalSwitchPort::TABLE, &super::localnet_port_name(switch))
            .is_none()
    {
        port.insert(LogicalSwitchPort::TAG, Datum::from(vlan));
    }
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: switch,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &super::localnet_port_name(switch),
        port,
    )?;
    Ok(())
}

/// The default VPC's routes of NATed sources (upstream's Vpc reconcile with the external
/// gateway on): per NAT row of `router` with a logical IP, a `src-ip` static route of it via
/// `nexthop` (ext `vendor`, main table); without a next hop, none. Other routes stay.
pub fn nat_source_routes(
    plan: &mut Plan<'_>,
    router: &str,
    nexthop: Option<&str>,
) -> Result<(), PlanError> {
    plan.monitored(Nat::TABLE)?;
    let nats = plan.cache().table(Nat::TABLE);
    let mut prefixes: Vec<String> = plan
        .children(&router_nats(router))
        .into_iter()
        .filter_map(|u| {
            nats?
                .get(&u)
                .and_then(|r| text(r, Nat::LOGICAL_IP))
                .map(str::to_string)
        })
        .filter(|ip| !ip.is_empty())
        .collect();
    prefixes.sort();
    prefixes.dedup();
    let desired: Vec<Row> = match nexthop {
        Some(hop) => prefixes
            .iter()
            .map(|p| {
                row!(LogicalRouterStaticRoute {
                    POLICY: Datum::from("src-ip"),
                    IP_PREFIX: Datum::from(p.as_str()),
                    NEXTHOP: Datum::from(hop),
                    ROUTE_TABLE: Datum::from(""),
                    EXTERNAL_IDS: map([(key::VENDOR, VENDOR)]),
                })
            })
            .collect(),
        None => Vec::new(),
    };
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouter::TABLE,
            name: router,
            column: LogicalRouter::STATIC_ROUTES,
        },
        LogicalRouterStaticRoute::TABLE,
        &[
            LogicalRouterStaticRoute::ROUTE_TABLE,
            LogicalRouterStaticRoute::POLICY,
            LogicalRouterStaticRoute::IP_PREFIX,
            LogicalRouterStaticRoute::NEXTHOP,
        ],
        desired,
        None,
        // Owned: plain vendor src-ip routes (ECMP/BFD routes carry options or a BFD).
        |r| {
            super::rows::ours(r)
                && text(r, LogicalRouterStaticRoute::POLICY) == Some("src-ip")
                && string_map(r, LogicalRouterStaticRoute::OPTIONS).is_empty()
                && r.get(LogicalRouterStaticRoute::BFD)
                    .and_then(Datum::as_set)
                    .is_none_or(|s| s.is_empty())
        },
    )
}
