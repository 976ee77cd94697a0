//! IP custom resources: the durable record of every allocation (named like the port), written
//! exactly as upstream does so either controller can restore from the other's records.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use kube_ovn_runtime::finalizer;
use serde_json::json;
use tracing::warn;

use crate::context::{Ctx, Error};
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::ip::IpSpec;
use kube_ovn_common::crd::Ip;

/// What an IP CR records.
#[derive(Debug, Clone)]
pub struct IpRecord {
    /// CR name (= port name).
    pub name: String,
    /// Pod (or node) name.
    pub pod_name: String,
    /// Pod namespace ("" for nodes).
    pub namespace: String,
    /// Subnet.
    pub subnet: String,
    /// Node the pod runs on ("" before scheduling).
    pub node_name: String,
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// MAC.
    pub mac: String,
    /// "StatefulSet", "VirtualMachine" or "".
    pub pod_type: String,
    /// The object the record dies with (owner reference): a node's join address its Node, a
    /// u2o address its Subnet; none for pods (their records outlive a restarting pod).
    pub owner: Option<IpOwner>,
}

/// The owner reference of an IP CR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpOwner {
    /// `v1` or `kubeovn.io/v1`.
    pub api_version: &'static str,
    /// `Node` or `Subnet`.
    pub kind: &'static str,
    /// The owner's name.
    pub name: String,
    /// The owner's UID.
    pub uid: String,
}

fn desired_spec(r: &IpRecord) -> IpSpec {
    let v4 = r
        .ips
        .iter()
        .find(|i| i.is_ipv4())
        .map(|i| i.to_string())
        .unwrap_or_default();
    let v6 = r
        .ips
        .iter()
        .find(|i| i.is_ipv6())
        .map(|i| i.to_string())
        .unwrap_or_default();
    IpSpec {
        pod_name: r.pod_name.clone(),
        namespace: r.namespace.clone(),
        subnet: r.subnet.clone(),
        node_name: r.node_name.clone(),
        ip_address: ann::format_ips(&r.ips),
        v4_ip_address: v4,
        v6_ip_address: v6,
        mac_address: r.mac.clone(),
        pod_type: r.pod_type.clone(),
        ..IpSpec::default()
    }
}

/// What the controller remembers of one IP CR: whether it already says what a record would
/// write, whose it is (for GC), and the allocation it records (for the IPAM restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSummary {
    /// Digest of the parts [`ensure`] writes (labels it sets, finalizer, spec).
    pub digest: u64,
    /// `spec.namespace` (empty for a node's join address).
    pub namespace: String,
    /// `spec.podName` (the node name for a join address).
    pub pod_name: String,
    /// `spec.subnet`.
    pub subnet: String,
    /// `spec.ipAddress` (`v4,v6` when dual-stack).
    pub ip_address: String,
    /// `spec.macAddress`.
    pub mac_address: String,
    /// `spec.podType` ("StatefulSet" keeps a deleted pod's addresses for its successor).
    pub pod_type: String,
}

/// Every IP CR, summarised, kept current by a watch: pods and nodes check and write their
/// records without a GET each (10,000 GETs on every restart), and the summaries take a
/// fraction of the memory of the objects.
#[derive(Default)]
pub struct IpIndex {
    entries: Mutex<HashMap<String, IpSummary>>,
    synced: AtomicBool,
}

