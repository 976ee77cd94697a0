//! One pinger round: each check logs what it found in upstream's words (what `kubectl ko
//! diagnose` shows its user), records its metrics, and reports whether it failed.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use ovsdb::{Client, Remote, Timeouts, TlsFiles};
use serde_json::{json, Value};
use tracing::{error, info};

use super::metrics::{ExternalPing, NodePing, PodPing};
use super::{conncheck, Pinger};
use crate::node::icmp;
use crate::unixctl;

/// Echoes per target, and the pause between them (upstream: 3, 100 ms).
const ECHOES: u32 = 3;
const ECHO_INTERVAL: Duration = Duration::from_millis(100);
/// How long all echoes to one target may take, per kind of target (upstream's timeouts).
const POD_PING_TIMEOUT: Duration = Duration::from_secs(1);
const NODE_PING_TIMEOUT: Duration = Duration::from_secs(30);
const EXTERNAL_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a DNS lookup may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the API server check may take.
const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs every check once; true when any failed.
pub async fn round(p: &Pinger) -> bool {
    let mut failed = false;
    if p.config.network_mode == "kube-ovn" {
        failed |= check_ovs(p).await.is_err();
        failed |= check_ovn_controller(p).await.is_err();
        failed |= check_port_bindings(p).await.is_err();
    }
    failed |= check_apiserver(p).await.is_err();
    failed |= ping_pods(p).await.is_err();
    failed |= ping_nodes(p).await.is_err();
    failed |= nslookup(p, &p.config.internal_dns, true).await.is_err();
    if !p.config.external_dns.is_empty() {
        failed |= nslookup(p, &p.config.external_dns, false).await.is_err();
    }
    if !p.config.target_ip_ports.is_empty() {
        failed |= check_target_ip_ports(p).await.is_err();
    }
    if !p.config.external_address.is_empty() {
        failed |= ping_external(p).await.is_err();
    }
    failed
}

/// ovsdb-server and ovs-vswitchd answer `version` on their control sockets.
async fn check_ovs(p: &Pinger) -> Result<(), String> {
    for daemon in ["ovsdb-server", "ovs-vswitchd"] {
        if let Err(e) = unixctl::call_target(
            &p.config.system_run_dir,
            daemon,
            "version",
            &[],
            p.ovs_timeout(),
        )
        .await
        {
            error!("{daemon} is down: {e}");
            if let Some(m) = &p.metrics {
                m.set_ovs(false);
            }
            return Err(e);
        }
    }
    info!("ovsdb-server and ovs-vswitchd are up");
    if let Some(m) = &p.metrics {
        m.set_ovs(true);
    }
    Ok(())
}

/// ovn-controller answers `version` on its control socket.
async fn check_ovn_controller(p: &Pinger) -> Result<(), String> {
    let pid = &p.config.ovn_controller_pid;
    let dir = pid.parent().unwrap_or(Path::new("."));
    let name = pid
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("ovn-controller");
    let outcome = unixctl::call_target(dir, name, "version", &[], p.ovs_timeout()).await;
    if let Some(m) = &p.metrics {
        m.set_ovn_controller(outcome.is_ok());
    }
    match outcome {
        Ok(_) => {
            info!("ovn-controller is up");
            Ok(())
        }
        Err(e) => {
            error!("failed to get status of ovn-controller: {e}");
            Err(e)
        }
    }
}

/// A one-shot OVSDB client on the first of `remotes` that answers.
async fn connect_any(
    remotes: &[Remote],
    tls: Option<&TlsFiles>,
    timeout: Duration,
) -> Result<Client, String> {
    let timeouts = Timeouts {
        connect: timeout,
        request: timeout,
        probe_interval: timeout.max(Duration::from_secs(5)),
    };
    let mut last = "no remote".to_string();
    for r in remotes {
        match Client::connect(r, tls, &timeouts).await {
            Ok((c, _)) => return Ok(c),
            Err(e) => last = format!("{r}: {e}"),
        }
    }
    Err(last)
}

