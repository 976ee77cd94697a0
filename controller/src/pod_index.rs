//! The pods of the cluster by namespace, each namespace's pods sorted by name: a policy looks
//! at the pods of the namespaces it names, not at every pod. With 1,000 policies over 10,000
//! pods in 100 namespaces, scanning every pod per policy peer was most of a cold start.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::pod_info::PodInfo;

/// Pods by namespace.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_ns: HashMap<String, Vec<Arc<PodInfo>>>,
}

impl PodIndex {
    /// Indexes `pods`.
    pub fn new(pods: impl IntoIterator<Item = Arc<PodInfo>>) -> PodIndex {
        let mut by_ns: HashMap<String, Vec<Arc<PodInfo>>> = HashMap::new();
        for p in pods {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            by_ns.entry(ns).or_default().push(p);
        }
        for pods in by_ns.values_mut() {
            pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        }
        PodIndex { by_ns }
    }

    /// The pods of namespace `ns`, by name.
    pub fn in_namespace(&self, ns: &str) -> &[Arc<PodInfo>] {
        self.by_ns.get(ns).map(Vec::as_slice).unwrap_or_default()
    }

    /// The pod `namespace/name`.
    pub fn get(&self, key: &str) -> Option<&Arc<PodInfo>> {
        let (ns, name) = key.split_once('/')?;
        let pods = self.in_namespace(ns);
        pods.binary_search_by(|p| p.metadata.name.as_deref().unwrap_or("").cmp(name))
            .ok()
            .map(|i| &pods[i])
    }

    /// Every pod, namespace by namespace.
    pub fn all(&self) -> impl Iterator<Item = &Arc<PodInfo>> {
        self.by_ns.values().flatten()
    }
}

/// A [`PodIndex`] rebuilt only after pods changed: every policy reconciled between two pod
/// changes (a cold start reconciles them all) shares one.
#[derive(Default)]
pub struct SharedPodIndex {
    changes: AtomicU64,
    built: Mutex<Option<(u64, Arc<PodIndex>)>>,
}

impl SharedPodIndex {
    /// Notes that a pod changed (called from the pod watch, after the store took the change).
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// The index of the pods now in `pods` (the store), rebuilt if a pod changed since the
    /// last build.
    pub fn get(&self, pods: impl FnOnce() -> Vec<Arc<PodInfo>>) -> Arc<PodIndex> {
        // Read before the store: a change landing while building makes the next call rebuild.
        let changes = self.changes.load(Ordering::SeqCst);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, index)) = built.as_ref() {
            if *at == changes {
                return index.clone();
            }
        }
        let index = Arc::new(PodIndex::new(pods()));
        *built = Some((changes, index.clone()));
        index
    }
}

/// `namespace/name` of a pod.
pub fn pod_key(p: &PodInfo) -> String {
    p.key().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;

    fn pod(ns: &str, name: &str) -> Arc<PodInfo> {
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name, "namespace": ns}}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn pods_are_found_by_namespace_and_key_and_the_shared_index_follows_changes() {
        let idx = PodIndex::new([pod("b", "z"), pod("a", "y"), pod("b", "c")]);
        let names: Vec<_> = idx.in_namespace("b").iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["c", "z"]);
        assert!(idx.in_namespace("none").is_empty());
        assert_eq!(idx.get("b/z").map(|p| p.name_any()), Some("z".into()));
        assert!(idx.get("a/z").is_none() && idx.get("nokey").is_none());
        assert_eq!(idx.all().count(), 3);

        let shared = SharedPodIndex::default();
        let first = shared.get(|| vec![pod("a", "x")]);
        // No change since: the same index, the store not even read.
        let again = shared.get(|| panic!("rebuilt without a change"));
        assert!(Arc::ptr_eq(&first, &again));
        shared.changed();
        let after = shared.get(|| vec![pod("a", "x"), pod("a", "w")]);
        assert_eq!(after.in_namespace("a").len(), 2);
    }
}
