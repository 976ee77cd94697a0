//! What the interconnection writes into the local OVN Northbound, as upstream writes it: the
//! AZ name and route options of NB_Global, the transit switch's router port pair with its
//! Gateway_Chassis, and the 29500 allow policies mirroring learned routes. Every function plans
//! against the replica's cache, so a converged NB gets no write.

use std::collections::{BTreeMap, BTreeSet};

use ovsdb::model::Model;
use ovsdb::models::nb::{
    GatewayChassis, LogicalRouter, LogicalRouterPolicy, LogicalRouterPort,
    LogicalRouterStaticRoute, LogicalSwitch, LogicalSwitchPort, NbGlobal,
};
use ovsdb::plan::{Parent, Plan, PlanError, RowRef};
use ovsdb::{Atom, CacheData, Datum, Row};

/// The NB tables the replica monitors (a plan refuses any other).
pub const TABLES: &[&str] = &[
    NbGlobal::TABLE,
    LogicalSwitch::TABLE,
    LogicalSwitchPort::TABLE,
    LogicalRouter::TABLE,
    LogicalRouterPort::TABLE,
    LogicalRouterPolicy::TABLE,
    LogicalRouterStaticRoute::TABLE,
    GatewayChassis::TABLE,
];

/// `external_ids:vendor` of kube-ovn's rows.
pub const VENDOR: &str = "kube-ovn";
/// Prefix of transit switch names (upstream's `util.InterconnectionSwitch`).
pub const TS_PREFIX: &str = "ts";
/// Priority of the policies letting learned routes win over the gateway reroutes.
pub const IC_POLICY_PRIORITY: i64 = 29500;
/// `options:origin` of a learned route and `external_ids:origin` of its policy.
pub const ORIGIN: &str = "origin";
/// The origins whose routes get a policy (the empty one is what kube-ovn before 1.9 wrote).
pub const ORIGINS: [&str; 3] = ["connected", "static", ""];
/// `external_ids` key ovn-ic marks its learned routes with.
pub const LEARNED: &str = "ic-learned-route";

/// A string map datum.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Datum {
    Datum::map(
        pairs
            .into_iter()
            .map(|(k, v)| (Atom::from(k), Atom::from(v))),
    )
}

/// The only NB_Global row, if the NB has one yet.
pub fn nb_global(cache: &CacheData) -> Option<NbGlobal> {
    cache.list::<NbGlobal>().into_iter().flatten().next()
}

/// Sets NB_Global `name` (the availability zone ovn-ic registers).
pub fn set_az_name(plan: &mut Plan<'_>, az: &str) -> Result<(), String> {
    let g = nb_global(plan.cache()).ok_or("NB_Global does not exist yet")?;
    if g.name == az {
        return Ok(());
    }
    let mut row = Row::new();
    row.insert(NbGlobal::NAME, Datum::from(az));
    plan.update_row(NbGlobal::TABLE, &RowRef::Existing(g.uuid), row)
        .map_err(|e| e.to_string())
}

/// Turns route advertisement and learning on (with `blacklist`) or off, touching only those
/// three NB_Global options.
pub fn set_auto_route(
    plan: &mut Plan<'_>,
    enable: bool,
    blacklist: &[String],
) -> Result<(), String> {
    let g = nb_global(plan.cache()).ok_or("NB_Global does not exist yet")?;
    let keys = ["ic-route-adv", "ic-route-learn", "ic-route-blacklist"];
    let (set, remove): (Vec<(String, String)>, Vec<String>) = if enable {
        (
            vec![
                (keys[0].into(), "true".into()),
                (keys[1].into(), "true".into()),
                (keys[2].into(), blacklist.join(",")),
            ],
            Vec::new(),
        )
    } else {
        (Vec::new(), keys.iter().map(|k| k.to_string()).collect())
    };
    plan.set_map_entries(NbGlobal::TABLE, &g.name, NbGlobal::OPTIONS, &set, &remove)
        .map_err(|e| e.to_string())
}

/// Whether a logical switch port named `name` exists.
pub fn lsp_exists(cache: &CacheData, name: &str) -> bool {
    !cache.by_name::<LogicalSwitchPort>(name).is_empty()
}

