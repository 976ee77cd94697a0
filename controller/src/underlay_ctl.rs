//! Underlay objects as upstream's `vlan.go` and `provider_network.go` keep them: a Vlan gets its
//! provider defaulted, its `status.subnets` and `status.conflict` (same id on the same provider),
//! and is listed in its ProviderNetwork's `status.vlans` (the "vlan ready" signal underlay
//! subnets wait for); a ProviderNetwork's status lists its ready and not-ready nodes, from the
//! `<pn>.provider-network.kubernetes.io/ready` label the daemon sets, with a per-node Ready
//! condition carrying the daemon's error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::json;

use crate::context::{Ctx, Error};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube_ovn_common::crd::condition::Condition;
use kube_ovn_common::crd::provider_network::{ProviderNetworkCondition, ProviderNetworkStatus};
use kube_ovn_common::crd::{ProviderNetwork, Vlan};
use kube_ovn_common::underlay;
use kube_ovn_runtime::Outcome;

/// The Vlan queue's kind name.
pub const VLAN_KIND: &str = "vlan";
/// The ProviderNetwork status queue's kind name.
pub const PN_KIND: &str = "provider-network";
/// Upstream resyncs every ProviderNetwork's status this often.
pub const PN_RESYNC: Duration = Duration::from_secs(30);

/// What of a Vlan its reconciler acts on: its spec and deletion (its status is its own output).
pub fn vlan_signature(v: &Vlan) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(
        kube_ovn_runtime::trigger::hash_json(&v.spec),
        v.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a ProviderNetwork its status reconciler reads: its spec.
pub fn pn_signature(p: &ProviderNetwork) -> u64 {
    kube_ovn_runtime::trigger::hash_json(&p.spec)
}

/// What of a Node the ProviderNetwork statuses read: its name and labels (the ready label,
/// and the labels a `nodeSelector` matches).
pub fn node_signature(n: &k8s_openapi::api::core::v1::Node) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(n.name_any(), n.labels()))
}

/// Every ProviderNetwork (a node change may move any of them).
pub fn all_pns(pns: &[Arc<ProviderNetwork>]) -> Vec<String> {
    pns.iter().map(|p| p.name_any()).collect()
}

/// The subnets using the Vlan `vlan`.
fn subnets_of(ctx: &Ctx, vlan: &str) -> Vec<String> {
    ctx.stores
        .subnets
        .state()
        .iter()
        .filter(|s| s.spec.vlan == vlan)
        .map(|s| s.name_any())
        .collect()
}

/// Reconciles the Vlan `name` (upstream's handleAddVlan/handleUpdateVlan/handleDelVlan).
pub async fn reconcile_vlan(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let subnets = subnets_of(&ctx, &name);
    let pn_api: Api<ProviderNetwork> = Api::all(ctx.client.clone());
    let Some(vlan) = ctx.stores.vlans.get(&ObjectRef::new(&name)) else {
        // Deleted: its subnets re-validate (and fail), the provider networks forget it, and
        // Vlans that conflicted with it are looked at again.
        for s in subnets {
            ctx.queues.add(crate::subnet_ctl::KIND, s);
        }
        for pn in ctx.stores.provider_networks.state() {
            let vlans = pn.status.as_ref().map(|s| &s.vlans[..]).unwrap_or(&[]);
            if vlans.iter().any(|v| v == &name) {
                let keep: Vec<&String> = vlans.iter().filter(|v| **v != name).collect();
                patch_pn_status(&pn_api, &pn.name_any(), json!({"vlans": keep})).await?;
            }
        }
        for v in ctx.stores.vlans.state() {
            if v.status.as_ref().is_some_and(|s| s.conflict) {
                ctx.queues.add(VLAN_KIND, v.name_any());
            }
        }
        return Ok(Outcome::Done);
    };
    let api: Api<Vlan> = Api::all(ctx.client.clone());
    let mut vlan = (*vlan).clone();
    if vlan.spec.provider.is_empty() {
        vlan.spec.provider = ctx
            .config
            .upstream
            .value("default-provider-name")
            .unwrap_or("provider")
            .to_string();
        vlan = api.replace(&name, &Default::default(), &vlan).await?;
    }
    let status = vlan.status.clone().unwrap_or_default();
    let mut listed = status.subnets.clone();
    for s in &subnets {
        if !listed.contains(s) {
            listed.push(s.clone());
        }
    }
    let conflict = conflicting(&vlan, &ctx.stores.vlans.state()).is_some();
    if listed != status.subnets || conflict != status.conflict {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"subnets": listed, "conflict": conflict}})),
        )
        .await?;
    }
    if let Some(other) = conflicting(&vlan, &ctx.stores.vlans.state()) {
        for s in subnets {
            ctx.queues.add(crate::subnet_ctl::KIND, s);
        }
        return Err(Error::Other(format!(
            "provider {} new vlan {name} conflict with old vlan {other}",
            vlan.spec.provider
        )));
    }
    let Some(pn) = ctx
        .stores
        .provider_networks
        .get(&ObjectRef::new(&vlan.spec.provider))
    else {
        return Err(Error::Other(format!(
            "failed to get provider network {}: not found",
            vlan.spec.provider
        )));
    };
    let vlans = pn
        .status
        .as_ref()
        .map(|s| s.vlans.clone())
        .unwrap_or_default();
    if !vlans.contains(&name) {
        let mut vlans = vlans;
        vlans.push(name.clone());
        patch_pn_status(&pn_api, &pn.name_any(), json!({"vlans": vlans})).await?;
    }
    for s in subnets {
        ctx.queues.add(crate::subnet_ctl::KIND, s);
    }
    Ok(Outcome::Done)
}

