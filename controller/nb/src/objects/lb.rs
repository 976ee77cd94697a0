//! Service VIPs on a VPC's load balancers, as upstream writes them: `vips["<ip>:<port>"] =
//! "<backend>:<port>,…"` (backends sorted, IPv6 bracketed), the `ip_port_mappings` that tell
//! ovn-northd which logical port and source address probe each backend, and one
//! `Load_Balancer_Health_Check` per checked VIP. Every change is a per-key `mutate`: a VIP
//! edit never rewrites the load balancer's whole map.

use std::collections::BTreeMap;

use ovsdb::model::Model;
use ovsdb::models::nb::{LoadBalancer, LoadBalancerHealthCheck};
use ovsdb::{Atom, Datum, Uuid};

use super::rows::{owned_map, row, string_map, text};
use crate::plan::{Parent, Plan, PlanError, RowRef};

/// `external_ids` key prefix upstream uses to mark an external VIP of a LoadBalancer Service
/// with `externalTrafficPolicy: Local`; removed with its VIP.
pub const LOCAL_EXTERNAL_VIP_PREFIX: &str = "kube-ovn.io/local-external-vip/";

/// Upstream's probe settings of a load-balancer health check.
pub const HEALTH_CHECK_OPTIONS: [(&str, &str); 4] = [
    ("timeout", "20"),
    ("interval", "5"),
    ("success_count", "3"),
    ("failure_count", "3"),
];

/// The host part of a VIP key (`10.96.0.1:443` → `10.96.0.1`, `[fd00::1]:443` → `fd00::1`).
pub fn vip_host(vip: &str) -> Option<&str> {
    let (host, port) = vip.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some(
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    )
}

/// The VIPs currently on load balancer `lb` (empty when it does not exist).
pub fn lb_vips(plan: &Plan<'_>, lb: &str) -> BTreeMap<String, String> {
    existing_lb(plan, lb)
        .map(|r| string_map(r, LoadBalancer::VIPS))
        .unwrap_or_default()
}

/// The backends of `vip` on `lb`, found by a binary search of the map (a load balancer holds
/// tens of thousands of VIPs; copying the map per Service would make a cold start quadratic).
pub fn vip_backends<'c>(plan: &Plan<'c>, lb: &str, vip: &str) -> Option<&'c str> {
    existing_lb(plan, lb)?
        .get(LoadBalancer::VIPS)?
        .as_map()?
        .get_str(vip)?
        .as_str()
}

/// Whether `lb` has any `ip_port_mappings` (only then does removing a VIP need the whole map
/// to know which mappings other VIPs still use).
pub fn has_ip_port_mappings(plan: &Plan<'_>, lb: &str) -> bool {
    existing_lb(plan, lb)
        .and_then(|r| r.get(LoadBalancer::IP_PORT_MAPPINGS))
        .is_some_and(|d| !d.is_empty())
}

/// Removes `vips` from `lb` as upstream's VIP deletion does: their `ip_port_mappings` no other
/// VIP needs, their health checks, the VIPs and their local-external-VIP marks. VIPs not on
/// the load balancer are skipped.
pub fn remove_vips(plan: &mut Plan<'_>, lb: &str, vips: &[String]) -> Result<(), PlanError> {
    let present: Vec<String> = vips
        .iter()
        .filter(|v| vip_backends(plan, lb, v).is_some())
        .cloned()
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    if has_ip_port_mappings(plan, lb) {
        let before = lb_vips(plan, lb);
        for vip in &present {
            remove_ip_port_mappings(plan, lb, vip, &before)?;
        }
    }
    for vip in &present {
        remove_health_check(plan, lb, vip)?;
    }
    set_vips(plan, lb, &[], &present)
}