/// The addresses (`ip/len`, the second field of `addresses`) of the remote ports other AZs
/// registered on transit switches.
pub fn remote_port_addresses(cache: &CacheData) -> BTreeSet<String> {
    cache
        .list::<LogicalSwitchPort>()
        .into_iter()
        .flatten()
        .filter(|p| p.r#type == "remote")
        .filter_map(|p| {
            let first = p.addresses.iter().next()?;
            let f: Vec<&str> = first.split_whitespace().collect();
            (f.len() == 2).then(|| f[1].to_string())
        })
        .collect()
}

/// The transit switch's port pair: LSP `<ts>-<az>` (type router) on switch `ts`, LRP
/// `<az>-<ts>` on `router` with `networks` and `mac`, as upstream's `CreateLogicalPatchPort`.
pub fn create_patch_port(
    plan: &mut Plan<'_>,
    ts: &str,
    router: &str,
    az: &str,
    networks: &[String],
    mac: &str,
) -> Result<(), PlanError> {
    let lsp = format!("{ts}-{az}");
    let lrp = format!("{az}-{ts}");
    let mut lsp_row = Row::new();
    lsp_row.insert(LogicalSwitchPort::TYPE, Datum::from("router"));
    lsp_row.insert(
        LogicalSwitchPort::ADDRESSES,
        Datum::set([Atom::from("router")]),
    );
    lsp_row.insert(
        LogicalSwitchPort::OPTIONS,
        map([("router-port", lrp.as_str())]),
    );
    lsp_row.insert(
        LogicalSwitchPort::EXTERNAL_IDS,
        map([("ls", ts), ("vendor", VENDOR)]),
    );
    plan.ensure_named_child(
        Parent {
            table: LogicalSwitch::TABLE,
            name: ts,
            column: LogicalSwitch::PORTS,
        },
        LogicalSwitchPort::TABLE,
        &lsp,
        lsp_row,
    )?;
    let mut lrp_row = Row::new();
    lrp_row.insert(
        LogicalRouterPort::NETWORKS,
        Datum::set(networks.iter().map(|n| Atom::from(n.as_str()))),
    );
    lrp_row.insert(LogicalRouterPort::MAC, Datum::from(mac));
    lrp_row.insert(
        LogicalRouterPort::EXTERNAL_IDS,
        map([("lr", router), ("vendor", VENDOR)]),
    );
    plan.ensure_named_child(
        Parent {
            table: LogicalRouter::TABLE,
            name: router,
            column: LogicalRouter::PORTS,
        },
        LogicalRouterPort::TABLE,
        &lrp,
        lrp_row,
    )?;
    Ok(())
}

/// Makes the Gateway_Chassis of router port `lrp` exactly `chassis`, in order: `<lrp>-<chassis>`
/// with priority 100, 99, … and `external_ids:lrp`.
pub fn reconcile_gateway_chassis(
    plan: &mut Plan<'_>,
    lrp: &str,
    chassis: &[String],
) -> Result<(), PlanError> {
    let desired: Vec<Row> = chassis
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut r = Row::new();
            r.insert(GatewayChassis::NAME, Datum::from(format!("{lrp}-{c}")));
            r.insert(GatewayChassis::CHASSIS_NAME, Datum::from(c.as_str()));
            r.insert(GatewayChassis::PRIORITY, Datum::from(100 - i as i64));
            r.insert(GatewayChassis::EXTERNAL_IDS, map([("lrp", lrp)]));
            r
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: LogicalRouterPort::TABLE,
            name: lrp,
            column: LogicalRouterPort::GATEWAY_CHASSIS,
        },
        GatewayChassis::TABLE,
        &[GatewayChassis::NAME],
        desired,
        None,
        |_| true,
    )
}

/// Splits `<first>-<rest>` at the first dash.
fn split_first(name: &str) -> Option<(&str, &str)> {
    name.split_once('-')
}

