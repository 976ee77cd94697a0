//! kube-controller-manager's workload controllers, reduced to what sandbox tests (and the
//! workloads kube-ovn itself creates, such as lb-svc's Deployment) need: Deployment →
//! ReplicaSet → Pods, StatefulSet → Pods, DaemonSet → Pods, and the garbage collector's part
//! for them (deleting an owner deletes its dependents, in the background as `kubectl delete`
//! asks by default).
//!
//! Names, labels and annotations are Kubernetes': a Deployment's ReplicaSet is
//! `<deployment>-<pod-template-hash>`, its pods `<replicaset>-<5 random>` with the
//! `pod-template-hash` label; a StatefulSet's pods are `<sts>-<ordinal>` with
//! `statefulset.kubernetes.io/pod-name`, `controller-revision-hash` and
//! `apps.kubernetes.io/pod-index`; every dependent has a controller ownerReference. Deployments
//! roll with Recreate or RollingUpdate (maxSurge/maxUnavailable); StatefulSets create pods one
//! at a time in ordinal order, each only once its predecessors are Running and Ready
//! (`OrderedReady`, or all at once with `Parallel`), scale down from the highest ordinal and
//! replace outdated pods from the highest ordinal. A DaemonSet runs one pod per node its
//! template's `nodeSelector` admits (taints are not considered), named `<ds>-<5 random>` with
//! `nodeName` set and the `pod-template-generation` label, and replaces outdated pods one at a
//! time once the others are ready (RollingUpdate with maxUnavailable 1; OnDelete leaves them).
//! As in Kubernetes, Deployments adopt orphan ReplicaSets, and ReplicaSets and DaemonSets
//! orphan pods, that match their selector (how the sandbox's own component pods come under
//! their DaemonSets and Deployments); StatefulSets never adopt. Only `matchLabels` selectors
//! are honoured, and `minReadySeconds` is taken as 0.
//!
//! One task serves all four kinds: every watch event names the objects it concerns (an object
//! itself, its controller owner), and each is reconciled from a fresh read of the API, so the
//! controllers need no caches and no expectations.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::Resource;
use serde_json::{json, Value};
use tokio::time::Instant;
use tracing::warn;

use crate::error::{Error, Result};

/// Label a Deployment puts on its ReplicaSets and their pods: the hash of the pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Label naming a StatefulSet pod (what a per-pod Service selects on).
pub const STS_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the StatefulSet revision (`<sts>-<hash>`) a pod was made from.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// Label with a StatefulSet pod's ordinal.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// Annotation with a Deployment's (and its ReplicaSets') revision number.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// How soon a failed reconcile is retried.
const RETRY: Duration = Duration::from_millis(500);

/// The kinds reconciled here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    fn of(kind: &str) -> Option<Kind> {
        match kind {
            "Deployment" => Some(Kind::Deployment),
            "ReplicaSet" => Some(Kind::ReplicaSet),
            "StatefulSet" => Some(Kind::StatefulSet),
            "DaemonSet" => Some(Kind::DaemonSet),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
        }
    }
}

/// An object to reconcile: kind, namespace, name.
type Key = (Kind, String, String);

/// The controller ownerReference of an object, if any.
fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// The keys a changed object concerns: itself (when it is one of ours) and its controller.
fn keys_of(meta: &ObjectMeta, own: Option<Kind>) -> Vec<Key> {
    let ns = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let mut keys = Vec::new();
    if let (Some(kind), Some(name)) = (own, &meta.name) {
        keys.push((kind, ns.clone(), name.clone()));
    }
    if let Some(owner) = controller_of(meta) {
        if let Some(kind) = Kind::of(&owner.kind) {
            keys.push((kind, ns, owner.name.clone()));
        }
    }
    keys
}

fn events<K>(api: Api<K>, own: Option<Kind>) -> impl Stream<Item = Vec<Key>> + Send
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default()).map(move |event| match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o)) => {
            keys_of(o.meta(), own)
        }
        Ok(_) => Vec::new(),
        Err(e) => {
            warn!("workload controllers: watch: {e}");
            Vec::new()
        }
    })
}

