//! Drift: the difference between what the controller would write to the NB now and what the
//! NB holds, computed by the controller itself — every reconciler and the GC run once over the
//! live Kubernetes objects and the live NB, with NB transactions recorded instead of sent and
//! every Kubernetes write sent as a server-side dry run (`dryRun=All`). No reconcile logic is
//! copied: a row is missing, extra or different exactly when the controller would write it.
//! `kubectl ko diagnose drift` prints the findings; `--repair` sends the recorded transactions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_ovn_common::health::Exposition;
use ovsdb::schema::RefType;
use ovsdb::{
    Atom, CacheData, Condition, DatabaseSchema, Datum, Operation, Remote, Replica, ReplicaConfig,
    Row, Transaction,
};
use serde::Serialize;

use crate::config::Config;
use crate::context::NB_DB;
use crate::metrics::Metrics;

/// The NB transactions a dry run wanted, by what wrote them (`subnet ovn-default`, `pod
/// default/web port web.default`…). A reconcile that runs again replaces its entry.
#[derive(Default)]
pub struct Recorded {
    txns: Mutex<BTreeMap<String, Transaction>>,
    /// Bumped whenever an entry is new or changed: the check is done when it stays put.
    version: AtomicU64,
}

impl Recorded {
    /// Records `txn` as what `what` would write.
    pub fn record(&self, what: &str, txn: Transaction) {
        let mut txns = self.txns.lock().unwrap_or_else(|p| p.into_inner());
        if txns.get(what).is_some_and(|old| old.ops == txn.ops) {
            return;
        }
        txns.insert(what.to_string(), txn);
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn take(&self) -> BTreeMap<String, Transaction> {
        std::mem::take(&mut *self.txns.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A Kubernetes client whose every write is a server-side dry run: the API server validates
/// and answers as for a real write and persists nothing.
pub fn dry_run_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let layer = tower::util::MapRequestLayer::new(add_dry_run);
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

/// Adds `dryRun=All` to a mutating request's query.
fn add_dry_run(mut req: http::Request<kube::client::Body>) -> http::Request<kube::client::Body> {
    let reads = [http::Method::GET, http::Method::HEAD, http::Method::OPTIONS];
    if reads.contains(req.method()) {
        return req;
    }
    let uri = req.uri();
    let path = uri.path();
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{q}&dryRun=All"),
        _ => "dryRun=All".to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = format!("{path}?{query}").parse().ok();
    if let Ok(u) = http::Uri::from_parts(parts) {
        *req.uri_mut() = u;
    }
    req
}

/// How a drift check runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most the pass may take before it is reported as it stands.
    pub timeout: Duration,
    /// How long the queues must stay idle, with nothing new recorded, for the pass to be done.
    pub quiet: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(120),
            quiet: Duration::from_secs(3),
        }
    }
}

/// What a drift check found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Whether the pass went quiet before the timeout (if not, the findings may be partial).
    pub settled: bool,
    /// One entry per NB row that is missing, extra or different.
    pub rows: Vec<RowDrift>,
    /// The transactions that would repair the NB, by what writes them (not serialised).
    #[serde(skip)]
    pub transactions: Vec<(String, Transaction)>,
}

/// One row that is missing, extra or different.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowDrift {
    /// `missing`, `extra` or `different`.
    pub state: &'static str,
    /// NB table.
    pub table: String,
    /// The row's name (or match, or prefix, or UUID).
    pub row: String,
    /// Column → (actual, desired) for a different row; desired values for a missing one.
    pub columns: BTreeMap<String, ColumnDrift>,
    /// What wants the change (the reconciles' names for their writes: `pod default/web port
    /// web.default`, `node node1`…).
    pub objects: Vec<String>,
}

/// One column's actual and desired value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDrift {
    /// What the NB holds (empty for a missing row).
    pub actual: String,
    /// What the controller wants (for a mutation: `+x`/`-x`).
    pub desired: String,
}