/// Another Vlan with the same non-zero id on the same provider (upstream's checkVlanConflict).
fn conflicting(vlan: &Vlan, all: &[Arc<Vlan>]) -> Option<String> {
    if vlan.spec.id == 0 {
        return None;
    }
    let name = vlan.name_any();
    all.iter()
        .find(|v| {
            v.spec.provider == vlan.spec.provider
                && v.spec.id == vlan.spec.id
                && v.name_any() != name
        })
        .map(|v| v.name_any())
}

async fn patch_pn_status(
    api: &Api<ProviderNetwork>,
    name: &str,
    status: serde_json::Value,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// A node as the ProviderNetwork status needs it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The `<pn>.provider-network.kubernetes.io/err_mesg` its daemon reported, if its
    /// kube-ovn-cni pod is known (`None`: no such pod).
    pub error: Option<String>,
}

/// Upstream's resyncProviderNetworkStatus for one ProviderNetwork: the new status, or `None`
/// when nothing changed. Excluded nodes lose their conditions; others are ready (condition
/// Ready=True, `InitOVSBridgeSucceeded`) when labelled so, else not ready
/// (`InitOVSBridgeFailed` with the daemon's message).
pub fn pn_status(
    pn: &ProviderNetwork,
    nodes: &[NodeView],
    now: jiff::Timestamp,
) -> Option<ProviderNetworkStatus> {
    let name = pn.name_any();
    let mut st = pn.status.clone().unwrap_or_default();
    let ready_label = underlay::key(&name, underlay::READY);
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    let mut changed = false;
    for n in nodes {
        // A selector that cannot be read excludes nobody and includes nobody (upstream skips
        // the node).
        let Ok(excluded) = underlay::node_excluded(&pn.spec, &n.name, &n.labels) else {
            continue;
        };
        if excluded {
            changed |= remove_node_conditions(&mut st, &n.name);
            continue;
        }
        if n.labels.get(&ready_label).map(String::as_str) == Some("true") {
            changed |= set_ready(&mut st, &n.name, "True", "InitOVSBridgeSucceeded", "", now);
            ready.push(n.name.clone());
        } else {
            let msg = match &n.error {
                None => format!("kube-ovn-cni pod on node {} not found", n.name),
                Some(m) if m.is_empty() => "unknown error".to_string(),
                Some(m) => m.clone(),
            };
            changed |= set_ready(&mut st, &n.name, "False", "InitOVSBridgeFailed", &msg, now);
            not_ready.push(n.name.clone());
        }
    }
    let stale: Vec<String> = st
        .conditions
        .iter()
        .map(|c| c.node.clone())
        .filter(|n| !ready.contains(n) && !not_ready.contains(n))
        .collect();
    for n in stale {
        changed |= remove_node_conditions(&mut st, &n);
    }
    let same = |a: &[String], b: &[String]| a.len() == b.len() && a.iter().all(|x| b.contains(x));
    if !changed && same(&st.ready_nodes, &ready) && same(&st.not_ready_nodes, &not_ready) {
        return None;
    }
    st.ready = not_ready.is_empty();
    st.ready_nodes = ready;
    st.not_ready_nodes = not_ready;
    Some(st)
}

fn remove_node_conditions(st: &mut ProviderNetworkStatus, node: &str) -> bool {
    let before = st.conditions.len();
    st.conditions.retain(|c| c.node != node);
    before != st.conditions.len()
}

fn set_ready(
    st: &mut ProviderNetworkStatus,
    node: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    let stamp = Some(Time(now));
    match st
        .conditions
        .iter_mut()
        .find(|c| c.node == node && c.condition.type_ == "Ready")
    {
        Some(c) => {
            let cd = &mut c.condition;
            if cd.status == status && cd.reason == reason && cd.message == message {
                return false;
            }
            if cd.status != status {
                cd.last_transition_time = stamp.clone();
            }
            cd.last_update_time = stamp;
            cd.status = status.into();
            cd.reason = reason.into();
            cd.message = message.into();
        }
        None => st.conditions.push(ProviderNetworkCondition {
            node: node.into(),
            condition: Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_update_time: stamp.clone(),
                last_transition_time: stamp,
                ..Default::default()
            },
        }),
    }
    true
}

