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
}

/// Starts mirroring `api` filtered by `cfg`.
pub fn mirror<K>(api: Api<K>, cfg: watcher::Config, dyntype: K::DynamicType) -> Mirror<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let writer = reflector::store::Writer::new(dyntype);
    let store = writer.as_reader();
    let (tx, changes) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut events = reflector::reflector(writer, watcher(api, cfg).default_backoff()).boxed();
        while let Some(ev) = events.next().await {
            if let Err(e) = ev {
                tracing::warn!(error = %e, "watch failed, retrying");
            }
            tx.send_modify(|n| *n += 1);
            if tx.is_closed() {
                break;
            }
        }
    });
    Mirror { store, changes }
}

/// Mirrors every Subnet.
pub fn subnets(client: Client) -> Mirror<Subnet> {
    mirror(Api::all(client), watcher::Config::default(), ())
}