/// Runs the controller once in dry-run mode against `kube_config`'s cluster and `config`'s
/// NB and reports what it would write.
pub async fn check(
    config: Config,
    kube_config: kube::Config,
    options: &Options,
) -> Result<Report, String> {
    let client = dry_run_client(kube_config).map_err(|e| format!("kubernetes client: {e}"))?;
    let nb = open_nb(&config).await?;
    let metrics = Metrics::new();
    let recorded = Arc::new(Recorded::default());
    let mut pass = tokio::spawn(crate::run::lead(
        config,
        client,
        metrics.clone(),
        Some(recorded.clone()),
    ));
    let deadline = Instant::now() + options.timeout;
    let mut quiet_since: Option<(u64, Instant)> = None;
    let settled = loop {
        if pass.is_finished() {
            return match (&mut pass).await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err("the controller pass ended early".to_string()),
                Err(e) => Err(format!("the controller pass failed: {e}")),
            };
        }
        let idle = metrics.ready() && !metrics.workqueue.busy();
        let version = recorded.version();
        quiet_since = match quiet_since {
            Some((v, since)) if idle && v == version => {
                if since.elapsed() >= options.quiet {
                    break true;
                }
                Some((v, since))
            }
            _ if idle => Some((version, Instant::now())),
            _ => None,
        };
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    pass.abort();
    let transactions: Vec<(String, Transaction)> = recorded.take().into_iter().collect();
    let schema = DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json)
        .map_err(|e| format!("the shipped NB schema: {e}"))?;
    let cache = nb.cache();
    let mut rows: Vec<RowDrift> = Vec::new();
    for (what, txn) in &transactions {
        for mut r in describe(&cache, &schema, txn) {
            match rows.iter_mut().find(|o| {
                (o.state, &o.table, &o.row, &o.columns) == (r.state, &r.table, &r.row, &r.columns)
            }) {
                Some(same) => same.objects.push(what.clone()),
                None => {
                    r.objects.push(what.clone());
                    rows.push(r);
                }
            }
        }
    }
    Ok(Report {
        settled,
        rows,
        transactions,
    })
}

/// Sends the report's transactions (what the controller would have written), in order.
pub async fn repair(config: &Config, report: &Report) -> Result<usize, String> {
    let nb = open_nb(config).await?;
    for (what, txn) in &report.transactions {
        nb.transact(txn)
            .await
            .map_err(|e| format!("repairing {what}: {e}"))?;
    }
    Ok(report.transactions.len())
}

/// A replica of the NB `config` names, with the tables kube-ovn reads (what the drift pass
/// compares against, for checks that read the NB as it is).
pub async fn open_nb(config: &Config) -> Result<Replica, String> {
    let remotes = Remote::parse_list(&crate::run::normalize_remotes(&config.ovn_nb_addr))
        .map_err(|e| format!("--ovn-nb-addr: {e}"))?;
    let mut rc = ReplicaConfig::new(remotes, NB_DB);
    rc.tables = kube_ovn_nb::MONITORED_TABLES
        .iter()
        .map(|t| t.to_string())
        .collect();
    Replica::start(rc, Duration::from_secs(config.ovsdb_con_timeout.max(10)))
        .await
        .map_err(|e| format!("connecting to OVN NB {}: {e}", config.ovn_nb_addr))
}

/// The rows `txn` would touch, described against the NB as it is. A new row's attachment to
/// its parents (a mutate inserting the row's named UUID) is part of the missing row; removing a
/// row from the strong reference that keeps it (a switch's `ports`) is that row being extra.
fn describe(cache: &CacheData, schema: &DatabaseSchema, txn: &Transaction) -> Vec<RowDrift> {
    let row_drift = |state, table: &str, row: String, columns| RowDrift {
        state,
        table: table.to_string(),
        row,
        columns,
        objects: Vec::new(),
    };
    let mut out: Vec<RowDrift> = Vec::new();
    for op in &txn.ops {
        match op {
            Operation::Insert { table, row, .. } => {
                let columns = row
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), column(String::new(), text(v))))
                    .collect();
                let id = identity(row).unwrap_or_else(|| "(new row)".to_string());
                out.push(row_drift("missing", table, id, columns));
            }
            Operation::Delete { table, conditions } => {
                let id = target(cache, table, conditions);
                out.push(row_drift("extra", table, id, BTreeMap::new()));
            }
            Operation::Update {
                table,
                conditions,
                row,
            } => {
                let actual = target_row(cache, table, conditions);
                let columns: BTreeMap<String, ColumnDrift> = row
                    .iter()
                    .map(|(k, v)| {
                        let now = actual.as_ref().and_then(|r| r.get(k)).map(text);
                        (k.to_string(), column(now.unwrap_or_default(), text(v)))
                    })
                    .filter(|(_, c)| c.actual != c.desired)
                    .collect();
                if !columns.is_empty() {
                    let id = target(cache, table, conditions);
                    out.push(row_drift("different", table, id, columns));
                }
            }
            Operation::Mutate {
                table,
                conditions,
                mutations,
            } => {
                let actual = target_row(cache, table, conditions);
                let mut columns = BTreeMap::new();
                for m in mutations {
                    let atoms: Vec<&Atom> = m
                        .value
                        .as_set()
                        .map(|s| s.iter().collect())
                        .unwrap_or_default();
                    if m.mutator == "insert"
                        && !atoms.is_empty()
                        && atoms.iter().all(|a| matches!(a, Atom::NamedUuid(_)))
                    {
                        continue;
                    }
                    if m.mutator == "delete" {
                        if let Some(target_table) = owned_children(schema, table, &m.column) {
                            for a in &atoms {
                                let Some(uuid) = a.as_uuid() else { continue };
                                let id = cache
                                    .table(&target_table)
                                    .and_then(|t| t.get(&uuid))
                                    .and_then(|r| identity(r))
                                    .unwrap_or_else(|| uuid.to_string());
                                out.push(row_drift("extra", &target_table, id, BTreeMap::new()));
                            }
                            continue;
                        }
                    }
                    let now = actual
                        .as_ref()
                        .and_then(|r| r.get(m.column.as_str()))
                        .map(text);
                    let sign = if m.mutator == "delete" { "-" } else { "+" };
                    columns.insert(
                        m.column.clone(),
                        column(now.unwrap_or_default(), format!("{sign}{}", text(&m.value))),
                    );
                }
                if !columns.is_empty() {
                    let id = target(cache, table, conditions);
                    out.push(row_drift("different", table, id, columns));
                }
            }
            _ => {}
        }
    }
    out
}

