//! The default VPC's external gateway (upstream's `external_gw.go`), from ConfigMap
//! `ovn-external-gw-config` in `--external-gateway-config-ns` under `--enable-eip-snat`:
//!
//! - keys `enable-external-gw` (only `"false"` disables), `type` (`centralized` |
//!   `distributed`), `external-gw-nodes` (labelled `ovn.kubernetes.io/external-gw=true` unless
//!   distributed), `external-gw-addr` (the next hop of NATed sources, else the external
//!   Subnet's gateway), `nic-ip`/`nic-mac` (a fixed gateway port address);
//! - the external switch `--external-gateway-switch` (with its localnet port, unless a vlan
//!   Subnet of that name owns them), the router port `ovn-cluster-<ext>` on the `lrp` OvnEip
//!   `ovn-cluster-<ext>` (or `nic-ip`), its `Gateway_Chassis` on the gateway nodes (already
//!   labelled first, then the ConfigMap's list; priority 100 down), `spec.enableExternal` on
//!   the default Vpc, and per NAT row of the default router a `src-ip` route of its logical IP
//!   via the next hop.
//!
//! Disabled (ConfigMap gone, or `enable-external-gw: "false"`) the gateway port pair goes and
//! the default Vpc's `enableExternal` is cleared. Difference from upstream: nodes keep their
//! gateway label (custom VPCs' gateways use the same label), and the NAT routes are left to
//! the next enabled pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::Vpc;
use kube_ovn_common::ovn_nat as on;
use kube_ovn_nb::objects::{self, ExternalPort};
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;
use ovsdb::model::Model;
use ovsdb::models::nb::LogicalRouterPort;
use serde_json::json;
use tracing::info;

use crate::context::{Ctx, Error};
use crate::vpc_external;

/// The queue's kind name.
pub const KIND: &str = "external-gw";
/// Its one key.
pub const KEY: &str = "default";

/// The ConfigMap's settings; `None` when the gateway is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GwConfig {
    /// `type`.
    pub type_: String,
    /// `external-gw-nodes`.
    pub nodes: Vec<String>,
    /// `external-gw-addr` without a prefix length.
    pub addr: String,
    /// `nic-ip`.
    pub nic_ip: String,
    /// `nic-mac`.
    pub nic_mac: String,
}

/// Reads the ConfigMap (absent or `enable-external-gw: "false"`: off).
pub fn parse(cm: Option<&ConfigMap>) -> Option<GwConfig> {
    let data: BTreeMap<String, String> = cm?.data.clone().unwrap_or_default();
    if data.get("enable-external-gw").map(String::as_str) == Some("false") {
        return None;
    }
    let get = |k: &str| data.get(k).cloned().unwrap_or_default();
    Some(GwConfig {
        type_: get("type"),
        nodes: get("external-gw-nodes")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        addr: get("external-gw-addr")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        nic_ip: get("nic-ip"),
        nic_mac: get("nic-mac"),
    })
}

/// The ConfigMap as the controller's store holds it.
fn config_map(ctx: &Ctx) -> Option<Arc<ConfigMap>> {
    ctx.stores
        .external_gw_config
        .get(&ObjectRef::new(on::EXTERNAL_GW_CONFIG).within(&ctx.config.external_gateway_config_ns))
}

/// Whether the default VPC's external gateway is on.
pub fn enabled(ctx: &Ctx) -> bool {
    ctx.config.enable_eip_snat && parse(config_map(ctx).as_deref()).is_some()
}

/// What of the ConfigMap the gateway reads.
pub fn config_signature(cm: &ConfigMap) -> u64 {
    hash_of(&(
        hash_json(&cm.data),
        cm.metadata.deletion_timestamp.is_some(),
    ))
}

