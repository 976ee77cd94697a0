//! ADD and DEL as upstream's `handleAdd`/`handleDel`: wait for the controller's annotations,
//! build the veth, plug it into br-int, wait for ovn-controller, configure the pod side. Any
//! failure after something was created removes it again, so a retried ADD starts clean.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::ObjectRef;
use kube::Api;
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::underlay;

use crate::gateway::{self, GatewayCheck};

use crate::config::TxChecksumOffload;
use crate::metrics::Metrics;
use crate::netdev::{LinkError, Netns, PodNic};
use crate::network::{self, NetworkError, PodNetwork};
use crate::nic_check::{self, Expected};
use crate::node::watch::Mirror;
use crate::ovs::{Ovs, OvsError, PortSpec, INTEGRATION_BRIDGE};
use crate::pods::{NodePods, PodLookup};
use crate::protocol::{CheckRequest, CniRequest, CniResponse};
use crate::providers;

/// How often an ADD looks again for a subnet the Subnet watch has not delivered yet.
const SUBNET_POLL: Duration = Duration::from_millis(50);

/// Why a request failed, and which HTTP status says so.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The request itself is unusable (400).
    #[error("{0}")]
    BadRequest(String),
    /// The controller never finished the pod's network (500).
    #[error("{0}")]
    NotReady(String),
    /// CHECK: the NIC or its port is missing or differs from the ADD's result (500).
    #[error("{0}")]
    Mismatch(String),
    /// Links (500).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// OVS (500).
    #[error(transparent)]
    Ovs(#[from] OvsError),
}

/// What the handler needs from the daemon.
#[derive(Clone)]
pub struct Daemon {
    /// The node's pods.
    pub pods: NodePods,
    /// The node's OVS database.
    pub ovs: Ovs,
    /// Pod interface MTU (overlay subnets without their own `mtu`).
    pub mtu: u32,
    /// This node's name (its provider-network MTU labels are read for underlay pods).
    pub node: String,
    /// Every Subnet: a pod's subnet says whether its gateway is checked and its MTU.
    pub subnets: Mirror<Subnet>,
    /// Pod-side TX checksum offload policy.
    pub tx_checksum: TxChecksumOffload,
    /// Bound of the wait for annotations.
    pub wait_address: Duration,
    /// Bound of the wait for `ovn-installed`.
    pub wait_installed: Duration,
    /// Where the waits are accounted, so slow ADDs can be attributed to controller or OVN.
    pub metrics: Arc<Metrics>,
}

/// How often a running gateway check looks whether its pod still exists (upstream: 5 s).
const POD_RECHECK: Duration = Duration::from_secs(5);

/// What of a pod's NIC comes from its subnet and node rather than its annotations.
struct NicSettings {
    /// Its MTU.
    mtu: u32,
    /// Whether its gateway is checked: `Some(required)`, `required` false for
    /// `disableGatewayCheck` (one try, outcome ignored).
    gateway_check: Option<bool>,
    /// A u2o underlay subnet's interconnection addresses (`status.u2oInterconnectionIP`):
    /// the pod's default route goes through them, and they are checked before the gateway.
    u2o: Vec<IpAddr>,
}

fn validate(req: &CniRequest) -> Result<(), HandlerError> {
    for (field, value) in [
        ("pod_name", &req.pod_name),
        ("pod_namespace", &req.pod_namespace),
        ("container_id", &req.container_id),
    ] {
        if value.is_empty() {
            return Err(HandlerError::BadRequest(format!("request has no {field}")));
        }
    }
    if !req.device_id.is_empty() || !req.vhost_user_socket_name.is_empty() {
        return Err(HandlerError::BadRequest(
            "SR-IOV and vhost-user NICs are not supported by this daemon".into(),
        ));
    }
    Ok(())
}

/// The error for a provider nothing in the cluster defines.
fn unknown_provider(provider: &str) -> String {
    let attachment = match providers::attachment_of(provider) {
        Some((namespace, name)) => {
            format!("no NetworkAttachmentDefinition {namespace}/{name} exists")
        }
        None => "it names no NetworkAttachmentDefinition".into(),
    };
    format!("unknown provider {provider}: no Subnet has it as spec.provider and {attachment}")
}

