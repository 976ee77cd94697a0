//! The invariants every fault must leave intact, read from the API and an independent NB
//! connection: each live pod has its annotations, exactly one IP CR and exactly one logical
//! switch port carrying that MAC and address; no address is handed out twice; a deleted pod
//! leaves no IP CR and no port; no NB row is duplicated by name.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube_ovn_common::crd::Ip;
use ovsdb::{Client, Operation, Remote, Timeouts, Transaction};
use serde_json::Value;

use crate::{Res, NAMESPACE};

/// Tables whose rows kube-ovn names uniquely; two rows with one name are a duplicate write.
const NAMED_TABLES: [&str; 6] = [
    "Logical_Switch",
    "Logical_Switch_Port",
    "Logical_Router",
    "Logical_Router_Port",
    "Port_Group",
    "Address_Set",
];

/// One pod as the API shows it.
#[derive(Debug, Clone)]
pub struct PodView {
    /// `ovn.kubernetes.io/ip_address`.
    pub ip: Option<String>,
    /// `ovn.kubernetes.io/mac_address`.
    pub mac: Option<String>,
    /// `ovn.kubernetes.io/routed` is `true`.
    pub routed: bool,
    /// Phase `Running`: the CNI ADD returned, so the pod is plugged into OVS.
    pub running: bool,
}

/// What the API and NB hold at one moment.
pub struct Snapshot {
    /// Pods of the chaos run by name.
    pub pods: BTreeMap<String, PodView>,
    /// IP CR addresses by the pod they name.
    pub ip_crs: BTreeMap<String, Vec<String>>,
    /// Logical switch ports by name: the `addresses` of every row with that name.
    pub lsps: BTreeMap<String, Vec<Vec<String>>>,
    /// `table name ×count` for every name held by more than one row.
    pub nb_duplicates: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.len() == 2 && a[0] == "set" => a[1]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Reads the named tables of NB through a fresh connection (the NB server may have restarted
/// since the last snapshot).
async fn nb_rows(nb: &str) -> Res<BTreeMap<&'static str, Vec<Value>>> {
    let remote = Remote::parse_list(nb)?
        .into_iter()
        .next()
        .ok_or("no NB remote")?;
    let (client, _notes) = Client::connect(&remote, None, &Timeouts::default()).await?;
    let mut txn = Transaction::new("OVN_Northbound");
    for table in NAMED_TABLES {
        let mut columns = vec!["name".to_string()];
        if table == "Logical_Switch_Port" {
            columns.push("addresses".into());
        }
        txn.push(Operation::Select {
            table: table.into(),
            conditions: Vec::new(),
            columns: Some(columns),
        });
    }
    let out = client.transact(&txn).await?;
    Ok(NAMED_TABLES
        .iter()
        .zip(out.results)
        .map(|(t, r)| (*t, r.rows.unwrap_or_default()))
        .collect())
}

/// Takes a snapshot of the pods whose names start with `prefix`.
pub async fn snapshot(client: &kube::Client, nb: &str, prefix: &str) -> Res<Snapshot> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let ann = |p: &Pod, k: &str| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let pods = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone()?;
            name.starts_with(prefix).then(|| {
                let view = PodView {
                    ip: ann(&p, "ovn.kubernetes.io/ip_address"),
                    mac: ann(&p, "ovn.kubernetes.io/mac_address"),
                    routed: ann(&p, "ovn.kubernetes.io/routed").as_deref() == Some("true"),
                    running: p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"),
                };
                (name, view)
            })
        })
        .collect();
    let mut ip_crs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ip in Api::<Ip>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        if ip.spec.namespace == NAMESPACE && ip.spec.pod_name.starts_with(prefix) {
            ip_crs
                .entry(ip.spec.pod_name.clone())
                .or_default()
                .push(ip.spec.ip_address.clone());
        }
    }
    let rows = nb_rows(nb).await?;
    let mut nb_duplicates = Vec::new();
    for (table, rows) in &rows {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for r in rows {
            if let Some(n) = r["name"].as_str() {
                *count.entry(n).or_default() += 1;
            }
        }
        nb_duplicates.extend(
            count
                .into_iter()
                .filter(|(_, c)| *c > 1)
                .map(|(n, c)| format!("{table} {n} ×{c}")),
        );
    }
    let mut lsps: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for r in &rows["Logical_Switch_Port"] {
        if let Some(n) = r["name"].as_str().filter(|n| n.starts_with(prefix)) {
            lsps.entry(n.to_string())
                .or_default()
                .push(strings(&r["addresses"]));
        }
    }
    Ok(Snapshot {
        pods,
        ip_crs,
        lsps,
        nb_duplicates,
    })
}