/// The gateway nodes' chassis in upstream's order: nodes already labelled (by name), then the
/// ConfigMap's list (not with `distributed`). A node without a chassis annotation is an error.
pub fn gateway_chassis(cfg: &GwConfig, nodes: &[Arc<Node>]) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = nodes
        .iter()
        .filter(|n| n.labels().get(on::LABEL_EXTERNAL_GW).map(String::as_str) == Some("true"))
        .map(|n| n.name_any())
        .collect();
    names.sort();
    if cfg.type_ != on::FIP_DISTRIBUTED {
        for n in &cfg.nodes {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let mut out = Vec::new();
    for name in &names {
        let node = nodes
            .iter()
            .find(|n| n.name_any() == *name)
            .ok_or_else(|| format!("failed to get external gw node {name}"))?;
        match node
            .annotations()
            .get(ann::CHASSIS)
            .filter(|c| !c.is_empty())
        {
            Some(c) => out.push(c.clone()),
            None => {
                return Err(format!(
                    "node {name} has no chassis, kube-ovn-cni not ready"
                ))
            }
        }
    }
    if out.is_empty() {
        return Err("no available external gw chassis".into());
    }
    Ok(out)
}

/// Sets the default Vpc's `enableExternal` (spec and status) to `on`.
async fn default_vpc_external(ctx: &Ctx, on: bool) -> Result<(), Error> {
    let name = &ctx.config.cluster_router;
    let Some(vpc) = ctx.stores.vpcs.get(&ObjectRef::new(name)) else {
        return Ok(());
    };
    let api: Api<Vpc> = Api::all(ctx.client.clone());
    if vpc.spec.enable_external != on {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"enableExternal": on}})),
        )
        .await?;
    }
    if vpc.status.as_ref().is_some_and(|s| s.enable_external) != on {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"enableExternal": on}})),
        )
        .await?;
    }
    Ok(())
}

/// Labels the ConfigMap's gateway nodes (upstream patches `external-gw=true` on each).
async fn label_nodes(ctx: &Ctx, cfg: &GwConfig) -> Result<(), Error> {
    if cfg.type_ == on::FIP_DISTRIBUTED {
        return Ok(());
    }
    let api: Api<Node> = Api::all(ctx.client.clone());
    for name in &cfg.nodes {
        let labelled = ctx
            .stores
            .nodes
            .get(&ObjectRef::new(name))
            .is_some_and(|n| {
                n.labels().get(on::LABEL_EXTERNAL_GW).map(String::as_str) == Some("true")
            });
        if !labelled {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {on::LABEL_EXTERNAL_GW: "true"}}})),
            )
            .await?;
        }
    }
    Ok(())
}

