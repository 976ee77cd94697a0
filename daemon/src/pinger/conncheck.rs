//! Upstream's TCP/UDP connectivity check (`--enable-verbose-conn-check`): a TCP check is a
//! completed connect, a UDP check a datagram answered by the peer's listener, which echoes
//! `health check` to every datagram. The pinger (and the daemon, on the node) serve the
//! listeners; the pinger checks pods and nodes against them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// How long a check waits, as upstream (3 s).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// What the UDP listener answers and the check sends.
const PAYLOAD: &[u8] = b"health check";

/// Connects to `to` over TCP within [`CHECK_TIMEOUT`] and closes the connection.
pub async fn tcp(to: SocketAddr) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect(to)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("tcp {to}: {e}")),
        Err(_) => Err(format!("tcp {to}: no connection within {CHECK_TIMEOUT:?}")),
    }
}

/// Sends a datagram to `to` and waits [`CHECK_TIMEOUT`] for any answer.
pub async fn udp(to: SocketAddr) -> Result<(), String> {
    let local: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp {to}: {e}"))?;
    socket
        .connect(to)
        .await
        .map_err(|e| format!("udp {to}: {e}"))?;
    socket
        .send(PAYLOAD)
        .await
        .map_err(|e| format!("udp {to}: {e}"))?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(CHECK_TIMEOUT, socket.recv(&mut buf)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("udp {to}: {e}")),
        Err(_) => Err(format!("udp {to}: no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// The listeners on every address at the given ports (see [`serve`]).
pub async fn listen(tcp_port: u16, udp_port: u16) -> std::io::Result<Listeners> {
    let tcp = match TcpListener::bind(("::", tcp_port)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(("0.0.0.0", tcp_port)).await?,
    };
    let udp = match UdpSocket::bind(("::", udp_port)).await {
        Ok(s) => s,
        Err(_) => UdpSocket::bind(("0.0.0.0", udp_port)).await?,
    };
    Ok(serve(tcp, udp))
}

/// The two listener tasks; dropping this ends them.
pub struct Listeners {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Serves the TCP (accept and close) and UDP (echo `health check`) listeners until the
/// returned [`Listeners`] is dropped.
pub fn serve(tcp: TcpListener, udp: UdpSocket) -> Listeners {
    let tcp_task = tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, _)) => drop(stream),
                Err(e) => {
                    tracing::warn!(error = %e, "conn-check: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let udp_task = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match udp.recv_from(&mut buf).await {
                Ok((_, from)) => {
                    if let Err(e) = udp.send_to(PAYLOAD, from).await {
                        tracing::debug!(error = %e, %from, "conn-check: answer failed");
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "conn-check: receive failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Listeners {
        tasks: [tcp_task, udp_task],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn checks_pass_against_the_listeners_and_fail_once_they_are_gone() {
        let tcp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let udp_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let tcp_to = tcp_listener.local_addr().unwrap();
        let udp_to = udp_socket.local_addr().unwrap();
        let listeners = serve(tcp_listener, udp_socket);
        tcp(tcp_to).await.unwrap();
        udp(udp_to).await.unwrap();
        drop(listeners);
        // The aborted tasks drop their sockets: the UDP port answers no more (ICMP
        // unreachable or silence), the TCP one refuses.
        let err = udp(udp_to).await.unwrap_err();
        assert!(err.contains(&udp_to.to_string()), "{err}");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while tcp(tcp_to).await.is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "tcp listener still accepting"
            );
            tokio::task::yield_now().await;
        }
    }
}
