//! How watch events become queue keys. A [`Trigger`] sits between one watched kind and one
//! queue: it queues a key when something the target reconciler reads changed (the kind's
//! *signature*: a hash of exactly those fields), when the object is deleted, and when a relist
//! no longer shows it — an object deleted while the watch was down has no Delete event, only
//! its absence from the next list, and what was made for it must still go.
//!
//! A trigger for the kind's own queue ([`Trigger::own`]) queues the object's own key; one for
//! another kind's queue ([`Trigger::mapped`]) maps the object to that kind's keys (the
//! `watches` idea of kube-rs's `Controller`) and remembers them, so a delete queues the keys the
//! object last mapped to.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};

use crate::queue::Queue;

/// Signatures by object key, shared with the reconciler: it records the signature of its own
/// write there, so that write coming back through the watch queues nothing.
#[derive(Clone, Default)]
pub struct Seen {
    inner: Arc<Mutex<HashMap<String, u64>>>,
}

impl Seen {
    /// Records `signature` as seen for `key` (a reconcile's own write).
    pub fn record(&self, key: &str, signature: u64) {
        self.lock().insert(key.to_string(), signature);
    }

    /// The signature last seen for `key`.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.lock().get(key).copied()
    }

    /// How many keys are remembered (bounded by the objects that exist).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The key of an object in its own queue: `namespace/name`, or `name` for cluster objects.
pub fn key_of<K: Resource>(o: &K) -> String {
    match o.meta().namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", o.name_any()),
        _ => o.name_any(),
    }
}

