//! The external gateway bridge of a gateway node (upstream's `setExGateway`): on a node
//! labelled `ovn.kubernetes.io/external-gw=true`, the NIC named by `external-gw-nic` in
//! ConfigMap `ovn-external-gw-config` becomes a port of `br-<switch>` and the bridge is mapped
//! as `<switch>` in `ovn-bridge-mappings`, so the external switch's localnet port reaches the
//! outside through it. The NIC is dedicated: its addresses stay where they are, as upstream.
//! On a node not (or no longer) labelled, a kernel-datapath `br-<switch>` that no
//! ProviderNetwork owns is removed; a userspace one is left alone, as upstream. Without
//! `external-gw-nic` a ProviderNetwork named as the switch can bridge the gateway NIC instead.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_ovn_common::crd::ProviderNetwork;
use kube_ovn_common::ovn_nat as on;
use kube_ovn_common::underlay;

use super::bridge::{self, BridgeSpec, BRIDGE_MAPPINGS};
use super::links;
use crate::netdev::Netns;
use crate::node::watch;
use crate::ovs::{Ovs, INTEGRATION_BRIDGE};

/// Pause before retrying after a failure (a missing NIC, OVS refusing).
const RETRY: Duration = Duration::from_secs(5);

/// What the external gateway loop needs.
pub struct ExternalGateway {
    /// API access.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// The node's OVS database.
    pub ovs: Ovs,
    /// `--external-gateway-switch`: the bridge is `br-<switch>`, mapped as `<switch>`.
    pub switch: String,
    /// `--external-gateway-config-ns`.
    pub config_ns: String,
}

impl ExternalGateway {
    /// Starts following this Node, the ConfigMap and the ProviderNetworks in the background.
    pub fn start(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let nodes = watch::mirror(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", self.node)),
            (),
        );
        let cms = watch::mirror(
            Api::<ConfigMap>::namespaced(self.client.clone(), &self.config_ns),
            watcher::Config::default().fields(&format!("metadata.name={}", on::EXTERNAL_GW_CONFIG)),
            (),
        );
        let pns = watch::mirror(
            Api::<ProviderNetwork>::all(self.client.clone()),
            watcher::Config::default(),
            (),
        );
        if !(nodes.synced().await && cms.synced().await && pns.synced().await) {
            return;
        }
        let host = match Netns::current() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "external gateway: no netlink access");
                return;
            }
        };
        let (mut node_changes, mut cm_changes, mut pn_changes) =
            (nodes.changes, cms.changes, pns.changes);
        loop {
            let labelled = nodes
                .store
                .get(&ObjectRef::new(&self.node))
                .is_some_and(|n| {
                    n.labels().get(on::LABEL_EXTERNAL_GW).map(String::as_str) == Some("true")
                });
            let nic = cms
                .store
                .get(&ObjectRef::new(on::EXTERNAL_GW_CONFIG).within(&self.config_ns))
                .and_then(|c| c.data.as_ref()?.get("external-gw-nic").cloned())
                .unwrap_or_default();
            let owned_by_pn = pns
                .store
                .state()
                .iter()
                .any(|p| underlay::bridge_name(&p.name_any()) == self.bridge());
            let result = if labelled && nic.is_empty() {
                // A ProviderNetwork named as the switch may bridge the gateway's NIC instead.
                if !owned_by_pn {
                    tracing::warn!(
                        "node is an external gateway but {} in {} names no external-gw-nic",
                        on::EXTERNAL_GW_CONFIG,
                        self.config_ns
                    );
                }
                Ok(())
            } else if labelled {
                self.build(&host, &nic).await
            } else {
                self.remove_unless(owned_by_pn).await
            };
            let failed = match result {
                Ok(()) => false,
                Err(e) => {
                    tracing::error!(bridge = %self.bridge(), error = %e, "external gateway");
                    true
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
                r = node_changes.changed() => if r.is_err() { return },
                r = cm_changes.changed() => if r.is_err() { return },
                r = pn_changes.changed() => if r.is_err() { return },
                _ = timer => {}
            }
        }
    }

    fn bridge(&self) -> String {
        underlay::bridge_name(&self.switch)
    }

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

    /// The bridge with `nic` as its port, mapped as the switch.
    async fn build(&self, host: &Netns, nic: &str) -> Result<(), String> {
        let h = host.handle();
        let Some(link) = links::link(h, nic).await? else {
            return Err(format!("external-gw-nic {nic} does not exist"));
        };
        let br = self.bridge();
        let spec = {
            let cache = self.ovs.cache();
            BridgeSpec {
                name: br.clone(),
                datapath_type: bridge::datapath_type(&cache, INTEGRATION_BRIDGE),
                hwaddr: crate::network::format_mac(
                    &<[u8; 6]>::try_from(link.mac.as_slice()).unwrap_or_default(),
                ),
                exchange_link_name: false,
                mac_learning_fallback: false,
            }
        };
        self.apply("add-br", |c| bridge::plan_bridge(c, &spec))
            .await?;
        links::set_up(h, link.index, true).await?;
        self.apply("add-port", |c| bridge::plan_nic_port(c, &br, nic, &[]))
            .await?;
        let switch = self.switch.clone();
        self.apply("set", |c| {
            let mut m = bridge::mappings(c, BRIDGE_MAPPINGS);
            if m.get(&switch) == Some(&br) {
                return None;
            }
            m.insert(switch, br.clone());
            bridge::plan_mappings(c, BRIDGE_MAPPINGS, &m)
        })
        .await
    }

    /// Removes a kernel-datapath bridge no ProviderNetwork owns.
    async fn remove_unless(&self, owned_by_pn: bool) -> Result<(), String> {
        let br = self.bridge();
        let userspace = {
            let cache = self.ovs.cache();
            bridge::bridge(&cache, &br).is_none() || bridge::datapath_type(&cache, &br) == "netdev"
        };
        if owned_by_pn || userspace {
            return Ok(());
        }
        self.apply("del-br", |c| bridge::plan_del_bridge(c, &br))
            .await
    }
}