pub(crate) fn if_name(req: &CniRequest) -> &str {
    if req.if_name.is_empty() {
        "eth0"
    } else {
        &req.if_name
    }
}

impl Daemon {
    /// Handles `POST /api/v1/add`.
    pub async fn add(&self, req: &CniRequest) -> Result<CniResponse, HandlerError> {
        validate(req)?;
        if req.net_ns.is_empty() {
            return Err(HandlerError::BadRequest("request has no net_ns".into()));
        }
        let provider = network::provider(&req.provider).to_string();
        let ifname = if_name(req);
        if !network::plugs_nic(&provider) {
            return self.add_ipam(req, &provider).await;
        }
        let started = Instant::now();
        let mut address_at = None;
        let net = self
            .wait_network(req, &provider, &mut address_at, |a| {
                let effective = network::effective_provider(a, &provider, ifname);
                network::from_annotations(a, &effective, ifname, &req.routes)
                    .map(|n| (effective, n))
            })
            .await;
        // Upstream's split: waiting for the address annotations, then for routed=true.
        let address_at = address_at.unwrap_or_else(Instant::now);
        self.metrics
            .observe_wait_address(address_at.duration_since(started));
        self.metrics.observe_wait_route(address_at.elapsed());
        let (provider, mut net) = net?;
        let settings = self.nic_settings(&net).await?;
        net.default_via = settings.u2o.clone();
        let mtu = settings.mtu;
        let (host, peer) = network::veth_names(&req.container_id, ifname)
            .map_err(|e| HandlerError::BadRequest(e.to_string()))?;
        // A repeated ADD (a runtime's retry, or concurrent ones served in turn) finds the NIC
        // already as the annotations say: it is kept, since rebuilding it would replace a
        // working port with a same-named one.
        if let Ok(expected) = Expected::of(&net) {
            if nic_check::verify(&self.ovs, req, &provider, &expected)
                .await
                .is_ok()
            {
                tracing::info!(pod = %req.pod_name, ns = %req.pod_namespace, nic = ifname, "NIC already configured, kept");
                return Ok(net.response(mtu, ifname));
            }
        }
        let node = Netns::current()?;
        // A previous, failed or repeated ADD of this container may have left its pair behind.
        node.delete_link(&host).await?;
        node.create_veth(&host, &peer, mtu).await?;
        let result = self
            .plug(req, &provider, &net, &settings, &node, &host, &peer)
            .await;
        if let Err(e) = &result {
            tracing::warn!(pod = %req.pod_name, ns = %req.pod_namespace, error = %e, "ADD failed, cleaning up");
            if let Err(e) = self.ovs.del_port(&host).await {
                tracing::warn!(port = %host, error = %e, "cleanup: deleting the OVS port failed");
            }
            if let Err(e) = node.delete_link(&host).await {
                tracing::warn!(link = %host, error = %e, "cleanup: deleting the veth failed");
            }
        }
        result.map(|()| net.response(mtu, ifname))
    }

