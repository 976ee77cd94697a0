//! Test workloads: something that answers inside a pod, and a client that tells apart the ways a
//! connection can fail. Pods in the sandbox are bare network namespaces, so a Service test needs
//! a server in the backend pod ([`serve`], run by `kube-ovn-sandbox serve-pod` as a child process
//! living in the pod's namespace, owned through [`PodServer`]) and a client in another namespace
//! ([`connect`]) whose result says whether the load balancer answered, rejected (RST or ICMP
//! unreachable) or dropped the packet — the three things a Service test must distinguish.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys;

/// Transport of a [`connect`] probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP connection; the reply is the first line the server sends.
    Tcp,
    /// A UDP datagram; the reply is the first datagram that comes back.
    Udp,
}

/// How a [`connect`] probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Actively rejected: a TCP RST or an ICMP unreachable (what a Service without endpoints,
    /// or a closed port, answers).
    #[error("refused: {0}")]
    Refused(String),
    /// Nothing came back before the deadline (dropped somewhere).
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Anything else (no such namespace, no route, a bad reply...).
    #[error("{0}")]
    Other(String),
}

fn classify(e: &std::io::Error, timeout: Duration) -> ConnectError {
    match e.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => {
            ConnectError::Refused(e.to_string())
        }
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ConnectError::Timeout(timeout),
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) | Some(libc::ENETUNREACH) | Some(libc::EPROTO) => {
                ConnectError::Refused(e.to_string())
            }
            _ => ConnectError::Other(e.to_string()),
        },
    }
}

/// Moves the calling thread into the network namespace at `path`. Only call it on a thread that
/// ends (or is meant to stay there): the thread does not come back.
fn enter_netns(path: &str) -> std::io::Result<()> {
    let target = File::open(path)?;
    // SAFETY: setns changes only the calling thread's network namespace; the descriptor is
    // valid for the call.
    if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// From the network namespace `netns` (a name under /run/netns), connects to `to` over `proto`
/// within `timeout` and returns the reply (TCP: `payload` is sent first when not empty, then the
/// first line the server sends; UDP: the first datagram answering `payload`), trimmed. Runs on a dedicated thread that enters the namespace
/// and ends with the probe, so no other thread changes namespace.
pub fn connect(
    netns: &str,
    proto: Proto,
    to: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<String, ConnectError> {
    let path = sys::netns_path(netns);
    let payload = payload.to_vec();
    std::thread::spawn(move || {
        enter_netns(&path).map_err(|e| ConnectError::Other(format!("entering {path}: {e}")))?;
        match proto {
            Proto::Tcp => tcp_probe(to, &payload, timeout),
            Proto::Udp => udp_probe(to, &payload, timeout),
        }
    })
    .join()
    .unwrap_or_else(|_| Err(ConnectError::Other("probe thread panicked".into())))
}

/// How long one [`ask_tcp`] waits for an answer.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

/// From `netns`, connects to `to` over TCP and reads the server's answer (see [`connect`]),
/// on a blocking thread so an async test keeps its runtime free.
pub async fn ask_tcp(netns: &str, to: SocketAddr) -> std::result::Result<String, ConnectError> {
    let ns = netns.to_string();
    tokio::task::spawn_blocking(move || connect(&ns, Proto::Tcp, to, b"", ASK_TIMEOUT))
        .await
        .unwrap_or_else(|e| Err(ConnectError::Other(format!("probe task: {e}"))))
}

/// Asks `to` from `netns` until getting an answer is what `reach` says, or `limit` passes;
/// returns whether it got there and how long it took (policy convergence in tests).
pub async fn until_reach(
    netns: &str,
    to: SocketAddr,
    reach: bool,
    limit: Duration,
) -> (bool, Duration) {
    let start = Instant::now();
    loop {
        if ask_tcp(netns, to).await.is_ok() == reach {
            return (true, start.elapsed());
        }
        if start.elapsed() > limit {
            return (false, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From the network namespace `netns`, opens a TCP connection to `to` within `timeout` and closes
/// it again (what kubelet's tcpSocket probe does): nothing is sent or awaited.
pub fn tcp_open(netns: &str, to: SocketAddr, timeout: Duration) -> Result<(), ConnectError> {
    let path = sys::netns_path(netns);
    std::thread::spawn(move || {
        enter_netns(&path).map_err(|e| ConnectError::Other(format!("entering {path}: {e}")))?;
        TcpStream::connect_timeout(&to, timeout)
            .map(drop)
            .map_err(|e| classify(&e, timeout))
    })
    .join()
    .unwrap_or_else(|_| Err(ConnectError::Other("probe thread panicked".into())))
}

fn tcp_probe(to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<String, ConnectError> {
    let start = Instant::now();
    let mut stream = TcpStream::connect_timeout(&to, timeout).map_err(|e| classify(&e, timeout))?;
    if !payload.is_empty() {
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        stream
            .write_all(payload)
            .map_err(|e| classify(&e, timeout))?;
    }
    let left = timeout
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    let mut line = String::new();
    // A line is short; never read more than a few KiB of whatever answers.
    BufReader::new(stream.take(4096))
        .read_line(&mut line)
        .map_err(|e| classify(&e, timeout))?;
    Ok(line.trim().to_string())
}

fn udp_probe(to: SocketAddr, payload: &[u8], timeout: Duration) -> Result<String, ConnectError> {
    let local: SocketAddr = if to.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
    };
    let socket = UdpSocket::bind(local).map_err(|e| ConnectError::Other(e.to_string()))?;
    // Connected, so an ICMP unreachable comes back as ECONNREFUSED on receive.
    socket.connect(to).map_err(|e| classify(&e, timeout))?;
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    socket.send(payload).map_err(|e| classify(&e, timeout))?;
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).map_err(|e| classify(&e, timeout))?;
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// Binds a listener for every port on `[::]` (both families when the namespace has IPv6,
/// otherwise `0.0.0.0`).
fn bind_tcp(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))
}

fn bind_udp(port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
        .or_else(|_| UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], port))))
}