impl IpIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, IpSummary>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the first full list has been applied.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The summary of the CR `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<IpSummary> {
        self.lock().get(name).cloned()
    }

    /// All summaries (a copy; GC reads them while the watch goes on).
    pub fn snapshot(&self) -> Vec<(String, IpSummary)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Records what the API returned for a write of ours (the watch event may come later).
    pub fn observe(&self, ip: &Ip) {
        self.lock().insert(ip.name_any(), summary(ip));
    }

    /// Forgets a CR we deleted.
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Follows the IP CRs until the stream ends (never, in practice: the watcher re-lists).
    pub async fn follow(&self, client: kube::Client) {
        let mut pending: Option<HashMap<String, IpSummary>> = None;
        let events = watcher(Api::<Ip>::all(client), watcher::Config::default()).default_backoff();
        futures::pin_mut!(events);
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::Init) => pending = Some(HashMap::new()),
                Ok(watcher::Event::InitApply(ip)) => {
                    if let Some(p) = pending.as_mut() {
                        p.insert(ip.name_any(), summary(&ip));
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    if let Some(p) = pending.take() {
                        *self.lock() = p;
                    }
                    self.synced.store(true, Ordering::Release);
                }
                Ok(watcher::Event::Apply(ip)) => self.observe(&ip),
                Ok(watcher::Event::Delete(ip)) => self.forget(&ip.name_any()),
                Err(e) => warn!("watching IP CRs: {e}"),
            }
        }
    }
}

fn digest(subnet: &str, node: &str, subnet_label: bool, finalizer: bool, spec: &IpSpec) -> u64 {
    let mut spec = spec.clone();
    spec.container_id = String::new();
    spec.attach_ips.clear();
    spec.attach_macs.clear();
    spec.attach_subnets.clear();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (subnet, node, subnet_label, finalizer).hash(&mut h);
    serde_json::to_string(&spec)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

/// The summary of an existing CR: the labels [`ensure`] sets are read back by their keys.
fn summary(ip: &Ip) -> IpSummary {
    let empty = BTreeMap::new();
    let labels = ip.metadata.labels.as_ref().unwrap_or(&empty);
    let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let subnet = label(ann::LABEL_SUBNET);
    let finalizer = ip.finalizers().iter().any(|f| f == ann::FINALIZER);
    IpSummary {
        digest: digest(
            subnet,
            label(ann::LABEL_NODE_NAME),
            !subnet.is_empty() && labels.get(subnet).is_some_and(|v| v.is_empty()),
            finalizer,
            &ip.spec,
        ),
        namespace: ip.spec.namespace.clone(),
        pod_name: ip.spec.pod_name.clone(),
        subnet: ip.spec.subnet.clone(),
        ip_address: ip.spec.ip_address.clone(),
        mac_address: ip.spec.mac_address.clone(),
        pod_type: ip.spec.pod_type.clone(),
    }
}

/// The digest of the CR [`ensure`] would leave for `r`.
fn record_digest(r: &IpRecord) -> u64 {
    digest(&r.subnet, &r.node_name, true, true, &desired_spec(r))
}

/// Creates or updates the CR; writes nothing when it already matches.
pub async fn ensure(ctx: &Ctx, r: &IpRecord) -> Result<(), Error> {
    let api: Api<Ip> = Api::all(ctx.client.clone());
    let spec = desired_spec(r);
    let mut labels = json!({
        ann::LABEL_SUBNET: r.subnet,
        ann::LABEL_NODE_NAME: r.node_name,
        r.subnet.as_str(): "",
    });
    let known = ctx.ips.get(&r.name);
    if known.as_ref().is_some_and(|k| k.digest == record_digest(r)) {
        return Ok(());
    }
    let current = if known.is_none() && ctx.ips.synced() {
        None
    } else {
        api.get_opt(&r.name).await?
    };
    match current {
        None => {
            labels[ann::LABEL_IP_RESERVED] = json!("false");
            let mut meta =
                json!({"name": r.name, "labels": labels, "finalizers": [ann::FINALIZER]});
            if let Some(o) = &r.owner {
                meta["ownerReferences"] = json!([{"apiVersion": o.api_version, "kind": o.kind,
                                                  "name": o.name, "uid": o.uid}]);
            }
            let obj: Ip = serde_json::from_value(json!({
                "apiVersion": "kubeovn.io/v1", "kind": "IP", "metadata": meta,
                "spec": serde_json::to_value(&spec).map_err(|e| Error::Other(e.to_string()))?,
            }))
            .map_err(|e| Error::Other(e.to_string()))?;
            match api.create(&PostParams::default(), &obj).await {
                Ok(created) => {
                    ctx.ips.observe(&created);
                    Ok(())
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Created meanwhile (or before our index heard of it): read it next time.
                    if let Ok(Some(existing)) = api.get_opt(&r.name).await {
                        ctx.ips.observe(&existing);
                    }
                    Err(Error::Other(format!(
                        "IP {} created concurrently; retrying",
                        r.name
                    )))
                }
                Err(e) => Err(e.into()),
            }
        }
        Some(current) => {
            let cur_labels = current.metadata.labels.clone().unwrap_or_default();
            let labels_ok = labels.as_object().is_some_and(|m| {
                m.iter()
                    .all(|(k, v)| cur_labels.get(k).map(|s| json!(s)) == Some(v.clone()))
            });
            let fin_ok = current
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == ann::FINALIZER));
            // The daemon may fill containerID/attach fields; compare what we own.
            let mut mine = current.spec.clone();
            mine.container_id = String::new();
            let mut want = spec.clone();
            want.attach_ips = mine.attach_ips.clone();
            want.attach_macs = mine.attach_macs.clone();
            want.attach_subnets = mine.attach_subnets.clone();
            if labels_ok && fin_ok && mine == want {
                ctx.ips.observe(&current);
                return Ok(());
            }
            let old_subnet = cur_labels
                .get(ann::LABEL_SUBNET)
                .cloned()
                .unwrap_or_default();
            if !old_subnet.is_empty() && old_subnet != r.subnet {
                labels[old_subnet.as_str()] = serde_json::Value::Null;
            }
            if !fin_ok {
                finalizer::add(&api, &current, ann::FINALIZER).await?;
            }
            let mut spec_json =
                serde_json::to_value(&want).map_err(|e| Error::Other(e.to_string()))?;
            spec_json["containerID"] = json!(current.spec.container_id);
            let patched = api
                .patch(
                    &r.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}, "spec": spec_json})),
                )
                .await?;
            ctx.ips.observe(&patched);
            Ok(())
        }
    }
}

/// Deletes the CR (dropping our finalizer first); absent is fine.
pub async fn delete(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let api: Api<Ip> = Api::all(ctx.client.clone());
    if ctx.ips.synced() && ctx.ips.get(name).is_none() {
        return Ok(());
    }
    let Some(current) = api.get_opt(name).await? else {
        ctx.ips.forget(name);
        return Ok(());
    };
    if current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ann::LABEL_IP_RESERVED))
        .map(String::as_str)
        == Some("true")
    {
        return Ok(());
    }
    // Ours, and the name older upstream releases used; each removal tests the list it
    // edits, so the second goes from the object the first returned.
    let mut current = current;
    for f in [ann::FINALIZER, "kube-ovn-controller"] {
        if let Some(patched) = finalizer::remove(&api, &current, f).await? {
            current = patched;
        }
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.ips.forget(name);
    Ok(())
}
