//! What `diagnose drift` checks beyond the NB rows, in the live state the rows should produce:
//!
//! - `address`: no address of a subnet is held by two owners across the IP CRs, the pods'
//!   `<provider>.kubernetes.io/ip_address` annotations and the NB ports kube-ovn owns;
//! - `binding`: every Running pod's port is bound in the SB to the chassis of the pod's node,
//!   and that node's OVS marks the interface `ovn-installed` (read in its ovs-ovn pod);
//! - `gateway`: every default-VPC overlay subnet's gateway answers ping from every node (from
//!   its ovs-ovn pod, which shares the node's network).
//!
//! These are findings for an operator: `--repair` rewrites NB rows only. What cannot be checked
//! (no SB address, no ovs-ovn pod on a node) is listed as skipped, not as a finding.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{Ip, Subnet};
use kube_ovn_nb::ports::{owned_ports, PortOwner};
use ovsdb::{CacheData, Client, Remote, Timeouts};
use serde::Serialize;
use serde_json::{json, Value};

use crate::remote;

/// One thing wrong in the live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `address`, `binding` or `gateway`.
    pub check: &'static str,
    /// What it concerns (`ovn-default 10.16.0.5`, `pod default/web`, `node2 10.16.0.1`).
    pub object: String,
    /// What is wrong.
    pub detail: String,
}

/// The state checks' outcome.
#[derive(Debug, Default, Serialize)]
pub struct StateReport {
    /// What is wrong.
    pub findings: Vec<Finding>,
    /// What could not be checked, and why.
    pub skipped: Vec<String>,
}

/// One owner's claim on an address of a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The subnet (logical switch).
    pub subnet: String,
    /// The address.
    pub ip: IpAddr,
    /// Who holds it: `pod <ns>/<name>`, `node <name>`.
    pub holder: String,
    /// Where the claim was read: `IP CR`, `pod annotation`, `NB port`.
    pub source: &'static str,
}

/// Addresses of a comma-separated list, without prefix lengths; unparsable items are dropped.
fn addresses(list: &str) -> Vec<IpAddr> {
    list.split([',', ' '])
        .filter_map(|a| a.split('/').next()?.trim().parse().ok())
        .collect()
}

/// The claims of the IP CRs: `<ns>/<pod>` for pods, `node <name>` for nodes' join addresses.
pub fn claims_of_ips(ips: &[Ip]) -> Vec<Claim> {
    let mut out = Vec::new();
    for ip in ips {
        let s = &ip.spec;
        // A node's join address: no namespace, the node's name (upstream's CR is `node-<node>`).
        let holder = if s.namespace.is_empty() {
            let node = s.pod_name.strip_prefix("node-").unwrap_or(&s.pod_name);
            format!("node {node}")
        } else {
            format!("pod {}/{}", s.namespace, s.pod_name)
        };
        for a in addresses(&s.ip_address) {
            out.push(Claim {
                subnet: s.subnet.clone(),
                ip: a,
                holder: holder.clone(),
                source: "IP CR",
            });
        }
    }
    out
}

/// The claims of the pods' annotations: every `<provider>.kubernetes.io/ip_address` with its
/// `<provider>.kubernetes.io/logical_switch`.
pub fn claims_of_pods(pods: &[Pod]) -> Vec<Claim> {
    let mut out = Vec::new();
    for pod in pods {
        let holder = format!(
            "pod {}/{}",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        );
        let annotations = pod.annotations();
        for (key, value) in annotations {
            let Some(provider) = key.strip_suffix(".kubernetes.io/ip_address") else {
                continue;
            };
            let Some(subnet) = annotations.get(&format!("{provider}.kubernetes.io/logical_switch"))
            else {
                continue;
            };
            for a in addresses(value) {
                out.push(Claim {
                    subnet: subnet.clone(),
                    ip: a,
                    holder: holder.clone(),
                    source: "pod annotation",
                });
            }
        }
    }
    out
}

/// A port kube-ovn owns in the NB, copied out of the cache.
#[derive(Debug, Clone)]
pub struct Port {
    /// The port's name.
    pub name: String,
    /// `pod <ns>/<name>` or `node <name>`.
    pub holder: String,
    /// `<ns>/<name>` of a pod's port.
    pub pod: Option<String>,
    /// `external_ids:ls`.
    pub switch: Option<String>,
    /// Its first `addresses` entry (`<mac> <ip>…`).
    pub addresses: Option<String>,
}

