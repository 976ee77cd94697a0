//! Node setup, upstream's `initNodeGateway`/gateway reconciler: the node's `ovn0` on the join
//! switch, host routes to the overlay through it, NAT-outgoing, forwarding, the chassis
//! annotation and the `NetworkUnavailable=False` condition once the join gateway answers.
//! Re-applied whenever this Node or any Subnet changes; every step is idempotent.

pub mod icmp;
pub mod join;
pub mod nat;
pub mod routes;
pub mod subnets;
pub mod tunnel;
pub mod watch;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;
use kube_ovn_common::names::node_lsp;
use kube_ovn_common::node::internal_ips;
use serde_json::json;

use crate::config::TxChecksumOffload;
use crate::netdev::Netns;
use crate::ovs::{Ovs, PortSpec, INTEGRATION_BRIDGE};
use join::JoinNic;
use kube_ovn_common::crd::Subnet;
use subnets::SubnetView;

/// The node's NIC on the join switch.
pub const NODE_NIC: &str = "ovn0";
/// Annotation carrying the node's OVN chassis name.
pub const CHASSIS_ANNOTATION: &str = kube_ovn_common::annotations::CHASSIS;
/// Node condition the daemon owns.
pub const CONDITION: &str = "NetworkUnavailable";
/// Reason of the condition once the join gateway answers.
pub const REACHABLE_REASON: &str = "JoinSubnetGatewayReachable";

/// Node label the ic-controller puts on interconnection gateways.
pub const IC_GW_LABEL: &str = "ovn.kubernetes.io/ic-gw";
/// `Open_vSwitch` `external_ids` key making ovn-controller an interconnection gateway.
pub const IS_INTERCONN: &str = "ovn-is-interconn";

/// Pause before retrying a setup that failed or is not complete yet.
const RETRY: Duration = Duration::from_secs(2);
/// How long one echo to the join gateway waits for its reply.
const ECHO_WAIT: Duration = Duration::from_secs(1);

/// What the node setup needs.
pub struct NodeSetup {
    /// API access.
    pub client: Client,
    /// This node's name.
    pub node: String,
    /// The node's OVS database.
    pub ovs: Ovs,
    /// Name of the join subnet (`--node-switch`).
    pub join_switch: String,
    /// The default VPC's router (`--cluster-router`): its subnets, and those naming no VPC,
    /// are the overlay the node routes to.
    pub cluster_router: String,
    /// MTU of `ovn0` (the pod MTU, as upstream).
    pub mtu: u32,
    /// TX checksum offload policy, applied to `ovn0` like to pod NICs.
    pub tx_checksum: TxChecksumOffload,
    /// Every Subnet (shared with the CNI handler).
    pub subnets: watch::Mirror<Subnet>,
}

/// Whether a reconcile finished everything or has to be retried.
enum Progress {
    Done,
    Waiting(String),
}

/// State kept between reconciles.
struct Applied {
    ruleset: Option<String>,
}

