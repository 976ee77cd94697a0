//! What every reconciler shares: configuration, the Kubernetes client and reflector stores,
//! the replicated NB, IPAM, metrics, and the helpers to write NB plans and emit Events.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::runtime::reflector::Store;
use kube_ovn_ipam::Ipam;
use kube_ovn_nb::{Plan, PlanError};
use kube_ovn_runtime::events::{EventType, Recorder};
use kube_ovn_runtime::{Queues, Seen};
use ovsdb::Replica;
use tracing::{debug, trace, warn};

use crate::config::Config;
use crate::metrics::Metrics;
use kube_ovn_common::crd::Subnet;

/// NB database name.
pub const NB_DB: &str = "OVN_Northbound";
/// How many times a plan is re-made after a transaction the NB refused (someone else changed
/// the rows meanwhile) before the reconcile fails and is retried later.
const PLAN_ATTEMPTS: usize = 4;

/// The reflector stores reconcilers read from.
#[derive(Clone)]
pub struct Stores {
    /// Subnets.
    pub subnets: Store<Subnet>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// Vpcs.
    pub vpcs: Store<kube_ovn_common::crd::Vpc>,
    /// Pods.
    pub pods: Store<crate::pod_info::PodInfo>,
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// IP pools.
    pub ippools: Store<kube_ovn_common::crd::IpPool>,
    /// Services.
    pub services: Store<k8s_openapi::api::core::v1::Service>,
    /// EndpointSlices, with [`Stores::slices_of`] finding a Service's.
    pub endpoint_slices: Store<k8s_openapi::api::discovery::v1::EndpointSlice>,
    /// Which EndpointSlices name which Service (see [`crate::slice_index`]).
    pub slice_index: Arc<crate::slice_index::SliceIndex>,
    /// Vips.
    pub vips: Store<kube_ovn_common::crd::Vip>,
    /// SwitchLBRules.
    pub switch_lb_rules: Store<kube_ovn_common::crd::SwitchLbRule>,
    /// NetworkPolicies.
    pub network_policies: Store<k8s_openapi::api::networking::v1::NetworkPolicy>,
    /// SecurityGroups.
    pub security_groups: Store<kube_ovn_common::crd::SecurityGroup>,
    /// AdminNetworkPolicies (empty unless `--enable-anp`).
    pub admin_network_policies: Store<kube_ovn_common::crd::AdminNetworkPolicy>,
    /// BaselineAdminNetworkPolicies (empty unless `--enable-anp`).
    pub baseline_admin_network_policies: Store<kube_ovn_common::crd::BaselineAdminNetworkPolicy>,
    /// ClusterNetworkPolicies (empty unless `--enable-anp`).
    pub cluster_network_policies: Store<kube_ovn_common::crd::ClusterNetworkPolicy>,
    /// DNSNameResolvers (empty unless `--enable-anp` and `--enable-dns-name-resolver`).
    pub dns_name_resolvers: Store<kube_ovn_common::crd::DnsNameResolver>,
    /// Vlans.
    pub vlans: Store<kube_ovn_common::crd::Vlan>,
    /// ProviderNetworks.
    pub provider_networks: Store<kube_ovn_common::crd::ProviderNetwork>,
    /// VpcDnses.
    pub vpc_dnses: Store<kube_ovn_common::crd::VpcDns>,
    /// The ConfigMaps the controller follows by name (`vpc-dns-config`).
    pub configmaps: Store<k8s_openapi::api::core::v1::ConfigMap>,
    /// VpcNatGateways.
    pub vpc_nat_gateways: Store<kube_ovn_common::crd::VpcNatGateway>,
    /// IptablesEIPs.
    pub iptables_eips: Store<kube_ovn_common::crd::IptablesEip>,
    /// IptablesFIPRules.
    pub iptables_fips: Store<kube_ovn_common::crd::IptablesFipRule>,
    /// IptablesSnatRules.
    pub iptables_snats: Store<kube_ovn_common::crd::IptablesSnatRule>,
    /// IptablesDnatRules.
    pub iptables_dnats: Store<kube_ovn_common::crd::IptablesDnatRule>,
    /// ConfigMap `ovn-external-gw-config` (any namespace; the gateway reads
    /// `--external-gateway-config-ns`'s).
    pub external_gw_config: Store<k8s_openapi::api::core::v1::ConfigMap>,
    /// OvnEips.
    pub ovn_eips: Store<kube_ovn_common::crd::OvnEip>,
    /// OvnFips.
    pub ovn_fips: Store<kube_ovn_common::crd::OvnFip>,
    /// OvnSnatRules.
    pub ovn_snats: Store<kube_ovn_common::crd::OvnSnatRule>,
    /// OvnDnatRules.
    pub ovn_dnats: Store<kube_ovn_common::crd::OvnDnatRule>,
    /// NetworkAttachmentDefinitions (empty while their CRD is not installed).
    pub nads: Store<crate::attach::NetworkAttachmentDefinition>,
}

