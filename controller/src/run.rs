//! The controller's life: elect a leader, replicate NB, start the reflectors, initialise,
//! restore IPAM, then run the subnet, node and pod queues in upstream's order (pods only once
//! the default and join switches exist and every node has its join address), with periodic GC.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kube_ovn_runtime::events::Recorder;
use kube_ovn_runtime::registry::wait_until;
use kube_ovn_runtime::{Backoff, Kind, Observer, Runtime, Seen, Trigger};
use ovsdb::{Remote, Replica, ReplicaConfig, Timeouts};
use tracing::{info, warn};

use crate::config::Config;
use crate::context::{Ctx, Stores, NB_DB};
use crate::metrics::{KindLabel, Metrics};
use crate::pod_info::PodInfo;
use crate::{
    anp_ctl, cnp_ctl, dnr_ctl, dns_names, gc, ippool_ctl, iptables_ctl, lb_svc, leader, natgw_ctl,
    node_ctl, np_ctl, np_state, ovn_eip_ctl, ovn_nat_ctl, pod_ctl, restore, service_ctl, sg_ctl,
    slr_ctl, startup, subnet_ctl, underlay_ctl, vip_ctl, vpc_ctl,
};
use kube_ovn_common::crd::{
    AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy, DnsNameResolver, IpPool,
    IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule, OvnDnatRule, OvnEip, OvnFip,
    OvnSnatRule, ProviderNetwork, SecurityGroup, Subnet, SwitchLbRule, Vip, Vlan, Vpc, VpcDns,
    VpcNatGateway,
};

/// Where the controller's identity comes from (upstream: POD_NAME / KUBE_NAMESPACE env).
#[derive(Debug, Clone)]
pub struct Identity {
    /// Lease holder identity.
    pub pod_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
}

impl Identity {
    /// From the environment, as upstream's Deployment sets it.
    pub fn from_env() -> Identity {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        Identity {
            pod_name: std::env::var("POD_NAME").unwrap_or_else(|_| host.trim().to_string()),
            namespace: std::env::var("KUBE_NAMESPACE")
                .or_else(|_| std::env::var("POD_NAMESPACE"))
                .unwrap_or_else(|_| "kube-system".into()),
        }
    }
}

/// Drops what no reconciler reads before an object enters a store (kube-rs's recommended way to
/// keep reflector memory down): managed fields everywhere (pods are stored as [`PodInfo`],
/// which keeps only what the controller reads), kubectl's last-applied copy of a pod, and
/// nodes' image lists.
trait Trim {
    fn trim(&mut self);
}

impl Trim for PodInfo {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.remove(crate::pod_info::LAST_APPLIED);
        }
    }
}

impl Trim for Node {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(st) = self.status.as_mut() {
            st.images = None;
        }
    }
}

