//! The object store: one global resourceVersion counter, objects as JSON,
//! a bounded history of changes for watch resumption, and the live watchers.
//! All Kubernetes write semantics (create/update/patch/delete) live here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::error::{ApiError, ApiResult};
use crate::meta::{
    copy_meta, equal_ignoring, has_finalizers, meta_str, now_rfc3339, same_desired_state, set_meta,
};
use crate::patch::{apply_merge, json_patch, merge_patch, strategic_merge_patch, PatchKind};
use crate::persistence::Snapshot;
use crate::resources::{types_from_crd, Registry, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::services::{kubernetes_service, ServiceNetwork};

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_RESOURCE: &str = "customresourcedefinitions";
const DEFAULT_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Five characters from apimachinery's alphabet for generated names (consonants and digits
/// that never spell words), as kube-apiserver appends to `metadata.generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Where an object is filed: group/resource (version-independent), namespace, name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    group: String,
    resource: String,
    namespace: String,
    name: String,
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    /// Object created (or, for a fresh watch, already present).
    Added,
    /// Object updated.
    Modified,
    /// Object removed.
    Deleted,
}

/// One committed change, shared by the history ring and every watcher.
#[derive(Debug)]
pub struct Change {
    /// resourceVersion the change was committed at.
    pub resource_version: u64,
    /// What happened.
    pub change_type: ChangeType,
    group: String,
    resource: String,
    namespace: String,
    /// The object before a modification, so watchers can see selector transitions.
    pub previous: Option<Value>,
    /// The object after the change (the last state for deletions).
    pub object: Value,
}

/// Which objects a watcher is interested in, before selectors.
#[derive(Debug, Clone)]
pub struct WatchScope {
    group: String,
    resource: String,
    namespace: Option<String>,
}

impl WatchScope {
    /// Scope covering one resource type, optionally restricted to one namespace.
    pub fn new(rt: &ResourceType, namespace: Option<&str>) -> Self {
        Self {
            group: rt.group.clone(),
            resource: rt.plural.clone(),
            namespace: namespace.map(str::to_string),
        }
    }

    fn covers(&self, change: &Change) -> bool {
        change.group == self.group
            && change.resource == self.resource
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == change.namespace)
    }
}

struct Watcher {
    scope: WatchScope,
    sender: mpsc::UnboundedSender<Arc<Change>>,
}

/// Where a new watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthesize ADDED events for everything that exists now, then follow changes.
    Now,
    /// Replay history after this resourceVersion, then follow changes.
    After(u64),
}

/// What a watch starts with: events to deliver first, then the live feed.
pub type WatchFeed = (Vec<Arc<Change>>, mpsc::UnboundedReceiver<Arc<Change>>);

/// The whole server state behind one lock (never held across an await).
pub struct Store {
    resource_version: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: VecDeque<Arc<Change>>,
    history_capacity: usize,
    /// Changes up to and including this resourceVersion may have left the history.
    compacted_through: u64,
    watchers: Vec<Watcher>,
    registry: Registry,
    snapshot: Option<Snapshot>,
    /// Cluster IPs and node ports handed out to Services.
    services: ServiceNetwork,
}

/// Which page of a list to serve.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Most items to return (`limit`; none or 0 means all).
    pub limit: Option<usize>,
    /// Where the previous page ended (`continue`).
    pub continue_token: Option<String>,
}

fn key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey {
        group: rt.group.clone(),
        resource: rt.plural.clone(),
        namespace: if rt.namespaced {
            namespace.unwrap_or_default().to_string()
        } else {
            String::new()
        },
        name: name.to_string(),
    }
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == CRD_GROUP && rt.plural == CRD_RESOURCE
}

fn is_service(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "services"
}

fn is_namespace(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "namespaces"
}

/// The label kube-apiserver keeps on every Namespace, set to its name (on create and on every
/// update, whatever the client sent), so selectors can pick namespaces by name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Sets [`NAMESPACE_NAME_LABEL`] of a Namespace to its `name`.
fn label_namespace_name(object: &mut Value, name: &str) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    }
}

