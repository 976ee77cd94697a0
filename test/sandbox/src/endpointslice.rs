//! An EndpointSlice controller stand-in, behaving as kube-controller-manager's: for every
//! Service with a selector (not ExternalName) it keeps EndpointSlices listing the matching pods,
//! one group of slices per address type of the Service (its `ipFamilies`) and per distinct set of
//! resolved ports (a named `targetPort` is looked up in each pod's container ports, so pods
//! resolving it to different numbers land in different slices). Slices are named by the API
//! server from `generateName: <service>-`, labelled `kubernetes.io/service-name` and
//! `endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io` (plus the Service's
//! own labels and `service.kubernetes.io/headless` for headless Services), owned by the Service,
//! hold at most 100 endpoints, and an address type without endpoints keeps one placeholder slice
//! with no ports and no endpoints. Endpoint conditions are computed as upstream: `serving` is the
//! pod's Ready condition, `terminating` is a deletion timestamp, `ready` is `serving` and not
//! terminating — or always true with `publishNotReadyAddresses`. Pods in a terminal phase or
//! without an IP are left out.
//!
//! What the real garbage collector does for slices owned by a deleted Service is done here too
//! (the fixture has no garbage collector). A Service that loses its selector keeps its slices,
//! as upstream's controller leaves them alone.
//!
//! The controller is incremental: it keeps its own caches from watches of Services, Pods,
//! managed EndpointSlices and Nodes (for the zone), and an event only queues the Services it
//! concerns (a pod event: the Services selecting its old or new labels). The queue holds each
//! Service at most once, so its size is bounded by the number of Services.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::{stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::time::Instant;
use tracing::{debug, warn};

/// Label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller managing a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name, as upstream's.
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Label upstream puts on slices of headless Services.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Most endpoints in one slice (upstream's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How long the controller waits to see its own writes before trusting its cache anyway.
const EXPECTATION_TTL: Duration = Duration::from_secs(5);

type Key = (String, String);
/// A slice the controller wrote: its name and the resourceVersion written (`None`: deleted).
type Written = (String, Option<u64>);

/// One group of endpoints sharing an address type and resolved ports: what a slice holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredSlice {
    /// `IPv4` or `IPv6`.
    pub address_type: String,
    /// The ports, as resolved for these endpoints.
    pub ports: Vec<EndpointPort>,
    /// The endpoints, sorted by address.
    pub endpoints: Vec<Endpoint>,
}

fn is_ipv6(ip: &str) -> bool {
    ip.contains(':')
}

/// The address types a Service's slices have: its `ipFamilies`, or for a Service without them
/// the family of its cluster IP (both for a headless one, as upstream assumes).
pub fn address_types(svc: &Service) -> Vec<String> {
    let spec = svc.spec.clone().unwrap_or_default();
    let families: Vec<String> = spec
        .ip_families
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f == "IPv4" || f == "IPv6")
        .collect();
    if !families.is_empty() {
        return families;
    }
    match spec.cluster_ip.as_deref() {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            vec![if is_ipv6(ip) { "IPv6" } else { "IPv4" }.to_string()]
        }
        _ => vec!["IPv4".into(), "IPv6".into()],
    }
}

/// Whether a pod belongs in endpoints at all: not terminal and with an IP.
pub fn pod_eligible(pod: &Pod) -> bool {
    let status = pod.status.clone().unwrap_or_default();
    if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return false;
    }
    status.pod_ip.is_some_and(|ip| !ip.is_empty())
        || status.pod_ips.is_some_and(|ips| !ips.is_empty())
}

/// The pod's Ready condition.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The container port a Service port targets on this pod: a number as is, a name looked up in
/// the pod's container ports with the Service port's protocol; `None` when the name is absent.
pub fn resolve_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

fn pod_ips(pod: &Pod) -> Vec<String> {
    let status = pod.status.clone().unwrap_or_default();
    let mut ips: Vec<String> = status
        .pod_ips
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.ip)
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.filter(|ip| !ip.is_empty()));
    }
    ips
}