/// Removes this AZ's transit switch ports (`ts*-<az>` LSPs, `<az>-ts*` LRPs) and the transit
/// switches that held them, as upstream's `DeleteICResources`.
pub fn delete_ic_resources(plan: &mut Plan<'_>, az: &str) -> Result<(), PlanError> {
    let cache = plan.cache();
    let mut switches = BTreeSet::new();
    for p in cache.list::<LogicalSwitchPort>().into_iter().flatten() {
        if let Some((first, rest)) = split_first(&p.name) {
            if rest == az && first.starts_with(TS_PREFIX) {
                switches.insert(first.to_string());
                plan.remove_child(LogicalSwitch::TABLE, LogicalSwitch::PORTS, p.uuid)?;
            }
        }
    }
    for p in cache.list::<LogicalRouterPort>().into_iter().flatten() {
        if let Some((first, second)) = p.name.rsplit_once('-') {
            if first == az && second.starts_with(TS_PREFIX) {
                plan.remove_child(LogicalRouter::TABLE, LogicalRouter::PORTS, p.uuid)?;
            }
        }
    }
    for ts in switches {
        plan.delete_root(LogicalSwitch::TABLE, &ts)?;
    }
    Ok(())
}

/// Every learned route (`external_ids:ic-learned-route`) of every router: (router, route).
pub fn learned_routes(cache: &CacheData) -> Vec<(String, LogicalRouterStaticRoute)> {
    let routes: BTreeMap<_, _> = cache
        .list::<LogicalRouterStaticRoute>()
        .into_iter()
        .flatten()
        .filter(|r| r.external_ids.contains_key(LEARNED))
        .map(|r| (r.uuid, r))
        .collect();
    let mut out = Vec::new();
    for lr in cache.list::<LogicalRouter>().into_iter().flatten() {
        for u in &lr.static_routes {
            if let Some(r) = routes.get(u) {
                out.push((lr.name.clone(), r.clone()));
            }
        }
    }
    out
}

/// Detaches (and so deletes) the route `uuid` from every router.
pub fn delete_route(plan: &mut Plan<'_>, uuid: ovsdb::Uuid) -> Result<(), PlanError> {
    plan.remove_child(LogicalRouter::TABLE, LogicalRouter::STATIC_ROUTES, uuid)
}

/// Deletes every learned route, as upstream's `delLearnedRoute`.
pub fn delete_learned_routes(plan: &mut Plan<'_>) -> Result<(), PlanError> {
    for (_, r) in learned_routes(plan.cache()) {
        delete_route(plan, r.uuid)?;
    }
    Ok(())
}

/// For each origin, a 29500 `ip4.dst == <prefix>` (or `ip6.dst`) allow policy per learned route
/// of `router`'s main table with that `options:origin`, and no other policy of that origin, as
/// upstream's `SynRouteToPolicy`. A router that does not exist yet is left alone.
pub fn sync_route_policies(plan: &mut Plan<'_>, router: &str) -> Result<(), PlanError> {
    let cache = plan.cache();
    let Some(lr) = cache
        .by_name::<LogicalRouter>(router)
        .into_iter()
        .flatten()
        .next()
    else {
        return Ok(());
    };
    let routes: Vec<LogicalRouterStaticRoute> = lr
        .static_routes
        .iter()
        .filter_map(|u| cache.get::<LogicalRouterStaticRoute>(u)?.ok())
        .filter(|r| r.route_table.is_empty())
        .collect();
    for origin in ORIGINS {
        let prefixes: BTreeSet<&str> = routes
            .iter()
            .filter(|r| r.options.get(ORIGIN).map(String::as_str) == Some(origin))
            .map(|r| r.ip_prefix.as_str())
            .collect();
        let desired: Vec<Row> = prefixes
            .iter()
            .map(|p| {
                let family = if p.contains(':') { "ip6" } else { "ip4" };
                let mut r = Row::new();
                r.insert(
                    LogicalRouterPolicy::PRIORITY,
                    Datum::from(IC_POLICY_PRIORITY),
                );
                r.insert(
                    LogicalRouterPolicy::MATCH,
                    Datum::from(format!("{family}.dst == {p}")),
                );
                r.insert(LogicalRouterPolicy::ACTION, Datum::from("allow"));
                r.insert(
                    LogicalRouterPolicy::EXTERNAL_IDS,
                    map([(ORIGIN, origin), ("vendor", VENDOR)]),
                );
                r
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
            |row| {
                row.get(LogicalRouterPolicy::EXTERNAL_IDS)
                    .and_then(|d| d.map_get(ORIGIN))
                    .and_then(Atom::as_str)
                    == Some(origin)
            },
        )?;
    }
    Ok(())
}