/// The object as served for `rt`: stored objects are version-independent,
/// so `apiVersion`/`kind` are stamped on the way out.
pub fn present(rt: &ResourceType, object: &Value) -> Value {
    let mut out = object.clone();
    stamp(rt, &mut out);
    out
}

/// Stamps `apiVersion`/`kind` of `rt` on `object` in place.
pub fn stamp(rt: &ResourceType, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), rt.api_version().into());
        map.insert("kind".into(), rt.kind.clone().into());
    }
}

/// [`present`] without the copy: serialises the stored object with `rt`'s `apiVersion`/`kind`
/// (every watch event and response would otherwise deep-copy the object first).
pub struct Presented<'a> {
    /// The type the object is served as.
    pub rt: &'a ResourceType,
    /// The stored object.
    pub object: &'a Value,
}

impl serde::Serialize for Presented<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(map) = self.object.as_object() else {
            return self.object.serialize(serializer);
        };
        let mut out = serializer.serialize_map(None)?;
        out.serialize_entry("apiVersion", &self.rt.api_version())?;
        out.serialize_entry("kind", &self.rt.kind)?;
        for (k, v) in map {
            if k != "apiVersion" && k != "kind" {
                out.serialize_entry(k, v)?;
            }
        }
        out.end()
    }
}

impl Store {
    /// An empty store with the default namespaces, or the one saved in `snapshot` (whose
    /// Services' cluster IPs and node ports are marked allocated again); either way with the
    /// `kubernetes` Service the API server keeps in `default` (`api_port` is its target port).
    pub fn open(
        history_capacity: usize,
        snapshot: Option<Snapshot>,
        services: ServiceNetwork,
        api_port: u16,
    ) -> std::io::Result<Self> {
        let mut store = Self {
            services,
            resource_version: 0,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            compacted_through: 0,
            watchers: Vec::new(),
            registry: Registry::default(),
            snapshot,
        };
        match store
            .snapshot
            .as_ref()
            .map(Snapshot::load)
            .transpose()?
            .flatten()
        {
            Some((resource_version, objects)) => {
                store.resource_version = resource_version;
                store.compacted_through = resource_version;
                for stored in objects {
                    let namespace = meta_str(&stored.object, "namespace").unwrap_or_default();
                    let name = meta_str(&stored.object, "name").unwrap_or_default();
                    let key = ObjectKey {
                        group: stored.group.clone(),
                        resource: stored.resource.clone(),
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    };
                    if stored.group.is_empty() && stored.resource == "services" {
                        store.services.restore(&stored.object);
                    }
                    if stored.group == CRD_GROUP && stored.resource == CRD_RESOURCE {
                        if let Err(e) = store.registry.install_crd(&stored.object) {
                            tracing::warn!("ignoring saved CRD {name}: {e}");
                        }
                    }
                    store.objects.insert(key, stored.object);
                }
            }
            None => {
                let namespaces = store.lookup("", "v1", "namespaces").cloned();
                for ns in DEFAULT_NAMESPACES {
                    if let Some(rt) = &namespaces {
                        store
                            .create(rt, None, json!({"metadata": {"name": ns}}))
                            .map_err(std::io::Error::other)?;
                    }
                }
            }
        }
        store
            .ensure_kubernetes_service(api_port)
            .map_err(std::io::Error::other)?;
        Ok(store)
    }

    /// Creates the `kubernetes` Service if it is missing, as kube-apiserver's reconciler does at
    /// start (an existing one keeps its cluster IP).
    fn ensure_kubernetes_service(&mut self, api_port: u16) -> ApiResult<()> {
        let Some(rt) = self.lookup("", "v1", "services").cloned() else {
            return Ok(());
        };
        if self
            .objects
            .contains_key(&key(&rt, Some("default"), "kubernetes"))
        {
            return Ok(());
        }
        let body = kubernetes_service(self.services.first_ip(), api_port);
        self.create(&rt, Some("default"), body).map(|_| ())
    }