/// The rows of one `select` on `db`.`table`.
async fn select(
    client: &Client,
    db: &str,
    table: &str,
    r#where: Value,
    columns: &[&str],
) -> Result<Vec<Value>, String> {
    let reply = client
        .connection()
        .request(
            "transact",
            json!([db, {"op": "select", "table": table, "where": r#where, "columns": columns}]),
        )
        .await
        .map_err(|e| format!("select {db}.{table}: {e}"))?;
    let result = reply
        .get(0)
        .ok_or_else(|| format!("select {db}.{table}: empty reply"))?;
    if let Some(e) = result.get("error") {
        return Err(format!("select {db}.{table}: {e}"));
    }
    Ok(result["rows"].as_array().cloned().unwrap_or_default())
}

/// The value of `key` in an OVSDB map datum (`["map", [[k, v], …]]`).
fn map_get<'a>(datum: &'a Value, key: &str) -> Option<&'a str> {
    datum
        .get(1)?
        .as_array()?
        .iter()
        .find(|pair| pair.get(0).and_then(Value::as_str) == Some(key))?
        .get(1)?
        .as_str()
}

/// The SB to compare with: upstream's `ovn-sb` Service (`OVN_SB_SERVICE_HOST`/`_PORT`, over
/// TLS when `ENABLE_SSL=true`), or else the SB this node's ovn-controller uses
/// (`external_ids:ovn-remote` of the Open_vSwitch row).
fn sb_remotes(ovn_remote: Option<&str>) -> Result<(Vec<Remote>, Option<TlsFiles>), String> {
    let ssl = std::env::var("ENABLE_SSL").is_ok_and(|v| v == "true");
    if let Ok(host) = std::env::var("OVN_SB_SERVICE_HOST") {
        let port = std::env::var("OVN_SB_SERVICE_PORT").unwrap_or_else(|_| "6642".into());
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let scheme = if ssl { "ssl" } else { "tcp" };
        let remote =
            Remote::parse(&format!("{scheme}:{host}:{port}")).map_err(|e| e.to_string())?;
        let tls = ssl.then(|| TlsFiles {
            ca_cert: "/var/run/tls/cacert".into(),
            certificate: "/var/run/tls/cert".into(),
            private_key: "/var/run/tls/key".into(),
        });
        return Ok((vec![remote], tls));
    }
    let list =
        ovn_remote.ok_or("neither OVN_SB_SERVICE_HOST nor external_ids:ovn-remote is set")?;
    let remotes = Remote::parse_list(list).map_err(|e| e.to_string())?;
    let tls = remotes
        .iter()
        .any(|r| r.to_string().starts_with("ssl:"))
        .then(|| TlsFiles {
            ca_cert: "/var/run/tls/cacert".into(),
            certificate: "/var/run/tls/cert".into(),
            private_key: "/var/run/tls/key".into(),
        });
    Ok((remotes, tls))
}

/// Every OVS interface with an `iface-id` is bound to this node's chassis in the SB.
async fn check_port_bindings(p: &Pinger) -> Result<(), String> {
    info!("start to check port binding");
    let outcome = port_binding_mismatch(p).await;
    match &outcome {
        Ok(missing) if missing.is_empty() => {
            info!("ovs and ovn-sb port binding check passed");
        }
        Ok(missing) => error!(
            "{} ports not exist in ovn-sb-bindings: {}",
            missing.len(),
            missing.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
        Err(e) => error!("port binding check: {e}"),
    }
    match outcome {
        Ok(missing) => {
            if let Some(m) = &p.metrics {
                m.set_inconsistent_bindings(missing.len());
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("{} ports not bound", missing.len()))
            }
        }
        Err(e) => Err(e),
    }
}

/// The `iface-id`s in OVS that the SB does not bind to this node's chassis.
async fn port_binding_mismatch(p: &Pinger) -> Result<BTreeSet<String>, String> {
    let vswitch = Remote::parse(&p.config.vswitch_remote).map_err(|e| e.to_string())?;
    let ovs = connect_any(&[vswitch], None, p.ovs_timeout()).await?;
    let interfaces = select(
        &ovs,
        "Open_vSwitch",
        "Interface",
        json!([]),
        &["external_ids"],
    )
    .await?;
    let ovs_ports: BTreeSet<String> = interfaces
        .iter()
        .filter_map(|row| map_get(&row["external_ids"], "iface-id"))
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    info!(
        "ports in ovs: {}",
        ovs_ports.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    let root = select(
        &ovs,
        "Open_vSwitch",
        "Open_vSwitch",
        json!([]),
        &["external_ids"],
    )
    .await?;
    let ovn_remote = root
        .first()
        .and_then(|r| map_get(&r["external_ids"], "ovn-remote"))
        .map(str::to_string);
    drop(ovs);
    let (remotes, tls) = sb_remotes(ovn_remote.as_deref())?;
    let sb = connect_any(&remotes, tls.as_ref(), Duration::from_secs(10)).await?;
    let node = &p.me.node_name;
    let chassis = select(
        &sb,
        "OVN_Southbound",
        "Chassis",
        json!([["hostname", "==", node]]),
        &["_uuid"],
    )
    .await?;
    let [row] = chassis.as_slice() else {
        return Err(format!(
            "{} chassis with hostname {node:?} in the SB",
            chassis.len()
        ));
    };
    let uuid = row["_uuid"].clone();
    let bindings = select(
        &sb,
        "OVN_Southbound",
        "Port_Binding",
        json!([["chassis", "==", uuid]]),
        &["logical_port"],
    )
    .await?;
    let sb_ports: BTreeSet<String> = bindings
        .iter()
        .filter_map(|r| r["logical_port"].as_str().map(str::to_string))
        .collect();
    info!(
        "ports in sb: {}",
        sb_ports.iter().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(ovs_ports.difference(&sb_ports).cloned().collect())
}

/// The API server answers `/version`.
async fn check_apiserver(p: &Pinger) -> Result<(), String> {
    info!("start to check apiserver connectivity");
    let start = Instant::now();
    let outcome = tokio::time::timeout(API_TIMEOUT, p.client.apiserver_version()).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let result = match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {API_TIMEOUT:?}")),
    };
    if let Some(m) = &p.metrics {
        m.set_apiserver(result.is_ok().then_some(ms));
    }
    match &result {
        Ok(()) => info!("connect to apiserver success in {ms:.2}ms"),
        Err(e) => error!("failed to connect to apiserver: {e}"),
    }
    result
}

/// Outcome of pinging one address.
struct PingStats {
    sent: u32,
    received: u32,
    avg_ms: f64,
}

impl PingStats {
    fn lost(&self) -> u32 {
        self.sent - self.received
    }
}

/// [`ECHOES`] echo requests to `ip`, [`ECHO_INTERVAL`] apart, all within `timeout`.
async fn ping(ip: IpAddr, timeout: Duration) -> Result<PingStats, String> {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + timeout;
        let mut stats = PingStats {
            sent: 0,
            received: 0,
            avg_ms: 0.0,
        };
        let mut total = Duration::ZERO;
        for i in 0..ECHOES {
            if i > 0 {
                std::thread::sleep(ECHO_INTERVAL);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let wait = left / (ECHOES - i);
            stats.sent += 1;
            if let Some(rtt) =
                icmp::echo_rtt(None, ip, wait).map_err(|e| format!("ping {ip}: {e}"))?
            {
                stats.received += 1;
                total += rtt;
            }
        }
        // Echoes the deadline left unsent count as lost, as a pinger that timed out reports.
        stats.sent = ECHOES;
        if stats.received > 0 {
            stats.avg_ms = total.as_secs_f64() * 1000.0 / f64::from(stats.received);
        }
        Ok(stats)
    })
    .await
    .map_err(|e| format!("ping task: {e}"))?
}

/// The TCP and UDP conn checks against `ip`, when `--enable-verbose-conn-check`.
async fn conn_checks(p: &Pinger, what: &str, name: &str, ip: IpAddr) -> Result<(), String> {
    if !p.config.enable_verbose_conn_check {
        return Ok(());
    }
    let mut result = Ok(());
    match conncheck::tcp(SocketAddr::new(ip, p.config.tcp_conn_check_port)).await {
        Ok(()) => info!("TCP connectivity to {what} {name} {ip} success"),
        Err(e) => {
            info!("TCP connectivity to {what} {name} {ip} failed: {e}");
            result = Err(e);
        }
    }
    match conncheck::udp(SocketAddr::new(ip, p.config.udp_conn_check_port)).await {
        Ok(()) => info!("UDP connectivity to {what} {name} {ip} success"),
        Err(e) => {
            info!("UDP connectivity to {what} {name} {ip} failed: {e}");
            result = Err(e);
        }
    }
    result
}

/// Every pinger pod (the DaemonSet's selector, our namespace) answers ICMP.
async fn ping_pods(p: &Pinger) -> Result<(), String> {
    info!("start to check pod connectivity");
    let pods: Api<Pod> = Api::namespaced(p.client.clone(), &p.me.namespace);
    let list = tokio::time::timeout(
        API_TIMEOUT,
        pods.list(&ListParams::default().labels(&p.me.selector)),
    )
    .await
    .map_err(|_| format!("listing pods: no answer within {API_TIMEOUT:?}"))
    .and_then(|r| r.map_err(|e| e.to_string()))
    .inspect_err(|e| error!("failed to list peer pods: {e}"))?;
    let mut result = Ok(());
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.unwrap_or_default();
        let node = pod.spec.and_then(|s| s.node_name).unwrap_or_default();
        let host_ip = status.host_ip.clone().unwrap_or_default();
        for ip in status.pod_ips.unwrap_or_default() {
            let Ok(addr) = ip.ip.parse::<IpAddr>() else {
                continue;
            };
            if !p.me.probes(&addr) {
                continue;
            }
            if let Err(e) = conn_checks(p, "pod", &name, addr).await {
                result = Err(e);
            }
            match ping(addr, POD_PING_TIMEOUT).await {
                Ok(stats) => {
                    info!(
                        "ping pod: {name} {addr}, count: {}, loss count {}, average rtt {:.2}ms",
                        stats.sent,
                        stats.lost(),
                        stats.avg_ms
                    );
                    if let Some(m) = &p.metrics {
                        let labels = PodPing {
                            src_node_name: p.me.node_name.clone(),
                            src_node_ip: p.me.host_ip.clone(),
                            src_pod_ip: p.me.pod_name.clone(),
                            target_node_name: node.clone(),
                            target_node_ip: host_ip.clone(),
                            target_pod_ip: addr.to_string(),
                        };
                        m.pod_ping(&labels, stats.avg_ms, stats.lost(), stats.sent);
                    }
                    if stats.lost() != 0 {
                        result = Err(format!("ping pod {name} {addr}: {} lost", stats.lost()));
                    }
                }
                Err(e) => {
                    error!("failed to run pinger for destination {addr}: {e}");
                    result = Err(e);
                }
            }
        }
    }
    result
}