/// Runs the Deployment, ReplicaSet and StatefulSet controllers and their garbage collection
/// until the task is aborted.
pub async fn run(client: kube::Client) {
    let mut stream = futures::stream::select_all([
        events(
            Api::<Deployment>::all(client.clone()),
            Some(Kind::Deployment),
        )
        .boxed(),
        events(
            Api::<ReplicaSet>::all(client.clone()),
            Some(Kind::ReplicaSet),
        )
        .boxed(),
        events(
            Api::<StatefulSet>::all(client.clone()),
            Some(Kind::StatefulSet),
        )
        .boxed(),
        events(Api::<DaemonSet>::all(client.clone()), Some(Kind::DaemonSet)).boxed(),
        events(Api::<Pod>::all(client.clone()), None).boxed(),
    ]);
    let mut dirty: BTreeSet<Key> = BTreeSet::new();
    let mut retry: BTreeMap<Key, Instant> = BTreeMap::new();
    loop {
        let next = retry.values().min().copied();
        tokio::select! {
            keys = stream.next() => match keys {
                Some(keys) => dirty.extend(keys),
                None => return,
            },
            _ = sleep_until(next), if next.is_some() => {}
        }
        // Take whatever else is already there, so a burst of events costs one pass.
        while let Some(Some(keys)) = stream.next().now_or_never() {
            dirty.extend(keys);
        }
        let now = Instant::now();
        retry.retain(|key, at| {
            if *at <= now {
                dirty.insert(key.clone());
                false
            } else {
                true
            }
        });
        for key in std::mem::take(&mut dirty) {
            retry.remove(&key);
            if let Err(e) = reconcile(&client, &key).await {
                warn!("{} {}/{}: {e}", key.0.name(), key.1, key.2);
                retry.insert(key, Instant::now() + RETRY);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn reconcile(client: &kube::Client, key: &Key) -> Result<()> {
    let (kind, ns, name) = key;
    match kind {
        Kind::Deployment => sync_deployment(client, ns, name).await,
        Kind::ReplicaSet => sync_replicaset(client, ns, name).await,
        Kind::StatefulSet => sync_statefulset(client, ns, name).await,
        Kind::DaemonSet => sync_daemonset(client, ns, name).await,
    }
}

/// Dependents of `owner_kind/owner_name` among `objects`: those whose controller reference
/// names it. The ones whose reference carries another uid belong to a deleted incarnation and
/// are garbage, returned second.
fn split_dependents<T: Resource>(
    objects: Vec<T>,
    owner_kind: Kind,
    owner_name: &str,
    owner_uid: Option<&str>,
) -> (Vec<T>, Vec<T>) {
    let mut owned = Vec::new();
    let mut garbage = Vec::new();
    for o in objects {
        let Some(r) = controller_of(o.meta()) else {
            continue;
        };
        if r.kind != owner_kind.name() || r.name != owner_name {
            continue;
        }
        if Some(r.uid.as_str()) == owner_uid {
            owned.push(o);
        } else {
            garbage.push(o);
        }
    }
    (owned, garbage)
}

/// Deletes dependents whose owner is gone (the garbage collector's background deletion).
async fn collect<T>(api: &Api<T>, garbage: &[T]) -> Result<()>
where
    T: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    for o in garbage {
        let Some(name) = &o.meta().name else { continue };
        let params = DeleteParams {
            preconditions: o.meta().uid.clone().map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Adopts the orphans among `objects` that `selector` matches (not being deleted): each gets
/// `owner` as its controller reference, in the API and in `objects`, as kube-controller-manager's
/// ControllerRefManager does. An empty selector adopts nothing.
async fn adopt<T>(
    api: &Api<T>,
    objects: &mut [T],
    selector: &BTreeMap<String, String>,
    owner: &OwnerReference,
) -> Result<()>
where
    T: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    if selector.is_empty() {
        return Ok(());
    }
    for o in objects.iter_mut() {
        let meta = o.meta();
        let labels = meta.labels.clone().unwrap_or_default();
        if controller_of(meta).is_some()
            || meta.deletion_timestamp.is_some()
            || !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            continue;
        }
        let Some(name) = meta.name.clone() else {
            continue;
        };
        let mut refs = meta.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": meta.resource_version,
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => o.meta_mut().owner_references = Some(refs),
            // Changed meanwhile: the next pass sees it anew.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Running, Ready and not being deleted: what a StatefulSet waits for and what counts as
/// available (minReadySeconds 0).
pub fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// A pod as a controller creates it from `template`: the template's labels and annotations
/// (plus `labels`), the owner reference, and the template's spec.
fn pod_from_template(
    template: &PodTemplateSpec,
    name: Option<&str>,
    generate_name: Option<&str>,
    labels: &BTreeMap<String, String>,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut all_labels = meta.labels.unwrap_or_default();
    all_labels.extend(labels.clone());
    Pod {
        metadata: ObjectMeta {
            name: name.map(str::to_string),
            generate_name: generate_name.map(str::to_string),
            labels: Some(all_labels),
            annotations: meta.annotations,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// 32-bit FNV-1a, the hash apimachinery computes template hashes with.
fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in data {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// apimachinery's `SafeEncodeString`: every byte mapped into an alphabet without vowels, so
/// generated names never spell words.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// The `pod-template-hash` of a template (with the Deployment's collision count), in
/// Kubernetes' encoding. The hashed bytes are the template's JSON, not Go's object dump, so
/// values differ from a real cluster's; their form and stability are the same.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend(c.to_string().bytes());
    }
    safe_encode(&fnv1a32(&data).to_string())
}

/// A template with the `pod-template-hash` label removed, to compare a ReplicaSet's template
/// with its Deployment's.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    if t.metadata
        .as_ref()
        .is_some_and(|m| *m == ObjectMeta::default())
    {
        t.metadata = None;
    }
    t
}

fn match_labels(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> BTreeMap<String, String> {
    selector.match_labels.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet

async fn sync_replicaset(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let rs = api
        .get_opt(name)
        .await?
        .filter(|rs| rs.metadata.deletion_timestamp.is_none());
    let mut all = pods_api.list(&ListParams::default()).await?.items;
    if let Some(rs) = &rs {
        let selector = match_labels(&rs.spec.clone().unwrap_or_default().selector);
        adopt(&pods_api, &mut all, &selector, &owner_reference(rs)).await?;
    }
    let uid = rs.as_ref().and_then(|r| r.metadata.uid.as_deref());
    let (owned, garbage) = split_dependents(all, Kind::ReplicaSet, name, uid);
    collect(&pods_api, &garbage).await?;
    let Some(rs) = rs else {
        return collect(&pods_api, &owned).await;
    };
    let spec = rs.spec.clone().unwrap_or_default();
    let desired = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
    let mut active: Vec<Pod> = owned.into_iter().filter(active).collect();
    if active.len() < desired {
        let template = spec.template.clone().unwrap_or_default();
        for _ in active.len()..desired {
            let pod = pod_from_template(
                &template,
                None,
                Some(&format!("{name}-")),
                &BTreeMap::new(),
                owner_reference(&rs),
            );
            pods_api.create(&PostParams::default(), &pod).await?;
        }
    } else if active.len() > desired {
        // Kubernetes' order: unscheduled, then not running, then not ready, then the newest.
        active.sort_by_key(|p| {
            let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let created = p.metadata.creation_timestamp.clone().map(|t| t.0);
            (scheduled, running, pod_ready(p), std::cmp::Reverse(created))
        });
        let excess = active.len() - desired;
        collect(&pods_api, &active[..excess]).await?;
        active.drain(..excess);
    }
    let ready = active.iter().filter(|p| pod_ready(p)).count();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = json!({
        "replicas": count(active.len()),
        "fullyLabeledReplicas": omit_zero(count(active.len())),
        "readyReplicas": omit_zero(count(ready)),
        "availableReplicas": omit_zero(count(ready)),
        "observedGeneration": rs.metadata.generation,
    });
    write_status(&api, name, rs.status.as_ref(), status).await
}

/// A status count as the API serves it: `omitempty` counts are absent when zero (a merge patch
/// with null removes a stale one).
fn omit_zero(n: i32) -> Value {
    if n == 0 {
        Value::Null
    } else {
        json!(n)
    }
}

/// Writes `status` when it differs from `current` (compared as JSON, without condition times).
async fn write_status<K, S>(
    api: &Api<K>,
    name: &str,
    current: Option<&S>,
    status: Value,
) -> Result<()>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    S: serde::Serialize,
{
    let strip = |mut v: Value| {
        if let Some(conds) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in conds {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lastUpdateTime");
                    c.remove("lastTransitionTime");
                }
            }
        }
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        v
    };
    let have = current
        .and_then(|s| serde_json::to_value(s).ok())
        .map(strip)
        .unwrap_or(Value::Null);
    if have == strip(status.clone()) {
        return Ok(());
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Deployment

/// `maxSurge`/`maxUnavailable` resolved against `desired` (percentages round up for surge,
/// down for unavailability; both 0 would never progress, so unavailability becomes 1).
fn rolling_limits(deploy: &Deployment, desired: i32) -> (i32, i32) {
    let rolling = deploy
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let quarter = IntOrString::String("25%".into());
    let resolve = |v: Option<&IntOrString>, up: bool| match v.unwrap_or(&quarter) {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            let scaled = i64::from(desired) * pct;
            let v = if up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(v).unwrap_or(0)
        }
    };
    let surge = resolve(rolling.and_then(|r| r.max_surge.as_ref()), true);
    let mut unavailable = resolve(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

fn replicas_of(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available_of(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

async fn scale(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    replicas: i32,
    desired: i32,
    max: i32,
) -> Result<()> {
    let annotations = rs.metadata.annotations.clone().unwrap_or_default();
    let same_notes = annotations.get(DESIRED_REPLICAS) == Some(&desired.to_string())
        && annotations.get(MAX_REPLICAS) == Some(&max.to_string());
    if replicas_of(rs) == replicas && same_notes {
        return Ok(());
    }
    let patch = json!({
        "metadata": {"annotations": {
            DESIRED_REPLICAS: desired.to_string(),
            MAX_REPLICAS: max.to_string(),
        }},
        "spec": {"replicas": replicas},
    });
    api.patch(
        rs.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

async fn sync_deployment(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let deploy = api
        .get_opt(name)
        .await?
        .filter(|d| d.metadata.deletion_timestamp.is_none());
    let mut all = rs_api.list(&ListParams::default()).await?.items;
    if let Some(d) = &deploy {
        let selector = match_labels(&d.spec.clone().unwrap_or_default().selector);
        adopt(&rs_api, &mut all, &selector, &owner_reference(d)).await?;
    }
    let uid = deploy.as_ref().and_then(|d| d.metadata.uid.as_deref());
    let (owned, garbage) = split_dependents(all, Kind::Deployment, name, uid);
    collect(&rs_api, &garbage).await?;
    let Some(deploy) = deploy else {
        return collect(&rs_api, &owned).await;
    };
    let spec = deploy.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let max = if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
        desired
    } else {
        desired + rolling_limits(&deploy, desired).0
    };
    let template = spec.template.clone();
    let collision = deploy.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&template, collision);
    let (mut new, olds): (Vec<ReplicaSet>, Vec<ReplicaSet>) = owned.into_iter().partition(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| without_hash(t) == without_hash(&template))
    });
    let paused = spec.paused.unwrap_or(false);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    let old_replicas: i32 = olds.iter().map(replicas_of).sum();
    let new_rs = match new.pop() {
        Some(rs) => rs,
        None if paused => return deployment_status(&api, &deploy, None, &olds).await,
        None => {
            let revision = olds.iter().map(revision_of).max().unwrap_or(0) + 1;
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
            let mut rs_template = template.clone();
            rs_template
                .metadata
                .get_or_insert_with(ObjectMeta::default)
                .labels = Some(labels.clone());
            let mut selector = match_labels(&spec.selector);
            selector.insert(POD_TEMPLATE_HASH.into(), hash.clone());
            // A first ReplicaSet (or a scale-only change) starts at full size; a rollout
            // starts at what the strategy allows.
            let initial = if recreate {
                if old_replicas == 0 {
                    desired
                } else {
                    0
                }
            } else if olds.is_empty() {
                desired
            } else {
                let total = old_replicas;
                (desired + rolling_limits(&deploy, desired).0 - total).clamp(0, desired)
            };
            let rs: ReplicaSet = serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": format!("{name}-{hash}"),
                    "namespace": ns,
                    "labels": labels,
                    "annotations": {
                        REVISION: revision.to_string(),
                        DESIRED_REPLICAS: desired.to_string(),
                        MAX_REPLICAS: max.to_string(),
                    },
                    "ownerReferences": [owner_reference(&deploy)],
                },
                "spec": {
                    "replicas": initial,
                    "selector": {"matchLabels": selector},
                    "template": rs_template,
                },
            }))
            .map_err(|e| Error::Invalid(e.to_string()))?;
            match rs_api.create(&PostParams::default(), &rs).await {
                Ok(rs) => rs,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    // Someone else's ReplicaSet has the name: a hash collision.
                    let patch = json!({"status": {"collisionCount": collision.unwrap_or(0) + 1}});
                    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    // Newer duplicates of the current template (should not exist) count as old ones.
    let mut olds = olds;
    olds.extend(new);
    if !paused {
        if recreate {
            for rs in olds.iter().filter(|rs| replicas_of(rs) > 0) {
                scale(&rs_api, rs, 0, desired, max).await?;
            }
            let old_pods: i32 = olds
                .iter()
                .map(|rs| rs.status.as_ref().map(|s| s.replicas).unwrap_or(0))
                .sum();
            let target = if old_replicas == 0 && old_pods == 0 {
                desired
            } else {
                0
            };
            scale(&rs_api, &new_rs, target, desired, max).await?;
        } else if old_replicas == 0 {
            // Nothing to roll: a scale event, the active ReplicaSet takes the new size.
            scale(&rs_api, &new_rs, desired, desired, max).await?;
        } else {
            let (surge, unavailable) = rolling_limits(&deploy, desired);
            let new_replicas = replicas_of(&new_rs);
            let total = new_replicas + old_replicas;
            let mut up = new_replicas;
            if new_replicas < desired {
                up = (new_replicas + (desired + surge - total).max(0)).min(desired);
            } else if new_replicas > desired {
                up = desired;
            }
            scale(&rs_api, &new_rs, up, desired, max).await?;
            // Scale old ReplicaSets down as far as availability allows, oldest first.
            let min_available = desired - unavailable;
            let new_unavailable = (up - available_of(&new_rs)).max(0);
            let mut budget = (up + old_replicas - min_available - new_unavailable).max(0);
            let mut by_age = olds.clone();
            by_age.sort_by_key(revision_of);
            for rs in by_age.iter().filter(|rs| replicas_of(rs) > 0) {
                if budget == 0 {
                    break;
                }
                let cut = budget.min(replicas_of(rs));
                scale(&rs_api, rs, replicas_of(rs) - cut, desired, max).await?;
                budget -= cut;
            }
        }
    }
    if deploy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        != new_rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
    {
        let revision = new_rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .cloned()
            .unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    deployment_status(&api, &deploy, Some(&new_rs), &olds).await
}

async fn deployment_status(
    api: &Api<Deployment>,
    deploy: &Deployment,
    new_rs: Option<&ReplicaSet>,
    olds: &[ReplicaSet],
) -> Result<()> {
    let desired = deploy.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status_of = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
    let all: Vec<&ReplicaSet> = new_rs.into_iter().chain(olds.iter()).collect();
    let replicas: i32 = all.iter().map(|rs| status_of(rs).replicas).sum();
    let ready: i32 = all
        .iter()
        .map(|rs| status_of(rs).ready_replicas.unwrap_or(0))
        .sum();
    let available: i32 = all.iter().map(|rs| available_of(rs)).sum();
    let updated = new_rs.map(|rs| status_of(rs).replicas).unwrap_or(0);
    let (_, max_unavailable) = rolling_limits(deploy, desired);
    let recreate = deploy
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate");
    let min_available = if recreate {
        desired
    } else {
        desired - max_unavailable
    };
    let complete = updated == desired && replicas == desired && available == desired;
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        // Keep the times of a condition whose status did not change.
        let old = deploy
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
        let status = if ok { "True" } else { "False" };
        let transition = old
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        let update = old
            .filter(|c| c.status == status && c.reason.as_deref() == Some(reason))
            .and_then(|c| c.last_update_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": update, "lastTransitionTime": transition,
        })
    };
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let rs_name = new_rs
        .and_then(|rs| rs.metadata.name.clone())
        .unwrap_or_default();
    let conditions = vec![
        if available >= min_available {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        },
        if complete {
            condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else {
            condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        },
    ];
    let status = json!({
        "observedGeneration": deploy.metadata.generation,
        "replicas": omit_zero(replicas),
        "updatedReplicas": omit_zero(updated),
        "readyReplicas": omit_zero(ready),
        "availableReplicas": omit_zero(available),
        "unavailableReplicas": omit_zero((desired - available).max(0)),
        "conditions": conditions,
        "collisionCount": deploy.status.as_ref().and_then(|s| s.collision_count),
    });
    write_status(api, &name, deploy.status.as_ref(), status).await
}

// ---------------------------------------------------------------------------------------------
// StatefulSet

/// The ordinal of a StatefulSet pod named `<sts>-<ordinal>`.
fn ordinal(sts: &str, pod: &str) -> Option<i32> {
    pod.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

async fn sync_statefulset(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let sts = api
        .get_opt(name)
        .await?
        .filter(|s| s.metadata.deletion_timestamp.is_none());
    let all = pods_api.list(&ListParams::default()).await?.items;
    let uid = sts.as_ref().and_then(|s| s.metadata.uid.as_deref());
    let (owned, garbage) = split_dependents(all, Kind::StatefulSet, name, uid);
    collect(&pods_api, &garbage).await?;
    let Some(sts) = sts else {
        return collect(&pods_api, &owned).await;
    };
    let spec = sts.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let revision = format!("{name}-{}", pod_template_hash(&spec.template, None));
    let mut pods: BTreeMap<i32, Pod> = owned
        .into_iter()
        .filter_map(|p| Some((ordinal(name, p.metadata.name.as_deref()?)?, p)))
        .collect();
    let revision_of = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH))
            .cloned()
    };
    let make = |i: i32| {
        let pod_name = format!("{name}-{i}");
        let labels: BTreeMap<String, String> = [
            (STS_POD_NAME.to_string(), pod_name.clone()),
            (CONTROLLER_REVISION_HASH.to_string(), revision.clone()),
            (POD_INDEX.to_string(), i.to_string()),
        ]
        .into();
        let mut pod = pod_from_template(
            &spec.template,
            Some(&pod_name),
            None,
            &labels,
            owner_reference(&sts),
        );
        if let Some(s) = pod.spec.as_mut() {
            s.hostname = Some(pod_name.clone());
            if !spec.service_name.as_deref().unwrap_or_default().is_empty() {
                s.subdomain = spec.service_name.clone();
            }
        }
        pod
    };
    // Pods that failed or are being deleted are replaced once gone.
    for (_, pod) in pods.iter().filter(|(_, p)| !active(p)) {
        if pod.metadata.deletion_timestamp.is_none() {
            collect(&pods_api, std::slice::from_ref(pod)).await?;
        }
    }
    pods.retain(|_, p| active(p));
    'create: {
        for i in 0..desired {
            match pods.get(&i) {
                None => {
                    let pod = make(i);
                    match pods_api.create(&PostParams::default(), &pod).await {
                        Ok(p) => {
                            pods.insert(i, p);
                        }
                        // The previous incarnation is still being deleted: wait for it.
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                    if !parallel {
                        break 'create;
                    }
                }
                Some(p) if !parallel && !pod_ready(p) => break 'create,
                Some(_) => {}
            }
        }
        let all_ready = (0..desired).all(|i| pods.get(&i).is_some_and(pod_ready));
        // Scale down: the highest ordinal first, one at a time unless Parallel.
        let condemned: Vec<i32> = pods
            .keys()
            .rev()
            .copied()
            .filter(|i| *i >= desired)
            .collect();
        if !condemned.is_empty() {
            if parallel || all_ready {
                for i in condemned {
                    if let Some(p) = pods.remove(&i) {
                        collect(&pods_api, &[p]).await?;
                    }
                    if !parallel {
                        break;
                    }
                }
            }
            break 'create;
        }
        // Rolling update: replace the highest outdated ordinal once everything is ready.
        let on_delete = spec
            .update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref())
            == Some("OnDelete");
        if all_ready && !on_delete {
            if let Some((&i, _)) = pods
                .iter()
                .rev()
                .find(|(_, p)| revision_of(p).as_deref() != Some(&revision))
            {
                if let Some(p) = pods.remove(&i) {
                    collect(&pods_api, &[p]).await?;
                }
            }
        }
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let ready = count(pods.values().filter(|p| pod_ready(p)).count());
    let updated = count(
        pods.values()
            .filter(|p| revision_of(p).as_deref() == Some(&revision))
            .count(),
    );
    let current_revision = if updated == count(pods.len()) {
        revision.clone()
    } else {
        sts.status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_else(|| revision.clone())
    };
    let current = count(
        pods.values()
            .filter(|p| revision_of(p).as_deref() == Some(&current_revision))
            .count(),
    );
    let status = json!({
        "observedGeneration": sts.metadata.generation,
        "replicas": count(pods.len()),
        "readyReplicas": omit_zero(ready),
        "availableReplicas": ready,
        "currentReplicas": omit_zero(current),
        "updatedReplicas": omit_zero(updated),
        "currentRevision": current_revision,
        "updateRevision": revision,
        "collisionCount": 0,
    });
    write_status(&api, name, sts.status.as_ref(), status).await
}

// ---------------------------------------------------------------------------------------------
// DaemonSet

/// Label with the DaemonSet generation a pod was made from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";

/// Whether `node` may run the DaemonSet's pods: its template's `nodeSelector` matches.
fn admits(template: &PodTemplateSpec, node: &Node) -> bool {
    let wanted = template
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.clone())
        .unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

async fn sync_daemonset(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ds = api
        .get_opt(name)
        .await?
        .filter(|d| d.metadata.deletion_timestamp.is_none());
    let mut all = pods_api.list(&ListParams::default()).await?.items;
    if let Some(ds) = &ds {
        let selector = match_labels(&ds.spec.clone().unwrap_or_default().selector);
        adopt(&pods_api, &mut all, &selector, &owner_reference(ds)).await?;
    }
    let uid = ds.as_ref().and_then(|d| d.metadata.uid.as_deref());
    let (owned, garbage) = split_dependents(all, Kind::DaemonSet, name, uid);
    collect(&pods_api, &garbage).await?;
    let Some(ds) = ds else {
        return collect(&pods_api, &owned).await;
    };
    let spec = ds.spec.clone().unwrap_or_default();
    let generation = ds.metadata.generation.unwrap_or(1).to_string();
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let eligible: BTreeSet<String> = nodes
        .iter()
        .filter(|n| admits(&spec.template, n))
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let current = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_GENERATION))
            == Some(&generation)
    };
    // Pods that failed, sit on a node that should not run one, or duplicate another are removed.
    let mut per_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    let mut excess = Vec::new();
    for pod in owned {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match node_of(&pod) {
            Some(n) if active(&pod) && eligible.contains(n) => {
                per_node.entry(n.to_string()).or_default().push(pod)
            }
            _ => excess.push(pod),
        }
    }
    for pods in per_node.values_mut() {
        // Keep the current and ready one first.
        pods.sort_by_key(|p| (!current(p), !pod_ready(p)));
        excess.extend(pods.drain(1..));
    }
    collect(&pods_api, &excess).await?;
    let mut labels = BTreeMap::new();
    labels.insert(POD_TEMPLATE_GENERATION.to_string(), generation.clone());
    let missing: Vec<String> = eligible
        .iter()
        .filter(|n| !per_node.contains_key(*n))
        .cloned()
        .collect();
    for node in missing {
        let mut pod = pod_from_template(
            &spec.template,
            None,
            Some(&format!("{name}-")),
            &labels,
            owner_reference(&ds),
        );
        if let Some(s) = pod.spec.as_mut() {
            s.node_name = Some(node.clone());
        }
        let made = pods_api.create(&PostParams::default(), &pod).await?;
        per_node.insert(node, vec![made]);
    }
    let pods: Vec<&Pod> = per_node.values().flatten().collect();
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    if !on_delete && pods.iter().all(|p| pod_ready(p)) {
        if let Some(old) = pods.iter().find(|p| !current(p)) {
            collect(&pods_api, std::slice::from_ref(*old)).await?;
        }
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let status = json!({
        "desiredNumberScheduled": count(eligible.len()),
        "currentNumberScheduled": count(pods.len()),
        "numberMisscheduled": 0,
        "numberReady": count(ready),
        "numberAvailable": omit_zero(count(ready)),
        "numberUnavailable": omit_zero(count(eligible.len().saturating_sub(ready))),
        "updatedNumberScheduled": omit_zero(count(pods.iter().filter(|p| current(p)).count())),
        "observedGeneration": ds.metadata.generation,
    });
    write_status(&api, name, ds.status.as_ref(), status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_use_the_safe_alphabet_and_follow_the_template() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}
        }))
        .unwrap();
        let mut b = a.clone();
        b.spec.as_mut().unwrap().containers[0].image = Some("y".into());
        let (ha, hb) = (pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_eq!(ha, pod_template_hash(&a, None));
        assert_ne!(ha, hb);
        assert_ne!(ha, pod_template_hash(&a, Some(1)));
        assert!(
            ha.chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{ha}"
        );
        assert!((6..=10).contains(&ha.len()), "{ha}");
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let t: PodTemplateSpec =
            serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}}})).unwrap();
        let mut with = t.clone();
        with.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert_eq!(without_hash(&with), without_hash(&t));
    }

    #[test]
    fn ordinals_come_from_the_name_suffix() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web2-1"), None);
        assert_eq!(ordinal("web", "web-x"), None);
    }

    #[test]
    fn rolling_limits_round_like_kubernetes() {
        let d = |surge: Value, unavail: Value| -> Deployment {
            serde_json::from_value(json!({"spec": {
                "selector": {}, "template": {},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}}
            }}))
            .unwrap()
        };
        assert_eq!(rolling_limits(&d(json!("25%"), json!("25%")), 3), (1, 0));
        assert_eq!(rolling_limits(&d(json!(0), json!(0)), 3), (0, 1));
        assert_eq!(rolling_limits(&d(json!(2), json!("50%")), 5), (2, 2));
    }
}
