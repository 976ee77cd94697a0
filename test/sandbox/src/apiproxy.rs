//! The Kubernetes API inside each node: node agents (kube-ovn-daemon) run in the node's network
//! namespace, where the fixture's loopback address does not exist. A listener is bound on
//! `127.0.0.1:6443` *inside* the node namespace (a socket keeps the namespace it was created
//! in) and every connection is relayed to the fixture — what a node's route to the real API
//! server provides. No interface, route or process is added for it.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use tokio::task::JoinHandle;
use tracing::debug;

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

/// A kubeconfig for agents on a node, pointing at the node-local API address.
pub fn node_kubeconfig(node: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sandbox\n  cluster:\n    server: http://127.0.0.1:{NODE_API_PORT}\ncontexts:\n- name: {node}\n  context:\n    cluster: sandbox\n    user: {node}\ncurrent-context: {node}\nusers:\n- name: {node}\n  user: {{}}\n"
    )
}