/// The ports kube-ovn owns (read once, so no lock on the cache is held while checking).
pub fn ports_of(cache: &CacheData) -> Result<Vec<Port>, String> {
    Ok(owned_ports(cache)
        .map_err(|e| e.to_string())?
        .map(|p| {
            let (holder, pod) = match p.owner {
                PortOwner::Pod(pod) => (format!("pod {pod}"), Some(pod.to_string())),
                PortOwner::Node(node) => (format!("node {node}"), None),
            };
            Port {
                name: p.name.to_string(),
                holder,
                pod,
                switch: p.switch.map(str::to_string),
                addresses: p.addresses.map(str::to_string),
            }
        })
        .collect())
}

/// The claims of the NB ports kube-ovn owns (`<mac> <ip>…` on the switch of `external_ids:ls`).
pub fn claims_of_ports(ports: &[Port]) -> Vec<Claim> {
    let mut out = Vec::new();
    for p in ports {
        let (Some(switch), Some(addrs)) = (&p.switch, &p.addresses) else {
            continue;
        };
        for a in addrs.split_whitespace().skip(1).flat_map(addresses) {
            out.push(Claim {
                subnet: switch.clone(),
                ip: a,
                holder: p.holder.clone(),
                source: "NB port",
            });
        }
    }
    out
}