/// The endpoint a pod contributes to the slices of `address_type` (`None` without an address of
/// that family). `zone` is its node's zone label.
pub fn endpoint_for(
    svc: &Service,
    pod: &Pod,
    address_type: &str,
    zone: Option<String>,
) -> Option<Endpoint> {
    let v6 = address_type == "IPv6";
    let addresses: Vec<String> = pod_ips(pod)
        .into_iter()
        .filter(|ip| is_ipv6(ip) == v6)
        .collect();
    if addresses.is_empty() {
        return None;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = spec.publish_not_ready_addresses.unwrap_or(false) || (serving && !terminating);
    let pod_spec = pod.spec.clone().unwrap_or_default();
    let hostname = pod_spec.hostname.filter(|h| {
        !h.is_empty()
            && pod_spec.subdomain.as_deref() == svc.metadata.name.as_deref()
            && pod.metadata.namespace == svc.metadata.namespace
    });
    Some(Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: pod_spec.node_name.filter(|n| !n.is_empty()),
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        zone,
        hints: None::<EndpointHints>,
        ..Default::default()
    })
}

/// The ports of a pod's endpoint: every Service port whose target resolves on the pod.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let number = resolve_port(pod, p)?;
            Some(EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect()
}

/// What the slices of `svc` should hold given the pods it selects: per address type, the
/// endpoints grouped by resolved ports and chunked by [`MAX_ENDPOINTS_PER_SLICE`]; an address
/// type with no endpoints gets one placeholder (no ports, no endpoints).
pub fn desired_slices(
    svc: &Service,
    pods: &[&Pod],
    zone_of: &dyn Fn(&str) -> Option<String>,
) -> Vec<DesiredSlice> {
    let mut out = Vec::new();
    for address_type in address_types(svc) {
        let mut groups: Vec<(Vec<EndpointPort>, Vec<Endpoint>)> = Vec::new();
        for pod in pods.iter().filter(|p| pod_eligible(p)) {
            let zone = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(zone_of);
            let Some(ep) = endpoint_for(svc, pod, &address_type, zone) else {
                continue;
            };
            let ports = endpoint_ports(svc, pod);
            match groups.iter_mut().find(|(p, _)| *p == ports) {
                Some((_, eps)) => eps.push(ep),
                None => groups.push((ports, vec![ep])),
            }
        }
        if groups.is_empty() {
            out.push(DesiredSlice {
                address_type: address_type.clone(),
                ports: Vec::new(),
                endpoints: Vec::new(),
            });
        }
        for (ports, mut eps) in groups {
            eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            for chunk in eps.chunks(MAX_ENDPOINTS_PER_SLICE) {
                out.push(DesiredSlice {
                    address_type: address_type.clone(),
                    ports: ports.clone(),
                    endpoints: chunk.to_vec(),
                });
            }
        }
    }
    out
}

/// The labels upstream puts on a Service's slices.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    let headless = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_none_or(|ip| ip.is_empty() || ip == "None");
    if headless {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

fn owner(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "Service" && Some(&o.uid) == svc.metadata.uid.as_ref())
}

/// Builds the slice object for `desired` (named `name`, or by `generateName` when `None`).
pub fn slice_object(svc: &Service, desired: &DesiredSlice, name: Option<String>) -> EndpointSlice {
    let svc_name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: name.is_none().then(|| format!("{svc_name}-")),
            name,
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner(svc)]),
            ..Default::default()
        },
        address_type: desired.address_type.clone(),
        endpoints: desired.endpoints.clone(),
        ports: Some(desired.ports.clone()),
    }
}

