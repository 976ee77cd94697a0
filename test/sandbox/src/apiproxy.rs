//! The Kubernetes API inside each node: node agents (kube-ovn-daemon) run in the node's network
//! namespace, where the fixture's loopback address does not exist. A listener is bound on
//! `127.0.0.1:6443` *inside* the node namespace (a socket keeps the namespace it was created
//! in) and every connection is relayed to the fixture — what a node's route to the real API
//! server provides. No interface, route or process is added for it.
//!
//! Pods reach the API as they do in a cluster: through the `kubernetes` Service's cluster IP,
//! whose EndpointSlice names the control-plane node's InternalIP and port 6443. A relay bound on
//! that address inside the first node's namespace makes it answer, and
//! [`kubernetes_endpoints`] keeps the slice as kube-apiserver's endpoint reconciler writes it.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Port the API answers on inside every node.
pub const NODE_API_PORT: u16 = 6443;

/// Binds `addr` inside the network namespace at `netns_path`. Runs on a short-lived thread of
/// its own so no runtime thread ever changes namespace.
pub fn bind_in_netns(netns_path: &str, addr: SocketAddr) -> Result<TcpListener> {
    let path = netns_path.to_string();
    std::thread::spawn(move || -> Result<TcpListener> {
        let own = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("/proc/thread-self/ns/net", e))?;
        let target = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: setns only changes this thread's network namespace; the thread ends right
        // after switching back, and the descriptors outlive the calls.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(Error::io(&path, std::io::Error::last_os_error()));
        }
        let bound = TcpListener::bind(addr);
        // SAFETY: as above, back to the namespace the thread started in.
        let back = unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) };
        let listener = bound.map_err(|e| Error::io(format!("{path} {addr}"), e))?;
        if back != 0 {
            return Err(Error::io("setns back", std::io::Error::last_os_error()));
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(&path, e))?;
        Ok(listener)
    })
    .join()
    .map_err(|_| Error::Invalid("namespace bind thread panicked".into()))?
}

/// Relays every connection accepted on `listener` to `upstream` until the task is aborted.
pub fn relay(listener: TcpListener, upstream: SocketAddr) -> Result<JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| Error::io("relay listener", e))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                match tokio::net::TcpStream::connect(upstream).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(e) => debug!("api relay to {upstream}: {e}"),
                }
            });
        }
    }))
}

/// Relays every connection accepted on `listener` to the first of the unix sockets `upstream`
/// that accepts one, until the task is aborted.
pub fn relay_unix(
    listener: TcpListener,
    upstream: Vec<std::path::PathBuf>,
) -> Result<JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| Error::io("relay listener", e))?;
    let upstream = std::sync::Arc::new(upstream);
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                for path in upstream.iter() {
                    if let Ok(mut outbound) = tokio::net::UnixStream::connect(path).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
                debug!("relay: none of {upstream:?} accepts a connection");
            });
        }
    }))
}

/// A kubeconfig for agents on a node, pointing at the node-local API address; with a token
/// (the node agent's service account, see [`crate::rbac`]) when the API enforces RBAC.
pub fn node_kubeconfig(node: &str, token: Option<&str>) -> String {
    let server = format!("http://127.0.0.1:{NODE_API_PORT}");
    match token {
        Some(token) => crate::rbac::kubeconfig_with_token(&server, node, token),
        None => format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sandbox\n  cluster:\n    server: {server}\ncontexts:\n- name: {node}\n  context:\n    cluster: sandbox\n    user: {node}\ncurrent-context: {node}\nusers:\n- name: {node}\n  user: {{}}\n"
        ),
    }
}

/// How often kube-apiserver's endpoint reconciler rewrites the `kubernetes` endpoints
/// (`--endpoint-reconciler` lease, 10 s).
pub const ENDPOINT_RECONCILE_INTERVAL: Duration = Duration::from_secs(10);

/// The `kubernetes` EndpointSlice as kube-apiserver's reconciler writes it: named after the
/// Service, only the `kubernetes.io/service-name` label, the API server's address as one ready
/// endpoint and the port `https`.
pub fn kubernetes_endpoint_slice(ip: IpAddr, port: u16) -> EndpointSlice {
    let address_type = if ip.is_ipv6() { "IPv6" } else { "IPv4" };
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": address_type,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))
    .unwrap_or_default()
}

/// Creates or corrects the `kubernetes` EndpointSlice; true when it wrote.
async fn ensure_kubernetes_slice(
    api: &Api<EndpointSlice>,
    want: &EndpointSlice,
) -> kube::Result<bool> {
    match api.get_opt("kubernetes").await? {
        None => {
            api.create(&PostParams::default(), want).await?;
            Ok(true)
        }
        Some(have) => {
            if have.address_type != want.address_type {
                // addressType cannot change: replace the slice, as the reconciler does.
                api.delete("kubernetes", &Default::default()).await?;
                api.create(&PostParams::default(), want).await?;
                return Ok(true);
            }
            if have.endpoints == want.endpoints
                && have.ports == want.ports
                && have.metadata.labels == want.metadata.labels
            {
                return Ok(false);
            }
            let mut fixed = want.clone();
            fixed.metadata.resource_version = have.metadata.resource_version;
            api.replace("kubernetes", &PostParams::default(), &fixed)
                .await?;
            Ok(true)
        }
    }
}

/// Keeps the `kubernetes` EndpointSlice in `default` pointing at `ip:port` until aborted: at
/// once, whenever it changes or disappears, and every [`ENDPOINT_RECONCILE_INTERVAL`].
pub async fn kubernetes_endpoints(client: kube::Client, ip: IpAddr, port: u16) {
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    let want = kubernetes_endpoint_slice(ip, port);
    let config = watcher::Config::default().fields("metadata.name=kubernetes");
    let mut changes = watcher(api.clone(), config).default_backoff().boxed();
    let mut tick = tokio::time::interval(ENDPOINT_RECONCILE_INTERVAL);
    loop {
        tokio::select! {
            event = changes.next() => match event {
                Some(Ok(watcher::Event::InitApply(_))) | Some(Ok(watcher::Event::Init)) => continue,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    warn!("kubernetes endpoints watch: {e}");
                    continue;
                }
                None => return,
            },
            _ = tick.tick() => {}
        }
        if let Err(e) = ensure_kubernetes_slice(&api, &want).await {
            warn!("kubernetes endpoints: {e}");
        }
    }
}

/// Makes sure the `kubernetes` EndpointSlice exists now (bring-up waits for it).
pub async fn write_kubernetes_endpoints(
    client: kube::Client,
    ip: IpAddr,
    port: u16,
) -> kube::Result<()> {
    let api: Api<EndpointSlice> = Api::namespaced(client, "default");
    ensure_kubernetes_slice(&api, &kubernetes_endpoint_slice(ip, port))
        .await
        .map(|_| ())
}