/// The addresses of a subnet that more than one owner claims, one finding each.
pub fn held_twice(claims: &[Claim]) -> Vec<Finding> {
    let mut by_address: BTreeMap<(&str, IpAddr), BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for c in claims {
        by_address
            .entry((c.subnet.as_str(), c.ip))
            .or_default()
            .entry(c.holder.as_str())
            .or_default()
            .insert(c.source);
    }
    by_address
        .into_iter()
        .filter(|(_, holders)| holders.len() > 1)
        .map(|((subnet, ip), holders)| Finding {
            check: "address",
            object: format!("{subnet} {ip}"),
            detail: format!(
                "held by {}",
                holders
                    .iter()
                    .map(|(h, sources)| format!(
                        "{h} ({})",
                        sources.iter().copied().collect::<Vec<_>>().join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        })
        .collect()
}

/// Runs the three checks over the NB's kube-ovn `ports`; `sb` is the SB address
/// (`--ovn-sb-addr`), if known.
pub async fn check(
    client: &kube::Client,
    ns: &str,
    ports: &[Port],
    sb: Option<&str>,
) -> Result<StateReport, String> {
    let mut report = StateReport::default();
    let pods: Vec<Pod> = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing pods: {e}"))?
        .items;
    let ips: Vec<Ip> = Api::<Ip>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing IPs: {e}"))?
        .items;
    let mut claims = claims_of_ips(&ips);
    claims.extend(claims_of_pods(&pods));
    claims.extend(claims_of_ports(ports));
    report.findings.extend(held_twice(&claims));

    let ovs_pods = ovs_pods(client, ns).await?;
    bindings(&mut report, client, ns, ports, sb, &pods, &ovs_pods).await;
    gateways(&mut report, client, ns, &ovs_pods).await?;
    Ok(report)
}

/// node → its Running ovs-ovn pod.
async fn ovs_pods(client: &kube::Client, ns: &str) -> Result<BTreeMap<String, String>, String> {
    let list = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app=ovs"))
        .await
        .map_err(|e| format!("listing ovs-ovn pods: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter_map(|p| Some((p.spec.as_ref()?.node_name.clone()?, p.name_any())))
        .collect())
}

/// The rows of one `select` of `columns` from `table`.
async fn select(client: &Client, table: &str, columns: &[&str]) -> Result<Vec<Value>, String> {
    let reply = client
        .connection()
        .request(
            "transact",
            json!(["OVN_Southbound", {"op": "select", "table": table, "where": [], "columns": columns}]),
        )
        .await
        .map_err(|e| format!("select {table}: {e}"))?;
    Ok(reply[0]["rows"].as_array().cloned().unwrap_or_default())
}

/// A UUID datum's text (`["uuid", "…"]`), or `None` for an empty optional.
fn uuid_of(v: &Value) -> Option<String> {
    (v[0] == "uuid").then(|| v[1].as_str().map(str::to_string))?
}

/// `iface-id` → whether `ovn-installed=true`, from `ovs-vsctl --format=json list interface`.
fn installed_interfaces(json_text: &str) -> Result<BTreeMap<String, bool>, String> {
    let v: Value = serde_json::from_str(json_text).map_err(|e| format!("ovs-vsctl output: {e}"))?;
    let col = v["headings"]
        .as_array()
        .and_then(|h| h.iter().position(|c| c == "external_ids"))
        .ok_or("ovs-vsctl output has no external_ids column")?;
    let mut out = BTreeMap::new();
    for row in v["data"].as_array().into_iter().flatten() {
        let pairs = row[col][1].as_array().cloned().unwrap_or_default();
        let get = |k: &str| {
            pairs
                .iter()
                .find(|p| p[0] == k)
                .and_then(|p| p[1].as_str())
                .map(str::to_string)
        };
        if let Some(id) = get("iface-id") {
            out.insert(id, get("ovn-installed").as_deref() == Some("true"));
        }
    }
    Ok(out)
}

async fn bindings(
    report: &mut StateReport,
    client: &kube::Client,
    ns: &str,
    ports: &[Port],
    sb: Option<&str>,
    pods: &[Pod],
    ovs_pods: &BTreeMap<String, String>,
) {
    // The ports of Running pod-network pods, with their nodes.
    let running: BTreeMap<String, String> = pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| p.spec.as_ref().and_then(|s| s.host_network) != Some(true))
        .filter_map(|p| {
            Some((
                format!("{}/{}", p.namespace()?, p.name_any()),
                p.spec.as_ref()?.node_name.clone()?,
            ))
        })
        .collect();
    let wanted: Vec<(String, String, String)> = ports
        .iter()
        .filter_map(|p| {
            let pod = p.pod.as_ref()?;
            running
                .get(pod)
                .map(|node| (p.name.clone(), pod.clone(), node.clone()))
        })
        .collect();
    match sb {
        None => report
            .skipped
            .push("binding: no --ovn-sb-addr, SB bindings not checked".into()),
        Some(sb) => {
            match sb_bindings(sb).await {
                Err(e) => report.skipped.push(format!("binding: SB: {e}")),
                Ok(bound) => {
                    for (port, pod, node) in &wanted {
                        match bound.get(port) {
                        Some(Some(host)) if host == node => {}
                        Some(Some(host)) => report.findings.push(Finding {
                            check: "binding",
                            object: format!("pod {pod}"),
                            detail: format!("port {port} is bound to chassis {host}, the pod runs on {node}"),
                        }),
                        _ => report.findings.push(Finding {
                            check: "binding",
                            object: format!("pod {pod}"),
                            detail: format!("port {port} is bound to no chassis (pod on {node})"),
                        }),
                    }
                    }
                }
            }
        }
    }
    let nodes: BTreeSet<&String> = wanted.iter().map(|(_, _, n)| n).collect();
    for node in nodes {
        let Some(ovs_pod) = ovs_pods.get(node) else {
            report
                .skipped
                .push(format!("binding: no Running ovs-ovn pod on {node}"));
            continue;
        };
        let argv = [
            "ovs-vsctl",
            "--format=json",
            "--columns=external_ids",
            "list",
            "interface",
        ]
        .map(String::from)
        .to_vec();
        let interfaces =
            match remote::capture_within(COMMAND_LIMIT, client, ns, ovs_pod, None, argv).await {
                Ok((code, out)) if code == ExitCode::SUCCESS => installed_interfaces(&out),
                Ok(_) => Err("ovs-vsctl failed".to_string()),
                Err(e) => Err(e),
            };
        let interfaces = match interfaces {
            Ok(i) => i,
            Err(e) => {
                report.skipped.push(format!("binding: {node}'s OVS: {e}"));
                continue;
            }
        };
        for (port, pod, _) in wanted.iter().filter(|(_, _, n)| n == node) {
            let detail = match interfaces.get(port) {
                Some(true) => continue,
                Some(false) => {
                    format!("{node}'s OVS interface of port {port} is not ovn-installed")
                }
                None => format!("{node}'s OVS has no interface for port {port}"),
            };
            report.findings.push(Finding {
                check: "binding",
                object: format!("pod {pod}"),
                detail,
            });
        }
    }
}

/// Port_Binding.logical_port → the hostname of its chassis (`None`: unbound).
async fn sb_bindings(sb: &str) -> Result<BTreeMap<String, Option<String>>, String> {
    let remotes = Remote::parse_list(sb).map_err(|e| e.to_string())?;
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(30),
        probe_interval: Duration::from_secs(30),
    };
    let mut last = String::from("no remote");
    for r in &remotes {
        let client = match Client::connect(r, None, &timeouts).await {
            Ok((c, _)) => c,
            Err(e) => {
                last = format!("{r}: {e}");
                continue;
            }
        };
        let chassis: BTreeMap<String, String> = select(&client, "Chassis", &["_uuid", "hostname"])
            .await?
            .iter()
            .filter_map(|c| Some((uuid_of(&c["_uuid"])?, c["hostname"].as_str()?.to_string())))
            .collect();
        let bindings = select(&client, "Port_Binding", &["logical_port", "chassis"]).await?;
        return Ok(bindings
            .iter()
            .filter_map(|b| {
                let port = b["logical_port"].as_str()?.to_string();
                let host = uuid_of(&b["chassis"]).and_then(|u| chassis.get(&u).cloned());
                Some((port, host))
            })
            .collect());
    }
    Err(last)
}

/// How long one command in an ovs-ovn pod may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);
/// Tries per gateway and node before it counts as not answering.
const PING_TRIES: usize = 3;

async fn gateways(
    report: &mut StateReport,
    client: &kube::Client,
    ns: &str,
    ovs_pods: &BTreeMap<String, String>,
) -> Result<(), String> {
    let subnets: Vec<Subnet> = Api::<Subnet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing subnets: {e}"))?
        .items;
    let mut targets: Vec<(String, IpAddr)> = Vec::new();
    for s in &subnets {
        let spec = &s.spec;
        let default_vpc = spec.vpc.is_empty() || spec.vpc == "ovn-cluster";
        if !default_vpc || !spec.vlan.is_empty() {
            continue;
        }
        for gw in addresses(&spec.gateway) {
            targets.push((s.name_any(), gw));
        }
    }
    for (node, pod) in ovs_pods {
        for (subnet, gw) in &targets {
            let mut answered = false;
            for _ in 0..PING_TRIES {
                let argv = vec![
                    "ping".to_string(),
                    "-c".into(),
                    "1".into(),
                    "-W".into(),
                    "1".into(),
                    gw.to_string(),
                ];
                let answer =
                    remote::capture_within(COMMAND_LIMIT, client, ns, pod, None, argv).await;
                if matches!(answer, Ok((c, _)) if c == ExitCode::SUCCESS) {
                    answered = true;
                    break;
                }
            }
            if !answered {
                report.findings.push(Finding {
                    check: "gateway",
                    object: format!("{node} {gw}"),
                    detail: format!(
                        "the gateway of subnet {subnet} does not answer ping from {node}"
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(subnet: &str, ip: &str, holder: &str, source: &'static str) -> Claim {
        Claim {
            subnet: subnet.into(),
            ip: ip.parse().unwrap(),
            holder: holder.into(),
            source,
        }
    }

    #[test]
    fn an_address_held_by_two_owners_of_one_subnet_is_one_finding() {
        let claims = vec![
            claim("ovn-default", "10.16.0.5", "pod a/web", "IP CR"),
            claim("ovn-default", "10.16.0.5", "pod a/web", "pod annotation"),
            claim("ovn-default", "10.16.0.5", "pod a/web", "NB port"),
            claim("ovn-default", "10.16.0.5", "pod b/db", "IP CR"),
            // The same address in another VPC's subnet is another address.
            claim("vpc1-net", "10.16.0.5", "pod c/x", "NB port"),
            claim("ovn-default", "10.16.0.6", "pod a/other", "IP CR"),
        ];
        assert_eq!(
            held_twice(&claims),
            vec![Finding {
                check: "address",
                object: "ovn-default 10.16.0.5".into(),
                detail: "held by pod a/web (IP CR, NB port, pod annotation) and pod b/db (IP CR)"
                    .into(),
            }]
        );
    }

    #[test]
    fn claims_are_read_from_annotations_of_every_provider() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "a",
            "annotations": {
                "ovn.kubernetes.io/ip_address": "10.16.0.5,fd00::5",
                "ovn.kubernetes.io/logical_switch": "ovn-default",
                "net1.a.ovn.kubernetes.io/ip_address": "172.17.0.3",
                "net1.a.ovn.kubernetes.io/logical_switch": "net1",
                "orphan.kubernetes.io/ip_address": "1.2.3.4"}}}))
        .unwrap();
        let mut claims = claims_of_pods(&[pod]);
        claims.sort_by(|a, b| (&a.subnet, a.ip).cmp(&(&b.subnet, b.ip)));
        let got: Vec<_> = claims
            .iter()
            .map(|c| (c.subnet.as_str(), c.ip.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("net1", "172.17.0.3".to_string()),
                ("ovn-default", "10.16.0.5".to_string()),
                ("ovn-default", "fd00::5".to_string()),
            ]
        );
        assert!(claims.iter().all(|c| c.holder == "pod a/web"));
    }

    #[test]
    fn ovs_vsctl_json_gives_installed_interfaces() {
        let text = r#"{"data":[[["map",[["iface-id","web.a"],["ovn-installed","true"]]]],
            [["map",[["iface-id","db.b"]]]],[["map",[]]]],"headings":["external_ids"]}"#;
        let got = installed_interfaces(text).unwrap();
        assert_eq!(got.get("web.a"), Some(&true));
        assert_eq!(got.get("db.b"), Some(&false));
        assert_eq!(got.len(), 2);
        assert!(installed_interfaces("{}").is_err());
    }
}
