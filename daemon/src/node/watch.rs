//! Local mirrors of the API objects the node setup follows (this Node, all Subnets), each
//! with a change counter that ticks on every event so the reconciler reacts instead of polling.

use std::fmt::Debug;
use std::hash::Hash;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use kube_ovn_common::crd::Subnet;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// A mirrored set of objects and a receiver that changes whenever they do; clones share the
/// one watch.
#[derive(Clone)]
pub struct Mirror<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// The objects.
    pub store: Store<K>,
    /// Ticks on every watch event.
    pub changes: watch::Receiver<u64>,
    /// Whether the first list has been applied. The store's own `wait_until_ready` is not used:
    /// it parks waiters on a oneshot that keeps one waker, so of several tasks waiting on one
    /// store (the Subnet mirror is shared by node setup, TPROXY and the CNI handler) only the
    /// last to poll is woken and the others wait forever (seen: a node's TPROXY rules never
    /// loaded, 2 of 32 runs of the TPROXY sandbox test under load).
    synced: watch::Receiver<bool>,
}

impl<K: Resource + 'static> Mirror<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Waits until the first list is in the store; false when the watch ended before.
    pub async fn synced(&self) -> bool {
        self.synced.clone().wait_for(|s| *s).await.is_ok()
    }

    /// Whether the first list is in the store, without waiting.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }
}

/// Starts mirroring `api` filtered by `cfg`.
pub fn mirror<K>(api: Api<K>, cfg: watcher::Config, dyntype: K::DynamicType) -> Mirror<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    mirror_of(watcher(api, cfg).default_backoff(), dyntype)
}

/// Mirrors the watch events of `source` (a watcher's stream; tests feed their own).
fn mirror_of<K, S>(source: S, dyntype: K::DynamicType) -> Mirror<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let (tx, changes) = watch::channel(0u64);
    let (synced_tx, synced) = watch::channel(false);
    tokio::spawn(async move {
        let mut events = reflector::reflector(writer, source).boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    synced_tx.send_replace(true);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "watch failed, retrying"),
            }
            tx.send_modify(|n| *n += 1);
            if tx.is_closed() {
                break;
            }
        }
    });
    Mirror {
        store,
        changes,
        synced,
    }
}

/// Mirrors every Subnet.
pub fn subnets(client: Client) -> Mirror<Subnet> {
    mirror(Api::all(client), watcher::Config::default(), ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": "ns"}}))
            .unwrap()
    }

    /// Every task waiting for one mirror's first list is woken by it, however many wait and
    /// whether or not one only peeked.
    #[tokio::test]
    async fn every_waiter_sees_the_first_list() {
        let (feed, source) = futures::channel::mpsc::unbounded();
        let m: Mirror<ConfigMap> = mirror_of(source, ());
        assert!(!m.is_synced());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move { m.synced().await })
            })
            .collect();
        // Let every waiter park before the list arrives.
        tokio::task::yield_now().await;
        assert!(!m.is_synced());
        for ev in [
            watcher::Event::Init,
            watcher::Event::InitApply(cm("a")),
            watcher::Event::InitDone,
        ] {
            feed.unbounded_send(Ok(ev)).unwrap();
        }
        for w in waiters {
            let woke = tokio::time::timeout(Duration::from_secs(10), w).await;
            assert!(matches!(woke, Ok(Ok(true))), "{woke:?}");
        }
        assert!(m.is_synced());
        assert_eq!(m.store.state().len(), 1);
    }

    /// A watch that ends before its first list says so instead of leaving waiters parked.
    #[tokio::test]
    async fn a_watch_ending_unsynced_releases_its_waiters() {
        let (feed, source) = futures::channel::mpsc::unbounded::<
            Result<watcher::Event<ConfigMap>, watcher::Error>,
        >();
        let m = mirror_of(source, ());
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { m.synced().await })
        };
        drop(feed);
        let r = tokio::time::timeout(Duration::from_secs(10), waiter).await;
        assert!(matches!(r, Ok(Ok(false))), "{r:?}");
    }
}
