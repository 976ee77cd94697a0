//! Which pod watch events queue a pod. A pod is queued when something its reconciler reads
//! changed (see [`PodInfo::signature`]), when it is deleted, and when a relist no longer shows
//! it: a pod deleted while the watch was down produces no Delete event, only its absence from
//! the next list, and its port, address and IP CR must still go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;
use kube::ResourceExt;

use crate::pod_ctl;
use crate::pod_info::PodInfo;

/// Signatures by pod key, shared with the pod reconciler (it records the signature of its own
/// annotation patch there, so that patch coming back through the watch queues nothing).
pub type Seen = Arc<Mutex<HashMap<String, u64>>>;

/// The filter between the pod watch and the pod queue.
pub struct PodEvents {
    seen: Seen,
    /// Keys listed since the current relist began (`Init` … `InitDone`).
    listed: Option<HashSet<String>>,
}

impl PodEvents {
    /// A filter recording into `seen`.
    pub fn new(seen: Seen) -> PodEvents {
        PodEvents { seen, listed: None }
    }

    /// The pod keys `event` queues.
    pub fn keys(&mut self, event: &Event<PodInfo>) -> Vec<String> {
        let key = |p: &PodInfo| pod_ctl::key(&p.namespace().unwrap_or_default(), &p.name_any());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => {
                self.listed = Some(HashSet::new());
                Vec::new()
            }
            Event::Apply(p) | Event::InitApply(p) => {
                let (k, sig) = (key(p), p.signature());
                if let (Event::InitApply(_), Some(listed)) = (event, self.listed.as_mut()) {
                    listed.insert(k.clone());
                }
                if seen.insert(k.clone(), sig) == Some(sig) {
                    Vec::new()
                } else {
                    vec![k]
                }
            }
            Event::Delete(p) => {
                let k = key(p);
                seen.remove(&k);
                vec![k]
            }
            Event::InitDone => {
                let Some(listed) = self.listed.take() else {
                    return Vec::new();
                };
                let gone: Vec<String> = seen
                    .keys()
                    .filter(|k| !listed.contains(*k))
                    .cloned()
                    .collect();
                for k in &gone {
                    seen.remove(k);
                }
                gone
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, annotation: &str) -> PodInfo {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "annotations": {"a": annotation}},
            "spec": {"nodeName": "n1"}
        }))
        .unwrap()
    }

    #[test]
    fn queues_changes_deletes_and_pods_gone_from_a_relist() {
        let seen = Seen::default();
        let mut f = PodEvents::new(seen.clone());
        // First list: everything is new.
        assert!(f.keys(&Event::Init).is_empty());
        assert_eq!(f.keys(&Event::InitApply(pod("a", "1"))), ["ns/a"]);
        assert_eq!(f.keys(&Event::InitApply(pod("b", "1"))), ["ns/b"]);
        assert_eq!(f.keys(&Event::InitApply(pod("c", "1"))), ["ns/c"]);
        assert!(f.keys(&Event::InitDone).is_empty());
        // The same pod again (a status update): nothing; a change: queued.
        assert!(f.keys(&Event::Apply(pod("a", "1"))).is_empty());
        assert_eq!(f.keys(&Event::Apply(pod("a", "2"))), ["ns/a"]);
        // What the reconciler recorded after its own patch comes back: nothing.
        let patched = pod("b", "patched");
        seen.lock()
            .unwrap()
            .insert("ns/b".into(), patched.signature());
        assert!(f.keys(&Event::Apply(patched)).is_empty());
        assert_eq!(f.keys(&Event::Delete(pod("a", "2"))), ["ns/a"]);
        // A relist after the watch was down: c was deleted meanwhile (no Delete event), b is
        // unchanged, d is new.
        assert!(f.keys(&Event::Init).is_empty());
        assert!(f.keys(&Event::InitApply(pod("b", "patched"))).is_empty());
        assert_eq!(f.keys(&Event::InitApply(pod("d", "1"))), ["ns/d"]);
        assert_eq!(f.keys(&Event::InitDone), ["ns/c"]);
        let left: HashSet<String> = seen.lock().unwrap().keys().cloned().collect();
        assert_eq!(left, HashSet::from(["ns/b".into(), "ns/d".into()]));
    }
}