/// Every node's InternalIP answers ICMP.
async fn ping_nodes(p: &Pinger) -> Result<(), String> {
    info!("start to check node connectivity");
    let nodes: Api<Node> = Api::all(p.client.clone());
    let list = tokio::time::timeout(API_TIMEOUT, nodes.list(&ListParams::default()))
        .await
        .map_err(|_| format!("listing nodes: no answer within {API_TIMEOUT:?}"))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .inspect_err(|e| error!("failed to list nodes: {e}"))?;
    let mut result = Ok(());
    for node in list.items {
        let name = node.metadata.name.clone().unwrap_or_default();
        let addresses = node.status.and_then(|s| s.addresses).unwrap_or_default();
        for a in addresses.iter().filter(|a| a.type_ == "InternalIP") {
            let Ok(addr) = a.address.parse::<IpAddr>() else {
                continue;
            };
            if !p.me.probes(&addr) {
                continue;
            }
            if let Err(e) = conn_checks(p, "node", &name, addr).await {
                result = Err(e);
            }
            match ping(addr, NODE_PING_TIMEOUT).await {
                Ok(stats) => {
                    info!(
                        "ping node: {name} {addr}, count: {}, loss count {}, average rtt {:.2}ms",
                        stats.sent,
                        stats.lost(),
                        stats.avg_ms
                    );
                    if let Some(m) = &p.metrics {
                        let labels = NodePing {
                            src_node_name: p.me.node_name.clone(),
                            src_node_ip: p.me.host_ip.clone(),
                            src_pod_ip: p.me.pod_name.clone(),
                            target_node_name: name.clone(),
                            target_node_ip: addr.to_string(),
                        };
                        m.node_ping(&labels, stats.avg_ms, stats.lost(), stats.sent);
                    }
                    if stats.lost() != 0 {
                        result = Err(format!("ping node {name} {addr}: {} lost", stats.lost()));
                    }
                }
                Err(e) => {
                    error!("failed to run pinger for destination {addr}: {e}");
                    result = Err(e);
                }
            }
        }
    }
    result
}