/// The table whose rows `table.column` holds by strong reference when those rows live only
/// through it (not a root table): removing a reference there deletes the row.
fn owned_children(schema: &DatabaseSchema, table: &str, column: &str) -> Option<String> {
    let key = &schema.tables.get(table)?.columns.get(column)?.ty.key;
    let target = key.ref_table.as_ref()?;
    let root = schema.tables.get(target)?.is_root;
    (key.ref_type == RefType::Strong && !root).then(|| target.clone())
}

fn column(actual: String, desired: String) -> ColumnDrift {
    ColumnDrift { actual, desired }
}

/// A datum as text, as `ovn-nbctl list` prints it: strings bare, sets `[a, b]`, maps
/// `{k=v, …}`.
fn text(d: &Datum) -> String {
    let atom = |a: &Atom| match a.as_str() {
        Some(s) => s.to_string(),
        None => a.to_string(),
    };
    if let Some(a) = d.as_atom() {
        return atom(a);
    }
    if let Some(m) = d.as_map() {
        let pairs: Vec<String> = m
            .iter()
            .map(|(k, v)| format!("{}={}", atom(k), atom(v)))
            .collect();
        return format!("{{{}}}", pairs.join(", "));
    }
    let items: Vec<String> = d
        .as_set()
        .map(|s| s.iter().map(atom).collect())
        .unwrap_or_default();
    format!("[{}]", items.join(", "))
}

/// The row a condition list selects (by `_uuid`), if it is in the cache.
fn target_row(cache: &CacheData, table: &str, conditions: &[Condition]) -> Option<Arc<Row>> {
    let uuid = conditions
        .iter()
        .find(|c| c.column == "_uuid" && c.function == "==")
        .and_then(|c| c.value.as_atom()?.as_uuid())?;
    cache.table(table)?.get(&uuid).cloned()
}

/// A readable name for the row a condition list selects.
fn target(cache: &CacheData, table: &str, conditions: &[Condition]) -> String {
    if let Some(id) = target_row(cache, table, conditions).and_then(|r| identity(&r)) {
        return id;
    }
    conditions
        .iter()
        .map(|c| format!("{} {} {}", c.column, c.function, c.value))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's name, or its match (policies, ACLs), or its prefix (static routes).
fn identity(row: &Row) -> Option<String> {
    ["name", "match", "ip_prefix"]
        .into_iter()
        .filter_map(|c| row.get(c))
        .map(text)
        .find(|s| !s.is_empty() && s != "[]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_become_dry_runs_and_reads_stay() {
        let req = |method: http::Method, uri: &str| {
            let mut r = http::Request::new(kube::client::Body::empty());
            *r.method_mut() = method;
            *r.uri_mut() = uri.parse().unwrap();
            add_dry_run(r).uri().to_string()
        };
        assert_eq!(
            req(
                http::Method::PATCH,
                "https://k/api/v1/namespaces/a/pods/p?fieldManager=x"
            ),
            "https://k/api/v1/namespaces/a/pods/p?fieldManager=x&dryRun=All"
        );
        assert_eq!(
            req(http::Method::POST, "https://k/api/v1/namespaces/a/events"),
            "https://k/api/v1/namespaces/a/events?dryRun=All"
        );
        assert_eq!(
            req(http::Method::GET, "https://k/api/v1/pods?watch=true"),
            "https://k/api/v1/pods?watch=true"
        );
    }

    #[test]
    fn a_rerun_with_the_same_plan_is_not_news() {
        let r = Recorded::default();
        let mut t = Transaction::new(NB_DB);
        t.ops.push(Operation::Comment("x".into()));
        r.record("a", t.clone());
        let v = r.version();
        r.record("a", t.clone());
        assert_eq!(r.version(), v);
        t.ops.push(Operation::Comment("y".into()));
        r.record("a", t);
        assert_eq!(r.version(), v + 1);
        assert_eq!(r.take().len(), 1);
    }
}
