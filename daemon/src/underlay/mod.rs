//! The node's side of underlay networking (upstream's provider-network loop in
//! `pkg/daemon/controller.go`): for every ProviderNetwork that selects this node, its NIC goes
//! into the OVS bridge `br-<pn>` with its addresses, routes and MAC, the bridge is mapped in
//! `ovn-bridge-mappings` (so ovn-controller patches the `localnet.<ls>` ports of its Vlans'
//! subnets onto it), and the Node is labelled `<pn>.provider-network.kubernetes.io/ready`,
//! `interface` and `mtu` — what the controller's ProviderNetwork status and underlay pods' MTU
//! read. A node the ProviderNetwork leaves out is labelled `exclude=true`; a node whose
//! interface is missing (or any other failure) loses the labels and says why in the
//! `<pn>.provider-network.kubernetes.io/err_mesg` annotation of its kube-ovn-cni pod, its
//! network untouched. When a ProviderNetwork goes away or excludes the node, the NIC gets its
//! addresses and routes back, and the bridge and its mappings are removed. With
//! `exchangeLinkName` the bridge takes the NIC's name and the NIC becomes `br-<pn>` (and gets
//! its name back on removal).
//!
//! Differences from upstream: `vlanInterfaces`, `preserveVlanInterfaces` and
//! `autoCreateVlanSubinterfaces` are refused with a clear error rather than applied (this
//! machine's kernel has no 802.1Q devices to show them with); no Events are recorded on the ProviderNetwork; on a userspace
//! datapath (`netdev`) the NIC is moved into the bridge as on the kernel one (upstream leaves a
//! userspace-datapath NIC alone, for DPDK setups).

pub mod bridge;
pub mod external_gw;
pub mod links;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_ovn_common::crd::{ProviderNetwork, Vlan};
use kube_ovn_common::underlay::{self, key};
use serde_json::{json, Value};

use crate::netdev::Netns;
use crate::node::watch;
use crate::ovs::{Ovs, INTEGRATION_BRIDGE};
use bridge::{BridgeSpec, BRIDGE_MAPPINGS, CHASSIS_MAC_MAPPINGS};

/// Pause before retrying a provider network that failed.
const RETRY: Duration = Duration::from_secs(5);
/// How long a new bridge's kernel interface may take to appear.
const BRIDGE_LINK_WAIT: Duration = Duration::from_secs(10);

/// The label keys a provider network leaves on a node.
const LABELS: [&str; 5] = [
    underlay::READY,
    underlay::INTERFACE,
    underlay::MTU,
    underlay::EXCLUDE,
    underlay::VLAN_INTERFACES,
];

/// What the provider-network loop needs.
pub struct ProviderNetworks {
    /// API access.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// The node's OVS database.
    pub ovs: Ovs,
    /// This daemon's pod (`POD_NAMESPACE`, `POD_NAME`), which carries the error annotations;
    /// `None` outside a pod (errors are then only logged).
    pub pod: Option<(String, String)>,
}