/// Serves until killed: enters the network namespace at `netns_path` (the whole process: call it
/// before any other thread exists, so every thread started afterwards lives there too and a
/// sandbox sweep finds the process inside the pod), then answers every TCP connection on
/// `tcp_ports` with `name` and a newline, and every UDP datagram on `udp_ports` with `name`.
/// Prints `serving` on stdout once every port is bound.
pub fn serve(netns_path: &str, name: &str, tcp_ports: &[u16], udp_ports: &[u16]) -> Result<()> {
    enter_netns(netns_path).map_err(|e| Error::io(netns_path, e))?;
    let mut threads = Vec::new();
    for &port in tcp_ports {
        let listener = bind_tcp(port).map_err(|e| Error::io(format!("tcp port {port}"), e))?;
        let reply = format!("{name}\n");
        threads.push(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.shutdown(std::net::Shutdown::Write);
                // Let the client read before the close (a close with unread input sends RST).
                let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = stream.read(&mut [0u8; 64]);
            }
        }));
    }
    for &port in udp_ports {
        let socket = bind_udp(port).map_err(|e| Error::io(format!("udp port {port}"), e))?;
        let reply = name.as_bytes().to_vec();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match socket.recv_from(&mut buf) {
                    Ok((_, from)) => {
                        let _ = socket.send_to(&reply, from);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }));
    }
    println!("serving");
    std::io::stdout()
        .flush()
        .map_err(|e| Error::io("stdout", e))?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Answers every TCP connection on `port` in the network namespace `netns` (a name under
/// /run/netns) with the peer's address and a newline, from a thread of the calling process
/// that lives as long as it: what a test asks to see the source address a flow arrives with
/// (NAT or not). Returns once the port is bound.
pub fn serve_peer_address(netns: &str, port: u16) -> Result<()> {
    let path = sys::netns_path(netns);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = enter_netns(&path).and_then(|()| bind_tcp(port));
        let listener = match bound {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = tx.send(Err(Error::io(format!("{path} tcp port {port}"), e)));
                return;
            }
        };
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let peer = stream
                .peer_addr()
                .map(|a| match a.ip() {
                    std::net::IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(|v4| v4.to_string())
                        .unwrap_or_else(|| v6.to_string()),
                    v4 => v4.to_string(),
                })
                .unwrap_or_default();
            let _ = stream.write_all(format!("{peer}\n").as_bytes());
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut [0u8; 64]);
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).map_err(|_| {
        Error::io(
            format!("tcp port {port}"),
            std::io::ErrorKind::TimedOut.into(),
        )
    })?
}

/// A `serve-pod` process owned by a test: killed and reaped when dropped.
#[derive(Debug)]
pub struct PodServer {
    child: Child,
}

impl PodServer {
    /// Starts `kube-ovn-sandbox serve-pod` (binary `bin`) in the network namespace `netns`
    /// answering with `name`, and returns once it reports every port bound (or fails with its
    /// error output).
    pub fn start(
        bin: &Path,
        netns: &str,
        name: &str,
        tcp_ports: &[u16],
        udp_ports: &[u16],
    ) -> Result<PodServer> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve-pod", "--netns", netns, "--name", name]);
        for p in tcp_ports {
            cmd.arg(format!("--tcp={p}"));
        }
        for p in udp_ports {
            cmd.arg(format!("--udp={p}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(bin, e))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        if line.trim() == "serving" {
            return Ok(PodServer { child });
        }
        let _ = child.kill();
        let output = child.wait_with_output().map_err(|e| Error::io(bin, e))?;
        Err(Error::Command {
            command: format!("{} serve-pod --netns {netns}", bin.display()),
            detail: format!(
                "{:?} {}",
                read,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for PodServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `kube-ovn-sandbox` binary of this build: the running program itself, or the one beside a
/// test binary (test binaries live in `target/<profile>/deps`, binaries one level up).
pub fn sandbox_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", e))?;
    if exe.file_name().is_some_and(|n| n == "kube-ovn-sandbox") {
        return Ok(exe);
    }
    let candidates = [exe.parent(), exe.parent().and_then(Path::parent)];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join("kube-ovn-sandbox"))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        Error::Invalid(format!(
            "kube-ovn-sandbox not built beside {}: cargo build -p kube-ovn-sandbox",
            exe.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_to_the_three_outcomes() {
        let t = Duration::from_secs(1);
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(matches!(classify(&refused, t), ConnectError::Refused(_)));
        let unreachable = std::io::Error::from_raw_os_error(libc::EHOSTUNREACH);
        assert!(matches!(
            classify(&unreachable, t),
            ConnectError::Refused(_)
        ));
        let slow = std::io::Error::from(ErrorKind::WouldBlock);
        assert_eq!(classify(&slow, t), ConnectError::Timeout(t));
        let other = std::io::Error::from_raw_os_error(libc::EACCES);
        assert!(matches!(classify(&other, t), ConnectError::Other(_)));
    }
}