/// Whether an existing slice already holds what `desired` (with `labels` and the owner) says.
fn slice_matches(slice: &EndpointSlice, svc: &Service, desired: &DesiredSlice) -> bool {
    let mut endpoints = slice.endpoints.clone();
    endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    slice.address_type == desired.address_type
        && slice.ports.clone().unwrap_or_default() == desired.ports
        && endpoints == desired.endpoints
        && slice.metadata.labels.clone().unwrap_or_default() == slice_labels(svc)
        && slice.metadata.owner_references.clone().unwrap_or_default() == vec![owner(svc)]
}

/// The writes that bring `existing` (the Service's managed slices) to `desired`.
#[derive(Debug, Default)]
pub struct Plan {
    /// New slices (generateName).
    pub create: Vec<EndpointSlice>,
    /// Replacements of existing slices (name and resourceVersion kept).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

/// Plans the writes for one Service: existing slices of the same address type and ports are
/// reused in order, unchanged ones are left alone, slices no longer needed are rewritten for
/// new groups before any is created (as upstream turns create+delete into updates), the rest
/// deleted. Slices not owned by this Service (a deleted namesake's) are deleted.
pub fn plan(svc: &Service, desired: &[DesiredSlice], existing: &[&EndpointSlice]) -> Plan {
    let mut plan = Plan::default();
    let mut spare: Vec<&EndpointSlice> = Vec::new();
    let mut unmatched: Vec<&DesiredSlice> = Vec::new();
    let mut pool: Vec<&EndpointSlice> = Vec::new();
    for s in existing {
        if owned_by(s, svc) && s.metadata.deletion_timestamp.is_none() {
            pool.push(s);
        } else if s.metadata.deletion_timestamp.is_none() {
            plan.delete.extend(s.metadata.name.clone());
        }
    }
    // Exact matches first, then same address type and ports.
    for d in desired {
        if let Some(i) = pool.iter().position(|s| slice_matches(s, svc, d)) {
            pool.remove(i);
        } else {
            unmatched.push(d);
        }
    }
    let mut still: Vec<&DesiredSlice> = Vec::new();
    for d in unmatched {
        let same_group = pool.iter().position(|s| {
            s.address_type == d.address_type && s.ports.clone().unwrap_or_default() == d.ports
        });
        match same_group {
            Some(i) => {
                let s = pool.remove(i);
                plan.update.push(rewrite(svc, d, s));
            }
            None => still.push(d),
        }
    }
    spare.extend(pool);
    for d in still {
        // An address type change needs a new slice (addressType is immutable).
        match spare.iter().position(|s| s.address_type == d.address_type) {
            Some(i) => {
                let s = spare.remove(i);
                plan.update.push(rewrite(svc, d, s));
            }
            None => plan.create.push(slice_object(svc, d, None)),
        }
    }
    plan.delete
        .extend(spare.into_iter().filter_map(|s| s.metadata.name.clone()));
    plan
}

fn rewrite(svc: &Service, d: &DesiredSlice, s: &EndpointSlice) -> EndpointSlice {
    let mut new = slice_object(svc, d, s.metadata.name.clone());
    new.metadata.resource_version = s.metadata.resource_version.clone();
    new.metadata.annotations = s.metadata.annotations.clone();
    new
}

fn selects(svc: &Service, labels: &BTreeMap<String, String>) -> bool {
    match svc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) if !sel.is_empty() => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
        _ => false,
    }
}