/// The gateway port's networks and MAC: the port's own when it exists, else `nic-ip`/`nic-mac`,
/// else its `lrp` OvnEip's (IPv4 only, as upstream).
async fn port_address(
    ctx: &Ctx,
    cfg: &GwConfig,
    lrp: &str,
) -> Result<(Vec<String>, String), Error> {
    let existing = {
        let cache = ctx.nb.cache();
        cache.table(LogicalRouterPort::TABLE).and_then(|t| {
            t.by_name(lrp).next().map(|(_, r)| {
                let nets: Vec<String> = r
                    .get(LogicalRouterPort::NETWORKS)
                    .and_then(ovsdb::Datum::as_set)
                    .map(|s| {
                        s.iter()
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let mac = r
                    .get(LogicalRouterPort::MAC)
                    .and_then(ovsdb::Datum::as_atom)
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_string();
                (nets, mac)
            })
        })
    };
    if let Some((nets, mac)) = existing.filter(|(n, m)| !n.is_empty() && !m.is_empty()) {
        return Ok((nets, mac));
    }
    if !cfg.nic_ip.is_empty() {
        let nets: Vec<String> = cfg.nic_ip.split(',').map(str::to_string).collect();
        for n in &nets {
            n.parse::<ipnet::IpNet>()
                .map_err(|e| Error::Other(format!("invalid nic-ip {n}: {e}")))?;
        }
        let mac = if cfg.nic_mac.is_empty() {
            objects::random_mac()
        } else {
            cfg.nic_mac.clone()
        };
        return Ok((nets, mac));
    }
    let ext = &ctx.config.external_gateway_switch;
    let subnet = ctx
        .stores
        .subnets
        .get(&ObjectRef::new(ext))
        .ok_or_else(|| Error::Other(format!("failed to get external subnet {ext}")))?;
    let (ips, mac) = vpc_external::lrp_address(ctx, &ctx.config.cluster_router, ext).await?;
    let v4: Vec<std::net::IpAddr> = ips.into_iter().filter(|i| i.is_ipv4()).collect();
    Ok((vpc_external::networks(&subnet, &v4), mac))
}

/// Reconciles the default VPC's external gateway.
pub async fn reconcile(ctx: Arc<Ctx>, _key: String) -> Result<Outcome, Error> {
    if !ctx.config.enable_eip_snat {
        return Ok(Outcome::Done);
    }
    let lr = ctx.config.cluster_router.clone();
    let ext = ctx.config.external_gateway_switch.clone();
    let Some(cfg) = parse(config_map(&ctx).as_deref()) else {
        ctx.apply("remove external gateway", |plan| {
            objects::remove_external_gateway_port(plan, &ext, &lr)
        })
        .await?;
        default_vpc_external(&ctx, false).await?;
        return Ok(Outcome::Done);
    };
    label_nodes(&ctx, &cfg).await?;
    let chassis = match gateway_chassis(&cfg, &ctx.stores.nodes.state()) {
        Ok(c) => c,
        Err(why) => {
            info!("external gateway waits: {why}");
            return Ok(Outcome::After(Duration::from_secs(2)));
        }
    };
    let lrp = vpc_external::port_name(&lr, &ext);
    let (networks, mac) = port_address(&ctx, &cfg, &lrp).await?;
    let subnet = ctx.stores.subnets.get(&ObjectRef::new(&ext));
    let vlan_owned = subnet.as_ref().is_some_and(|s| !s.spec.vlan.is_empty());
    let nexthop = if cfg.addr.is_empty() {
        subnet
            .as_ref()
            .map(|s| {
                s.spec
                    .gateway
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    } else {
        cfg.addr.clone()
    };
    // The Vpc flag first: the external Subnet's reconcile keeps the port while it is set.
    default_vpc_external(&ctx, true).await?;
    let port = ExternalPort {
        switch: &ext,
        router: &lr,
        networks,
        mac: &mac,
        chassis,
    };
    let (net, vlan) = (
        ctx.config.external_gateway_net.clone(),
        ctx.config.external_gateway_vlanid,
    );
    ctx.apply("external gateway", |plan| {
        if !vlan_owned {
            objects::external_switch(plan, &ext, &net, vlan)?;
        }
        objects::external_gateway_port(plan, &port)?;
        objects::nat_source_routes(plan, &lr, (!nexthop.is_empty()).then_some(nexthop.as_str()))
    })
    .await?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: serde_json::Value) -> ConfigMap {
        serde_json::from_value(
            json!({"metadata": {"name": "ovn-external-gw-config"}, "data": data}),
        )
        .unwrap()
    }

    fn node(name: &str, labelled: bool, chassis: Option<&str>) -> Arc<Node> {
        let mut n: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        if labelled {
            n.metadata.labels =
                Some([(on::LABEL_EXTERNAL_GW.to_string(), "true".to_string())].into());
        }
        if let Some(c) = chassis {
            n.metadata.annotations = Some([(ann::CHASSIS.to_string(), c.to_string())].into());
        }
        Arc::new(n)
    }

    #[test]
    fn the_config_map_turns_the_gateway_on_and_names_its_nodes() {
        assert_eq!(parse(None), None);
        assert_eq!(
            parse(Some(&cm(json!({"enable-external-gw": "false"})))),
            None
        );
        let c = parse(Some(&cm(
            json!({"enable-external-gw": "true", "type": "centralized",
            "external-gw-nodes": " n2, n1 ,", "external-gw-addr": "172.19.200.1/24"}),
        )))
        .unwrap();
        assert_eq!(c.nodes, vec!["n2", "n1"]);
        assert_eq!(c.addr, "172.19.200.1");
        let nodes = vec![
            node("n1", false, Some("c1")),
            node("n2", false, Some("c2")),
            node("n3", true, Some("c3")),
        ];
        assert_eq!(gateway_chassis(&c, &nodes).unwrap(), vec!["c3", "c2", "c1"]);
        let distributed = GwConfig {
            type_: "distributed".into(),
            ..c.clone()
        };
        assert_eq!(gateway_chassis(&distributed, &nodes).unwrap(), vec!["c3"]);
        let unready = vec![node("n1", false, None), node("n2", false, Some("c2"))];
        assert!(gateway_chassis(&c, &unready)
            .unwrap_err()
            .contains("kube-ovn-cni not ready"));
        assert!(gateway_chassis(&distributed, &unready).is_err());
    }
}