/// `name` resolves (through the pod's resolver configuration).
async fn nslookup(p: &Pinger, name: &str, internal: bool) -> Result<(), String> {
    info!("start to check dns connectivity");
    let start = Instant::now();
    let outcome = tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((name, 0))).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let result = match outcome {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip().to_string()).collect::<Vec<_>>()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {DNS_TIMEOUT:?}")),
    };
    if let Some(m) = &p.metrics {
        let latency = result.is_ok().then_some(ms);
        if internal {
            m.set_internal_dns(latency);
        } else {
            m.set_external_dns(latency);
        }
    }
    match result {
        Ok(addrs) => {
            info!("resolve dns {name} to {addrs:?} in {ms:.2}ms");
            Ok(())
        }
        Err(e) => {
            error!("failed to resolve dns {name}: {e}");
            Err(e)
        }
    }
}

/// One `--target-ip-ports` item: (protocol, address).
pub fn parse_target(item: &str) -> Option<(&str, SocketAddr)> {
    let mut parts = item.splitn(3, '-');
    let (proto, ip, port) = (parts.next()?, parts.next()?, parts.next()?);
    let ip: IpAddr = ip.parse().ok()?;
    let port: u16 = port.parse().ok()?;
    Some((proto, SocketAddr::new(ip, port)))
}