/// Refreshes the status of the ProviderNetwork `name` (queued by its changes, every node's
/// label changes, and every [`PN_RESYNC`] as upstream).
pub async fn reconcile_pn(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let Some(pn) = ctx.stores.provider_networks.get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    let ns = crate::run::Identity::from_env().namespace;
    let cni_pods: BTreeMap<String, Option<String>> = ctx
        .stores
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.labels().get("app").map(String::as_str) == Some("kube-ovn-cni")
        })
        .map(|p| {
            (
                p.node_name().to_string(),
                p.annotations()
                    .get(&underlay::key(&name, underlay::ERR_MESSAGE))
                    .cloned(),
            )
        })
        .collect();
    let nodes: Vec<NodeView> = ctx
        .stores
        .nodes
        .state()
        .iter()
        .map(|n| {
            let node = n.name_any();
            NodeView {
                error: cni_pods.get(&node).map(|e| e.clone().unwrap_or_default()),
                labels: n.labels().clone(),
                name: node,
            }
        })
        .collect();
    if let Some(st) = pn_status(&pn, &nodes, jiff::Timestamp::now()) {
        let api: Api<ProviderNetwork> = Api::all(ctx.client.clone());
        patch_pn_status(&api, &name, serde_json::to_value(&st).unwrap_or_default()).await?;
    }
    // The daemons' error annotations are on their pods, which nothing here watches: look
    // again later, as upstream's periodic resync.
    Ok(Outcome::After(PN_RESYNC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube_ovn_common::crd::provider_network::ProviderNetworkSpec;
    use kube_ovn_common::crd::vlan::VlanSpec;

    fn view(name: &str, ready: bool, error: Option<&str>) -> NodeView {
        let mut labels = BTreeMap::new();
        if ready {
            labels.insert(
                "net1.provider-network.kubernetes.io/ready".into(),
                "true".into(),
            );
        }
        NodeView {
            name: name.into(),
            labels,
            error: error.map(str::to_string),
        }
    }

    fn pn() -> ProviderNetwork {
        ProviderNetwork::new(
            "net1",
            ProviderNetworkSpec {
                default_interface: "eth1".into(),
                exclude_nodes: vec!["n3".into()],
                ..Default::default()
            },
        )
    }

    #[test]
    fn status_lists_ready_and_not_ready_nodes_as_upstream() {
        let now = jiff::Timestamp::UNIX_EPOCH;
        let nodes = [
            view("n1", true, Some("")),
            view("n2", false, Some("interface eth1 not found")),
            view("n3", false, None),
            view("n4", false, None),
        ];
        let st = pn_status(&pn(), &nodes, now).unwrap();
        assert!(!st.ready);
        assert_eq!(st.ready_nodes, ["n1"]);
        assert_eq!(st.not_ready_nodes, ["n2", "n4"]);
        let c = |n: &str| {
            st.conditions.iter().find(|c| c.node == n).map(|c| {
                (
                    c.condition.status.clone(),
                    c.condition.reason.clone(),
                    c.condition.message.clone(),
                )
            })
        };
        assert_eq!(
            c("n1"),
            Some(("True".into(), "InitOVSBridgeSucceeded".into(), "".into()))
        );
        assert_eq!(
            c("n2"),
            Some((
                "False".into(),
                "InitOVSBridgeFailed".into(),
                "interface eth1 not found".into()
            ))
        );
        assert_eq!(c("n3"), None);
        assert_eq!(c("n4").unwrap().2, "kube-ovn-cni pod on node n4 not found");
        // Applied, the same view changes nothing.
        let mut again = pn();
        again.status = Some(st);
        assert!(pn_status(&again, &nodes, now).is_none());
        // A node gone loses its condition.
        assert!(pn_status(&again, &nodes[..3], now)
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.node != "n4"));
    }

    #[test]
    fn same_id_on_the_same_provider_conflicts() {
        let v = |n: &str, id: i64, p: &str| {
            Arc::new(Vlan::new(
                n,
                VlanSpec {
                    id,
                    provider: p.into(),
                    ..Default::default()
                },
            ))
        };
        let all = [
            v("a", 100, "net1"),
            v("b", 100, "net1"),
            v("c", 100, "net2"),
            v("z", 0, "net1"),
            v("y", 0, "net1"),
        ];
        assert_eq!(conflicting(&all[0], &all).as_deref(), Some("b"));
        assert_eq!(conflicting(&all[2], &all), None);
        assert_eq!(conflicting(&all[3], &all), None);
    }
}
