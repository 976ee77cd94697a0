//! A Kubernetes API server **test fixture**: an in-process HTTP server that
//! speaks enough of the Kubernetes REST API (discovery, CRUD, patch, watch,
//! selectors, finalizers, status subresources, CRDs) for kube-rs clients and
//! kubectl to work against it. It is for tests and sandboxes, never for production.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = kube_apiserver_fixture::ApiServer::start(Default::default()).await?;
//! let client = server.client()?;
//! std::fs::write("/tmp/kubeconfig", server.kubeconfig_yaml())?;
//! # let _ = client; Ok(()) }
//! ```
//!
//! The `kube-apiserver-fixture` binary serves the same API standalone:
//! `kube-apiserver-fixture --listen 127.0.0.1:6443 --data-dir /tmp/api
//! --kubeconfig-out /tmp/kubeconfig` prints `listening on <addr>`; then
//! `KUBECONFIG=/tmp/kubeconfig kubectl get ns` works.
//!
//! Server-side printing is implemented, so `kubectl get` shows the columns a
//! real cluster would (pod readiness and status, node roles, a CRD's
//! `additionalPrinterColumns`...).
//!
//! Built-in kinds are also read and written in Kubernetes' protobuf encoding, which kubectl's
//! typed requests use, and `pods/exec` is served over WebSocket through an
//! [`exec::ExecHandler`] the embedder installs.
//!
//! Deliberate simplifications: no authentication or TLS, no admission or
//! schema validation, server-side apply is a merge without field ownership,
//! lists are never paginated, a `dryRun=All` write runs on a throw-away copy of the store,
//! watches and Tables are JSON even for protobuf clients, exec has no SPDY form and
//! `attach`/`portforward` are not served, and nothing reconciles objects (pods stay
//! `Pending`). Services are defaulted and get cluster IPs and node ports
//! as from kube-apiserver's registry (see [`services`]), and the `kubernetes` Service exists.

#![warn(missing_docs)]

pub mod access;
mod discovery;
pub mod error;
pub mod exec;
mod handler;
mod kubeconfig;
mod meta;
pub mod patch;
mod persistence;
mod protobuf;
pub mod resources;
mod route;
pub mod selectors;
mod server;
pub mod services;
mod store;
mod table;
mod watch;
mod workloads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch as signal;

pub use kubeconfig::kubeconfig_yaml;

use persistence::Snapshot;
use server::ServerState;
use store::Store;

/// How to run a fixture server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address to bind; port 0 picks a free port (the default, so tests stay isolated).
    pub listen: SocketAddr,
    /// Directory for the on-disk snapshot; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// How many changes are kept for resuming watches; older resumes get 410 Expired.
    pub history_capacity: usize,
    /// How often watches that allow bookmarks receive one.
    pub bookmark_interval: Duration,
    /// Service CIDRs (`--service-cluster-ip-range`): one, or two of different families for a
    /// dual-stack cluster, the first being the primary family. Cluster IPs come from them.
    pub service_cidrs: Vec<String>,
    /// Node ports (`--service-node-port-range`), inclusive.
    pub node_port_range: (u16, u16),
    /// Port the `kubernetes` Service's `https` port targets (kube-apiserver's secure port).
    pub api_port: u16,
    /// Users known by bearer token, each held to its RBAC rules (see [`access`]); requests
    /// without a token are always allowed.
    pub identities: Vec<access::Identity>,
    /// Runs `pods/exec` commands (see [`exec`]); without it every exec fails with 500.
    pub exec: Option<exec::ExecHandler>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            history_capacity: 1000,
            bookmark_interval: Duration::from_secs(10),
            service_cidrs: vec![services::DEFAULT_SERVICE_CIDR.to_string()],
            node_port_range: services::DEFAULT_NODE_PORTS,
            api_port: 6443,
            identities: Vec::new(),
            exec: None,
        }
    }
}

/// Why a fixture could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding the listen address failed.
    #[error("binding {0} failed: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// Reading or initialising the data directory failed.
    #[error("opening the data directory failed: {0}")]
    DataDir(std::io::Error),
    /// The options are inconsistent (e.g. two service CIDRs of one family).
    #[error("invalid options: {0}")]
    Options(String),
}

/// A running fixture; it stops when dropped or when [`ApiServer::shutdown`] is called.
pub struct ApiServer {
    address: SocketAddr,
    access: Arc<access::AccessControl>,
    stop: signal::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Binds, loads the data directory (if any) and starts serving on the current tokio runtime.
    pub async fn start(options: Options) -> Result<Self, StartError> {
        let snapshot = options
            .data_dir
            .as_deref()
            .map(Snapshot::in_dir)
            .transpose()
            .map_err(StartError::DataDir)?;
        let network =
            services::ServiceNetwork::new(&options.service_cidrs, options.node_port_range)
                .map_err(StartError::Options)?;
        let store = Store::open(
            options.history_capacity,
            snapshot,
            network,
            options.api_port,
        )
        .map_err(StartError::DataDir)?;
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| StartError::Bind(options.listen, e))?;
        let address = listener
            .local_addr()
            .map_err(|e| StartError::Bind(options.listen, e))?;
        let (stop, stopped) = signal::channel(false);
        let access = Arc::new(access::AccessControl::new(options.identities));
        let state = Arc::new(ServerState::new(
            store,
            options.bookmark_interval,
            stopped,
            address.to_string(),
            access.clone(),
            options.exec,
        ));
        let task = tokio::spawn(server::serve(listener, state));
        Ok(Self {
            address,
            access,
            stop,
            task: Some(task),
        })
    }

    /// The bound address (useful with port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Every distinct request the identified users (those of [`Options::identities`]) made so
    /// far, allowed or not.
    pub fn recorded(&self) -> Vec<access::Recorded> {
        self.access.recorded()
    }

    /// `http://host:port` of the server.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig for kubectl and other clients, with `default` as namespace.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// A kube-rs configuration for this server (default namespace `default`).
    pub fn kube_config(&self) -> kube::Config {
        let uri = self
            .url()
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("http://127.0.0.1"));
        kube::Config::new(uri)
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        kube::Client::try_from(self.kube_config())
    }

    /// Stops accepting requests, ends open watches and waits for the listener to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