fn key_of(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// One watch event of any of the watched kinds.
enum Event {
    Service(Box<watcher::Event<Service>>),
    Pod(Box<watcher::Event<Pod>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Node(Box<watcher::Event<Node>>),
}

/// A cache of one kind, rebuilt whole on a relist.
struct Cache<K> {
    items: BTreeMap<Key, K>,
    relist: Option<BTreeMap<Key, K>>,
    synced: bool,
}

impl<K: kube::Resource + Clone> Cache<K> {
    fn new() -> Self {
        Cache {
            items: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }

    /// Applies an event; returns the objects it changed (previous, current) for queueing.
    fn apply(&mut self, event: watcher::Event<K>) -> Vec<(Option<K>, Option<K>)> {
        match event {
            watcher::Event::Init => {
                self.relist = Some(BTreeMap::new());
                Vec::new()
            }
            watcher::Event::InitApply(o) => {
                if let Some(r) = self.relist.as_mut() {
                    r.insert(key_of(o.meta()), o);
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                self.synced = true;
                let Some(fresh) = self.relist.take() else {
                    return Vec::new();
                };
                let old = std::mem::replace(&mut self.items, fresh);
                let mut changed: Vec<(Option<K>, Option<K>)> = Vec::new();
                for (k, o) in &old {
                    if !self.items.contains_key(k) {
                        changed.push((Some(o.clone()), None));
                    }
                }
                for (k, o) in &self.items {
                    changed.push((old.get(k).cloned(), Some(o.clone())));
                }
                changed
            }
            watcher::Event::Apply(o) => {
                let prev = self.items.insert(key_of(o.meta()), o.clone());
                vec![(prev, Some(o))]
            }
            watcher::Event::Delete(o) => {
                let prev = self.items.remove(&key_of(o.meta()));
                vec![(prev.or(Some(o)), None)]
            }
        }
    }

    fn in_namespace<'a>(&'a self, ns: &str) -> impl Iterator<Item = &'a K> + 'a {
        let from = (ns.to_string(), String::new());
        let ns = ns.to_string();
        self.items
            .range(from..)
            .take_while(move |((n, _), _)| *n == ns)
            .map(|(_, o)| o)
    }
}

/// The controller's state: caches, the queue and what its own writes should look like.
struct Controller {
    services: Cache<Service>,
    pods: Cache<Pod>,
    slices: Cache<EndpointSlice>,
    nodes: Cache<Node>,
    queue: VecDeque<Key>,
    queued: HashSet<Key>,
    /// Per Service: slices it wrote (name → resourceVersion, `None` for deleted) that the slice
    /// cache must show before the Service is synced again (else a sync would act on stale data).
    /// Expectations older than [`EXPECTATION_TTL`] are dropped (the slice may have been changed
    /// by someone else in between).
    expected: HashMap<Key, (Instant, Vec<Written>)>,
    retry: HashMap<Key, Instant>,
}

impl Controller {
    fn enqueue(&mut self, key: Key) {
        if self.queued.insert(key.clone()) {
            self.queue.push_back(key);
        }
    }

    fn services_selecting(&self, pod: &Pod) -> Vec<Key> {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        self.services
            .in_namespace(&ns)
            .filter(|s| selects(s, &labels))
            .map(|s| key_of(&s.metadata))
            .collect()
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Service(e) => {
                for (prev, cur) in self.services.apply(*e) {
                    if let Some(o) = cur.or(prev) {
                        self.enqueue(key_of(&o.metadata));
                    }
                }
            }
            Event::Pod(e) => {
                for (prev, cur) in self.pods.apply(*e) {
                    let mut keys = Vec::new();
                    for p in prev.iter().chain(cur.iter()) {
                        keys.extend(self.services_selecting(p));
                    }
                    for k in keys {
                        self.enqueue(k);
                    }
                }
            }
            Event::Slice(e) => {
                for (prev, cur) in self.slices.apply(*e) {
                    for s in prev.iter().chain(cur.iter()) {
                        if let Some(svc) = s
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_SERVICE_NAME))
                        {
                            let ns = s.metadata.namespace.clone().unwrap_or_default();
                            self.enqueue((ns, svc.clone()));
                        }
                    }
                }
            }
            Event::Node(e) => {
                // Zones only matter when a pod is synced next; a changed zone resyncs all.
                let changed: Vec<_> = self.nodes.apply(*e);
                let zone_changed = changed.iter().any(|(a, b)| {
                    let z = |n: &Option<Node>| {
                        n.as_ref()
                            .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
                    };
                    z(a) != z(b)
                });
                if zone_changed && self.nodes.synced {
                    let keys: Vec<Key> = self.services.items.keys().cloned().collect();
                    for k in keys {
                        self.enqueue(k);
                    }
                }
            }
        }
    }

    fn synced(&self) -> bool {
        self.services.synced && self.pods.synced && self.slices.synced && self.nodes.synced
    }

    /// Whether the slice cache shows the Service's own last writes.
    fn caught_up(&mut self, key: &Key) -> bool {
        let Some((since, expected)) = self.expected.get(key) else {
            return true;
        };
        if since.elapsed() > EXPECTATION_TTL {
            self.expected.remove(key);
            return true;
        }
        let done = expected.iter().all(|(name, want)| {
            let have = self.slices.items.get(&(key.0.clone(), name.clone()));
            match (want, have) {
                (None, None) => true,
                (None, Some(_)) => false,
                (Some(w), Some(s)) => rv(&s.metadata) >= *w,
                (Some(_), None) => false,
            }
        });
        if done {
            self.expected.remove(key);
        }
        done
    }

    fn managed_slices(&self, key: &Key) -> Vec<&EndpointSlice> {
        self.slices
            .in_namespace(&key.0)
            .filter(|s| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                labels.get(LABEL_SERVICE_NAME) == Some(&key.1)
                    && labels.get(LABEL_MANAGED_BY).map(String::as_str) == Some(CONTROLLER_NAME)
            })
            .collect()
    }

    fn plan_for(&self, key: &Key) -> Option<Plan> {
        let existing = self.managed_slices(key);
        let Some(svc) = self.services.items.get(key) else {
            // Deleted Service: its slices go, as the garbage collector removes owned objects.
            return Some(Plan {
                delete: existing
                    .iter()
                    .filter_map(|s| s.metadata.name.clone())
                    .collect(),
                ..Plan::default()
            });
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName")
            || spec.selector.as_ref().is_none_or(BTreeMap::is_empty)
        {
            return None;
        }
        let labels_of = |p: &&Pod| selects(svc, &p.metadata.labels.clone().unwrap_or_default());
        let pods: Vec<&Pod> = self.pods.in_namespace(&key.0).filter(labels_of).collect();
        let zone_of = |node: &str| {
            self.nodes
                .items
                .get(&(String::new(), node.to_string()))
                .and_then(|n| n.metadata.labels.as_ref()?.get(ZONE_LABEL).cloned())
        };
        let desired = desired_slices(svc, &pods, &zone_of);
        Some(plan(svc, &desired, &existing))
    }
}

