//! The pod's port on the integration bridge, written through our OVSDB client to the node's
//! Open_vSwitch database (what upstream does with `ovs-vsctl`), and ovn-controller's
//! `ovn-installed` mark read back from the same replica.
//!
//! Planning a write ([`plan_add_port`]) is pure: it reads a snapshot of the replica and returns
//! one transaction whose `wait` guards make it fail, not clobber, when a concurrent ADD changed
//! the same rows; [`Ovs::add_port`] then retries against the fresher cache.

use std::collections::BTreeMap;
use std::time::Duration;

use kube_ovn_common::metrics::OvsClientMetrics;
use ovsdb::cache::CacheData;
use ovsdb::{
    Atom, Condition, Datum, Error as DbError, Mutation, Operation, Remote, Replica, ReplicaConfig,
    Row, Transaction, TxnErrorKind, Uuid,
};

/// The integration bridge ovn-controller owns.
pub const INTEGRATION_BRIDGE: &str = "br-int";

const DB: &str = "Open_vSwitch";
const TABLES: [&str; 4] = ["Open_vSwitch", "Bridge", "Port", "Interface"];
const IFACE_ID: &str = "iface-id";
const ADD_ATTEMPTS: usize = 5;

/// A failure talking to the node's OVS database.
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// The database refused or could not run a request.
    #[error("OVS database: {0}")]
    Db(#[from] DbError),
    /// The bridge pods are plugged into does not exist.
    #[error("bridge {0} does not exist in the OVS database")]
    NoBridge(String),
    /// Concurrent writers kept changing the rows this port depends on.
    #[error("port {0}: concurrent changes to the same rows did not settle")]
    Contended(String),
    /// ovn-controller did not bind the port in time.
    #[error("ovs interface {name} is not ready after {after:?} (ovn-installed not set by ovn-controller)")]
    NotInstalled {
        /// The interface.
        name: String,
        /// How long we waited.
        after: Duration,
    },
}

/// The port a pod NIC gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Port and interface name: the host end of the veth.
    pub name: String,
    /// `external_ids` of the interface; `iface-id` is what ovn-controller binds by.
    pub external_ids: BTreeMap<String, String>,
    /// An OVS internal port (`type=internal`, the node's `ovn0`) rather than a veth end.
    pub internal: bool,
}

impl PortSpec {
    /// The interface's `external_ids` as upstream writes them for a pod.
    pub fn for_pod(
        name: &str,
        iface_id: &str,
        pod: &str,
        namespace: &str,
        netns: &str,
        ips: &str,
    ) -> PortSpec {
        let mut ids = BTreeMap::from([
            (IFACE_ID.to_string(), iface_id.to_string()),
            ("vendor".to_string(), "kube-ovn".to_string()),
            ("pod_name".to_string(), pod.to_string()),
            ("pod_namespace".to_string(), namespace.to_string()),
            ("pod_netns".to_string(), netns.to_string()),
        ]);
        if !ips.is_empty() {
            ids.insert("ip".into(), ips.to_string());
        }
        PortSpec {
            name: name.to_string(),
            external_ids: ids,
            internal: false,
        }
    }

    /// The node's internal port on the join switch (`ovn0`): `iface-id` is the node's logical
    /// port (`node-<node>`), `ip` its join addresses, as upstream's `configureNodeNic` writes.
    pub fn node_nic(name: &str, iface_id: &str, ips: &str) -> PortSpec {
        PortSpec {
            name: name.to_string(),
            external_ids: BTreeMap::from([
                (IFACE_ID.to_string(), iface_id.to_string()),
                ("ip".to_string(), ips.to_string()),
            ]),
            internal: true,
        }
    }

    fn iface_id(&self) -> &str {
        self.external_ids.get(IFACE_ID).map_or("", String::as_str)
    }
}

fn uuid_row(u: Uuid) -> Row {
    Row::from([("_uuid", Datum::scalar(Atom::Uuid(u)))])
}

