//! The health and metrics endpoint both the controller and the daemon serve on `--pprof-port`,
//! as upstream does there: `/metrics` (Prometheus text, when `--enable-metrics`), `/healthz` and
//! `/livez` (the process answers), `/readyz` (200 once the binary says it is ready, 503 before).
//!
//! The endpoint listens where upstream's `util.GetDefaultListenAddr` says ([`listen_ips`]): on
//! every address of `POD_IPS` when `ENABLE_BIND_LOCAL_IP=true` (the install manifests set it,
//! so a host-network pod does not expose its metrics on every node address), else on 0.0.0.0.
//!
//! Port 0 picks a free port (several sandbox daemons share one machine); [`bind`] can record
//! the bound address in a file so whoever started the process finds it.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Connections served at once; scrapers and probes need a handful, more waits for a slot.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request head before the connection is closed.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (out of file descriptors, …) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a binary exposes on the endpoint.
pub trait Exposition: Send + Sync + 'static {
    /// The Prometheus exposition text.
    fn render(&self) -> String;
    /// Whether `/readyz` answers 200.
    fn ready(&self) -> bool;
}

/// The answer to a GET of `path`.
pub fn respond(
    source: &dyn Exposition,
    path: &str,
    metrics_enabled: bool,
) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" if metrics_enabled => (StatusCode::OK, source.render()),
        "/healthz" | "/livez" => (StatusCode::OK, "ok".to_string()),
        "/readyz" if source.ready() => (StatusCode::OK, "ok".to_string()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready".to_string()),
        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if status == StatusCode::OK && path == "/metrics" {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(OPENMETRICS),
        );
    }
    r
}

/// The content type of prometheus-client's exposition (OpenMetrics text: counters end in
/// `_total`, the body ends with `# EOF`), so Prometheus picks the matching parser.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upstream's environment switch: listen on the pod's own addresses only.
pub const ENABLE_BIND_LOCAL_IP: &str = "ENABLE_BIND_LOCAL_IP";
/// The pod's addresses, comma-separated (the downward API's `status.podIPs`).
pub const POD_IPS: &str = "POD_IPS";

/// The addresses to listen on, as upstream's `GetDefaultListenAddr` decides from the values of
/// `ENABLE_BIND_LOCAL_IP` and `POD_IPS`: exactly `"true"` selects every address in `POD_IPS`
/// (an error when it is unset or empty, where upstream exits, or names something that is not
/// an address); anything else selects 0.0.0.0.
pub fn listen_ips(
    enable_bind_local_ip: Option<&str>,
    pod_ips: Option<&str>,
) -> Result<Vec<IpAddr>, String> {
    if enable_bind_local_ip != Some("true") {
        return Ok(vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
    }
    let pod_ips = pod_ips.filter(|s| !s.is_empty()).ok_or_else(|| {
        format!("{ENABLE_BIND_LOCAL_IP}=true but {POD_IPS} is not set, cannot bind to local ip")
    })?;
    pod_ips
        .split(',')
        .map(|ip| {
            ip.parse()
                .map_err(|e| format!("{POD_IPS}={pod_ips:?}: {ip:?}: {e}"))
        })
        .collect()
}

/// [`listen_ips`] from this process's environment.
pub fn default_listen_ips() -> Result<Vec<IpAddr>, String> {
    let enable = std::env::var(ENABLE_BIND_LOCAL_IP).ok();
    let pod_ips = std::env::var(POD_IPS).ok();
    listen_ips(enable.as_deref(), pod_ips.as_deref())
}

/// Binds the endpoint on each of `ips` at `port` (see [`bind`]; the first bound address is
/// the one recorded in `addr_file`). All are bound before any is served, so a failure leaves
/// nothing half-served.
pub async fn bind_all(
    ips: &[IpAddr],
    port: u16,
    addr_file: Option<&Path>,
) -> std::io::Result<Vec<(TcpListener, SocketAddr)>> {
    let mut out = Vec::with_capacity(ips.len());
    for (i, ip) in ips.iter().enumerate() {
        let file = if i == 0 { addr_file } else { None };
        out.push(bind(SocketAddr::new(*ip, port), file).await?);
    }
    Ok(out)
}

/// Serves the endpoint on every listener (see [`serve`]); dropping the future stops them all.
pub async fn serve_all(
    listeners: Vec<TcpListener>,
    source: Arc<dyn Exposition>,
    metrics_enabled: bool,
) {
    let mut servers = JoinSet::new();
    for listener in listeners {
        servers.spawn(serve(listener, source.clone(), metrics_enabled));
    }
    while servers.join_next().await.is_some() {}
}

/// Binds the endpoint (port 0 picks one) and, when `addr_file` is given, writes the bound
/// address there (through a temporary file and a rename, so a reader never sees a partial or
/// stale port).
pub async fn bind(
    addr: SocketAddr,
    addr_file: Option<&Path>,
) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if let Some(file) = addr_file {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, format!("{bound}\n"))?;
        std::fs::rename(&tmp, file)?;
    }
    Ok((listener, bound))
}