impl NodeSetup {
    /// Starts following this Node and the Subnets in the background.
    pub fn start(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        let nodes = watch::mirror(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={}", self.node)),
            (),
        );
        let subnets = self.subnets.clone();
        if !(nodes.synced().await && subnets.synced().await) {
            return;
        }
        let (mut node_changes, mut subnet_changes) = (nodes.changes, subnets.changes);
        let host = match Netns::current() {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "node setup: no netlink access");
                return;
            }
        };
        let mut applied = Applied { ruleset: None };
        loop {
            let node = nodes.store.get(&ObjectRef::new(&self.node));
            let subnet_list: Vec<SubnetView> = subnets
                .store
                .state()
                .iter()
                .filter_map(|s| SubnetView::from_subnet(s))
                .collect();
            let retry = match node {
                None => Some(format!("node {} not found", self.node)),
                Some(n) => match self.reconcile(&host, &n, &subnet_list, &mut applied).await {
                    Ok(Progress::Done) => None,
                    Ok(Progress::Waiting(why)) => Some(why),
                    Err(e) => {
                        tracing::warn!(error = %e, "node setup failed, retrying");
                        Some(e)
                    }
                },
            };
            if let Some(why) = &retry {
                tracing::debug!(why = %why, "node setup not complete");
            }
            let timer = async {
                match retry {
                    Some(_) => tokio::time::sleep(RETRY).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = node_changes.changed() => if r.is_err() { return },
                r = subnet_changes.changed() => if r.is_err() { return },
                _ = timer => {}
            }
        }
    }

    async fn reconcile(
        &self,
        host: &Netns,
        node: &Node,
        subnet_list: &[SubnetView],
        applied: &mut Applied,
    ) -> Result<Progress, String> {
        let annotations = node.metadata.annotations.clone().unwrap_or_default();
        let join = match join::from_annotations(&annotations) {
            Ok(j) => j,
            Err(why) => return Ok(Progress::Waiting(format!("join address: {why}"))),
        };
        let index = self.ovn0(host, &join).await?;
        enable_forwarding(&join)?;
        let node_ips = internal_ips(node);
        let overlay = subnets::overlay(
            subnet_list,
            &self.join_switch,
            &self.cluster_router,
            &node_ips,
        );
        let routed: Vec<IpNet> = overlay
            .cidrs
            .iter()
            .chain(&overlay.routed_underlay)
            .copied()
            .collect();
        self.sync_routes(host, index, &routed, &join, &node_ips)
            .await?;
        let mut cluster = overlay.cidrs.clone();
        cluster.extend(join.cidrs.iter().copied());
        let ruleset = nat::ruleset(&overlay.nat, &cluster);
        if applied.ruleset.as_deref() != Some(ruleset.as_str()) {
            let text = ruleset.clone();
            tokio::task::spawn_blocking(move || nat::load(&text))
                .await
                .map_err(|e| e.to_string())??;
            tracing::info!(nat = ?overlay.nat, "NAT-outgoing ruleset loaded");
            applied.ruleset = Some(ruleset);
        }
        let Some(chassis) = self.ovs.system_id() else {
            return Ok(Progress::Waiting("no system-id in Open_vSwitch".into()));
        };
        if annotations.get(CHASSIS_ANNOTATION) != Some(&chassis) {
            Api::<Node>::all(self.client.clone())
                .patch(
                    &self.node,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"metadata": {"annotations": {CHASSIS_ANNOTATION: chassis}}}),
                    ),
                )
                .await
                .map_err(|e| format!("annotate chassis: {e}"))?;
        }
        // Upstream's gateway reconciler: an interconnection gateway (labelled by the
        // ic-controller) tells its ovn-controller so, which registers it with ovn-ic.
        let ic_gw = node
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(IC_GW_LABEL))
            .is_some_and(|v| v == "true");
        let value = if ic_gw { "true" } else { "false" };
        // Upstream writes `false` on every node; a node that never was a gateway is left
        // without the key, so daemons of clusters without interconnection write nothing.
        let involved = ic_gw || self.ovs.root_external_id(IS_INTERCONN).is_some();
        if involved
            && self
                .ovs
                .set_root_external_ids(&[(IS_INTERCONN, value.to_string())])
                .await
                .map_err(|e| format!("set {IS_INTERCONN}: {e}"))?
        {
            tracing::info!(value, "{IS_INTERCONN} set");
        }
        if !reachable_condition_set(node) {
            for gw in &join.gateways {
                let gw = *gw;
                let ok = tokio::task::spawn_blocking(move || icmp::echo(NODE_NIC, gw, ECHO_WAIT))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("ping {gw}: {e}"))?;
                if !ok {
                    return Ok(Progress::Waiting(format!(
                        "join gateway {gw} does not answer"
                    )));
                }
            }
            self.set_condition().await?;
            tracing::info!(gateways = ?join.gateways, "join gateway reachable");
        }
        Ok(Progress::Done)
    }

    /// Creates `ovn0` in OVS, waits for ovn-controller to bind it, then configures the link.
    async fn ovn0(&self, host: &Netns, join: &JoinNic) -> Result<u32, String> {
        let spec = PortSpec::node_nic(NODE_NIC, &node_lsp(&self.node), &join.ip_list());
        self.ovs
            .ensure_port(INTEGRATION_BRIDGE, &spec)
            .await
            .map_err(|e| e.to_string())?;
        self.ovs
            .wait_installed(NODE_NIC, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        let index = host
            .configure_node_nic(NODE_NIC, join.mac, self.mtu, &join.addresses)
            .await
            .map_err(|e| e.to_string())?;
        if self
            .tx_checksum
            .turns_off(self.ovs.is_userspace(INTEGRATION_BRIDGE))
        {
            host.tx_checksum_off(NODE_NIC).map_err(|e| e.to_string())?;
        }
        Ok(index)
    }

    async fn sync_routes(
        &self,
        host: &Netns,
        index: u32,
        overlay: &[IpNet],
        join: &JoinNic,
        node_ips: &[IpAddr],
    ) -> Result<(), String> {
        let wanted = routes::desired(overlay, &join.gateways, node_ips);
        let existing = host
            .gateway_routes(index)
            .await
            .map_err(|e| e.to_string())?;
        let d = routes::diff(&existing, &wanted);
        for r in &d.remove {
            host.delete_host_route(index, r)
                .await
                .map_err(|e| e.to_string())?;
        }
        for r in &d.add {
            host.replace_host_route(index, r)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !d.add.is_empty() || !d.remove.is_empty() {
            tracing::info!(added = ?d.add, removed = ?d.remove, "host routes synced");
        }
        Ok(())
    }

    async fn set_condition(&self) -> Result<(), String> {
        let now = now();
        let patch = json!({"status": {"conditions": [{
            "type": CONDITION,
            "status": "False",
            "reason": REACHABLE_REASON,
            "message": "ping join subnet gateway success",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }]}});
        Api::<Node>::all(self.client.clone())
            .patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("set node condition: {e}"))
    }
}

/// Now, as an RFC 3339 timestamp in whole seconds (the API's `metav1.Time`).
fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Whether the Node already says its network is available because the gateway answered.
fn reachable_condition_set(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == CONDITION
                    && c.status == "False"
                    && c.reason.as_deref() == Some(REACHABLE_REASON)
            })
        })
}

/// Turns on IP forwarding in this namespace for the families the join subnet has.
fn enable_forwarding(join: &JoinNic) -> Result<(), String> {
    let mut files = Vec::new();
    if join.addresses.iter().any(|a| a.addr().is_ipv4()) {
        files.push("/proc/sys/net/ipv4/ip_forward");
    }
    if join.addresses.iter().any(|a| a.addr().is_ipv6()) {
        files.push("/proc/sys/net/ipv6/conf/all/forwarding");
    }
    for f in files {
        if std::fs::read_to_string(f)
            .map(|v| v.trim() == "1")
            .unwrap_or(false)
        {
            continue;
        }
        std::fs::write(f, "1").map_err(|e| format!("write {f}: {e}"))?;
    }
    Ok(())
}