/// Fails the transaction unless the rows matching `conditions` are exactly `uuids`.
fn guard(table: &str, conditions: Vec<Condition>, uuids: &[Uuid]) -> Operation {
    Operation::Wait {
        table: table.to_string(),
        conditions,
        columns: vec!["_uuid".into()],
        until_equal: true,
        rows: uuids.iter().copied().map(uuid_row).collect(),
        timeout: Some(Duration::ZERO),
    }
}

fn iface_id_condition(iface_id: &str) -> Condition {
    Condition::includes("external_ids", Datum::map([(IFACE_ID, iface_id)]))
}

fn str_col<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col)?.as_atom()?.as_str()
}

/// Ports whose interface carries any of `iface_uuids`.
fn ports_of(cache: &CacheData, iface_uuids: &[Uuid]) -> Vec<Uuid> {
    let Some(ports) = cache.table("Port") else {
        return Vec::new();
    };
    ports
        .iter()
        .filter(|(_, row)| {
            row.get("interfaces")
                .and_then(Datum::as_set)
                .is_some_and(|s| {
                    s.iter()
                        .any(|a| a.as_uuid().is_some_and(|u| iface_uuids.contains(&u)))
                })
        })
        .map(|(u, _)| *u)
        .collect()
}

fn interfaces_where(cache: &CacheData, pred: impl Fn(&Row) -> bool) -> Vec<Uuid> {
    cache
        .table("Interface")
        .map(|t| t.iter().filter(|(_, r)| pred(r)).map(|(u, _)| *u).collect())
        .unwrap_or_default()
}