/// The VIP keys on `lb` whose host is `ip`, found by a range of the sorted map (no scan).
pub fn vips_of_host(plan: &Plan<'_>, lb: &str, ip: &str) -> Vec<String> {
    let Some(map) = existing_lb(plan, lb)
        .and_then(|r| r.get(LoadBalancer::VIPS))
        .and_then(Datum::as_map)
    else {
        return Vec::new();
    };
    let prefix = if ip.contains(':') {
        format!("[{ip}]:")
    } else {
        format!("{ip}:")
    };
    map.keys_with_prefix(&prefix)
        .filter_map(Atom::as_str)
        .map(str::to_string)
        .collect()
}

fn existing_lb<'c>(plan: &Plan<'c>, lb: &str) -> Option<&'c ovsdb::Row> {
    match plan.lookup(LoadBalancer::TABLE, lb)? {
        RowRef::Existing(u) => plan
            .monitored(LoadBalancer::TABLE)
            .ok()?
            .get(&u)
            .map(|r| r.as_ref()),
        RowRef::New(_) => None,
    }
}

/// Sets the `set` VIPs of `lb` to their backends and removes the `remove` ones (with their
/// local-external-VIP marks), in one mutate of the keys that differ.
pub fn set_vips(
    plan: &mut Plan<'_>,
    lb: &str,
    set: &[(String, String)],
    remove: &[String],
) -> Result<(), PlanError> {
    plan.set_map_entries(LoadBalancer::TABLE, lb, LoadBalancer::VIPS, set, remove)?;
    let marks: Vec<String> = remove
        .iter()
        .map(|v| format!("{LOCAL_EXTERNAL_VIP_PREFIX}{v}"))
        .collect();
    if existing_lb(plan, lb).is_some_and(|r| {
        let ext = string_map(r, LoadBalancer::EXTERNAL_IDS);
        marks.iter().any(|m| ext.contains_key(m))
    }) {
        plan.set_map_entries(
            LoadBalancer::TABLE,
            lb,
            LoadBalancer::EXTERNAL_IDS,
            &[],
            &marks,
        )?;
    }
    Ok(())
}

/// Backend IPs (brackets stripped) of a VIP's backend list.
fn backend_ips(backends: &str) -> impl Iterator<Item = &str> {
    backends.split(',').filter_map(vip_host)
}

/// Converges the `ip_port_mappings` a VIP needs, as upstream does: `mappings` (backend IP →
/// `<lsp>:<source ip>`) are set, and mappings of IPs no longer among them are removed unless
/// another VIP of the load balancer still has that IP as a backend. `vips` is the load
/// balancer's VIP map as this plan leaves it.
pub fn set_ip_port_mappings(
    plan: &mut Plan<'_>,
    lb: &str,
    vip: &str,
    mappings: &BTreeMap<String, String>,
    vips: &BTreeMap<String, String>,
) -> Result<(), PlanError> {
    let current = existing_lb(plan, lb)
        .map(|r| string_map(r, LoadBalancer::IP_PORT_MAPPINGS))
        .unwrap_or_default();
    let clean = |k: &str| k.trim_matches(['[', ']']).to_string();
    let wanted: std::collections::BTreeSet<String> = mappings.keys().map(|k| clean(k)).collect();
    let used_elsewhere = |ip: &str| {
        vips.iter()
            .filter(|(v, _)| v.as_str() != vip)
            .any(|(_, b)| backend_ips(b).any(|b| b == ip))
    };
    let mut remove: Vec<String> = current
        .keys()
        .filter(|k| !wanted.contains(&clean(k)) && !used_elsewhere(&clean(k)))
        .cloned()
        .collect();
    // The same IP under the other spelling (bracketed or not) is replaced, not duplicated.
    for k in mappings.keys() {
        for have in current.keys() {
            if have != k && clean(have) == clean(k) {
                remove.push(have.clone());
            }
        }
    }
    let set: Vec<(String, String)> = mappings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    plan.set_map_entries(
        LoadBalancer::TABLE,
        lb,
        LoadBalancer::IP_PORT_MAPPINGS,
        &set,
        &remove,
    )
}