async fn execute(
    api: &Api<EndpointSlice>,
    plan: Plan,
) -> Result<Vec<(String, Option<u64>)>, kube::Error> {
    let mut wrote = Vec::new();
    let pp = PostParams::default();
    for s in plan.update {
        let name = s.metadata.name.clone().unwrap_or_default();
        let out = api.replace(&name, &pp, &s).await?;
        wrote.push((name, Some(rv(&out.metadata))));
    }
    for s in plan.create {
        let out = api.create(&pp, &s).await?;
        wrote.push((
            out.metadata.name.clone().unwrap_or_default(),
            Some(rv(&out.metadata)),
        ));
    }
    for name in plan.delete {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
        wrote.push((name, None));
    }
    Ok(wrote)
}

/// Runs the controller until the task is aborted.
pub async fn run(client: kube::Client) {
    let cfg = watcher::Config::default();
    let managed =
        watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={CONTROLLER_NAME}"));
    let events = stream::select_all(vec![
        watcher(Api::<Service>::all(client.clone()), cfg.clone())
            .default_backoff()
            .map(|e| e.map(|e| Event::Service(Box::new(e))))
            .boxed(),
        watcher(Api::<Pod>::all(client.clone()), cfg.clone())
            .default_backoff()
            .map(|e| e.map(|e| Event::Pod(Box::new(e))))
            .boxed(),
        watcher(Api::<EndpointSlice>::all(client.clone()), managed)
            .default_backoff()
            .map(|e| e.map(|e| Event::Slice(Box::new(e))))
            .boxed(),
        watcher(Api::<Node>::all(client.clone()), cfg)
            .default_backoff()
            .map(|e| e.map(|e| Event::Node(Box::new(e))))
            .boxed(),
    ]);
    let mut events = events;
    let mut c = Controller {
        services: Cache::new(),
        pods: Cache::new(),
        slices: Cache::new(),
        nodes: Cache::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        expected: HashMap::new(),
        retry: HashMap::new(),
    };
    loop {
        let next_retry = c.retry.values().min().copied();
        let work = c.synced() && !c.queue.is_empty();
        tokio::select! {
            biased;
            event = events.next() => match event {
                Some(Ok(e)) => c.on_event(e),
                Some(Err(e)) => warn!("endpointslice controller watch: {e}"),
                None => return,
            },
            _ = async {}, if work => {
                let Some(key) = c.queue.pop_front() else { continue };
                c.queued.remove(&key);
                if !c.caught_up(&key) {
                    // The slice events of our own writes queue it again; the retry is the
                    // backstop should they never come.
                    debug!("{}/{}: waiting for own slice writes to be observed", key.0, key.1);
                    c.retry.entry(key).or_insert_with(|| Instant::now() + EXPECTATION_TTL);
                    continue;
                }
                let Some(plan) = c.plan_for(&key) else { continue };
                if plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty() {
                    continue;
                }
                let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
                match execute(&api, plan).await {
                    Ok(wrote) => {
                        c.expected.insert(key, (Instant::now(), wrote));
                    }
                    Err(e) => {
                        warn!("syncing EndpointSlices of service {}/{}: {e}", key.0, key.1);
                        c.retry.insert(key, Instant::now() + RETRY_AFTER);
                    }
                }
            }
            _ = tokio::time::sleep_until(next_retry.unwrap_or_else(Instant::now)), if next_retry.is_some() => {
                let now = Instant::now();
                let due: Vec<Key> = c.retry.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    c.retry.remove(&k);
                    c.enqueue(k);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": spec,
        }))
        .unwrap()
    }

    fn pod(name: &str, ips: &[&str], ready: bool, http_port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": http_port, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": ips.first(),
                "podIPs": ips.iter().map(|i| json!({"ip": i})).collect::<Vec<_>>(),
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    fn no_zone(_: &str) -> Option<String> {
        None
    }

    fn conditions(e: &Endpoint) -> (bool, bool, bool) {
        let c = e.conditions.clone().unwrap();
        (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
    }

    #[test]
    fn conditions_follow_readiness_termination_and_publish_not_ready() {
        let s = svc(
            json!({"selector": {"app": "web"}, "ipFamilies": ["IPv4"], "clusterIP": "10.96.0.5",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}),
        );
        let ready = pod("a", &["10.16.0.2"], true, 8080);
        let unready = pod("b", &["10.16.0.3"], false, 8080);
        let mut terminating = pod("c", &["10.16.0.4"], true, 8080);
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        let mut done = pod("d", &["10.16.0.5"], false, 8080);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let no_ip = pod("e", &[], false, 8080);
        let d = desired_slices(
            &s,
            &[&ready, &unready, &terminating, &done, &no_ip],
            &no_zone,
        );
        assert_eq!(d.len(), 1);
        let eps = &d[0].endpoints;
        assert_eq!(eps.len(), 3);
        assert_eq!(conditions(&eps[0]), (true, true, false));
        assert_eq!(conditions(&eps[1]), (false, false, false));
        assert_eq!(conditions(&eps[2]), (false, true, true));
        assert_eq!(eps[0].node_name.as_deref(), Some("node1"));
        assert_eq!(
            eps[0].target_ref.as_ref().unwrap().uid.as_deref(),
            Some("uid-a")
        );
        assert_eq!(d[0].ports[0].port, Some(8080));
        let publish = svc(
            json!({"selector": {"app": "web"}, "ipFamilies": ["IPv4"], "publishNotReadyAddresses": true}),
        );
        let d = desired_slices(&publish, &[&unready, &terminating], &no_zone);
        assert!(d[0].endpoints.iter().all(|e| conditions(e).0));
    }

    #[test]
    fn families_named_ports_and_placeholders() {
        let s = svc(
            json!({"selector": {"app": "web"}, "ipFamilies": ["IPv4", "IPv6"], "clusterIP": "10.96.0.5",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                      {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "http"}]}),
        );
        let a = pod("a", &["10.16.0.2", "fd00::2"], true, 8080);
        let b = pod("b", &["10.16.0.3"], true, 9090);
        let d = desired_slices(&s, &[&a, &b], &no_zone);
        // IPv4: two port groups (8080 and 9090); the UDP port resolves on nobody. IPv6: one.
        assert_eq!(d.len(), 3, "{d:#?}");
        let v4: Vec<_> = d.iter().filter(|x| x.address_type == "IPv4").collect();
        assert_eq!(v4.len(), 2);
        assert!(v4
            .iter()
            .all(|x| x.ports.len() == 1 && x.endpoints.len() == 1));
        let v6 = d.iter().find(|x| x.address_type == "IPv6").unwrap();
        assert_eq!(v6.endpoints[0].addresses, vec!["fd00::2".to_string()]);
        let empty = desired_slices(&s, &[], &no_zone);
        assert_eq!(empty.len(), 2);
        assert!(empty
            .iter()
            .all(|x| x.ports.is_empty() && x.endpoints.is_empty()));
    }

    #[test]
    fn plan_reuses_updates_only_changes_and_deletes_foreign_slices() {
        let s = svc(
            json!({"selector": {"app": "web"}, "ipFamilies": ["IPv4"], "clusterIP": "10.96.0.5",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}),
        );
        let a = pod("a", &["10.16.0.2"], true, 8080);
        let d = desired_slices(&s, &[&a], &no_zone);
        let created = plan(&s, &d, &[]);
        assert_eq!(
            (
                created.create.len(),
                created.update.len(),
                created.delete.len()
            ),
            (1, 0, 0)
        );
        let mut existing = created.create[0].clone();
        assert_eq!(existing.metadata.generate_name.as_deref(), Some("web-"));
        let labels = existing.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["app"], "web");
        existing.metadata.name = Some("web-abcde".into());
        existing.metadata.generate_name = None;
        let same = plan(&s, &d, &[&existing]);
        assert!(same.create.is_empty() && same.update.is_empty() && same.delete.is_empty());
        let b = pod("b", &["10.16.0.3"], true, 8080);
        let grown = plan(&s, &desired_slices(&s, &[&a, &b], &no_zone), &[&existing]);
        assert_eq!(grown.update.len(), 1);
        assert_eq!(grown.update[0].metadata.name.as_deref(), Some("web-abcde"));
        assert_eq!(grown.update[0].endpoints.len(), 2);
        let mut foreign = existing.clone();
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "old".into();
        let replaced = plan(&s, &d, &[&foreign]);
        assert_eq!((replaced.create.len(), replaced.delete.len()), (1, 1));
        // Headless Services get the headless label.
        let h =
            svc(json!({"selector": {"app": "web"}, "clusterIP": "None", "ipFamilies": ["IPv4"]}));
        assert_eq!(
            slice_labels(&h).get(LABEL_HEADLESS).map(String::as_str),
            Some("")
        );
    }

    #[test]
    fn a_hundred_endpoints_per_slice() {
        let s = svc(json!({"selector": {"app": "web"}, "ipFamilies": ["IPv4"]}));
        let pods: Vec<Pod> = (0..150)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &[&format!("10.16.{}.{}", i / 200, i % 200 + 1)],
                    true,
                    80,
                )
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let d = desired_slices(&s, &refs, &no_zone);
        assert_eq!(
            d.iter().map(|x| x.endpoints.len()).collect::<Vec<_>>(),
            vec![100, 50]
        );
    }
}
