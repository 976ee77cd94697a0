//! The HTTP/1.1 listener: accepts connections and hands requests to the handler
//! until shutdown is signalled.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::access::AccessControl;
use crate::exec::ExecHandler;
use crate::handler::handle;
use crate::store::Store;

/// State shared by all connections of one server.
pub struct ServerState {
    store: Mutex<Store>,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Flips to `true` when the server stops; open watches end then.
    pub shutdown: watch::Receiver<bool>,
    /// `host:port` the server is reachable at, for discovery documents.
    pub address: String,
    /// Token authentication, RBAC and the request record.
    pub access: Arc<AccessControl>,
    /// Prepares the processes of `pods/exec` requests, when the embedder runs pods.
    pub exec: Option<ExecHandler>,
}

impl ServerState {
    /// Bundles the pieces one server shares.
    pub fn new(
        store: Store,
        bookmark_interval: Duration,
        shutdown: watch::Receiver<bool>,
        address: String,
        access: Arc<AccessControl>,
        exec: Option<ExecHandler>,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            bookmark_interval,
            shutdown,
            address,
            access,
            exec,
        }
    }

    /// The store a request writes to: the live one, or for `dryRun=All` a private copy of
    /// it (validated and answered as a real write, persisted nowhere, seen by no watch), as
    /// kube-apiserver does dry runs. Other `dryRun` values are refused, as it refuses them.
    pub fn store_for(
        &self,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<StoreAccess<'_>, crate::error::ApiError> {
        match query.get("dryRun").map(String::as_str) {
            None => Ok(StoreAccess::Live(self.lock_store())),
            Some("All") => Ok(StoreAccess::DryRun(Box::new(
                self.lock_store().dry_run_copy(),
            ))),
            Some(other) => Err(crate::error::ApiError::bad_request(format!(
                "unsupported dryRun value {other:?} (only \"All\")"
            ))),
        }
    }

    /// Locks the store; a panic in another request does not make it unusable.
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Serves connections from `listener` until `shutdown` flips.
pub async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        // As kube-apiserver's sockets (Go sets TCP_NODELAY on every TCP connection): a watch
        // writes each event as its own small chunk, and with Nagle's algorithm an event written
        // while the previous one is unacknowledged waits for the client's delayed ACK — up to
        // 40 ms (np-bench: a third of its churn events reached a watcher 30–50 ms late).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY on an accepted connection: {e}");
        }
        let state = state.clone();
        let mut conn_shutdown = state.shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            // Upgrades carry `pods/exec` WebSocket sessions.
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!("connection ended with error: {e}");
                    }
                }
                _ = conn_shutdown.changed() => {}
            }
        });
    }
}

/// The store one request works on (see [`ServerState::store_for`]).
pub enum StoreAccess<'a> {
    /// The live store, locked.
    Live(MutexGuard<'a, Store>),
    /// A throw-away copy for a dry run.
    DryRun(Box<Store>),
}

impl std::ops::Deref for StoreAccess<'_> {
    type Target = Store;
    fn deref(&self) -> &Store {
        match self {
            StoreAccess::Live(g) => g,
            StoreAccess::DryRun(s) => s,
        }
    }
}

impl std::ops::DerefMut for StoreAccess<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        match self {
            StoreAccess::Live(g) => g,
            StoreAccess::DryRun(s) => s,
        }
    }
}