/// Serves the endpoint on `listener` for as long as the returned future is polled; dropping it
/// closes the listener and every open connection.
pub async fn serve(listener: TcpListener, source: Arc<dyn Exposition>, metrics_enabled: bool) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "health endpoint: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            Some(_) = connections.join_next() => continue,
        };
        let source = source.clone();
        connections.spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = respond(source.as_ref(), req.uri().path(), metrics_enabled);
                async move { Ok::<_, Infallible>(r) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "health endpoint: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use http_body_util::BodyExt;
    use hyper_util::client::legacy::Client;

    use super::*;

    struct Fake {
        ready: AtomicBool,
    }

    impl Exposition for Fake {
        fn render(&self) -> String {
            "fake_total 1\n".into()
        }
        fn ready(&self) -> bool {
            self.ready.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn readiness_and_disabled_metrics() {
        let m = Fake {
            ready: AtomicBool::new(false),
        };
        let status = |path: &str, enabled: bool| respond(&m, path, enabled).status();
        assert_eq!(status("/readyz", true), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status("/healthz", true), StatusCode::OK);
        assert_eq!(status("/livez", true), StatusCode::OK);
        m.ready.store(true, Ordering::SeqCst);
        assert_eq!(status("/readyz", true), StatusCode::OK);
        assert_eq!(status("/metrics", true), StatusCode::OK);
        assert_eq!(status("/metrics", false), StatusCode::NOT_FOUND);
        assert_eq!(status("/other", true), StatusCode::NOT_FOUND);
    }

    #[test]
    fn listen_addresses_as_upstream() {
        let any = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
        assert_eq!(listen_ips(None, None).unwrap(), any);
        assert_eq!(listen_ips(None, Some("10.0.0.1")).unwrap(), any);
        assert_eq!(listen_ips(Some("false"), Some("10.0.0.1")).unwrap(), any);
        assert_eq!(listen_ips(Some("TRUE"), Some("10.0.0.1")).unwrap(), any);
        assert_eq!(
            listen_ips(Some("true"), Some("10.10.10.10")).unwrap(),
            vec!["10.10.10.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            listen_ips(Some("true"), Some("fd00::1")).unwrap(),
            vec!["fd00::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            listen_ips(Some("true"), Some("10.10.10.10,fd00::1")).unwrap(),
            vec![
                "10.10.10.10".parse::<IpAddr>().unwrap(),
                "fd00::1".parse::<IpAddr>().unwrap()
            ]
        );
        assert!(listen_ips(Some("true"), None).is_err());
        assert!(listen_ips(Some("true"), Some("")).is_err());
        assert!(listen_ips(Some("true"), Some("10.0.0.1,nope")).is_err());
    }

    #[tokio::test]
    async fn serves_on_every_address() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let bound = bind_all(&ips, 0, None).await.unwrap();
        let addrs: Vec<SocketAddr> = bound.iter().map(|(_, a)| *a).collect();
        assert_eq!(addrs.iter().map(SocketAddr::ip).collect::<Vec<_>>(), ips);
        let source = Arc::new(Fake {
            ready: AtomicBool::new(true),
        });
        let server = tokio::spawn(serve_all(
            bound.into_iter().map(|(l, _)| l).collect(),
            source,
            true,
        ));
        let client =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
        for a in addrs {
            let r = client
                .get(format!("http://{a}/readyz").parse().unwrap())
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{a}");
        }
        server.abort();
    }

    #[tokio::test]
    async fn serves_on_a_picked_port_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/addr");
        let (listener, bound) = bind(SocketAddr::from(([127, 0, 0, 1], 0)), Some(&file))
            .await
            .unwrap();
        assert_ne!(bound.port(), 0);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            format!("{bound}\n")
        );
        let source = Arc::new(Fake {
            ready: AtomicBool::new(true),
        });
        let server = tokio::spawn(serve(listener, source, true));
        let client =
            Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<Bytes>>();
        let get = |path: &str| {
            let uri: hyper::Uri = format!("http://{bound}{path}").parse().unwrap();
            let client = client.clone();
            async move {
                let r = client.get(uri).await.unwrap();
                let status = r.status();
                let body = r.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(
            get("/metrics").await,
            (StatusCode::OK, "fake_total 1\n".into())
        );
        assert_eq!(get("/readyz").await, (StatusCode::OK, "ok".into()));
        server.abort();
        assert!(server.await.unwrap_err().is_cancelled());
    }
}