/// Plans plugging `spec` into `bridge`: stale ports with the same `iface-id` (upstream's
/// `CleanDuplicatePort`) or the same name are removed and the new port added, guarded so that a
/// concurrent change to any of those rows aborts the transaction instead of racing it.
pub fn plan_add_port(
    cache: &CacheData,
    bridge: &str,
    spec: &PortSpec,
) -> Result<Transaction, OvsError> {
    let bridge_exists = cache
        .table("Bridge")
        .is_some_and(|t| t.by_name(bridge).next().is_some());
    if !bridge_exists {
        return Err(OvsError::NoBridge(bridge.to_string()));
    }
    let iface_id = spec.iface_id();
    let same_id = interfaces_where(cache, |r| {
        r.get("external_ids")
            .and_then(|d| d.map_get(IFACE_ID))
            .and_then(Atom::as_str)
            == Some(iface_id)
    });
    let same_name = interfaces_where(cache, |r| str_col(r, "name") == Some(spec.name.as_str()));
    let named_ports: Vec<Uuid> = cache
        .table("Port")
        .map(|t| t.by_name(&spec.name).map(|(u, _)| *u).collect())
        .unwrap_or_default();
    let mut stale: Vec<Uuid> = ports_of(cache, &same_id);
    stale.extend(ports_of(cache, &same_name));
    stale.extend(named_ports.iter().copied());
    stale.sort();
    stale.dedup();

    let mut txn = Transaction::new(DB);
    txn.push(guard(
        "Interface",
        vec![iface_id_condition(iface_id)],
        &same_id,
    ));
    txn.push(guard(
        "Interface",
        vec![Condition::eq("name", spec.name.as_str())],
        &same_name,
    ));
    txn.push(guard(
        "Port",
        vec![Condition::eq("name", spec.name.as_str())],
        &named_ports,
    ));
    for port in &stale {
        let set = Datum::set([Atom::Uuid(*port)]);
        txn.mutate(
            "Bridge",
            vec![Condition::includes("ports", set.clone())],
            vec![Mutation::delete("ports", set)],
        );
    }
    let mut iface_row = Row::from([
        ("name", Datum::scalar(spec.name.as_str())),
        (
            "external_ids",
            Datum::map(
                spec.external_ids
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
        ),
    ]);
    if spec.internal {
        iface_row.insert("type", Datum::scalar("internal"));
    }
    let iface = txn.insert("Interface", iface_row);
    let port = txn.insert(
        "Port",
        Row::from([
            ("name", Datum::scalar(spec.name.as_str())),
            ("interfaces", Datum::set([Atom::NamedUuid(iface)])),
        ]),
    );
    txn.mutate(
        "Bridge",
        vec![Condition::eq("name", bridge)],
        vec![Mutation::insert(
            "ports",
            Datum::set([Atom::NamedUuid(port)]),
        )],
    );
    txn.comment(format!("kube-ovn-daemon: add port {}", spec.name));
    Ok(txn)
}

/// Plans removing every port whose interface is called `name` from whichever bridge has it
/// (`ovs-vsctl --if-exists --with-iface del-port`); `None` when there is nothing to remove.
pub fn plan_del_port(cache: &CacheData, name: &str) -> Option<Transaction> {
    let ifaces = interfaces_where(cache, |r| str_col(r, "name") == Some(name));
    let mut ports = ports_of(cache, &ifaces);
    if let Some(t) = cache.table("Port") {
        ports.extend(t.by_name(name).map(|(u, _)| *u));
    }
    ports.sort();
    ports.dedup();
    if ports.is_empty() {
        return None;
    }
    let mut txn = Transaction::new(DB);
    for port in ports {
        let set = Datum::set([Atom::Uuid(port)]);
        txn.mutate(
            "Bridge",
            vec![Condition::includes("ports", set.clone())],
            vec![Mutation::delete("ports", set)],
        );
    }
    txn.comment(format!("kube-ovn-daemon: delete port {name}"));
    Some(txn)
}

/// Whether `bridge` already has a port with exactly `spec`'s interface: same name, type and
/// `external_ids` values (ovn-controller's own keys such as `ovn-installed` aside), so
/// re-applying the spec can leave it alone instead of replacing a working port.
pub fn has_port(cache: &CacheData, bridge: &str, spec: &PortSpec) -> bool {
    let wanted_type = if spec.internal { "internal" } else { "" };
    let ifaces = interfaces_where(cache, |r| {
        str_col(r, "name") == Some(spec.name.as_str())
            && str_col(r, "type").unwrap_or("") == wanted_type
            && spec.external_ids.iter().all(|(k, v)| {
                r.get("external_ids")
                    .and_then(|d| d.map_get(k))
                    .and_then(Atom::as_str)
                    == Some(v.as_str())
            })
    });
    let ports = ports_of(cache, &ifaces);
    cache.table("Bridge").is_some_and(|t| {
        t.by_name(bridge).any(|(_, r)| {
            r.get("ports").and_then(Datum::as_set).is_some_and(|s| {
                s.iter()
                    .any(|a| a.as_uuid().is_some_and(|u| ports.contains(&u)))
            })
        })
    })
}

/// Interface `name` as plugged into a bridge: what a CHECK verifies on the OVS side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plugged {
    /// Its `external_ids:iface-id` (empty when unset).
    pub iface_id: String,
    /// Whether ovn-controller has bound it (`ovn-installed=true`).
    pub installed: bool,
}