/// `--target-ip-ports` answer over their protocols.
async fn check_target_ip_ports(p: &Pinger) -> Result<(), String> {
    info!("start to check Service or externalIPPort connectivity");
    let mut result = Ok(());
    for item in p
        .config
        .target_ip_ports
        .split(',')
        .filter(|s| !s.is_empty())
    {
        info!("checking targetIPPort {item}");
        let Some((proto, to)) = parse_target(item) else {
            info!("targetIPPort format failed");
            continue;
        };
        if !p.me.probes(&to.ip()) {
            continue;
        }
        let outcome = match proto {
            "tcp" => conncheck::tcp(to).await,
            "udp" => conncheck::udp(to).await,
            other => {
                info!("unrecognized protocol {other}");
                continue;
            }
        };
        let upper = proto.to_uppercase();
        match outcome {
            Ok(()) => info!("{upper} connectivity to targetIPPort {to} success"),
            Err(e) => {
                info!("{upper} connectivity to targetIPPort {to} failed: {e}");
                result = Err(e);
            }
        }
    }
    result
}

/// Every `--external-address` answers ICMP.
async fn ping_external(p: &Pinger) -> Result<(), String> {
    for item in p
        .config
        .external_address
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let Ok(addr) = item.parse::<IpAddr>() else {
            error!("external address {item:?} is not an IP address");
            return Err(format!("bad external address {item:?}"));
        };
        if !p.me.probes(&addr) {
            continue;
        }
        info!("start to check ping external to {addr}");
        let stats = ping(addr, EXTERNAL_PING_TIMEOUT).await.inspect_err(|e| {
            error!("failed to run pinger for destination {addr}: {e}");
        })?;
        info!(
            "ping external address: {addr}, total count: {}, loss count {}, average rtt {:.2}ms",
            stats.sent,
            stats.lost(),
            stats.avg_ms
        );
        if let Some(m) = &p.metrics {
            let labels = ExternalPing {
                src_node_name: p.me.node_name.clone(),
                src_node_ip: p.me.host_ip.clone(),
                src_pod_ip: p.me.pod_ip.clone(),
                target_address: addr.to_string(),
            };
            m.external_ping(&labels, stats.avg_ms, stats.lost());
        }
        if stats.lost() != 0 {
            return Err(format!("ping external {addr}: {} lost", stats.lost()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ip_ports_parse_as_upstream_writes_them() {
        assert_eq!(
            parse_target("tcp-172.18.0.2-53"),
            Some(("tcp", "172.18.0.2:53".parse().unwrap()))
        );
        assert_eq!(
            parse_target("udp-fd00::a-53"),
            Some(("udp", "[fd00::a]:53".parse().unwrap()))
        );
        assert_eq!(parse_target("tcp-172.18.0.2"), None);
        assert_eq!(parse_target("tcp-x-53"), None);
        assert_eq!(parse_target("tcp-1.1.1.1-99999"), None);
    }

    #[test]
    fn map_values_are_read_from_ovsdb_map_datums() {
        let d = json!(["map", [["iface-id", "p1.ns"], ["vendor", "kube-ovn"]]]);
        assert_eq!(map_get(&d, "iface-id"), Some("p1.ns"));
        assert_eq!(map_get(&d, "ip"), None);
        assert_eq!(map_get(&json!(["set", []]), "iface-id"), None);
    }
}