/// Counts behind a check, printed as the figures of a run.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Live pods with exactly one port carrying their address.
    pub ports_ok: usize,
    /// Live pods with no port.
    pub ports_lost: usize,
    /// Port names held by more than one row.
    pub ports_duplicated: usize,
    /// Live pods with exactly one IP CR of their address.
    pub ips_ok: usize,
    /// Addresses held by more than one live pod.
    pub ips_duplicated: usize,
    /// IP CRs or ports left by deleted pods.
    pub leaked: usize,
    /// Live pods Running (wired).
    pub wired: usize,
    /// Rows of any named NB table duplicated by name.
    pub nb_duplicates: usize,
}

/// Checks `snap` against the pods that must exist (`live`) and those deleted (`gone`); `wired`
/// requires every live pod Running. Returns the tally and every violation found.
pub fn check(
    snap: &Snapshot,
    live: &BTreeSet<String>,
    gone: &BTreeSet<String>,
    wired: bool,
) -> (Tally, Vec<String>) {
    let mut t = Tally {
        nb_duplicates: snap.nb_duplicates.len(),
        ..Tally::default()
    };
    let mut problems: Vec<String> = snap.nb_duplicates.clone();
    let mut owners: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in live {
        let lsp = format!("{name}.{NAMESPACE}");
        let Some(p) = snap.pods.get(name) else {
            problems.push(format!("pod {name} is missing"));
            continue;
        };
        let (Some(ip), Some(mac)) = (&p.ip, &p.mac) else {
            problems.push(format!("pod {name} has no address annotations"));
            continue;
        };
        owners.entry(ip.as_str()).or_default().push(name);
        if !p.routed {
            problems.push(format!("pod {name} is not routed"));
        }
        if p.running {
            t.wired += 1;
        } else if wired {
            problems.push(format!("pod {name} is not Running"));
        }
        let want: Vec<String> = std::iter::once(mac.clone())
            .chain(ip.split(',').map(str::to_string))
            .collect();
        match snap.lsps.get(&lsp).map(Vec::as_slice) {
            None | Some([]) => {
                t.ports_lost += 1;
                problems.push(format!("port {lsp} is missing"));
            }
            Some([addresses]) => {
                let got: Vec<String> = addresses
                    .iter()
                    .flat_map(|a| a.split_whitespace().map(str::to_string))
                    .collect();
                if got == want {
                    t.ports_ok += 1;
                } else {
                    problems.push(format!(
                        "port {lsp} has addresses {got:?}, pod has {want:?}"
                    ));
                }
            }
            Some(rows) => {
                t.ports_duplicated += 1;
                problems.push(format!("port {lsp} has {} rows", rows.len()));
            }
        }
        match snap.ip_crs.get(name).map(Vec::as_slice) {
            Some([one]) if one == ip => t.ips_ok += 1,
            other => problems.push(format!("pod {name} ({ip}) has IP CRs {other:?}")),
        }
    }
    for (ip, pods) in owners.iter().filter(|(_, p)| p.len() > 1) {
        t.ips_duplicated += 1;
        problems.push(format!("address {ip} is held by {pods:?}"));
    }
    for name in gone {
        let lsp = format!("{name}.{NAMESPACE}");
        if snap.pods.contains_key(name) {
            problems.push(format!("deleted pod {name} still exists"));
        }
        if snap.lsps.contains_key(&lsp) {
            t.leaked += 1;
            problems.push(format!("deleted pod {name} left port {lsp}"));
        }
        if snap.ip_crs.contains_key(name) {
            t.leaked += 1;
            problems.push(format!("deleted pod {name} left an IP CR"));
        }
    }
    (t, problems)
}