/// Removes the `ip_port_mappings` of a VIP's backends that no other VIP of the load balancer
/// uses (upstream's clean-up when a VIP goes). `vips` is the VIP map before the removal.
pub fn remove_ip_port_mappings(
    plan: &mut Plan<'_>,
    lb: &str,
    vip: &str,
    vips: &BTreeMap<String, String>,
) -> Result<(), PlanError> {
    let Some(backends) = vips.get(vip) else {
        return Ok(());
    };
    let current = existing_lb(plan, lb)
        .map(|r| string_map(r, LoadBalancer::IP_PORT_MAPPINGS))
        .unwrap_or_default();
    let remove: Vec<String> = backend_ips(backends)
        .filter(|ip| {
            !vips
                .iter()
                .filter(|(v, _)| v.as_str() != vip)
                .any(|(_, b)| backend_ips(b).any(|b| b == *ip))
        })
        .flat_map(|ip| [ip.to_string(), format!("[{ip}]")])
        .filter(|k| current.contains_key(k))
        .collect();
    if remove.is_empty() {
        return Ok(());
    }
    plan.set_map_entries(
        LoadBalancer::TABLE,
        lb,
        LoadBalancer::IP_PORT_MAPPINGS,
        &[],
        &remove,
    )
}

/// The health check of `vip` held by `lb`, if any.
fn health_check_of(plan: &Plan<'_>, lb: &str, vip: &str) -> Option<Uuid> {
    let parent = Parent {
        table: LoadBalancer::TABLE,
        name: lb,
        column: LoadBalancer::HEALTH_CHECK,
    };
    let checks = plan.monitored(LoadBalancerHealthCheck::TABLE).ok()?;
    plan.children(&parent).into_iter().find(|u| {
        checks
            .get(u)
            .is_some_and(|r| text(r, LoadBalancerHealthCheck::VIP) == Some(vip))
    })
}

/// Gives `vip` on `lb` a health check with upstream's options and `external_ids` when it has
/// none (an existing one is kept as it is, as upstream does).
pub fn ensure_health_check(
    plan: &mut Plan<'_>,
    lb: &str,
    vip: &str,
    external_ids: &BTreeMap<String, String>,
) -> Result<(), PlanError> {
    plan.monitored(LoadBalancerHealthCheck::TABLE)?;
    if health_check_of(plan, lb, vip).is_some() {
        return Ok(());
    }
    let options: BTreeMap<String, String> = HEALTH_CHECK_OPTIONS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    plan.ensure_keyed_child(
        Parent {
            table: LoadBalancer::TABLE,
            name: lb,
            column: LoadBalancer::HEALTH_CHECK,
        },
        LoadBalancerHealthCheck::TABLE,
        &[LoadBalancerHealthCheck::VIP],
        row!(LoadBalancerHealthCheck {
            VIP: Datum::from(vip),
            OPTIONS: owned_map(&options),
            EXTERNAL_IDS: owned_map(external_ids),
        }),
    )?;
    Ok(())
}

/// Removes the health check of `vip` from `lb` (the unreferenced row is then deleted by the
/// database).
pub fn remove_health_check(plan: &mut Plan<'_>, lb: &str, vip: &str) -> Result<(), PlanError> {
    if plan.monitored(LoadBalancerHealthCheck::TABLE).is_err() {
        return Ok(());
    }
    if let Some(u) = health_check_of(plan, lb, vip) {
        plan.remove_child(LoadBalancer::TABLE, LoadBalancer::HEALTH_CHECK, u)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_vip_keys() {
        assert_eq!(vip_host("10.96.0.1:443"), Some("10.96.0.1"));
        assert_eq!(vip_host("[fd00:10:96::1]:53"), Some("fd00:10:96::1"));
        assert_eq!(vip_host("10.96.0.1"), None);
        assert_eq!(vip_host("10.96.0.1:http"), None);
    }
}