impl Trim for Namespace {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Subnet {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Vpc {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IpPool {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Service {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.remove(crate::pod_info::LAST_APPLIED);
        }
    }
}

impl Trim for EndpointSlice {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Vip {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for VpcNatGateway {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IptablesEip {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IptablesFipRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IptablesSnatRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for IptablesDnatRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for OvnEip {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for OvnFip {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for OvnSnatRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for OvnDnatRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for Vlan {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for ProviderNetwork {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for NetworkPolicy {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(a) = self.metadata.annotations.as_mut() {
            a.remove(crate::pod_info::LAST_APPLIED);
        }
    }
}

impl Trim for SecurityGroup {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for AdminNetworkPolicy {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for BaselineAdminNetworkPolicy {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for ClusterNetworkPolicy {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for DnsNameResolver {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for SwitchLbRule {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for VpcDns {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
    }
}

impl Trim for ConfigMap {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.binary_data = None;
    }
}

fn store<K>(
    client: kube::Client,
    cfg: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = watcher::Event<K>> + Send,
)
where
    K: kube::Resource<DynamicType = ()>
        + Trim
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client), cfg).modify(K::trim))
        .default_backoff()
        .filter_map(|e| async move {
            match e {
                Ok(ev) => Some(ev),
                Err(err) => {
                    warn!("watch: {err}");
                    None
                }
            }
        });
    (reader, stream)
}

/// Runs the controller until leadership is lost or the process is told to stop.
pub async fn run(
    config: Config,
    client: kube::Client,
    identity: Identity,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    // Upstream's listen addresses: the pod's own with ENABLE_BIND_LOCAL_IP=true, else 0.0.0.0;
    // bound before the election, and (as upstream) a failure to bind ends the process.
    let ips = kube_ovn_common::health::default_listen_ips()?;
    let port = config.pprof_port;
    let listeners = crate::metrics::bind(&ips, port)
        .await
        .map_err(|e| format!("metrics endpoint on {ips:?} port {port}: {e}"))?;
    tokio::spawn(kube_ovn_common::health::serve_all(
        listeners,
        metrics.clone(),
        config.enable_metrics,
    ));

    let mut elector = leader::Elector::new(
        client.clone(),
        &identity.namespace,
        leader::LEASE_NAME,
        &identity.pod_name,
        leader::Timing {
            lease_duration: config.leader_elect_lease_duration,
            renew_deadline: config.leader_elect_renew_deadline,
            retry_period: config.leader_elect_retry_period,
        },
    );
    metrics.set_leader(false);
    elector.acquire().await;
    metrics.set_leader(true);
    let result = tokio::select! {
        r = lead(config, client, metrics.clone(), None) => r,
        _ = elector.hold() => Err("leadership lost".to_string()),
        _ = shutdown_signal() => {
            info!("terminating: releasing leadership");
            Ok(())
        }
    };
    elector.release().await;
    metrics.set_leader(false);
    result
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// How often at most a subnet's counters are patched while its pods come and go: a burst of
/// pods then costs a few status writes (and watch events for everyone watching Subnets), not
/// one per pod.
const STATUS_INTERVAL: Duration = Duration::from_millis(500);

/// Upstream's gate for nodes: the default and join switches exist.
fn switches_exist(ctx: &Ctx) -> bool {
    let cache = ctx.nb.cache();
    let has = |n: &str| {
        cache
            .table("Logical_Switch")
            .is_some_and(|t| t.by_name(n).next().is_some())
    };
    has(&ctx.config.default_ls) && has(&ctx.config.node_switch)
}

/// Upstream's gate for pods: the switches exist and every node has its join address.
fn pods_may_start(ctx: &Ctx) -> bool {
    switches_exist(ctx)
        && ctx
            .stores
            .nodes
            .state()
            .iter()
            .all(|n| !subnet_ctl::node_join_ips(n).is_empty())
}

/// Reconcile counts and latencies by kind, from the runtime.
struct Observed(Arc<Metrics>);

impl Observer for Observed {
    fn reconciled(&self, kind: &'static str, elapsed: Duration, ok: bool) {
        let label = KindLabel { kind: kind.into() };
        self.0.reconciles.get_or_create(&label).inc();
        self.0
            .reconcile_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.0.reconcile_errors.get_or_create(&label).inc();
        }
    }
}

/// Everything the leader does: the reconcilers are registered with the runtime, which owns
/// every task started here — returning (or being dropped when leadership is lost) stops them.
/// With `dry_run`, NB writes are recorded there instead (a drift check; its client must not
/// write to Kubernetes either, see [`crate::drift`]).
pub async fn lead(
    config: Config,
    client: kube::Client,
    metrics: Arc<Metrics>,
    dry_run: Option<Arc<crate::drift::Recorded>>,
) -> Result<(), String> {
    let remotes = Remote::parse_list(&normalize_remotes(&config.ovn_nb_addr))
        .map_err(|e| format!("--ovn-nb-addr: {e}"))?;
    let mut rc = ReplicaConfig::new(remotes, NB_DB);
    rc.tables = kube_ovn_nb::MONITORED_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    rc.external_id_keys = kube_ovn_nb::INDEXED_EXTERNAL_IDS
        .iter()
        .map(|k| k.to_string())
        .collect();
    rc.timeouts = Timeouts {
        connect: Duration::from_secs(config.ovsdb_con_timeout.max(1)),
        request: Duration::from_secs(config.ovn_timeout.max(1)),
        probe_interval: Duration::from_secs(config.ovsdb_inactivity_timeout.max(1)),
    };
    let (subnets, subnet_events) = store::<Subnet>(client.clone(), watcher::Config::default());
    let (nodes, node_events) = store::<Node>(client.clone(), watcher::Config::default());
    let (vpcs, vpc_events) = store::<Vpc>(client.clone(), watcher::Config::default());
    let (pods, pod_events) = store::<PodInfo>(client.clone(), watcher::Config::default());
    let (namespaces, ns_events) = store::<Namespace>(client.clone(), watcher::Config::default());
    let (ippools, pool_events) = store::<IpPool>(client.clone(), watcher::Config::default());
    let (services, service_events) = store::<Service>(client.clone(), watcher::Config::default());
    let (endpoint_slices, slice_events) =
        store::<EndpointSlice>(client.clone(), watcher::Config::default());
    let slice_index = Arc::new(crate::slice_index::SliceIndex::default());
    let slice_events = {
        let index = slice_index.clone();
        slice_events.inspect(move |e| index.observe(e))
    };
    let (vips, vip_events) = store::<Vip>(client.clone(), watcher::Config::default());
    let (vlans, vlan_events) = store::<Vlan>(client.clone(), watcher::Config::default());
    let (vpc_nat_gateways, natgw_events) =
        store::<VpcNatGateway>(client.clone(), watcher::Config::default());
    let (iptables_eips, eip_events) =
        store::<IptablesEip>(client.clone(), watcher::Config::default());
    let (iptables_fips, fip_events) =
        store::<IptablesFipRule>(client.clone(), watcher::Config::default());
    let (iptables_snats, snat_events) =
        store::<IptablesSnatRule>(client.clone(), watcher::Config::default());
    let (iptables_dnats, dnat_events) =
        store::<IptablesDnatRule>(client.clone(), watcher::Config::default());
    let (ovn_eips, ovn_eip_events) = store::<OvnEip>(client.clone(), watcher::Config::default());
    let (ovn_fips, ovn_fip_events) = store::<OvnFip>(client.clone(), watcher::Config::default());
    let (ovn_snats, ovn_snat_events) =
        store::<OvnSnatRule>(client.clone(), watcher::Config::default());
    let (ovn_dnats, ovn_dnat_events) =
        store::<OvnDnatRule>(client.clone(), watcher::Config::default());
    let (provider_networks, pn_events) =
        store::<ProviderNetwork>(client.clone(), watcher::Config::default());
    let (vpc_dnses, vpc_dns_events) = store::<VpcDns>(client.clone(), watcher::Config::default());
    let (configmaps, configmap_events) = store::<ConfigMap>(
        client.clone(),
        watcher::Config::default().fields(&format!("metadata.name={}", crate::vpc_dns_ctl::CONFIG)),
    );
    let (external_gw_config, external_gw_events) = store::<ConfigMap>(
        client.clone(),
        watcher::Config::default().fields(&format!(
            "metadata.name={}",
            kube_ovn_common::ovn_nat::EXTERNAL_GW_CONFIG
        )),
    );
    let (switch_lb_rules, slr_events) =
        store::<SwitchLbRule>(client.clone(), watcher::Config::default());
    let (network_policies, np_events) =
        store::<NetworkPolicy>(client.clone(), watcher::Config::default());
    let (security_groups, sg_events) =
        store::<SecurityGroup>(client.clone(), watcher::Config::default());
    // Admin policies are only watched with --enable-anp (their CRDs may not be installed).
    let (admin_network_policies, anp_events) =
        store::<AdminNetworkPolicy>(client.clone(), watcher::Config::default());
    let (baseline_admin_network_policies, banp_events) =
        store::<BaselineAdminNetworkPolicy>(client.clone(), watcher::Config::default());
    let (cluster_network_policies, cnp_events) =
        store::<ClusterNetworkPolicy>(client.clone(), watcher::Config::default());
    // Resolvers only with both flags (upstream's informer; the CRD may not be installed).
    let (dns_name_resolvers, dnr_events) =
        store::<DnsNameResolver>(client.clone(), watcher::Config::default());
    let resolve_domains = config.enable_anp && config.enable_dns_name_resolver;
    if config.enable_dns_name_resolver && !config.enable_anp {
        warn!("DNS name resolver is enabled but ANP support is disabled, DNSNameResolver resources will not take effect");
    }
    // NetworkAttachmentDefinitions are optional (upstream watches them only once their CRD
    // exists); when it is there at start, pods wait for their list as upstream's informer sync.
    let (nads, nad_writer) = reflector::store::<crate::attach::NetworkAttachmentDefinition>();
    let nads_at_start = crate::attach::crd_installed(&client)
        .await
        .unwrap_or_else(|e| {
            warn!("looking for the NetworkAttachmentDefinition CRD: {e}");
            false
        });
    let stores = Stores {
        subnets: subnets.clone(),
        nodes: nodes.clone(),
        vpcs: vpcs.clone(),
        pods: pods.clone(),
        namespaces: namespaces.clone(),
        ippools: ippools.clone(),
        services: services.clone(),
        endpoint_slices: endpoint_slices.clone(),
        slice_index,
        vips: vips.clone(),
        switch_lb_rules: switch_lb_rules.clone(),
        vpc_dnses: vpc_dnses.clone(),
        configmaps: configmaps.clone(),
        network_policies: network_policies.clone(),
        security_groups: security_groups.clone(),
        admin_network_policies: admin_network_policies.clone(),
        baseline_admin_network_policies: baseline_admin_network_policies.clone(),
        cluster_network_policies: cluster_network_policies.clone(),
        dns_name_resolvers: dns_name_resolvers.clone(),
        vlans: vlans.clone(),
        provider_networks: provider_networks.clone(),
        vpc_nat_gateways: vpc_nat_gateways.clone(),
        iptables_eips: iptables_eips.clone(),
        iptables_fips: iptables_fips.clone(),
        iptables_snats: iptables_snats.clone(),
        iptables_dnats: iptables_dnats.clone(),
        external_gw_config: external_gw_config.clone(),
        ovn_eips: ovn_eips.clone(),
        ovn_fips: ovn_fips.clone(),
        ovn_snats: ovn_snats.clone(),
        ovn_dnats: ovn_dnats.clone(),
        nads: nads.clone(),
    };

    // The reconcilers, in upstream's start order (the gates hold nodes and pods back).
    let mut rt = Runtime::<Ctx>::new(Backoff {
        min: Duration::from_secs(config.cust_crd_retry_min_delay.max(1)),
        max: Duration::from_secs(config.cust_crd_retry_max_delay.max(1)),
    });
    rt.observe(Arc::new(Observed(metrics.clone())));
    {
        let client = client.clone();
        rt.spawn(async move { crate::attach::follow(client, nad_writer).await });
    }
    rt.workqueue_metrics(metrics.workqueue.clone());
    metrics.watch_subnets(subnets.clone());
    let workers = config.worker_num as usize;
    let subnet_q = rt.register(Kind::new(subnet_ctl::KIND, workers, subnet_ctl::reconcile));
    rt.register(
        Kind::new(
            subnet_ctl::STATUS_KIND,
            workers,
            subnet_ctl::reconcile_status,
        )
        .interval(STATUS_INTERVAL),
    );
    let vpc_q = rt.register(Kind::new(vpc_ctl::KIND, workers, vpc_ctl::reconcile));
    let pool_q = rt.register(Kind::new(ippool_ctl::KIND, workers, ippool_ctl::reconcile));
    let vlan_q = rt.register(Kind::new(
        underlay_ctl::VLAN_KIND,
        workers,
        underlay_ctl::reconcile_vlan,
    ));
    let pn_q = rt.register(Kind::new(
        underlay_ctl::PN_KIND,
        1,
        underlay_ctl::reconcile_pn,
    ));
    let node_q = rt.register(
        Kind::new(node_ctl::KIND, workers, node_ctl::reconcile)
            .gate("default and join switches exist", switches_exist),
    );
    // Pods get more workers: they are the bulk, and each is one small NB transaction.
    let pod_q = rt.register(
        Kind::new(pod_ctl::KIND, workers * 8, pod_ctl::reconcile)
            .gate("every node has a join address", pods_may_start),
    );

    // Services wait for the VPC load balancers start-up creates.
    let service_q = rt.register(Kind::new(
        service_ctl::KIND,
        workers * 4,
        service_ctl::reconcile,
    ));

    let lb_svc_q = rt.register(Kind::new(lb_svc::KIND, workers, lb_svc::reconcile));
    let natgw_q = rt.register(Kind::new(natgw_ctl::KIND, workers, natgw_ctl::reconcile));
    let eip_q = rt.register(Kind::new(
        iptables_ctl::EIP_KIND,
        workers,
        iptables_ctl::reconcile_eip,
    ));
    let fip_q = rt.register(Kind::new(
        iptables_ctl::FIP_KIND,
        workers,
        iptables_ctl::reconcile_rule::<IptablesFipRule>,
    ));
    let snat_q = rt.register(Kind::new(
        iptables_ctl::SNAT_KIND,
        workers,
        iptables_ctl::reconcile_rule::<IptablesSnatRule>,
    ));
    let dnat_q = rt.register(Kind::new(
        iptables_ctl::DNAT_KIND,
        workers,
        iptables_ctl::reconcile_rule::<IptablesDnatRule>,
    ));
    let external_gw_q = rt.register(Kind::new(
        crate::external_gw::KIND,
        1,
        crate::external_gw::reconcile,
    ));
    let ovn_eip_q = rt.register(Kind::new(
        ovn_eip_ctl::KIND,
        workers,
        ovn_eip_ctl::reconcile,
    ));
    let ovn_fip_q = rt.register(Kind::new(
        ovn_nat_ctl::FIP_KIND,
        workers,
        ovn_nat_ctl::reconcile::<OvnFip>,
    ));
    let ovn_snat_q = rt.register(Kind::new(
        ovn_nat_ctl::SNAT_KIND,
        workers,
        ovn_nat_ctl::reconcile::<OvnSnatRule>,
    ));
    let ovn_dnat_q = rt.register(Kind::new(
        ovn_nat_ctl::DNAT_KIND,
        workers,
        ovn_nat_ctl::reconcile::<OvnDnatRule>,
    ));
    let vip_q = rt.register(Kind::new(vip_ctl::KIND, workers, vip_ctl::reconcile));
    let slr_q = rt.register(Kind::new(slr_ctl::KIND, workers, slr_ctl::reconcile));
    let vpc_dns_q = rt.register(Kind::new(
        crate::vpc_dns_ctl::KIND,
        1,
        crate::vpc_dns_ctl::reconcile,
    ));
    // Policies get more workers: a pod's change reaches every policy it concerns (dozens in
    // a large cluster), and each of those reconciles is one small batched NB mutate.
    let np_q = rt.register(Kind::new(np_ctl::KIND, workers * 8, np_ctl::reconcile));
    let np_nodes_q = rt.register(Kind::new(np_ctl::NODES_KIND, 1, np_ctl::reconcile_nodes));
    // One worker: each run takes every policy's pod marks (see np_state).
    let np_members_q = rt.register(Kind::new(
        np_ctl::MEMBERS_KIND,
        1,
        np_ctl::reconcile_members,
    ));
    let sg_q = rt.register(Kind::new(sg_ctl::KIND, workers, sg_ctl::reconcile));
    let anp_q = rt.register(Kind::new(anp_ctl::KIND, workers, anp_ctl::reconcile));
    let banp_q = rt.register(Kind::new(
        anp_ctl::BASELINE_KIND,
        1,
        anp_ctl::reconcile_baseline,
    ));
    let admin_members = Arc::new(anp_ctl::AdminMembers::default());
    let cnp_q = rt.register(Kind::new(cnp_ctl::KIND, workers, cnp_ctl::reconcile));
    let cnp_members = Arc::new(np_ctl::Members::default());

    // What each watch queues. Nodes also queue the centralized subnets naming them as a
    // gateway (those depend on the node's join address and readiness).
    let pod_seen = Seen::default();
    let service_seen = Seen::default();
    let np_cache = Arc::new(np_state::NpCache::default());
    rt.watch(
        subnet_events,
        vec![
            Trigger::own(subnet_q.clone(), subnet_ctl::signature, Seen::default()),
            Trigger::mapped(vpc_q.clone(), vpc_ctl::subnet_vpc_signature, {
                let default_vpc = config.cluster_router.clone();
                move |s: &Subnet| vpc_ctl::vpc_of_subnet(s, &default_vpc)
            }),
            // A VPC's subnets are its gateways' routes and CIDRs.
            Trigger::mapped(natgw_q.clone(), natgw_ctl::subnet_signature, {
                let gws = vpc_nat_gateways.clone();
                move |s: &Subnet| natgw_ctl::gateways_of_vpc(&gws.state(), &s.spec.vpc)
            }),
        ],
    );
    rt.watch(
        vpc_events,
        vec![
            Trigger::own(vpc_q.clone(), vpc_ctl::signature, Seen::default()),
            Trigger::mapped(natgw_q.clone(), natgw_ctl::vpc_signature, {
                let gws = vpc_nat_gateways.clone();
                move |v: &Vpc| natgw_ctl::gateways_of_vpc(&gws.state(), &v.name_any())
            }),
            Trigger::mapped(subnet_q.clone(), vpc_ctl::subnet_signature, {
                let subnets = subnets.clone();
                move |v: &Vpc| vpc_ctl::subnets_of(&subnets.state(), &v.name_any())
            }),
        ],
    );
    rt.watch(
        vlan_events,
        vec![Trigger::own(
            vlan_q,
            underlay_ctl::vlan_signature,
            Seen::default(),
        )],
    );
    rt.watch(
        pn_events,
        vec![Trigger::own(
            pn_q.clone(),
            underlay_ctl::pn_signature,
            Seen::default(),
        )],
    );
    let gateway_of = subnets.clone();
    let pns_of_node = provider_networks.clone();
    rt.watch(
        node_events,
        vec![
            Trigger::own(node_q, node_ctl::signature, Seen::default()),
            Trigger::mapped(pn_q, underlay_ctl::node_signature, move |_: &Node| {
                underlay_ctl::all_pns(&pns_of_node.state())
            }),
            Trigger::mapped(np_nodes_q, node_ctl::signature, |_: &Node| {
                vec![np_ctl::NODES_KEY.to_string()]
            }),
            Trigger::mapped(subnet_q, node_ctl::gateway_signature, move |n: &Node| {
                subnet_ctl::centralized_on(&gateway_of.state(), &n.name_any())
            }),
            Trigger::mapped(anp_q.clone(), anp_ctl::node_signature, {
                let anps = admin_network_policies.clone();
                move |_: &Node| anp_ctl::anps_selecting_nodes(&anps.state())
            }),
            Trigger::mapped(banp_q.clone(), anp_ctl::node_signature, {
                let banps = baseline_admin_network_policies.clone();
                move |_: &Node| anp_ctl::banps_selecting_nodes(&banps.state())
            }),
            Trigger::mapped(cnp_q.clone(), anp_ctl::node_signature, {
                let cnps = cluster_network_policies.clone();
                move |_: &Node| cnp_ctl::cnps_selecting_nodes(&cnps.state())
            }),
            Trigger::mapped(
                external_gw_q.clone(),
                crate::vpc_external::node_signature,
                |_: &Node| vec![crate::external_gw::KEY.to_string()],
            )
            .on_first_list(),
            // External gateway ports follow the labelled nodes.
            Trigger::mapped(vpc_q.clone(), crate::vpc_external::node_signature, {
                let vpcs = vpcs.clone();
                move |_: &Node| crate::vpc_external::external_vpcs(&vpcs.state())
            }),
        ],
    );
    rt.watch(
        pod_events,
        vec![
            Trigger::own(pod_q.clone(), PodInfo::signature, pod_seen.clone()),
            Trigger::mapped(vip_q.clone(), vip_ctl::pod_signature, vip_ctl::vips_of_pod),
            // A gateway pod's phase is its gateway's readiness and its EIPs'.
            Trigger::mapped(
                natgw_q.clone(),
                natgw_ctl::pod_signature,
                natgw_ctl::gateway_of_pod,
            ),
            Trigger::mapped(eip_q.clone(), iptables_ctl::pod_signature, {
                let eips = iptables_eips.clone();
                move |p: &PodInfo| iptables_ctl::eips_of_pod(&eips.state(), p)
            }),
            // An lb-svc pod's address (or phase) is its Service's ingress.
            Trigger::mapped(
                lb_svc_q.clone(),
                lb_svc::pod_signature,
                lb_svc::service_of_pod,
            ),
            // A pod's policies are marked; the members reconcile writes them all at once.
            Trigger::mapped(np_members_q.clone(), np_ctl::pod_signature, {
                let (nps, nss) = (network_policies.clone(), namespaces.clone());
                let cache = np_cache.clone();
                let enabled = config.enable_np;
                move |p: &PodInfo| {
                    if !enabled {
                        return Vec::new();
                    }
                    cache.pods.changed();
                    let keys = np_ctl::policies_of_pod(&nps.state(), &nss, &cache, p);
                    cache.mark(&keys, p.key());
                    vec![np_ctl::MEMBERS_KEY.to_string()]
                }
            })
            .unmapped_first_list({
                let cache = np_cache.clone();
                move |pod: &str| {
                    cache.pods.changed();
                    cache.mark(&cache.holding(pod), pod);
                    vec![np_ctl::MEMBERS_KEY.to_string()]
                }
            }),
            Trigger::mapped(anp_q.clone(), np_ctl::pod_signature, {
                let (anps, nss) = (admin_network_policies.clone(), namespaces.clone());
                let members = admin_members.clone();
                move |p: &PodInfo| anp_ctl::anps_of_pod(&anps.state(), &nss, &members.anp, p)
            }),
            Trigger::mapped(banp_q.clone(), np_ctl::pod_signature, {
                let (banps, nss) = (baseline_admin_network_policies.clone(), namespaces.clone());
                let members = admin_members.clone();
                move |p: &PodInfo| anp_ctl::banps_of_pod(&banps.state(), &nss, &members.banp, p)
            }),
            Trigger::mapped(cnp_q.clone(), np_ctl::pod_signature, {
                let (cnps, nss) = (cluster_network_policies.clone(), namespaces.clone());
                let members = cnp_members.clone();
                move |p: &PodInfo| cnp_ctl::cnps_of_pod(&cnps.state(), &nss, &members, p)
            }),
        ],
    );
    rt.watch(
        ns_events,
        vec![
            Trigger::mapped(np_q.clone(), np_ctl::namespace_signature, {
                let (nps, cache) = (network_policies.clone(), np_cache.clone());
                move |_: &Namespace| {
                    let keys = np_ctl::policies_selecting_namespaces(&nps.state());
                    cache.mark_full(&keys);
                    keys
                }
            }),
            Trigger::mapped(anp_q.clone(), np_ctl::namespace_signature, {
                let anps = admin_network_policies.clone();
                move |_: &Namespace| anp_ctl::all_keys(&anps.state())
            }),
            Trigger::mapped(banp_q.clone(), np_ctl::namespace_signature, {
                let banps = baseline_admin_network_policies.clone();
                move |_: &Namespace| anp_ctl::all_keys(&banps.state())
            }),
            Trigger::mapped(cnp_q.clone(), np_ctl::namespace_signature, {
                let cnps = cluster_network_policies.clone();
                move |_: &Namespace| cnp_ctl::all_keys(&cnps.state())
            }),
        ],
    );
    rt.watch(
        np_events,
        vec![Trigger::own(np_q, np_ctl::signature, Seen::default())],
    );
    let all_groups = security_groups.clone();
    rt.watch(
        sg_events,
        vec![
            Trigger::own(sg_q.clone(), sg_ctl::signature, Seen::default()),
            // Groups naming this one as a remote wait for it; ports naming it change their
            // deny-all membership.
            Trigger::mapped(sg_q, sg_ctl::signature, move |g: &SecurityGroup| {
                sg_ctl::referencing(&all_groups.state(), g)
            }),
        ],
    );
    if config.enable_anp {
        let others = admin_network_policies.clone();
        rt.watch(
            anp_events,
            vec![
                Trigger::own(anp_q.clone(), anp_ctl::signature, Seen::default()),
                // A priority freed or taken decides which of its contenders holds it.
                Trigger::mapped(
                    anp_q.clone(),
                    anp_ctl::priority_signature,
                    move |a: &AdminNetworkPolicy| {
                        let mut keys = anp_ctl::all_keys(&others.state());
                        keys.retain(|k| *k != a.name_any());
                        keys
                    },
                ),
                // An admin policy coming or going takes or frees its port group name.
                Trigger::mapped(cnp_q.clone(), cnp_ctl::admin_signature, {
                    let cnps = cluster_network_policies.clone();
                    move |a: &AdminNetworkPolicy| {
                        cnp_ctl::sharing_port_group(&cnps.state(), &a.name_any())
                    }
                }),
            ],
        );
        rt.watch(
            banp_events,
            vec![
                Trigger::own(banp_q.clone(), anp_ctl::baseline_signature, Seen::default()),
                Trigger::mapped(cnp_q.clone(), cnp_ctl::admin_signature, {
                    let cnps = cluster_network_policies.clone();
                    move |b: &BaselineAdminNetworkPolicy| {
                        cnp_ctl::sharing_port_group(&cnps.state(), &b.name_any())
                    }
                }),
            ],
        );
        let others = cluster_network_policies.clone();
        rt.watch(
            cnp_events,
            vec![
                Trigger::own(cnp_q.clone(), cnp_ctl::signature, Seen::default()),
                // A priority freed or taken, or a Baseline policy's rank moved, concerns the
                // others.
                Trigger::mapped(
                    cnp_q.clone(),
                    cnp_ctl::rank_signature,
                    move |c: &ClusterNetworkPolicy| cnp_ctl::others(&others.state(), c),
                ),
            ],
        );
        if resolve_domains {
            // A resolver's addresses are its policies' (those naming its domain, and the one
            // its label names, which recreates it if it was deleted).
            rt.watch(
                dnr_events,
                vec![
                    Trigger::mapped(anp_q.clone(), dns_names::signature, {
                        let anps = admin_network_policies.clone();
                        move |r: &DnsNameResolver| dnr_ctl::anps_of(&anps.state(), r)
                    }),
                    Trigger::mapped(cnp_q.clone(), dns_names::signature, {
                        let cnps = cluster_network_policies.clone();
                        move |r: &DnsNameResolver| dnr_ctl::cnps_of(&cnps.state(), r)
                    }),
                ],
            );
        }
    }
    rt.watch(
        service_events,
        vec![
            Trigger::own(
                service_q.clone(),
                service_ctl::signature,
                service_seen.clone(),
            ),
            Trigger::own(lb_svc_q, lb_svc::signature, Seen::default()),
            // A rule's Service changed or deleted by someone else is put back.
            Trigger::mapped(
                slr_q.clone(),
                service_ctl::signature,
                slr_ctl::rule_of_service,
            ),
        ],
    );
    rt.watch(
        slice_events,
        vec![Trigger::mapped(
            service_q,
            service_ctl::slice_signature,
            service_ctl::slice_service,
        )],
    );
    rt.watch(
        natgw_events,
        vec![
            Trigger::own(natgw_q, natgw_ctl::signature, Seen::default()),
            Trigger::mapped(eip_q.clone(), natgw_ctl::signature, {
                let eips = iptables_eips.clone();
                move |g: &VpcNatGateway| {
                    let name = g.name_any();
                    eips.state()
                        .iter()
                        .filter(|e| e.spec.nat_gw_dp == name)
                        .map(|e| e.name_any())
                        .collect()
                }
            }),
        ],
    );
    rt.watch(
        eip_events,
        vec![
            Trigger::own(
                eip_q.clone(),
                iptables_ctl::signature::<IptablesEip>,
                Seen::default(),
            ),
            // Rules wait for their EIP's address.
            Trigger::mapped(fip_q.clone(), iptables_ctl::signature::<IptablesEip>, {
                let rules = iptables_fips.clone();
                move |e: &IptablesEip| iptables_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
            Trigger::mapped(snat_q.clone(), iptables_ctl::signature::<IptablesEip>, {
                let rules = iptables_snats.clone();
                move |e: &IptablesEip| iptables_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
            Trigger::mapped(dnat_q.clone(), iptables_ctl::signature::<IptablesEip>, {
                let rules = iptables_dnats.clone();
                move |e: &IptablesEip| iptables_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
        ],
    );
    rt.watch(
        fip_events,
        vec![
            Trigger::own(
                fip_q,
                iptables_ctl::signature::<IptablesFipRule>,
                Seen::default(),
            ),
            Trigger::mapped(
                eip_q.clone(),
                iptables_ctl::signature::<IptablesFipRule>,
                iptables_ctl::eip_of_rule::<IptablesFipRule>,
            ),
        ],
    );
    rt.watch(
        snat_events,
        vec![
            Trigger::own(
                snat_q,
                iptables_ctl::signature::<IptablesSnatRule>,
                Seen::default(),
            ),
            Trigger::mapped(
                eip_q.clone(),
                iptables_ctl::signature::<IptablesSnatRule>,
                iptables_ctl::eip_of_rule::<IptablesSnatRule>,
            ),
        ],
    );
    rt.watch(
        dnat_events,
        vec![
            Trigger::own(
                dnat_q,
                iptables_ctl::signature::<IptablesDnatRule>,
                Seen::default(),
            ),
            Trigger::mapped(
                eip_q,
                iptables_ctl::signature::<IptablesDnatRule>,
                iptables_ctl::eip_of_rule::<IptablesDnatRule>,
            ),
        ],
    );
    rt.watch(
        ovn_eip_events,
        vec![
            Trigger::own(ovn_eip_q.clone(), ovn_eip_ctl::signature, Seen::default()),
            // Rules wait for their EIP's address.
            Trigger::mapped(ovn_fip_q.clone(), ovn_nat_ctl::eip_signature, {
                let rules = ovn_fips.clone();
                move |e: &OvnEip| ovn_nat_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
            Trigger::mapped(ovn_snat_q.clone(), ovn_nat_ctl::eip_signature, {
                let rules = ovn_snats.clone();
                move |e: &OvnEip| ovn_nat_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
            Trigger::mapped(ovn_dnat_q.clone(), ovn_nat_ctl::eip_signature, {
                let rules = ovn_dnats.clone();
                move |e: &OvnEip| ovn_nat_ctl::rules_of_eip(&rules.state(), &e.name_any())
            }),
        ],
    );
    rt.watch(
        external_gw_events,
        vec![Trigger::mapped(
            external_gw_q.clone(),
            crate::external_gw::config_signature,
            |_: &ConfigMap| vec![crate::external_gw::KEY.to_string()],
        )
        // The gateway is set up (or taken down) once at start, whatever the first list holds.
        .on_first_list()],
    );
    rt.watch(
        ovn_fip_events,
        vec![
            // The default VPC routes NATed sources to the external gateway.
            Trigger::mapped(
                external_gw_q.clone(),
                ovn_nat_ctl::signature::<OvnFip>,
                |_: &OvnFip| vec![crate::external_gw::KEY.to_string()],
            ),
            Trigger::own(ovn_fip_q, ovn_nat_ctl::signature::<OvnFip>, Seen::default()),
            Trigger::mapped(
                ovn_eip_q.clone(),
                ovn_nat_ctl::signature::<OvnFip>,
                ovn_nat_ctl::eip_of_rule::<OvnFip>,
            ),
        ],
    );
    rt.watch(
        ovn_snat_events,
        vec![
            Trigger::mapped(
                external_gw_q.clone(),
                ovn_nat_ctl::signature::<OvnSnatRule>,
                |_: &OvnSnatRule| vec![crate::external_gw::KEY.to_string()],
            ),
            Trigger::own(
                ovn_snat_q,
                ovn_nat_ctl::signature::<OvnSnatRule>,
                Seen::default(),
            ),
            Trigger::mapped(
                ovn_eip_q.clone(),
                ovn_nat_ctl::signature::<OvnSnatRule>,
                ovn_nat_ctl::eip_of_rule::<OvnSnatRule>,
            ),
        ],
    );
    rt.watch(
        ovn_dnat_events,
        vec![
            Trigger::own(
                ovn_dnat_q,
                ovn_nat_ctl::signature::<OvnDnatRule>,
                Seen::default(),
            ),
            Trigger::mapped(
                ovn_eip_q,
                ovn_nat_ctl::signature::<OvnDnatRule>,
                ovn_nat_ctl::eip_of_rule::<OvnDnatRule>,
            ),
        ],
    );
    let pods_of_vip = pods.clone();
    rt.watch(
        vip_events,
        vec![
            Trigger::own(vip_q, vip_ctl::signature, Seen::default()),
            // Ports of the pods naming a Vip in their aaps carry its address.
            Trigger::mapped(pod_q.clone(), vip_ctl::address_signature, move |v: &Vip| {
                vip_ctl::pods_naming(v, &pods_of_vip.state())
            }),
        ],
    );
    rt.watch(
        slr_events,
        vec![Trigger::own(
            slr_q.clone(),
            slr_ctl::signature,
            Seen::default(),
        )],
    );
    // A VpcDns change can move activity to another VpcDns of its VPC; the config concerns all.
    rt.watch(
        vpc_dns_events,
        vec![
            Trigger::own(
                vpc_dns_q.clone(),
                crate::vpc_dns_ctl::signature,
                Seen::default(),
            ),
            Trigger::mapped(vpc_dns_q.clone(), crate::vpc_dns_ctl::signature, {
                let all = vpc_dnses.clone();
                move |_: &VpcDns| crate::vpc_dns_ctl::all_keys(&all.state())
            }),
        ],
    );
    rt.watch(
        configmap_events,
        vec![Trigger::mapped(
            vpc_dns_q,
            crate::vpc_dns_ctl::config_signature,
            {
                let all = vpc_dnses.clone();
                move |_: &ConfigMap| crate::vpc_dns_ctl::all_keys(&all.state())
            },
        )],
    );
    rt.watch(
        pool_events,
        vec![Trigger::own(pool_q, ippool_ctl::signature, Seen::default())],
    );
    let ips = Arc::new(crate::ipcr::IpIndex::default());
    {
        let (ips, client) = (ips.clone(), client.clone());
        rt.spawn(async move { ips.follow(client).await });
    }
    // The watches list (in their tasks) while the NB replica syncs.
    let nb = loop {
        match Replica::start(rc.clone(), Duration::from_secs(config.ovn_timeout.max(1))).await {
            Ok(r) => break r,
            Err(e) => {
                warn!("connecting to OVN NB: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };

    milestone("nb replica synced");
    subnets
        .wait_until_ready()
        .await
        .map_err(|e| format!("subnets never synced: {e}"))?;
    nodes
        .wait_until_ready()
        .await
        .map_err(|e| format!("nodes never synced: {e}"))?;
    vpcs.wait_until_ready()
        .await
        .map_err(|e| format!("vpcs never synced: {e}"))?;
    pods.wait_until_ready()
        .await
        .map_err(|e| format!("pods never synced: {e}"))?;
    namespaces
        .wait_until_ready()
        .await
        .map_err(|e| format!("namespaces never synced: {e}"))?;
    for (what, ready) in [
        ("services", services.wait_until_ready().await.is_ok()),
        (
            "endpointslices",
            endpoint_slices.wait_until_ready().await.is_ok(),
        ),
        ("vips", vips.wait_until_ready().await.is_ok()),
        (
            "vpc-nat-gateways",
            vpc_nat_gateways.wait_until_ready().await.is_ok(),
        ),
        (
            "iptables-eips",
            iptables_eips.wait_until_ready().await.is_ok(),
        ),
        (
            "iptables-fip-rules",
            iptables_fips.wait_until_ready().await.is_ok(),
        ),
        (
            "iptables-snat-rules",
            iptables_snats.wait_until_ready().await.is_ok(),
        ),
        (
            "iptables-dnat-rules",
            iptables_dnats.wait_until_ready().await.is_ok(),
        ),
        ("ovn-eips", ovn_eips.wait_until_ready().await.is_ok()),
        ("ovn-fips", ovn_fips.wait_until_ready().await.is_ok()),
        ("ovn-snat-rules", ovn_snats.wait_until_ready().await.is_ok()),
        ("ovn-dnat-rules", ovn_dnats.wait_until_ready().await.is_ok()),
        ("vlans", vlans.wait_until_ready().await.is_ok()),
        (
            "provider-networks",
            provider_networks.wait_until_ready().await.is_ok(),
        ),
        (
            "switch-lb-rules",
            switch_lb_rules.wait_until_ready().await.is_ok(),
        ),
        ("vpc-dnses", vpc_dnses.wait_until_ready().await.is_ok()),
        ("configmaps", configmaps.wait_until_ready().await.is_ok()),
        (
            "external-gw-config",
            external_gw_config.wait_until_ready().await.is_ok(),
        ),
        (
            "networkpolicies",
            network_policies.wait_until_ready().await.is_ok(),
        ),
        (
            "security-groups",
            security_groups.wait_until_ready().await.is_ok(),
        ),
    ] {
        if !ready {
            return Err(format!("{what} never synced"));
        }
    }
    if config.enable_anp {
        for (what, ready) in [
            (
                "adminnetworkpolicies",
                admin_network_policies.wait_until_ready().await.is_ok(),
            ),
            (
                "baselineadminnetworkpolicies",
                baseline_admin_network_policies
                    .wait_until_ready()
                    .await
                    .is_ok(),
            ),
            // Upstream waits for this informer too under --enable-anp.
            (
                "clusternetworkpolicies",
                cluster_network_policies.wait_until_ready().await.is_ok(),
            ),
        ] {
            if !ready {
                return Err(format!("{what} never synced"));
            }
        }
        if resolve_domains {
            dns_name_resolvers
                .wait_until_ready()
                .await
                .map_err(|e| format!("dnsnameresolvers never synced: {e}"))?;
        }
    }
    if nads_at_start {
        nads.wait_until_ready()
            .await
            .map_err(|e| format!("network attachment definitions never synced: {e}"))?;
    }
    milestone("kubernetes caches synced");

    let ctx = Arc::new(Ctx {
        config: config.clone(),
        client: client.clone(),
        nb,
        ipam: Mutex::new(kube_ovn_ipam::Ipam::new()),
        metrics: metrics.clone(),
        stores,
        queues: rt.queues(),
        ips: ips.clone(),
        pod_seen,
        service_seen,
        recorder: Recorder::new(client.clone(), "kube-ovn-controller"),
        lb_claims: Default::default(),
        slr_records: Default::default(),
        np_cache,
        admin_members,
        cnp_members,
        dry_run,
    });
    // Initialisation: NB basics and the default CRs, retried until they succeed.
    loop {
        let r = async {
            startup::init_nb(&ctx).await?;
            startup::init_crs(&ctx).await
        }
        .await;
        match r {
            Ok(()) => break,
            Err(e) => {
                warn!("initialisation: {e}; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    restore::restore_ipam(&ctx).await?;
    milestone("initialised, IPAM restored");

    rt.start(ctx.clone());
    wait_until("pods may start", || pods_may_start(&ctx)).await;
    milestone("nodes ready, starting pods");
    if let Err(e) = gc::run(&ctx).await {
        warn!("gc: {e}");
    }
    // Upstream converges the deny-all group's members at every start.
    ctx.queues
        .add(sg_ctl::KIND, kube_ovn_nb::objects::DENY_ALL_SG.to_string());
    metrics.set_ready(true);
    milestone("controller running");
    let interval = Duration::from_secs(config.gc_interval);
    loop {
        if config.gc_interval == 0 {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(interval).await;
        if let Err(e) = gc::run(&ctx).await {
            warn!("gc: {e}");
        }
    }
}

/// Logs a step of start-up with the process's memory then (`VmRSS`, and the peak `VmHWM`):
/// where a start spends its time and memory is then read off the log.
fn milestone(what: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or_default()
    };
    info!(
        rss_mib = field("VmRSS:"),
        peak_mib = field("VmHWM:"),
        "{what}"
    );
}

/// Upstream writes `tcp:[10.0.0.1]:6641` even for IPv4; accept the brackets.
pub fn normalize_remotes(list: &str) -> String {
    list.split(',')
        .map(|r| {
            let r = r.trim();
            match r.split_once(':') {
                Some((proto @ ("tcp" | "ssl"), rest)) if rest.starts_with('[') => {
                    if let Some((host, port)) = rest[1..].split_once("]:") {
                        if host.parse::<std::net::Ipv4Addr>().is_ok() {
                            return format!("{proto}:{host}:{port}");
                        }
                    }
                    r.to_string()
                }
                _ => r.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_bracketed_remotes_parse() {
        let list = normalize_remotes("tcp:[10.0.0.1]:6641,tcp:[10.0.0.2]:6641,ssl:[fd00::3]:6641");
        assert_eq!(
            list,
            "tcp:10.0.0.1:6641,tcp:10.0.0.2:6641,ssl:[fd00::3]:6641"
        );
        let remotes = Remote::parse_list(&list).unwrap();
        assert_eq!(remotes.len(), 3);
    }
}
