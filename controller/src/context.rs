//! What every reconciler shares: configuration, the Kubernetes client and reflector stores,
//! the replicated NB, IPAM, metrics, and the helpers to write NB plans and emit Events.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use kube_ovn_ipam::Ipam;
use kube_ovn_nb::{Plan, PlanError};
use ovsdb::Replica;
use serde_json::json;
use tracing::{debug, warn};

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
    /// Pods.
    pub pods: Store<crate::pod_info::PodInfo>,
    /// Namespaces.
    pub namespaces: Store<Namespace>,
    /// IP pools.
    pub ippools: Store<kube_ovn_common::crd::IpPool>,
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
    /// Pod keys to reconcile again (e.g. their addresses no longer fit a changed subnet).
    pub requeue_pods: tokio::sync::mpsc::UnboundedSender<String>,
    /// Node names to reconcile again (a subnet stopped being distributed, or went, so the
    /// nodes' per-subnet gateway rows must be re-stated).
    pub requeue_nodes: tokio::sync::mpsc::UnboundedSender<String>,
    /// Every IP CR, summarised (see [`crate::ipcr::IpIndex`]).
    pub ips: Arc<crate::ipcr::IpIndex>,
    /// Subnets whose status counters are due (an address was allocated or released there).
    pub subnet_status: tokio::sync::mpsc::UnboundedSender<String>,
    /// The last [`crate::pod_info::PodInfo::signature`] seen or written per pod key (see
    /// [`crate::pod_events`]): a reconcile records the one of its own annotation patch, so
    /// that patch coming back through the watch is not reconciled a second time.
    pub pod_seen: crate::pod_events::Seen,
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
            self.metrics.nb_transactions.inc();
            self.metrics.nb_operations.inc_by(n as u64);
            match self.nb.transact_batched(txn).await {
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

    /// Records a Kubernetes Event on an object (best effort: a failed Event never fails the
    /// reconcile).
    pub async fn event(
        &self,
        obj: &k8s_openapi::api::core::v1::ObjectReference,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let ns = obj.namespace.clone().unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now().to_string();
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{}", obj.name.clone().unwrap_or_default(), ovsdb::Uuid::new_v4().simple()), "namespace": ns},
            "involvedObject": obj,
            "type": type_, "reason": reason, "message": message,
            "source": {"component": "kube-ovn-controller"},
            "reportingComponent": "kube-ovn-controller",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        let Ok(ev) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(ev) else {
            return;
        };
        if let Err(e) =
            Api::<k8s_openapi::api::core::v1::Event>::namespaced(self.client.clone(), &ns)
                .create(&PostParams::default(), &ev)
                .await
        {
            debug!("event not recorded: {e}");
        }
    }
}