    /// The MTU and gateway check of the pod's NIC, from its subnet (upstream's `handleAdd`):
    /// the subnet's `mtu` when set; for an underlay subnet without a logical gateway or
    /// underlay-to-overlay interconnection, the provider NIC's MTU from this node's
    /// `<pn>.provider-network.kubernetes.io/mtu` label, and an ARP check of the physical
    /// gateway (required unless `disableGatewayCheck`).
    async fn nic_settings(&self, net: &PodNetwork) -> Result<NicSettings, HandlerError> {
        let mut s = NicSettings {
            mtu: self.mtu,
            gateway_check: None,
            u2o: Vec::new(),
        };
        // An underlay pod needs its subnet (a bounded wait for the first list); an overlay
        // one keeps the defaults while the list has not arrived.
        if net.provider_network.is_empty() {
            if !self.subnets.is_synced() {
                return Ok(s);
            }
        } else {
            let synced = tokio::time::timeout(self.wait_address, self.subnets.synced()).await;
            if synced != Ok(true) {
                return Err(HandlerError::NotReady(
                    "the daemon's Subnet list has not synced yet".into(),
                ));
            }
        }
        let key = ObjectRef::new(&net.logical_switch);
        let mut subnet = self.subnets.store.get(&key);
        if subnet.is_none() && !net.logical_switch.is_empty() {
            // The controller annotated the pod with this subnet, so it exists: the watch has
            // not delivered it yet (a subnet created just before its first pod, whose
            // annotations may not name the provider network yet). Without it an underlay
            // pod's gateway check would be skipped, so wait for it, bounded.
            let deadline = tokio::time::Instant::now() + self.wait_address;
            while subnet.is_none() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(SUBNET_POLL).await;
                subnet = self.subnets.store.get(&key);
            }
            if subnet.is_none() {
                return Err(HandlerError::NotReady(format!(
                    "subnet {} is not in the daemon's Subnet list yet",
                    net.logical_switch
                )));
            }
        }
        let Some(subnet) = subnet else {
            return Ok(s);
        };
        let spec = &subnet.spec;
        let underlay = !spec.vlan.is_empty() && !spec.logical_gateway;
        if underlay {
            s.gateway_check = Some(!spec.disable_gateway_check);
        }
        if underlay && spec.u2o_interconnection {
            let ip = subnet
                .status
                .as_ref()
                .map(|st| st.u2o_interconnection_ip.as_str())
                .unwrap_or_default();
            if ip.is_empty() {
                return Err(HandlerError::NotReady(format!(
                    "failed to generate u2o ip on subnet {}",
                    net.logical_switch
                )));
            }
            s.u2o = kube_ovn_common::annotations::parse_ips(ip).map_err(|e| {
                HandlerError::NotReady(format!(
                    "subnet {}: invalid u2oInterconnectionIP {ip:?}: {e}",
                    net.logical_switch
                ))
            })?;
        }
        if spec.mtu > 0 {
            s.mtu = spec.mtu;
        } else if !net.provider_network.is_empty()
            && !spec.logical_gateway
            && !spec.u2o_interconnection
        {
            let key = underlay::key(&net.provider_network, underlay::MTU);
            let node = Api::<Node>::all(self.pods.client().clone())
                .get(&self.node)
                .await
                .map_err(|e| {
                    HandlerError::NotReady(format!("failed to get node {}: {e}", self.node))
                })?;
            if let Some(text) = node.metadata.labels.as_ref().and_then(|l| l.get(&key)) {
                s.mtu = text.parse::<u32>().ok().filter(|m| *m > 0).ok_or_else(|| {
                    HandlerError::NotReady(format!(
                        "invalid provider network MTU {text:?}: must be a positive integer"
                    ))
                })?;
            }
        }
        Ok(s)
    }

    /// Whether the pod still exists and is not being deleted (unknown counts as yes).
    async fn pod_alive(&self, req: &CniRequest) -> bool {
        match self.pods.lookup(&req.pod_namespace, &req.pod_name).await {
            Ok(PodLookup::Here(p)) => p.metadata.deletion_timestamp.is_none(),
            Ok(_) => false,
            Err(_) => true,
        }
    }

    /// Runs the gateway check, watching every few seconds that the pod still exists.
    async fn check_gateway(
        &self,
        req: &CniRequest,
        check: GatewayCheck,
        required: bool,
    ) -> Result<(), HandlerError> {
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = gateway::run(check, cancel.clone());
        tokio::pin!(run);
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                _ = tokio::time::sleep(POD_RECHECK) => {
                    if !self.pod_alive(req).await {
                        cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e) if required => Err(HandlerError::NotReady(e)),
            Err(e) => {
                tracing::info!(pod = %req.pod_name, ns = %req.pod_namespace, error = %e, "gateway check not concerned (disableGatewayCheck)");
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn plug(
        &self,
        req: &CniRequest,
        provider: &str,
        net: &PodNetwork,
        settings: &NicSettings,
        node: &Netns,
        host: &str,
        peer: &str,
    ) -> Result<(), HandlerError> {
        let spec = PortSpec::for_pod(
            host,
            &kube_ovn_common::names::pod_lsp(&req.pod_name, &req.pod_namespace, provider),
            &req.pod_name,
            &req.pod_namespace,
            &req.net_ns,
            &net.ip_list(),
        );
        // Up before OVS opens it: a userspace datapath sets PROMISC on a new port from the
        // flags it read when it opened the device, so an UP made in between is written over
        // and the port stays down (seen: the pod's link `linkdown`, every send "Network is
        // down").
        node.host_up(host).await?;
        self.ovs.add_port(INTEGRATION_BRIDGE, &spec).await?;
        let started = Instant::now();
        let installed = self.ovs.wait_installed(host, self.wait_installed).await;
        self.metrics.observe_wait_ovn_installed(started.elapsed());
        installed?;
        let path = Path::new(&req.net_ns);
        node.move_to(peer, path).await?;
        let pod = Netns::open(path).await?;
        let ifname = if_name(req);
        pod.configure_pod_nic(&PodNic {
            current_name: peer,
            if_name: ifname,
            mac: net.mac,
            mtu: settings.mtu,
            addresses: &net.addresses,
            gateways: net.route_gateways(),
            routes: &net.routes,
        })
        .await?;
        if self
            .tx_checksum
            .turns_off(self.ovs.is_userspace(INTEGRATION_BRIDGE))
        {
            pod.tx_checksum_off(ifname)?;
        }
        if let Some(required) = settings.gateway_check {
            let check = GatewayCheck {
                netns: path.to_path_buf(),
                ifname: ifname.to_string(),
                mac: net.mac,
                // Upstream's order: the interconnection address, then the physical gateway.
                pairs: GatewayCheck::pairs(&net.addresses, &settings.u2o)
                    .into_iter()
                    .chain(GatewayCheck::pairs(&net.addresses, &net.gateways))
                    .collect(),
                attempts: if required { gateway::MAX_ATTEMPTS } else { 1 },
            };
            self.check_gateway(req, check, required).await?;
        }
        Ok(())
    }

    /// Waits (bounded) for the controller's annotations. Meanwhile the API server is asked
    /// whether waiting can help at all: a pod that does not exist, is bound elsewhere, or asks
    /// for a provider nothing defines fails at once, since no annotation will ever come.
    /// Waits for the pod's network annotations; `address_at` is set when the address ones were
    /// first seen (the rest of the wait is for `routed=true`).
    async fn wait_network<T>(
        &self,
        req: &CniRequest,
        provider: &str,
        address_at: &mut Option<Instant>,
        parse: impl Fn(&BTreeMap<String, String>) -> Result<T, NetworkError>,
    ) -> Result<T, HandlerError> {
        let decide = |pod: Option<&Pod>| match pod {
            None => Err("pod not found on this node".to_string()),
            Some(p) => {
                let annotations = p.metadata.annotations.clone().unwrap_or_default();
                if address_at.is_none() && network::has_address(&annotations, provider) {
                    *address_at = Some(Instant::now());
                }
                parse(&annotations).map_err(|e| match e {
                    NetworkError::Missing(_) => format!(
                        "no address allocated or route not ready ({e}), please see kube-ovn-controller logs to find errors"
                    ),
                    NetworkError::Invalid(_) => e.to_string(),
                })
            }
        };
        let fail = |why: String| {
            HandlerError::NotReady(format!(
                "pod {}/{} provider {provider}: {why}",
                req.pod_namespace, req.pod_name
            ))
        };
        // Biased: when the view already has the annotations the API server is not asked.
        tokio::select! {
            biased;
            r = self.pods.wait_for(
                &req.pod_namespace,
                &req.pod_name,
                self.wait_address,
                decide,
                "the node's pod list has not synced yet".to_string(),
            ) => r.map_err(|why| fail(format!("{why} (waited {:?})", self.wait_address))),
            Some(why) = self.hopeless(req, provider) => Err(fail(why)),
        }
    }

    /// ADD for kube-ovn as another plugin's IPAM (a provider without `ovn`, e.g. `<nad>.<ns>`
    /// for macvlan): the addresses, gateway and routes the controller annotated, no NIC. When
    /// the routes carry a default route the pod's current one goes, so the delegating plugin
    /// can install it (upstream's `removeDefaultRoute`).
    async fn add_ipam(
        &self,
        req: &CniRequest,
        provider: &str,
    ) -> Result<CniResponse, HandlerError> {
        let started = Instant::now();
        let mut address_at = None;
        let net = self
            .wait_network(req, provider, &mut address_at, |a| {
                network::ipam_from_annotations(a, provider, if_name(req), &req.routes)
            })
            .await;
        self.metrics.observe_wait_address(
            address_at
                .unwrap_or_else(Instant::now)
                .duration_since(started),
        );
        let net = net?;
        if net.default_v4 || net.default_v6 {
            Netns::open(Path::new(&req.net_ns))
                .await?
                .delete_default_routes(net.default_v4, net.default_v6)
                .await?;
        }
        Ok(net.response)
    }

    /// Why no annotation can ever come for this request, when the API server says so; `None`
    /// when waiting may help (or the server could not be asked: the bounded wait decides then).
    async fn hopeless(&self, req: &CniRequest, provider: &str) -> Option<String> {
        let lookup = self
            .pods
            .lookup(&req.pod_namespace, &req.pod_name)
            .await
            .inspect_err(|e| tracing::warn!(pod = %req.pod_name, ns = %req.pod_namespace, error = %e, "reading the pod from the API server failed"))
            .ok()?;
        let pod = match lookup {
            PodLookup::Absent => return Some("pod does not exist in the API server".into()),
            PodLookup::OtherNode(node) => {
                return Some(format!("pod is bound to node {node}, not to this node"))
            }
            PodLookup::Here(pod) => pod,
        };
        let annotations = pod.metadata.annotations.unwrap_or_default();
        if network::has_annotations_of(&annotations, provider) {
            return None;
        }
        match providers::is_known(self.pods.client(), provider).await {
            Ok(true) => None,
            Ok(false) => Some(unknown_provider(provider)),
            Err(e) => {
                tracing::warn!(provider, error = %e, "looking the provider up failed");
                None
            }
        }
    }

    /// Handles `POST /api/v1/check`: the pod's interface must still have the result's MAC,
    /// addresses and routes, and its host end must still be plugged into br-int, bound to the
    /// pod's logical port. The first difference found is the error.
    pub async fn check(&self, check: &CheckRequest) -> Result<(), HandlerError> {
        let req = &check.request;
        validate(req)?;
        if req.net_ns.is_empty() {
            return Err(HandlerError::BadRequest("request has no net_ns".into()));
        }
        let expected = Expected::parse(check).map_err(HandlerError::BadRequest)?;
        let provider = network::provider(&req.provider);
        // The pod's annotations say whether this NIC's provider carries its interface name;
        // without them (the view not synced) the request's provider is meant.
        let effective = self
            .pods
            .wait_for(
                &req.pod_namespace,
                &req.pod_name,
                Duration::ZERO,
                |p| {
                    p.and_then(|p| p.metadata.annotations.as_ref())
                        .map(|a| network::effective_provider(a, provider, if_name(req)))
                        .ok_or(())
                },
                (),
            )
            .await
            .unwrap_or_else(|()| provider.to_string());
        nic_check::verify(&self.ovs, req, &effective, &expected).await
    }

    /// Handles `POST /api/v1/del`: the port and the host veth go; already gone is success.
    pub async fn del(&self, req: &CniRequest) -> Result<(), HandlerError> {
        if req.net_ns.is_empty() {
            return Ok(());
        }
        validate(req)?;
        if !network::plugs_nic(network::provider(&req.provider)) {
            // As IPAM only, the interface is the delegating plugin's: nothing of ours to remove
            // (the addresses are released with the pod by the controller).
            return Ok(());
        }
        let (host, _) = network::veth_names(&req.container_id, if_name(req))
            .map_err(|e| HandlerError::BadRequest(e.to_string()))?;
        self.ovs.del_port(&host).await?;
        Netns::current()?.delete_link(&host).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_providers_name_what_was_looked_for() {
        assert_eq!(
            unknown_provider("net1.ns1.ovn"),
            "unknown provider net1.ns1.ovn: no Subnet has it as spec.provider and no NetworkAttachmentDefinition ns1/net1 exists"
        );
        assert_eq!(
            unknown_provider("custom"),
            "unknown provider custom: no Subnet has it as spec.provider and it names no NetworkAttachmentDefinition"
        );
    }
}
