//! The part of kube-proxy a Kube-OVN cluster still relies on for pod traffic: a Service port
//! without a usable endpoint is rejected on the node. Kube-OVN removes such a VIP from its load
//! balancers, so a pod's packet to it leaves OVN towards its node (via `ovn0`), where
//! kube-proxy's filter rules answer it with ICMP port unreachable — the client sees "connection
//! refused" at once instead of waiting for a timeout. kube-proxy itself cannot run here, so this
//! stand-in keeps, per node network namespace, one nftables table with those rejects (what
//! kube-proxy's nftables mode calls `no-endpoint-services`), replaced atomically whenever the
//! set changes. Endpoints count as kube-proxy counts them: ready ones, or else serving and
//! terminating ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::net::IpAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::Notify;
use tracing::warn;

use crate::error::{Error, Result};
use crate::sys;

/// The nftables table the stand-in owns in each node namespace.
pub const TABLE: &str = "kube-proxy-sandbox";

/// One rejected Service port: address, protocol (`tcp`/`udp`/`sctp`), port.
pub type Reject = (IpAddr, &'static str, i32);

/// Which Service ports have no usable endpoint.
pub fn rejects(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> BTreeSet<Reject> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if let (Some(ns), Some(svc)) = (s.namespace(), s.labels().get(SERVICE_NAME)) {
            by_service.entry((ns, svc.clone())).or_default().push(s);
        }
    }
    let mut out = BTreeSet::new();
    for svc in services {
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let key = (svc.namespace().unwrap_or_default(), svc.name_any());
        let mine = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let ips = spec
            .cluster_ips
            .clone()
            .unwrap_or_else(|| spec.cluster_ip.clone().into_iter().collect());
        for ip in ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            for port in spec.ports.iter().flatten() {
                let Some(proto) = protocol(port.protocol.as_deref()) else {
                    continue;
                };
                let name = port.name.as_deref().unwrap_or("");
                if !usable_endpoint(mine, ip.is_ipv6(), name) {
                    out.insert((ip, proto, port.port));
                }
            }
        }
    }
    out
}

const SERVICE_NAME: &str = "kubernetes.io/service-name";

fn protocol(p: Option<&str>) -> Option<&'static str> {
    match p.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

/// Whether the slices of one family hold an endpoint for the port named `port`: a ready one,
/// or (kube-proxy's fallback) a serving, terminating one.
fn usable_endpoint(slices: &[&EndpointSlice], v6: bool, port: &str) -> bool {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let relevant = slices.iter().filter(|s| {
        s.address_type == family
            && s.ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref().unwrap_or("") == port && p.port.is_some())
    });
    let mut serving_terminating = false;
    for s in relevant {
        for ep in &s.endpoints {
            let c = ep.conditions.clone().unwrap_or_default();
            if c.ready != Some(false) {
                return true;
            }
            if c.serving == Some(true) && c.terminating == Some(true) {
                serving_terminating = true;
            }
        }
    }
    serving_terminating
}

/// The nftables script that replaces the table with one holding `rejects` (one transaction).
pub fn script(rejects: &BTreeSet<Reject>) -> String {
    let mut rules = String::new();
    for (ip, proto, port) in rejects {
        let fam = if ip.is_ipv6() { "ip6" } else { "ip" };
        rules.push_str(&format!(
            "    {fam} daddr {ip} {proto} dport {port} reject\n"
        ));
    }
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  \
         chain no-endpoint-services {{\n{rules}  }}\n  \
         chain filter-forward {{\n    type filter hook forward priority -110; policy accept;\n    \
         jump no-endpoint-services\n  }}\n  \
         chain filter-output {{\n    type filter hook output priority -110; policy accept;\n    \
         jump no-endpoint-services\n  }}\n  \
         chain filter-input {{\n    type filter hook input priority -110; policy accept;\n    \
         jump no-endpoint-services\n  }}\n}}\n"
    )
}