/// Hashes a value into a signature (std's SipHash; collisions within one object's history
/// are what would hide a change, at odds of 2^-64).
pub fn hash_of(v: &impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// A signature of a serialisable value (for specs that do not implement `Hash`): its JSON
/// text, streamed into the hasher without building a string.
pub fn hash_json(v: &impl serde::Serialize) -> u64 {
    struct W(std::collections::hash_map::DefaultHasher);
    impl std::io::Write for W {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(std::collections::hash_map::DefaultHasher::new());
    // A value that fails to serialise hashes what was written so far; it then changes
    // signature only with what did serialise, which is all a reconciler could read of it.
    let _ = serde_json::to_writer(&mut w, v);
    w.0.finish()
}

/// What a kind's signature covers besides its spec: deletion, finalizers, labels and
/// annotations — the metadata reconcilers act on (not resourceVersion, not status).
pub fn meta_signature<K: Resource>(o: &K) -> u64 {
    let m = o.meta();
    hash_of(&(
        m.deletion_timestamp.is_some(),
        &m.finalizers,
        &m.labels,
        &m.annotations,
    ))
}

type Mapper<K> = Box<dyn Fn(&K) -> Vec<String> + Send>;
type GoneMapper = Box<dyn Fn(&str) -> Vec<String> + Send>;

enum Target<K> {
    Own,
    Mapped {
        map: Mapper<K>,
        /// The keys each object last mapped to, for its delete.
        mapped: HashMap<String, Vec<String>>,
        /// Whether objects of the first list queue anything (every key of the target is
        /// queued when its queue starts anyway).
        first_list: bool,
        /// When set, the first list's objects are not mapped (nor their keys kept), and an
        /// object gone in a relist is also mapped by its key (see
        /// [`Trigger::unmapped_first_list`]).
        gone: Option<GoneMapper>,
    },
}

/// One watched kind → one queue (see the module doc).
pub struct Trigger<K> {
    queue: Queue,
    signature: fn(&K) -> u64,
    seen: Seen,
    target: Target<K>,
    /// Keys listed since the current relist began (`Init` … `InitDone`).
    listed: Option<HashSet<String>>,
    lists: u32,
}

impl<K: Resource> Trigger<K> {
    /// Queues the object's own key in `queue` when its `signature` changes; `seen` is shared
    /// with the reconciler for its own writes.
    pub fn own(queue: Queue, signature: fn(&K) -> u64, seen: Seen) -> Trigger<K> {
        Trigger {
            queue,
            signature,
            seen,
            target: Target::Own,
            listed: None,
            lists: 0,
        }
    }

    /// Queues the keys `map` gives in another kind's `queue` when the object's `signature`
    /// changes (and on its delete, the keys it last mapped to and those its last state maps
    /// to now). Objects of the first list
    /// queue nothing unless [`Trigger::on_first_list`] is set.
    pub fn mapped(
        queue: Queue,
        signature: fn(&K) -> u64,
        map: impl Fn(&K) -> Vec<String> + Send + 'static,
    ) -> Trigger<K> {
        Trigger {
            queue,
            signature,
            seen: Seen::default(),
            target: Target::Mapped {
                map: Box::new(map),
                mapped: HashMap::new(),
                first_list: false,
                gone: None,
            },
            listed: None,
            lists: 0,
        }
    }

    /// Lets objects of the first list queue their mapped keys too.
    pub fn on_first_list(mut self) -> Trigger<K> {
        if let Target::Mapped { first_list, .. } = &mut self.target {
            *first_list = true;
        }
        self
    }

    /// Neither maps the first list's objects (they queue nothing) nor keeps their keys: for a
    /// target that finds the keys an object held in its own records, which `gone` reads for
    /// an object that vanished in a relist (its `map` must likewise find the targets an
    /// object is leaving). A NetworkPolicy's pods are such:
    /// mapping 10,000 pods over 1,000 policies at start-up held the pod store back for
    /// seconds, for nothing.
    pub fn unmapped_first_list(
        mut self,
        gone: impl Fn(&str) -> Vec<String> + Send + 'static,
    ) -> Trigger<K> {
        if let Target::Mapped { gone: g, .. } = &mut self.target {
            *g = Some(Box::new(gone));
        }
        self
    }

    /// Handles one watch event: queues what it changes.
    pub fn handle(&mut self, event: &Event<K>) {
        for k in self.keys(event) {
            self.queue.add(k);
        }
    }

    /// The keys `event` queues (and records what it saw).
    pub fn keys(&mut self, event: &Event<K>) -> Vec<String> {
        match event {
            Event::Init => {
                self.listed = Some(HashSet::new());
                Vec::new()
            }
            Event::Apply(o) | Event::InitApply(o) => {
                let (k, sig) = (key_of(o), (self.signature)(o));
                if let (Event::InitApply(_), Some(listed)) = (event, self.listed.as_mut()) {
                    listed.insert(k.clone());
                }
                let before = self.seen.lock().insert(k.clone(), sig);
                if before == Some(sig) {
                    return Vec::new();
                }
                match &mut self.target {
                    Target::Own => vec![k],
                    Target::Mapped {
                        map,
                        mapped,
                        first_list,
                        gone,
                    } => {
                        let first = matches!(event, Event::InitApply(_)) && self.lists == 0;
                        if first && !*first_list && gone.is_some() {
                            return Vec::new();
                        }
                        let keys = map(o);
                        let old = mapped.insert(k, keys.clone()).unwrap_or_default();
                        if first && !*first_list {
                            return Vec::new();
                        }
                        union(old, keys)
                    }
                }
            }
            Event::Delete(o) => {
                let k = key_of(o);
                self.seen.lock().remove(&k);
                let mut keys = self.forget(k);
                // The object's last state may map to keys its earlier events did not (the
                // mapping reads other objects, which changed since).
                if let Target::Mapped { map, .. } = &self.target {
                    keys = union(keys, map(o));
                }
                keys
            }
            Event::InitDone => {
                self.lists = self.lists.saturating_add(1);
                let Some(listed) = self.listed.take() else {
                    return Vec::new();
                };
                let gone: Vec<String> = {
                    let mut seen = self.seen.lock();
                    let gone: Vec<String> = seen
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    for k in &gone {
                        seen.remove(k);
                    }
                    gone
                };
                gone.into_iter().flat_map(|k| self.forget(k)).collect()
            }
        }
    }

    /// The keys to queue for an object that is gone.
    fn forget(&mut self, k: String) -> Vec<String> {
        match &mut self.target {
            Target::Own => vec![k],
            Target::Mapped { mapped, gone, .. } => {
                let kept = mapped.remove(&k).unwrap_or_default();
                match gone {
                    Some(gone) => union(kept, gone(&k)),
                    None => kept,
                }
            }
        }
    }
}

fn union(mut a: Vec<String>, b: Vec<String>) -> Vec<String> {
    for k in b {
        if !a.contains(&k) {
            a.push(k);
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Backoff;
    use k8s_openapi::api::core::v1::Pod;
    use std::time::Duration;

    fn pod(name: &str, annotation: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "annotations": {"a": annotation}},
            "spec": {"nodeName": "n1", "containers": []}
        }))
        .unwrap()
    }

    fn queue() -> Queue {
        Queue::new(
            "t",
            Backoff {
                min: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
        )
    }

    #[test]
    fn own_trigger_queues_changes_deletes_and_objects_gone_from_a_relist() {
        let seen = Seen::default();
        let mut f = Trigger::own(queue(), meta_signature::<Pod>, seen.clone());
        // First list: everything is new.
        assert!(f.keys(&Event::Init).is_empty());
        assert_eq!(f.keys(&Event::InitApply(pod("a", "1"))), ["ns/a"]);
        assert_eq!(f.keys(&Event::InitApply(pod("b", "1"))), ["ns/b"]);
        assert_eq!(f.keys(&Event::InitApply(pod("c", "1"))), ["ns/c"]);
        assert!(f.keys(&Event::InitDone).is_empty());
        // The same object again (e.g. a status update): nothing; a change: queued.
        assert!(f.keys(&Event::Apply(pod("a", "1"))).is_empty());
        assert_eq!(f.keys(&Event::Apply(pod("a", "2"))), ["ns/a"]);
        // What the reconciler recorded after its own write comes back: nothing.
        let patched = pod("b", "patched");
        seen.record("ns/b", meta_signature(&patched));
        assert!(f.keys(&Event::Apply(patched)).is_empty());
        assert_eq!(f.keys(&Event::Delete(pod("a", "2"))), ["ns/a"]);
        // A relist after the watch was down: c was deleted meanwhile (no Delete event), b is
        // unchanged, d is new.
        assert!(f.keys(&Event::Init).is_empty());
        assert!(f.keys(&Event::InitApply(pod("b", "patched"))).is_empty());
        assert_eq!(f.keys(&Event::InitApply(pod("d", "1"))), ["ns/d"]);
        assert_eq!(f.keys(&Event::InitDone), ["ns/c"]);
        assert_eq!(seen.len(), 2);
        assert!(seen.get("ns/b").is_some() && seen.get("ns/d").is_some());
    }

    #[test]
    fn mapped_trigger_skips_the_first_list_and_queues_old_and_new_targets() {
        // Each pod maps to the keys named in its annotation.
        let map = |p: &Pod| -> Vec<String> {
            p.annotations()
                .get("a")
                .map(|v| v.split('+').map(String::from).collect())
                .unwrap_or_default()
        };
        let q = queue();
        let mut f = Trigger::mapped(q.clone(), meta_signature::<Pod>, map);
        assert!(f.keys(&Event::Init).is_empty());
        assert!(f.keys(&Event::InitApply(pod("a", "x"))).is_empty());
        assert!(f.keys(&Event::InitDone).is_empty());
        // A change maps to the old and the new targets.
        assert_eq!(f.keys(&Event::Apply(pod("a", "y+z"))), ["x", "y", "z"]);
        // An object first seen after the first list queues its targets.
        assert_eq!(f.keys(&Event::Apply(pod("b", "w"))), ["w"]);
        // A delete queues what the object last mapped to, and what its last state maps to
        // now.
        assert_eq!(f.keys(&Event::Delete(pod("a", "now"))), ["y", "z", "now"]);
        // A relist that no longer shows b queues b's targets.
        assert!(f.keys(&Event::Init).is_empty());
        assert_eq!(f.keys(&Event::InitDone), ["w"]);
        // handle() puts keys in the queue.
        f.handle(&Event::Apply(pod("c", "v")));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn first_list_opt_in_queues_mapped_targets() {
        let mut f = Trigger::mapped(queue(), meta_signature::<Pod>, |_: &Pod| vec!["t".into()])
            .on_first_list();
        assert!(f.keys(&Event::Init).is_empty());
        assert_eq!(f.keys(&Event::InitApply(pod("a", "1"))), ["t"]);
    }

    #[test]
    fn an_unmapped_first_list_maps_nothing_and_asks_gone_objects_by_key() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = calls.clone();
        let mut f = Trigger::mapped(queue(), meta_signature::<Pod>, move |p: &Pod| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            vec![p.annotations()["a"].clone()]
        })
        .unmapped_first_list(|key: &str| vec![format!("held-by-{key}")]);
        assert!(f.keys(&Event::Init).is_empty());
        assert!(f.keys(&Event::InitApply(pod("a", "x"))).is_empty());
        assert!(f.keys(&Event::InitApply(pod("b", "x"))).is_empty());
        assert!(f.keys(&Event::InitDone).is_empty());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The same state again is still known as seen; a change maps its new state.
        assert!(f.keys(&Event::Apply(pod("a", "x"))).is_empty());
        assert_eq!(f.keys(&Event::Apply(pod("a", "y"))), ["y"]);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A relist without b (never mapped): its targets come from `gone`; a (mapped since)
        // gone too: from its kept mapping and `gone`.
        assert!(f.keys(&Event::Init).is_empty());
        let mut gone = f.keys(&Event::InitDone);
        gone.sort();
        assert_eq!(gone, ["held-by-ns/a", "held-by-ns/b", "y"]);
    }

    #[test]
    fn json_signatures_follow_the_value() {
        let a = serde_json::json!({"x": 1});
        let b = serde_json::json!({"x": 2});
        assert_eq!(hash_json(&a), hash_json(&a.clone()));
        assert_ne!(hash_json(&a), hash_json(&b));
    }
}
