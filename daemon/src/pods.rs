//! The node's pods, kept current by one watch with `spec.nodeName=<node>` (upstream's node-local
//! informer), so an ADD waiting for the controller's annotations reacts to the very update that
//! brings them instead of polling the API server.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio::sync::watch;

/// `namespace/name` → pod.
pub type PodMap = BTreeMap<(String, String), Arc<Pod>>;

/// A live view of the pods scheduled to this node.
#[derive(Clone)]
pub struct NodePods {
    rx: watch::Receiver<Option<Arc<PodMap>>>,
    client: Client,
    node: String,
}

/// What the API server itself says about a pod.
#[derive(Debug)]
pub enum PodLookup {
    /// No such pod: no annotation will ever come for it.
    Absent,
    /// The pod is bound to another node (named); this node will never see it.
    OtherNode(String),
    /// The pod, bound to this node or not bound yet.
    Here(Box<Pod>),
}

impl NodePods {
    /// Starts watching the node's pods; the view is empty until the first full list arrives.
    pub fn start(client: Client, node: &str) -> NodePods {
        let (tx, rx) = watch::channel(None);
        let api: Api<Pod> = Api::all(client.clone());
        let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        tokio::spawn(async move {
            let mut stream = watcher(api, cfg).boxed();
            let mut pending: Option<PodMap> = None;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Init) => pending = Some(PodMap::new()),
                    Ok(watcher::Event::InitApply(p)) => {
                        if let (Some(m), Some(k)) = (pending.as_mut(), key(&p)) {
                            m.insert(k, Arc::new(p));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let m = pending.take().unwrap_or_default();
                        tx.send_replace(Some(Arc::new(m)));
                    }
                    Ok(watcher::Event::Apply(p)) => apply(&tx, p, true),
                    Ok(watcher::Event::Delete(p)) => apply(&tx, p, false),
                    Err(e) => {
                        tracing::warn!(error = %e, "pod watch failed, retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                if tx.is_closed() {
                    break;
                }
            }
        });
        NodePods {
            rx,
            client,
            node: node.to_string(),
        }
    }

    /// The kube client the view was started with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Reads the pod from the API server rather than the view, which can lag behind it: only
    /// the server can say that a pod does not exist.
    pub async fn lookup(&self, namespace: &str, name: &str) -> Result<PodLookup, kube::Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        Ok(match api.get_opt(name).await? {
            None => PodLookup::Absent,
            Some(p) => {
                let bound = p.spec.as_ref().and_then(|s| s.node_name.clone());
                match bound {
                    Some(n) if !n.is_empty() && n != self.node => PodLookup::OtherNode(n),
                    _ => PodLookup::Here(Box::new(p)),
                }
            }
        })
    }

    /// Waits until `decide` returns `Ok` for the pod (or `None` when it is not on this node),
    /// re-deciding on every change, and returns the last `Err` when `limit` passes first.
    pub async fn wait_for<T, E>(
        &self,
        namespace: &str,
        name: &str,
        limit: Duration,
        mut decide: impl FnMut(Option<&Pod>) -> Result<T, E>,
        not_synced: E,
    ) -> Result<T, E> {
        let mut rx = self.rx.clone();
        let k = (namespace.to_string(), name.to_string());
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = not_synced;
        loop {
            let current = rx.borrow_and_update().clone();
            if let Some(map) = current {
                match decide(map.get(&k).map(|p| p.as_ref())) {
                    Ok(v) => return Ok(v),
                    Err(e) => last = e,
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return Err(last),
            }
        }
    }
}

fn key(p: &Pod) -> Option<(String, String)> {
    Some((p.metadata.namespace.clone()?, p.metadata.name.clone()?))
}

fn apply(tx: &watch::Sender<Option<Arc<PodMap>>>, p: Pod, present: bool) {
    let Some(k) = key(&p) else { return };
    // Before the first full list there is no view to update; the list will include the pod.
    tx.send_if_modified(|view| {
        let Some(current) = view.as_deref() else {
            return false;
        };
        let mut m = current.clone();
        if present {
            m.insert(k, Arc::new(p));
        } else {
            m.remove(&k);
        }
        *view = Some(Arc::new(m));
        true
    });
}