/// Loads `script` into the namespace `netns`.
fn load(netns: &str, script: &str) -> Result<()> {
    let mut child = sys::in_netns(netns, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            command: format!("ip netns exec {netns} nft -f -"),
            detail: e.to_string(),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Command {
                command: format!("ip netns exec {netns} nft -f -"),
                detail: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: format!("ip netns exec {netns} nft -f -"),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            command: format!("ip netns exec {netns} nft -f -"),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// Runs the stand-in for the node namespaces `netns` until the task is aborted.
pub async fn run(netns: Vec<String>, client: kube::Client) {
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let watch_services = {
        let changed = changed.clone();
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(svc_writer)
        .for_each(move |_| {
            changed.notify_one();
            std::future::ready(())
        })
    };
    let watch_slices = {
        let changed = changed.clone();
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(slice_writer)
        .for_each(move |_| {
            changed.notify_one();
            std::future::ready(())
        })
    };
    let sync = async move {
        let mut loaded: BTreeMap<String, BTreeSet<Reject>> = BTreeMap::new();
        loop {
            changed.notified().await;
            let want = rejects(&services.state(), &slices.state());
            for ns in &netns {
                if loaded.get(ns) == Some(&want) {
                    continue;
                }
                let (ns2, text) = (ns.clone(), script(&want));
                match tokio::task::spawn_blocking(move || load(&ns2, &text)).await {
                    Ok(Ok(())) => {
                        loaded.insert(ns.clone(), want.clone());
                    }
                    Ok(Err(e)) => {
                        warn!(netns = %ns, "loading the no-endpoint rejects: {e}");
                        loaded.remove(ns);
                        changed.notify_one();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => warn!(netns = %ns, "nft task: {e}"),
                }
            }
        }
    };
    tokio::join!(watch_services, watch_slices, sync);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(name: &str, ips: &[&str], ports: serde_json::Value) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ports": ports},
            }))
            .unwrap(),
        )
    }

    fn slice(svc: &str, family: &str, port: &str, eps: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("{svc}-x"), "namespace": "default",
                             "labels": {SERVICE_NAME: svc}},
                "addressType": family,
                "ports": [{"name": port, "port": 8080, "protocol": "TCP"}],
                "endpoints": eps,
            }))
            .unwrap(),
        )
    }

    #[test]
    fn ports_without_a_usable_endpoint_are_rejected() {
        let ports = json!([{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]);
        let services = vec![
            svc("a", &["10.96.0.10", "fd00::10"], ports.clone()),
            svc("b", &["10.96.0.11"], ports.clone()),
            svc("c", &["10.96.0.12"], ports),
        ];
        let slices = vec![
            // a: IPv4 http ready; nothing for dns, nothing for IPv6.
            slice(
                "a",
                "IPv4",
                "http",
                json!([{"addresses": ["10.16.0.2"], "conditions": {"ready": true}}]),
            ),
            // b: only an unready endpoint.
            slice(
                "b",
                "IPv4",
                "http",
                json!([{"addresses": ["10.16.0.3"], "conditions": {"ready": false, "serving": false}}]),
            ),
            // c: a serving, terminating one (kube-proxy's fallback).
            slice(
                "c",
                "IPv4",
                "http",
                json!([{"addresses": ["10.16.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}}]),
            ),
        ];
        let got = rejects(&services, &slices);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let want: BTreeSet<Reject> = [
            (ip("10.96.0.10"), "udp", 53),
            (ip("fd00::10"), "tcp", 80),
            (ip("fd00::10"), "udp", 53),
            (ip("10.96.0.11"), "tcp", 80),
            (ip("10.96.0.11"), "udp", 53),
            (ip("10.96.0.12"), "udp", 53),
        ]
        .into();
        assert_eq!(got, want);
        let text = script(&got);
        assert!(
            text.contains("ip6 daddr fd00::10 tcp dport 80 reject"),
            "{text}"
        );
        assert!(
            text.contains("ip daddr 10.96.0.11 udp dport 53 reject"),
            "{text}"
        );
    }

    #[test]
    fn headless_and_external_name_services_are_not_rejected() {
        let headless = Arc::new(
            serde_json::from_value::<Service>(json!({
                "metadata": {"name": "h", "namespace": "default"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
            }))
            .unwrap(),
        );
        let ext = Arc::new(
            serde_json::from_value::<Service>(json!({
                "metadata": {"name": "e", "namespace": "default"},
                "spec": {"type": "ExternalName", "externalName": "example.com", "ports": [{"port": 80}]},
            }))
            .unwrap(),
        );
        assert!(rejects(&[headless, ext], &[]).is_empty());
    }
}