    /// The latest committed resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// The served resource types.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Finds the type served at `group/version/plural`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.registry.lookup(group, version, plural)
    }

    fn require_namespace(&self, rt: &ResourceType, namespace: Option<&str>) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns = namespace.unwrap_or_default();
        if ns.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{} is namespaced: a namespace is required",
                rt.group_resource()
            )));
        }
        let ns_key = ObjectKey {
            group: String::new(),
            resource: "namespaces".into(),
            namespace: String::new(),
            name: ns.to_string(),
        };
        if self.objects.contains_key(&ns_key) {
            Ok(())
        } else {
            Err(ApiError::not_found("namespaces", ns))
        }
    }

    /// Reads one object.
    pub fn get(&self, rt: &ResourceType, namespace: Option<&str>, name: &str) -> ApiResult<Value> {
        self.objects
            .get(&key(rt, namespace, name))
            .map(|o| present(rt, o))
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))
    }

    /// Lists matching objects as a `<Kind>List` carrying the current resourceVersion.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Value {
        self.list_page(rt, namespace, labels, fields, &Page::default())
            .unwrap_or_else(|_| json!({}))
    }

    /// One page of a list (`limit` / `continue`, as clients such as kube-rs's watcher page
    /// through large collections). Every page of a list carries the resourceVersion of its
    /// first page, so a watch started from it replays whatever changed while the pages were
    /// read (later pages show objects as they are when served, which that replay makes
    /// consistent). A malformed continue token is a 410 like an expired one.
    pub fn list_page(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        page: &Page,
    ) -> ApiResult<Value> {
        let (rv, after) = match page.continue_token.as_deref() {
            Some(t) if !t.is_empty() => {
                let mut parts = t.splitn(3, '|');
                let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
                match (rv, parts.next(), parts.next()) {
                    (Some(rv), Some(ns), Some(name)) if rv > self.compacted_through => {
                        (rv, Some((ns.to_string(), name.to_string())))
                    }
                    _ => {
                        return Err(ApiError::expired(format!(
                            "continue token {t} is invalid or expired"
                        )))
                    }
                }
            }
            _ => (self.resource_version, None),
        };
        let limit = page.limit.filter(|l| *l > 0);
        let mut items: Vec<Value> = Vec::new();
        let mut last: Option<&ObjectKey> = None;
        let mut more = false;
        for (k, o) in self
            .objects
            .iter()
            .filter(|(k, _)| k.group == rt.group && k.resource == rt.plural)
            .filter(|(k, _)| namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(k, _)| {
                after
                    .as_ref()
                    .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
            })
            .filter(|(_, o)| labels.matches(o) && fields.matches(o))
        {
            if limit.is_some_and(|l| items.len() >= l) {
                more = true;
                break;
            }
            items.push(present(rt, o));
            last = Some(k);
        }
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let (true, Some(k)) = (more, last) {
            metadata["continue"] = format!("{rv}|{}|{}", k.namespace, k.name).into();
        }
        Ok(json!({
            "apiVersion": rt.api_version(),
            "kind": format!("{}List", rt.kind),
            "metadata": metadata,
            "items": items,
        }))
    }

    /// Records a change: bumps the resourceVersion, updates the map, feeds
    /// history and watchers, and saves the snapshot.
    fn commit(
        &mut self,
        key: ObjectKey,
        change_type: ChangeType,
        previous: Option<Value>,
        mut object: Value,
    ) -> Arc<Change> {
        self.resource_version += 1;
        set_meta(
            &mut object,
            "resourceVersion",
            Some(self.resource_version.to_string().into()),
        );
        match change_type {
            ChangeType::Deleted => {
                self.objects.remove(&key);
                if key.group.is_empty() && key.resource == "services" {
                    self.services.release(&object);
                }
            }
            _ => {
                self.objects.insert(key.clone(), object.clone());
                // The change below takes the object itself: one copy, not two.
            }
        }
        let change = Arc::new(Change {
            resource_version: self.resource_version,
            change_type,
            group: key.group,
            resource: key.resource,
            namespace: key.namespace,
            previous,
            object,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_capacity {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted_through = evicted.resource_version;
            }
        }
        self.watchers.retain(|w| {
            if w.scope.covers(&change) {
                w.sender.send(change.clone()).is_ok()
            } else {
                !w.sender.is_closed()
            }
        });
        self.save();
        change
    }

    fn save(&self) {
        let Some(snapshot) = &self.snapshot else {
            return;
        };
        let objects = self
            .objects
            .iter()
            .map(|(k, o)| (k.group.as_str(), k.resource.as_str(), o));
        if let Err(e) = snapshot.save(self.resource_version, objects) {
            tracing::error!("saving the object snapshot failed: {e}");
        }
    }

    /// A copy of the objects and allocations with no watchers, history or snapshot: what a
    /// dry-run request changes, then drops.
    pub fn dry_run_copy(&self) -> Store {
        Store {
            resource_version: self.resource_version,
            objects: self.objects.clone(),
            history: VecDeque::new(),
            history_capacity: self.history_capacity,
            compacted_through: self.resource_version,
            watchers: Vec::new(),
            registry: self.registry.clone(),
            snapshot: None,
            services: self.services.clone(),
        }
    }

    /// Creates an object (POST), filling in the server-owned metadata.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        url_namespace: Option<&str>,
        mut body: Value,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(rt, &body)?;
        let body_namespace = meta_str(&body, "namespace").map(str::to_string);
        let namespace = if rt.namespaced {
            match (url_namespace, body_namespace.as_deref()) {
                (Some(url), Some(b)) if url != b => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                (url, b) => url.or(b).map(str::to_string),
            }
        } else {
            None
        };
        self.require_namespace(rt, namespace.as_deref())?;
        let name = match (meta_str(&body, "name"), meta_str(&body, "generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => format!("{prefix}{}", random_suffix()),
            (None, None) => {
                return Err(ApiError::invalid(format!(
                "{} is invalid: metadata.name: Required value: name or generateName is required",
                rt.kind
            )))
            }
        };
        let key = key(rt, namespace.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.group_resource(), &name));
        }
        set_meta(&mut body, "name", Some(name.into()));
        set_meta(&mut body, "namespace", namespace.map(Value::from));
        set_meta(
            &mut body,
            "uid",
            Some(uuid::Uuid::new_v4().to_string().into()),
        );
        set_meta(&mut body, "creationTimestamp", Some(now_rfc3339().into()));
        set_meta(&mut body, "generation", Some(1.into()));
        set_meta(&mut body, "deletionTimestamp", None);
        set_meta(&mut body, "deletionGracePeriodSeconds", None);
        crate::workloads::apply_defaults(rt, &mut body);
        stamp(rt, &mut body);
        self.default_on_create(rt, &mut body)?;
        let change = self.commit(key, ChangeType::Added, None, body);
        Ok(present(rt, &change.object))
    }

    /// Type-specific defaults and side effects when an object is first stored.
    fn default_on_create(&mut self, rt: &ResourceType, object: &mut Value) -> ApiResult<()> {
        if is_crd(rt) {
            self.accept_crd(object)?;
        } else if is_service(rt) {
            self.services.create(object)?;
        } else if rt.status_subresource && rt.custom {
            // Custom resources with a status subresource ignore status on create.
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
        let phase = if rt.group.is_empty() && rt.plural == "pods" {
            Some("Pending")
        } else if is_namespace(rt) {
            if let Some(name) = meta_str(object, "name").map(str::to_string) {
                label_namespace_name(object, &name);
            }
            Some("Active")
        } else {
            None
        };
        if let (Some(phase), Some(map)) = (phase, object.as_object_mut()) {
            let status = map.entry("status").or_insert_with(|| json!({}));
            if let Some(status) = status.as_object_mut() {
                status.entry("phase").or_insert_with(|| phase.into());
            }
        }
        Ok(())
    }

    /// Validates a CRD, starts serving its types and marks it Established.
    fn accept_crd(&mut self, crd: &mut Value) -> ApiResult<()> {
        types_from_crd(crd)?;
        self.registry.install_crd(crd)?;
        let names = crd
            .pointer("/spec/names")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let now = now_rfc3339();
        crd["status"] = json!({
            "acceptedNames": names,
            "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array)
                .map(|vs| vs.iter().filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now},
            ],
        });
        Ok(())
    }

    /// Replaces an object (PUT), or only its status when `status_only`.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        status_only: bool,
    ) -> ApiResult<Value> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_type(rt, &body)?;
        let old = self
            .objects
            .get(&key(rt, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        self.replace(rt, namespace, name, old, body, status_only)
    }

    /// [`Store::update`] of the stored object `old` (a patch has its copy already).
    fn replace(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        old: Value,
        body: Value,
        status_only: bool,
    ) -> ApiResult<Value> {
        let key = key(rt, namespace, name);
        if meta_str(&body, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        if rt.namespaced && meta_str(&body, "namespace").is_some_and(|n| Some(n) != namespace) {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if let Some(rv) = meta_str(&body, "resourceVersion") {
            if Some(rv) != meta_str(&old, "resourceVersion") {
                return Err(ApiError::conflict(
                    &rt.group_resource(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
        let mut new = if status_only {
            let mut new = old.clone();
            match body.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(map) = new.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            new
        } else {
            let mut new = body;
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                copy_meta(&old, &mut new, field);
            }
            if rt.status_subresource {
                match old.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        if let Some(map) = new.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            crate::workloads::apply_defaults(rt, &mut new);
            new
        };
        stamp(rt, &mut new);
        if is_namespace(rt) {
            label_namespace_name(&mut new, name);
        }
        if is_crd(rt) && !status_only {
            self.accept_crd(&mut new)?;
        }
        if is_service(rt) && !status_only {
            self.services.update(&old, &mut new)?;
        }
        if !same_desired_state(&new, &old) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_meta(&mut new, "generation", Some((generation + 1).into()));
        }
        // `stamp` set the type fields of `new`; the stored `old` may carry others.
        if equal_ignoring(&new, &old, &["apiVersion", "kind"]) {
            return Ok(present(rt, &old));
        }
        let deleting = meta_str(&old, "deletionTimestamp").is_some();
        let change_type = if deleting && !has_finalizers(&new) {
            ChangeType::Deleted
        } else {
            ChangeType::Modified
        };
        let change = self.commit(key, change_type, Some(old), new);
        if change_type == ChangeType::Deleted {
            self.after_delete(rt, name);
        }
        Ok(present(rt, &change.object))
    }

    /// Applies a PATCH of the given kind; server-side apply creates missing objects.
    /// Returns the result and whether it was created.
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        status_only: bool,
    ) -> ApiResult<(Value, bool)> {
        if kind != PatchKind::Json && !patch.is_object() {
            return Err(ApiError::bad_request("the patch must be a JSON object"));
        }
        let current = self.objects.get(&key(rt, namespace, name)).cloned();
        let Some(current) = current else {
            if kind == PatchKind::Apply && !status_only {
                let mut object = patch.clone();
                if meta_str(&object, "name").is_some_and(|n| n != name) {
                    return Err(ApiError::bad_request(
                        "the name of the object does not match the name on the URL",
                    ));
                }
                set_meta(&mut object, "name", Some(name.into()));
                return self.create(rt, namespace, object).map(|o| (o, true));
            }
            return Err(ApiError::not_found(&rt.group_resource(), name));
        };
        let mut doc = current.clone();
        match kind {
            PatchKind::Merge => merge_patch(&mut doc, patch),
            PatchKind::Json => json_patch(&mut doc, patch)?,
            PatchKind::Strategic => strategic_merge_patch(&mut doc, patch)?,
            PatchKind::Apply => apply_merge(&mut doc, patch)?,
        }
        if !doc.is_object() {
            return Err(ApiError::bad_request("the patch must leave a JSON object"));
        }
        check_type(rt, &doc)?;
        self.replace(rt, namespace, name, current, doc, status_only)
            .map(|o| (o, false))
    }

    /// Deletes an object: objects with finalizers only get a deletionTimestamp.
    /// `options` is the optional DeleteOptions body (its preconditions are honoured).
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
    ) -> ApiResult<Value> {
        let key = key(rt, namespace, name);
        let current = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group_resource(), name))?;
        for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(expected) = options
                .pointer(&format!("/preconditions/{field}"))
                .and_then(Value::as_str)
            {
                if Some(expected) != meta_str(&current, field) {
                    return Err(ApiError::conflict(
                        &rt.group_resource(),
                        name,
                        &format!("Precondition failed: {what} in precondition: {expected}, {what} in object meta: {}",
                            meta_str(&current, field).unwrap_or_default()),
                    ));
                }
            }
        }
        if is_namespace(rt) {
            self.delete_namespace_contents(name);
        }
        if has_finalizers(&current) {
            if meta_str(&current, "deletionTimestamp").is_some() {
                return Ok(present(rt, &current));
            }
            let mut marked = current.clone();
            set_meta(&mut marked, "deletionTimestamp", Some(now_rfc3339().into()));
            set_meta(&mut marked, "deletionGracePeriodSeconds", Some(0.into()));
            let change = self.commit(key, ChangeType::Modified, Some(current), marked);
            return Ok(present(rt, &change.object));
        }
        let change = self.commit(key, ChangeType::Deleted, Some(current.clone()), current);
        self.after_delete(rt, name);
        Ok(present(rt, &change.object))
    }

    /// Deletes every matching object (DELETE on a collection); returns the list of them.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> ApiResult<Value> {
        let mut list = self.list(rt, namespace, labels, fields);
        let names: Vec<(Option<String>, String)> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| {
                (
                    meta_str(o, "namespace").map(str::to_string),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            })
            .collect();
        let mut deleted = Vec::new();
        for (ns, name) in names {
            deleted.push(self.delete(rt, ns.as_deref(), &name, &Value::Null)?);
        }
        list["items"] = Value::Array(deleted);
        list["metadata"]["resourceVersion"] = self.resource_version.to_string().into();
        Ok(list)
    }

    /// Removes everything stored in a namespace that is being deleted.
    fn delete_namespace_contents(&mut self, namespace: &str) {
        let doomed: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect();
        for key in doomed {
            if let Some(object) = self.objects.get(&key).cloned() {
                self.commit(key, ChangeType::Deleted, Some(object.clone()), object);
            }
        }
    }

    /// Follow-up of a completed deletion: a deleted CRD stops being served and loses its objects.
    fn after_delete(&mut self, rt: &ResourceType, name: &str) {
        if !is_crd(rt) {
            return;
        }
        let Some((group, plural)) = name
            .split_once('.')
            .map(|(p, g)| (g.to_string(), p.to_string()))
        else {
            return;
        };
        self.registry.remove_crd(name);
        if self.registry.serves_group_resource(&group, &plural) {
            return;
        }
        let doomed: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| k.group == group && k.resource == plural)
            .cloned()
            .collect();
        for key in doomed {
            if let Some(object) = self.objects.get(&key).cloned() {
                self.commit(key, ChangeType::Deleted, Some(object.clone()), object);
            }
        }
    }

    /// Registers a watcher and returns the events it must deliver first.
    /// Fails with 410 Expired if the requested history is gone.
    pub fn watch(
        &mut self,
        rt: &ResourceType,
        scope: WatchScope,
        start: WatchStart,
    ) -> ApiResult<WatchFeed> {
        let initial = match start {
            WatchStart::Now => self
                .objects
                .iter()
                .filter(|(k, _)| k.group == rt.group && k.resource == rt.plural)
                .filter(|(k, _)| scope.namespace.as_ref().is_none_or(|ns| *ns == k.namespace))
                .map(|(k, o)| {
                    Arc::new(Change {
                        resource_version: self.resource_version,
                        change_type: ChangeType::Added,
                        group: k.group.clone(),
                        resource: k.resource.clone(),
                        namespace: k.namespace.clone(),
                        previous: None,
                        object: o.clone(),
                    })
                })
                .collect(),
            WatchStart::After(rv) if rv < self.compacted_through => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({})",
                    self.compacted_through + 1
                )))
            }
            WatchStart::After(rv) => self
                .history
                .iter()
                .filter(|c| c.resource_version > rv && scope.covers(c))
                .cloned()
                .collect(),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        self.watchers.push(Watcher { scope, sender });
        Ok((initial, receiver))
    }
}

/// Rejects bodies whose `kind` names a different type than the URL.
fn check_type(rt: &ResourceType, body: &Value) -> ApiResult<()> {
    match body.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != rt.kind => Err(ApiError::bad_request(format!(
            "the kind {kind:?} of the object does not match the resource {} on the request",
            rt.group_resource()
        ))),
        _ => Ok(()),
    }
}
