//! Which EndpointSlices belong to which Service. A Service's reconcile reads all its slices;
//! scanning the whole slice store for each of 10,000 Services would cost 10⁸ label lookups at
//! start, so the watch keeps this index beside the reflector store (a relist swaps it whole,
//! as the store does).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

type ServiceKey = (String, String);

#[derive(Default)]
struct Maps {
    /// (namespace, service) → slice names.
    by_service: HashMap<ServiceKey, BTreeSet<String>>,
    /// (namespace, slice) → service, to move a slice whose label changed.
    service_of: HashMap<ServiceKey, String>,
}

impl Maps {
    fn put(&mut self, slice: &EndpointSlice) {
        let ns = slice.namespace().unwrap_or_default();
        let name = slice.name_any();
        self.remove(&ns, &name);
        if let Some(svc) = service_of(slice) {
            self.by_service
                .entry((ns.clone(), svc.to_string()))
                .or_default()
                .insert(name.clone());
            self.service_of.insert((ns, name), svc.to_string());
        }
    }

    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(svc) = self.service_of.remove(&(ns.to_string(), name.to_string())) {
            let key = (ns.to_string(), svc);
            if let Some(set) = self.by_service.get_mut(&key) {
                set.remove(name);
                if set.is_empty() {
                    self.by_service.remove(&key);
                }
            }
        }
    }
}

/// The Service a slice names, if any.
pub fn service_of(slice: &EndpointSlice) -> Option<&str> {
    slice
        .labels()
        .get(SERVICE_NAME_LABEL)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// Locks a map; each update is a single call, so a poisoned lock never holds half an update.
fn lock(m: &Mutex<Maps>) -> std::sync::MutexGuard<'_, Maps> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The index; fed every watch event of the slice reflector.
#[derive(Default)]
pub struct SliceIndex {
    live: Mutex<Maps>,
    /// Built during a relist, swapped in when it completes.
    relist: Mutex<Option<Maps>>,
}

impl SliceIndex {
    /// Applies one watch event.
    pub fn observe(&self, event: &watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(s) => lock(&self.live).put(s),
            watcher::Event::Delete(s) => {
                lock(&self.live).remove(&s.namespace().unwrap_or_default(), &s.name_any())
            }
            watcher::Event::Init => *self.relist_lock() = Some(Maps::default()),
            watcher::Event::InitApply(s) => {
                if let Some(m) = self.relist_lock().as_mut() {
                    m.put(s);
                }
            }
            watcher::Event::InitDone => {
                if let Some(m) = self.relist_lock().take() {
                    *lock(&self.live) = m;
                }
            }
        }
    }

    fn relist_lock(&self) -> std::sync::MutexGuard<'_, Option<Maps>> {
        self.relist.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slices of Service `namespace/name` present in `store`, sorted by name.
    pub fn slices_of(
        &self,
        store: &Store<EndpointSlice>,
        namespace: &str,
        name: &str,
    ) -> Vec<Arc<EndpointSlice>> {
        let names: Vec<String> = lock(&self.live)
            .by_service
            .get(&(namespace.to_string(), name.to_string()))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        names
            .iter()
            .filter_map(|n| store.get(&ObjectRef::new(n).within(namespace)))
            .filter(|s| service_of(s) == Some(name))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use serde_json::json;

    fn slice(ns: &str, name: &str, svc: &str) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap()
    }

    #[test]
    fn slices_follow_applies_deletes_label_moves_and_relists() {
        let (reader, mut writer) = reflector::store::<EndpointSlice>();
        let index = SliceIndex::default();
        let feed = |w: &mut reflector::store::Writer<EndpointSlice>,
                    ev: watcher::Event<EndpointSlice>| {
            w.apply_watcher_event(&ev);
            index.observe(&ev);
        };
        feed(&mut writer, watcher::Event::Init);
        feed(
            &mut writer,
            watcher::Event::InitApply(slice("a", "web-1", "web")),
        );
        feed(
            &mut writer,
            watcher::Event::InitApply(slice("b", "web-1", "web")),
        );
        feed(&mut writer, watcher::Event::InitDone);
        let names = |ns: &str, svc: &str| -> Vec<String> {
            index
                .slices_of(&reader, ns, svc)
                .iter()
                .map(|s| s.name_any())
                .collect()
        };
        assert_eq!(names("a", "web"), ["web-1"]);
        feed(
            &mut writer,
            watcher::Event::Apply(slice("a", "web-2", "web")),
        );
        assert_eq!(names("a", "web"), ["web-1", "web-2"]);
        // The label moves the slice to another service.
        feed(
            &mut writer,
            watcher::Event::Apply(slice("a", "web-1", "db")),
        );
        assert_eq!(names("a", "web"), ["web-2"]);
        assert_eq!(names("a", "db"), ["web-1"]);
        feed(
            &mut writer,
            watcher::Event::Delete(slice("a", "web-2", "web")),
        );
        assert!(names("a", "web").is_empty());
        // A relist that no longer shows a slice drops it.
        feed(&mut writer, watcher::Event::Init);
        feed(
            &mut writer,
            watcher::Event::InitApply(slice("b", "web-1", "web")),
        );
        feed(&mut writer, watcher::Event::InitDone);
        assert!(names("a", "db").is_empty());
        assert_eq!(names("b", "web"), ["web-1"]);
    }
}