/// Interface `name`, when a port of `bridge` holds it.
pub fn plugged(cache: &CacheData, bridge: &str, name: &str) -> Option<Plugged> {
    let ifaces = interfaces_where(cache, |r| str_col(r, "name") == Some(name));
    let ports = ports_of(cache, &ifaces);
    let on_bridge = cache.table("Bridge").is_some_and(|t| {
        t.by_name(bridge).any(|(_, r)| {
            r.get("ports").and_then(Datum::as_set).is_some_and(|s| {
                s.iter()
                    .any(|a| a.as_uuid().is_some_and(|u| ports.contains(&u)))
            })
        })
    });
    if !on_bridge {
        return None;
    }
    let row = cache.table("Interface")?.by_name(name).next()?.1;
    let id = |key: &str| {
        row.get("external_ids")
            .and_then(|d| d.map_get(key))
            .and_then(Atom::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(Plugged {
        iface_id: id(IFACE_ID),
        installed: id("ovn-installed") == "true",
    })
}

/// The chassis name ovn-controller registers: `Open_vSwitch` `external_ids:system-id`.
pub fn system_id(cache: &CacheData) -> Option<String> {
    root_external_id(cache, "system-id")
}

/// `Open_vSwitch` `external_ids:<key>`, if set.
pub fn root_external_id(cache: &CacheData, key: &str) -> Option<String> {
    cache.table("Open_vSwitch")?.iter().find_map(|(_, r)| {
        r.get("external_ids")?
            .map_get(key)?
            .as_str()
            .map(str::to_string)
    })
}

/// Plans setting `external_ids` keys of the `Open_vSwitch` row (`ovs-vsctl set open .
/// external-ids:k=v`), other keys untouched; `None` when every key already has its value.
pub fn plan_root_external_ids(cache: &CacheData, pairs: &[(&str, String)]) -> Option<Transaction> {
    let changed: Vec<&(&str, String)> = pairs
        .iter()
        .filter(|(k, v)| root_external_id(cache, k).as_deref() != Some(v.as_str()))
        .collect();
    if changed.is_empty() {
        return None;
    }
    let mut txn = Transaction::new(DB);
    txn.mutate(
        "Open_vSwitch",
        vec![],
        vec![
            Mutation::delete("external_ids", Datum::set(changed.iter().map(|(k, _)| *k))),
            Mutation::insert(
                "external_ids",
                Datum::map(changed.iter().map(|(k, v)| (*k, v.as_str()))),
            ),
        ],
    );
    let keys: Vec<&str> = changed.iter().map(|(k, _)| *k).collect();
    txn.comment(format!("kube-ovn-daemon: set {}", keys.join(", ")));
    Some(txn)
}

/// The network namespace (`external_ids:pod_netns`) of the interface whose `iface-id` is
/// `iface_id`: where a pod's NIC lives.
pub fn pod_netns(cache: &CacheData, iface_id: &str) -> Option<String> {
    cache
        .table("Interface")?
        .by_external_id(IFACE_ID, iface_id)
        .find_map(|(_, r)| {
            r.get("external_ids")?
                .map_get("pod_netns")?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
}

/// Whether the interface called `name` has been bound by ovn-controller.
pub fn is_installed(cache: &CacheData, name: &str) -> bool {
    cache.table("Interface").is_some_and(|t| {
        t.by_name(name).any(|(_, r)| {
            r.get("external_ids")
                .and_then(|d| d.map_get("ovn-installed"))
                .and_then(Atom::as_str)
                == Some("true")
        })
    })
}

/// The node's Open_vSwitch database, replicated.
#[derive(Clone)]
pub struct Ovs {
    replica: Replica,
    metrics: Option<OvsClientMetrics>,
}

impl Ovs {
    /// Connects to `remote` (e.g. `unix:/run/openvswitch/db.sock`) and waits for the first sync.
    pub async fn connect(remote: &str, wait: Duration) -> Result<Ovs, OvsError> {
        let remotes = Remote::parse_list(remote)?;
        let mut cfg = ReplicaConfig::new(remotes, DB);
        cfg.tables = TABLES.iter().map(|t| t.to_string()).collect();
        cfg.external_id_keys = vec![IFACE_ID.into()];
        cfg.leader_only = false;
        let replica = Replica::start(cfg, wait).await?;
        Ok(Ovs {
            replica,
            metrics: None,
        })
    }

    /// Records every transaction in `metrics` from now on (upstream's
    /// `ovs_client_request_latency_milliseconds` with `db="ovsdb"` and the ovs-vsctl command
    /// upstream would have run as `method`).
    pub fn with_metrics(mut self, metrics: OvsClientMetrics) -> Ovs {
        self.metrics = Some(metrics);
        self
    }

    async fn transact(&self, method: &str, txn: &Transaction) -> Result<(), DbError> {
        let started = std::time::Instant::now();
        let r = self.replica.transact(txn).await;
        if let Some(m) = &self.metrics {
            m.observe("ovsdb", method, r.is_ok(), started.elapsed());
        }
        r.map(drop)
    }

    /// A snapshot of the replica, for planning; not to be held across an await.
    pub(crate) fn cache(&self) -> std::sync::RwLockReadGuard<'_, CacheData> {
        self.replica.cache()
    }

    /// Runs a planned transaction, recorded as the ovs-vsctl command `method`.
    pub(crate) async fn run(&self, method: &str, txn: &Transaction) -> Result<(), OvsError> {
        Ok(self.transact(method, txn).await?)
    }

    /// Whether `bridge` uses the userspace datapath, which leaves veth TX checksums partial.
    pub fn is_userspace(&self, bridge: &str) -> bool {
        let cache = self.replica.cache();
        cache.table("Bridge").is_some_and(|t| {
            t.by_name(bridge)
                .any(|(_, r)| str_col(r, "datapath_type") == Some("netdev"))
        })
    }

    /// Plugs the port in, replacing stale ones; retries when a concurrent writer won the guard.
    pub async fn add_port(&self, bridge: &str, spec: &PortSpec) -> Result<(), OvsError> {
        for _ in 0..ADD_ATTEMPTS {
            let txn = plan_add_port(&self.replica.cache(), bridge, spec)?;
            match self.transact("add-port", &txn).await {
                Ok(_) => return Ok(()),
                Err(DbError::Transaction(e)) if e.kind == TxnErrorKind::TimedOut => {
                    tracing::debug!(port = %spec.name, "port guard failed, replanning");
                    self.settle().await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(OvsError::Contended(spec.name.clone()))
    }

    /// Plugs the port in unless an identical one is already there (see [`has_port`]).
    pub async fn ensure_port(&self, bridge: &str, spec: &PortSpec) -> Result<(), OvsError> {
        if has_port(&self.replica.cache(), bridge, spec) {
            return Ok(());
        }
        self.add_port(bridge, spec).await
    }

    /// The network namespace of the pod NIC `iface_id` (see [`pod_netns`]).
    pub fn pod_netns(&self, iface_id: &str) -> Option<String> {
        pod_netns(&self.replica.cache(), iface_id)
    }

    /// Interface `name` as plugged into `bridge` (see [`plugged`]).
    pub fn plugged(&self, bridge: &str, name: &str) -> Option<Plugged> {
        plugged(&self.replica.cache(), bridge, name)
    }

    /// The OVS `system-id` (the chassis name), once the database has one.
    pub fn system_id(&self) -> Option<String> {
        system_id(&self.replica.cache())
    }

    /// The value of `external_ids:<key>` of the `Open_vSwitch` row.
    pub fn root_external_id(&self, key: &str) -> Option<String> {
        root_external_id(&self.replica.cache(), key)
    }

    /// Sets `external_ids` keys of the `Open_vSwitch` row; returns whether anything was
    /// written (nothing is when the values are already there).
    pub async fn set_root_external_ids(&self, pairs: &[(&str, String)]) -> Result<bool, OvsError> {
        let planned = plan_root_external_ids(&self.replica.cache(), pairs);
        match planned {
            Some(txn) => {
                self.transact("set", &txn).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes the port with interface `name`; nothing to remove is success.
    pub async fn del_port(&self, name: &str) -> Result<(), OvsError> {
        let txn = plan_del_port(&self.replica.cache(), name);
        if let Some(txn) = txn {
            self.transact("del-port", &txn).await?;
        }
        Ok(())
    }

    /// Waits for ovn-controller to set `external_ids:ovn-installed="true"` on interface `name`.
    pub async fn wait_installed(&self, name: &str, limit: Duration) -> Result<(), OvsError> {
        let mut changes = self.replica.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if is_installed(&self.replica.cache(), name) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                _ => {
                    return Err(OvsError::NotInstalled {
                        name: name.to_string(),
                        after: limit,
                    })
                }
            }
        }
    }

    /// Waits briefly for the next change so a replanned transaction sees the competing write.
    async fn settle(&self) {
        let mut changes = self.replica.subscribe();
        let _ = tokio::time::timeout(Duration::from_millis(200), changes.recv()).await;
    }
}