impl ProviderNetworks {
    /// Starts following the ProviderNetworks, Vlans and this Node in the background.
    pub fn start(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let pns = watch::mirror(
            Api::<ProviderNetwork>::all(self.client.clone()),
            watcher::Config::default(),
            (),
        );
        let vlans = watch::mirror(
            Api::<Vlan>::all(self.client.clone()),
            watcher::Config::default(),
            (),
        );
        let nodes = watch::mirror(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", self.node)),
            (),
        );
        if !(pns.synced().await && vlans.synced().await && nodes.synced().await) {
            return;
        }
        let host = match Netns::current() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "provider networks: no netlink access");
                return;
            }
        };
        let (mut pn_changes, mut vlan_changes, mut node_changes) =
            (pns.changes, vlans.changes, nodes.changes);
        loop {
            let failed = match nodes.store.get(&ObjectRef::new(&self.node)) {
                None => true,
                Some(node) => {
                    let all: Vec<ProviderNetwork> =
                        pns.store.state().iter().map(|p| (**p).clone()).collect();
                    let vlan_ids: BTreeMap<String, i64> = vlans
                        .store
                        .state()
                        .iter()
                        .map(|v| (v.name_any(), v.spec.id))
                        .collect();
                    self.reconcile(&host, &node, &all, &vlan_ids).await
                }
            };
            let timer = async {
                if failed {
                    tokio::time::sleep(RETRY).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                r = pn_changes.changed() => if r.is_err() { return },
                r = vlan_changes.changed() => if r.is_err() { return },
                r = node_changes.changed() => if r.is_err() { return },
                _ = timer => {}
            }
        }
    }

    /// One pass over every provider network; returns whether one of them has to be retried.
    async fn reconcile(
        &self,
        host: &Netns,
        node: &Node,
        pns: &[ProviderNetwork],
        vlan_ids: &BTreeMap<String, i64>,
    ) -> bool {
        let mut failed = false;
        let labels = node.labels().clone();
        let live: BTreeSet<String> = pns
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
            .collect();
        for pn in pns.iter().filter(|p| live.contains(&p.name_any())) {
            let name = pn.name_any();
            let (wanted, error) = match underlay::node_excluded(&pn.spec, &self.node, &labels) {
                Err(e) => (None, Some(e)),
                Ok(true) => match self.clean(host, &name).await {
                    Ok(()) => (Some(excluded_labels()), None),
                    Err(e) => (Some(excluded_labels()), Some(e)),
                },
                Ok(false) => {
                    let nic = underlay::interface_of(&pn.spec, &self.node).to_string();
                    match self.init(host, pn, &nic, vlan_ids).await {
                        Ok(mtu) => (Some(ready_labels(&nic, mtu)), None),
                        Err(e) => (Some(failed_labels()), Some(e)),
                    }
                }
            };
            if let Some(e) = &error {
                tracing::warn!(provider_network = %name, error = %e, "provider network not set up");
                failed = true;
            }
            if let Some(w) = wanted {
                if let Err(e) = self.patch_labels(&labels, &name, &w).await {
                    tracing::warn!(provider_network = %name, error = %e, "labelling the node failed");
                    failed = true;
                }
            }
            if let Err(e) = self
                .record_error(&name, error.as_deref().unwrap_or(""))
                .await
            {
                tracing::warn!(provider_network = %name, error = %e, "recording the error failed");
            }
        }
        // Provider networks gone: their bridges (ours only) and labels go too.
        let mapped = {
            let cache = self.ovs.cache();
            bridge::mappings(&cache, BRIDGE_MAPPINGS)
                .into_iter()
                .filter(|(pn, br)| {
                    !live.contains(pn)
                        && (*br == underlay::bridge_name(pn)
                            || bridge::bridge(&cache, br).is_some_and(|b| {
                                b.external_ids.get("vendor").map(String::as_str)
                                    == Some(bridge::VENDOR)
                            }))
                })
                .map(|(pn, _)| pn)
                .collect::<BTreeSet<_>>()
        };
        let labelled: BTreeSet<String> = labels.keys().filter_map(|k| labelled_pn(k)).collect();
        for pn in mapped.union(&labelled).filter(|p| !live.contains(*p)) {
            if let Err(e) = self.clean(host, pn).await {
                tracing::warn!(provider_network = %pn, error = %e, "removing the provider bridge failed");
                failed = true;
                continue;
            }
            let none = LABELS.iter().map(|l| (*l, None)).collect::<Vec<_>>();
            if let Err(e) = self.patch_labels(&labels, pn, &none).await {
                tracing::warn!(provider_network = %pn, error = %e, "unlabelling the node failed");
                failed = true;
            }
        }
        failed
    }

    /// Upstream's `ovsInitProviderNetwork`: the bridge, its mappings, the NIC's addresses and
    /// routes moved onto it, the NIC as its port; returns the NIC's MTU.
    async fn init(
        &self,
        host: &Netns,
        pn: &ProviderNetwork,
        nic: &str,
        vlan_ids: &BTreeMap<String, i64>,
    ) -> Result<u32, String> {
        let name = pn.name_any();
        let spec = &pn.spec;
        if !spec.vlan_interfaces.is_empty()
            || spec.preserve_vlan_interfaces
            || spec.auto_create_vlan_subinterfaces
        {
            return Err(
                "vlanInterfaces, preserveVlanInterfaces and autoCreateVlanSubinterfaces are not supported by this kube-ovn-daemon"
                    .into(),
            );
        }
        if nic.is_empty() {
            return Err(format!(
                "provider network {name} names no interface for this node"
            ));
        }
        let h = host.handle();
        let (nic, br) = if spec.exchange_link_name {
            self.exchange_names(host, &name, nic).await?
        } else {
            (nic.to_string(), underlay::bridge_name(&name))
        };
        let nic = nic.as_str();
        let Some(link) = links::link(h, nic).await? else {
            return Err(format!("nic {nic} does not exist"));
        };
        // Always trunk 0, so the bridge itself talks untagged to the outside network.
        let mut trunks: BTreeSet<i64> = BTreeSet::from([0]);
        for v in pn.status.iter().flat_map(|s| &s.vlans) {
            if let Some(id) = vlan_ids.get(v) {
                trunks.insert(*id);
            }
        }
        let trunks: Vec<i64> = trunks.into_iter().collect();
        let bridge_spec = {
            let cache = self.ovs.cache();
            BridgeSpec {
                name: br.clone(),
                datapath_type: bridge::datapath_type(&cache, INTEGRATION_BRIDGE),
                hwaddr: crate::network::format_mac(
                    &<[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or_default(),
                ),
                exchange_link_name: spec.exchange_link_name,
                // `--mac-learning-fallback` is not implemented: upstream's default.
                mac_learning_fallback: false,
            }
        };
        self.apply("add-br", |c| bridge::plan_bridge(c, &bridge_spec))
            .await?;
        // Other NICs kube-ovn put on this bridge before (the interface changed) go back.
        let others: Vec<String> = {
            let cache = self.ovs.cache();
            bridge::bridge(&cache, &br)
                .map(|b| {
                    b.ports
                        .into_iter()
                        .filter(|(_, n, ids)| n != nic && bridge::is_provider_nic(&br, n, ids))
                        .map(|(_, n, _)| n)
                        .collect()
                })
                .unwrap_or_default()
        };
        for other in others {
            self.remove_nic(host, &br, &other).await?;
        }
        self.set_mapping(BRIDGE_MAPPINGS, &name, Some(br.clone()), true)
            .await?;
        let mac = bridge::random_mac().map_err(|e| format!("generate a chassis MAC: {e}"))?;
        self.set_mapping(CHASSIS_MAC_MAPPINGS, &name, Some(mac), false)
            .await?;
        // vswitchd gives a userspace bridge's tap device its MAC by taking it down and up,
        // which drops the gateway routes through it: move them only once the MAC is set.
        let br_link = self.wait_link(host, &br, Some(&link.mac)).await?;
        let moved = links::transfer(h, link.index, br_link.index).await?;
        if moved.addresses > 0 {
            tracing::info!(nic, bridge = %br, addresses = moved.addresses, routes = moved.routes.len(), "provider NIC's addresses and routes moved to its bridge");
        }
        links::set_up(h, br_link.index, true).await?;
        links::set_up(h, link.index, true).await?;
        self.apply("add-port", |c| bridge::plan_nic_port(c, &br, nic, &trunks))
            .await?;
        // The node is labelled ready with every moved route in place, whatever touched the
        // bridge's link meanwhile.
        let readded = links::readd_missing(h, br_link.index, &moved.routes).await?;
        if readded > 0 {
            tracing::warn!(bridge = %br, routes = readded, "routes moved to the bridge were gone and are added again");
        }
        Ok(link.mtu)
    }

    /// `exchangeLinkName`: the bridge takes the NIC's name `nic` and the NIC is renamed
    /// `br-<pn>` (so host configuration naming `nic` keeps working); returns the names of the
    /// provider NIC and of the bridge. Already exchanged (a bridge of ours named `nic`), or
    /// renamed by an earlier pass that did not get further, it renames nothing.
    async fn exchange_names(
        &self,
        host: &Netns,
        pn: &str,
        nic: &str,
    ) -> Result<(String, String), String> {
        let renamed = underlay::bridge_name(pn);
        let ours = {
            let cache = self.ovs.cache();
            bridge::bridge(&cache, nic).is_some_and(|b| {
                b.external_ids.get("vendor").map(String::as_str) == Some(bridge::VENDOR)
            })
        };
        let h = host.handle();
        if !ours {
            match links::link(h, nic).await? {
                Some(l) => {
                    links::rename(h, l.index, &renamed).await?;
                    tracing::info!(nic, renamed = %renamed, "provider NIC renamed for exchangeLinkName");
                }
                None if links::link(h, &renamed).await?.is_some() => {}
                None => return Err(format!("nic {nic} does not exist")),
            }
        }
        Ok((renamed, nic.to_string()))
    }

    /// Upstream's `ovsCleanProviderNetwork`: the NICs on the provider's bridge get their
    /// addresses and routes back, the bridge and both mappings go. Nothing there is success.
    async fn clean(&self, host: &Netns, pn: &str) -> Result<(), String> {
        let (br, nics) = {
            let cache = self.ovs.cache();
            let br = bridge::mappings(&cache, BRIDGE_MAPPINGS)
                .remove(pn)
                .unwrap_or_else(|| underlay::bridge_name(pn));
            let nics: Option<Vec<String>> = bridge::bridge(&cache, &br).map(|b| {
                b.ports
                    .into_iter()
                    .filter(|(_, n, ids)| bridge::is_provider_nic(&br, n, ids))
                    .map(|(_, n, _)| n)
                    .collect()
            });
            (br, nics)
        };
        if let Some(nics) = nics {
            for nic in nics.iter() {
                self.remove_nic(host, &br, nic).await?;
            }
            self.apply("del-br", |c| bridge::plan_del_bridge(c, &br))
                .await?;
            tracing::info!(bridge = %br, provider_network = pn, "provider bridge removed");
            // exchangeLinkName: the NIC (`br-<pn>`) gets its name back from the bridge.
            let renamed = underlay::bridge_name(pn);
            if br != renamed && nics.contains(&renamed) {
                let h = host.handle();
                self.wait_link_gone(host, &br).await?;
                if let Some(l) = links::link(h, &renamed).await? {
                    links::rename(h, l.index, &br).await?;
                    tracing::info!(nic = %br, "provider NIC's name given back");
                }
            }
        }
        self.set_mapping(CHASSIS_MAC_MAPPINGS, pn, None, true)
            .await?;
        self.set_mapping(BRIDGE_MAPPINGS, pn, None, true).await
    }

    /// Upstream's `removeProviderNic`: the port leaves the bridge, the bridge's addresses and
    /// routes go back to the NIC (or are dropped when the NIC is gone), the bridge goes down.
    async fn remove_nic(&self, host: &Netns, br: &str, nic: &str) -> Result<(), String> {
        let h = host.handle();
        self.apply("del-port", |c| bridge::plan_del_port(c, br, nic))
            .await?;
        let Some(br_link) = links::link(h, br).await? else {
            return Ok(());
        };
        match links::link(h, nic).await? {
            Some(nic_link) => {
                let moved = links::transfer(h, br_link.index, nic_link.index).await?;
                tracing::info!(
                    nic,
                    bridge = br,
                    addresses = moved.addresses,
                    routes = moved.routes.len(),
                    "provider NIC's addresses and routes moved back"
                );
            }
            None => tracing::warn!(
                nic,
                bridge = br,
                "provider NIC gone; the bridge's addresses go with the bridge"
            ),
        }
        links::set_up(h, br_link.index, false).await
    }

    /// Waits for the kernel interface of a bridge vswitchd has just been told about (with
    /// `mac`, when given, already applied).
    async fn wait_link(
        &self,
        host: &Netns,
        br: &str,
        mac: Option<&[u8]>,
    ) -> Result<links::Link, String> {
        let deadline = tokio::time::Instant::now() + BRIDGE_LINK_WAIT;
        loop {
            let found = links::link(host.handle(), br).await?;
            if let Some(l) = found.as_ref().filter(|l| mac.is_none_or(|m| l.mac == m)) {
                return Ok(l.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match found {
                    None => format!(
                        "OVS bridge {br} has no kernel interface after {BRIDGE_LINK_WAIT:?}"
                    ),
                    Some(l) => format!(
                        "OVS bridge {br} did not take its NIC's MAC within {BRIDGE_LINK_WAIT:?} (has {:02x?})",
                        l.mac
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the kernel interface of a deleted bridge to go (its name is then free).
    async fn wait_link_gone(&self, host: &Netns, br: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + BRIDGE_LINK_WAIT;
        while links::link(host.handle(), br).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the kernel interface of deleted OVS bridge {br} is still there after {BRIDGE_LINK_WAIT:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Plans against the current replica and runs the plan, if there is one.
    async fn apply(
        &self,
        method: &str,
        plan: impl FnOnce(&ovsdb::cache::CacheData) -> Option<ovsdb::Transaction>,
    ) -> Result<(), String> {
        let txn = {
            let cache = self.ovs.cache();
            plan(&cache)
        };
        match txn {
            Some(t) => self.ovs.run(method, &t).await.map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Sets (or with `None` removes) the provider's entry of the mappings `name`; an existing
    /// entry is kept unless `overwrite`.
    async fn set_mapping(
        &self,
        name: &str,
        pn: &str,
        value: Option<String>,
        overwrite: bool,
    ) -> Result<(), String> {
        self.apply("set", |c| {
            let mut m = bridge::mappings(c, name);
            match value {
                Some(v) if overwrite || !m.contains_key(pn) => {
                    m.insert(pn.to_string(), v);
                }
                Some(_) => return None,
                None => {
                    m.remove(pn)?;
                }
            }
            bridge::plan_mappings(c, name, &m)
        })
        .await
    }

    /// Patches the node's labels of provider network `pn` where they differ from `wanted`.
    async fn patch_labels(
        &self,
        current: &BTreeMap<String, String>,
        pn: &str,
        wanted: &[(&str, Option<String>)],
    ) -> Result<(), String> {
        let mut patch = serde_json::Map::new();
        for (what, value) in wanted {
            let k = key(pn, what);
            if current.get(&k) != value.as_ref() {
                patch.insert(k, value.clone().map_or(Value::Null, Value::String));
            }
        }
        if patch.is_empty() {
            return Ok(());
        }
        Api::<Node>::all(self.client.clone())
            .patch(
                &self.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": patch}})),
            )
            .await
            .map(drop)
            .map_err(|e| format!("patch labels of node {}: {e}", self.node))
    }

    /// Upstream's `recordProviderNetworkErr`: the daemon pod's `err_mesg` annotation of `pn`
    /// says `message` (removed when empty).
    async fn record_error(&self, pn: &str, message: &str) -> Result<(), String> {
        let Some((ns, name)) = &self.pod else {
            return Ok(());
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let k = key(pn, underlay::ERR_MESSAGE);
        let pod = api
            .get(name)
            .await
            .map_err(|e| format!("get pod {ns}/{name}: {e}"))?;
        let current = pod.annotations().get(&k).map(String::as_str).unwrap_or("");
        if current == message {
            return Ok(());
        }
        let value = if message.is_empty() {
            Value::Null
        } else {
            Value::String(message.to_string())
        };
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {k: value}}})),
        )
        .await
        .map(drop)
        .map_err(|e| format!("patch pod {ns}/{name}: {e}"))
    }
}

/// The provider network a node label of [`LABELS`] belongs to.
fn labelled_pn(label: &str) -> Option<String> {
    let (pn, what) = label.split_once(".provider-network.kubernetes.io/")?;
    (!pn.is_empty() && LABELS.contains(&what)).then(|| pn.to_string())
}

/// The labels of a node whose bridge is up.
fn ready_labels(nic: &str, mtu: u32) -> Vec<(&'static str, Option<String>)> {
    vec![
        (underlay::READY, Some("true".into())),
        (underlay::INTERFACE, Some(nic.to_string())),
        (underlay::MTU, Some(mtu.to_string())),
        (underlay::EXCLUDE, None),
        (underlay::VLAN_INTERFACES, None),
    ]
}

/// The labels of a node whose bridge failed (`exclude` left as it is, as upstream).
fn failed_labels() -> Vec<(&'static str, Option<String>)> {
    vec![
        (underlay::READY, None),
        (underlay::INTERFACE, None),
        (underlay::MTU, None),
        (underlay::VLAN_INTERFACES, None),
    ]
}

/// The labels of a node the provider network leaves out.
fn excluded_labels() -> Vec<(&'static str, Option<String>)> {
    vec![
        (underlay::READY, None),
        (underlay::INTERFACE, None),
        (underlay::MTU, None),
        (underlay::EXCLUDE, Some("true".into())),
        (underlay::VLAN_INTERFACES, None),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_upstream_sets_them() {
        let ready = ready_labels("eth1", 1500);
        assert!(ready.contains(&(underlay::READY, Some("true".into()))));
        assert!(ready.contains(&(underlay::MTU, Some("1500".into()))));
        assert!(ready.contains(&(underlay::EXCLUDE, None)));
        assert!(!failed_labels().iter().any(|(k, _)| *k == underlay::EXCLUDE));
        assert!(excluded_labels().contains(&(underlay::EXCLUDE, Some("true".into()))));
        assert_eq!(
            labelled_pn("net1.provider-network.kubernetes.io/exclude").as_deref(),
            Some("net1")
        );
        assert_eq!(
            labelled_pn("net1.provider-network.kubernetes.io/other"),
            None
        );
        assert_eq!(labelled_pn("kubernetes.io/hostname"), None);
    }
}