impl Stores {
    /// The EndpointSlices of the Service `namespace/name` (by their
    /// `kubernetes.io/service-name` label), sorted by name so the result does not depend on
    /// arrival order.
    pub fn slices_of(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<Arc<k8s_openapi::api::discovery::v1::EndpointSlice>> {
        self.slice_index
            .slices_of(&self.endpoint_slices, namespace, name)
    }
}

/// Shared controller state.
pub struct Ctx {
    /// Flags.
    pub config: Config,
    /// Kubernetes client.
    pub client: kube::Client,
    /// Replicated NB.
    pub nb: Replica,
    /// Address books.
    pub ipam: Mutex<Ipam>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Reflector stores.
    pub stores: Stores,
    /// Every kind's queue: how a reconcile queues keys of other kinds (a subnet whose CIDR
    /// moved queues its pods, an allocation queues its subnet's counters).
    pub queues: Queues,
    /// Every IP CR, summarised (see [`crate::ipcr::IpIndex`]).
    pub ips: Arc<crate::ipcr::IpIndex>,
    /// The last [`crate::pod_info::PodInfo::signature`] seen or written per pod key: a
    /// reconcile records the one of its own annotation patch, so that patch coming back
    /// through the watch is not reconciled a second time.
    pub pod_seen: Seen,
    /// Service signatures the Service reconciler caused itself (its `ovn.kubernetes.io/vpc`
    /// patch): their watch events queue nothing.
    pub service_seen: Seen,
    /// Aggregated Kubernetes Events.
    pub recorder: Recorder,
    /// The VIPs each Service holds on the load balancers.
    pub lb_claims: crate::service_ctl::Claims,
    /// What each SwitchLBRule placed, to undo it once the rule is gone.
    pub slr_records: crate::slr_ctl::SlrRecords,
    /// The NetworkPolicy reconciler's marks and memory (see [`crate::np_state`]).
    pub np_cache: Arc<crate::np_state::NpCache>,
    /// Which pods each admin policy holds (see [`crate::anp_ctl::AdminMembers`]).
    pub admin_members: Arc<crate::anp_ctl::AdminMembers>,
    /// Which pods each ClusterNetworkPolicy holds.
    pub cnp_members: Arc<crate::np_ctl::Members>,
    /// Set in a drift check (`kubectl ko diagnose drift`): NB transactions are recorded there
    /// instead of sent.
    pub dry_run: Option<Arc<crate::drift::Recorded>>,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// OVSDB.
    #[error("ovn nb: {0}")]
    Ovsdb(#[from] ovsdb::Error),
    /// A plan referenced something missing.
    #[error("ovn nb plan: {0}")]
    Plan(#[from] PlanError),
    /// IPAM refused.
    #[error("ipam: {0}")]
    Ipam(#[from] kube_ovn_ipam::Error),
    /// The object is invalid or depends on something not there yet.
    #[error("{0}")]
    Other(String),
}

impl Ctx {
    /// Locks IPAM (never held across an await).
    pub fn ipam(&self) -> std::sync::MutexGuard<'_, Ipam> {
        self.ipam.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds a plan with `f` from the NB cache and sends it if it writes anything; re-plans
    /// when the NB refused it (concurrent change). Returns the operations written (0 when the
    /// NB already matched).
    pub async fn apply(
        &self,
        what: &str,
        f: impl Fn(&mut Plan<'_>) -> Result<(), PlanError>,
    ) -> Result<usize, Error> {
        let mut last_err = None;
        for _ in 0..PLAN_ATTEMPTS {
            let txn = {
                let cache = self.nb.cache();
                let mut plan = Plan::new(&cache, NB_DB);
                f(&mut plan)?;
                if plan.is_empty() {
                    return Ok(0);
                }
                let n = plan.len();
                (plan.into_transaction(), n)
            };
            let (txn, n) = txn;
            if let Some(recorded) = &self.dry_run {
                recorded.record(what, txn);
                return Ok(n);
            }
            trace!(what, ops = ?txn.ops, "nb transaction content");
            self.metrics.nb_transactions.inc();
            self.metrics.nb_operations.inc_by(n as u64);
            let started = std::time::Instant::now();
            let result = self.nb.transact_batched(txn).await;
            self.metrics
                .ovs
                .observe("ovn-nb", "transact", result.is_ok(), started.elapsed());
            match result {
                Ok(_) => {
                    debug!(what, ops = n, "nb transaction");
                    return Ok(n);
                }
                Err(e @ ovsdb::Error::Transaction(_)) => {
                    warn!(what, "nb refused the transaction, re-planning: {e}");
                    last_err = Some(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last_err
            .map(Error::from)
            .unwrap_or_else(|| Error::Other(format!("{what}: no progress"))))
    }

    /// Records a Kubernetes Event on an object (aggregated; best effort: a failed Event never
    /// fails the reconcile).
    pub async fn event(
        &self,
        obj: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        // The recorder logs a refused Event itself.
        let _ = self.recorder.publish(obj, type_, reason, message).await;
    }
}
