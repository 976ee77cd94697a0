//! One round of the leader checker against the local servers, its peers and the API: each
//! step bounded by [`TIMEOUT`], its failure logged with upstream's words and the round going on
//! (a missed round is repeated `--probeInterval` seconds later), except a second leader seen
//! for [`DUPLICATE_ROUNDS`] rounds, which ends the process.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams};
use ovsdb::connection::{Connection, Timeouts};
use ovsdb::transport::Remote;
use serde_json::{json, Value};
use tracing::{debug, error, info, warn};

use super::RUN_DIR;
use super::{labels, remote_at, Config, Database, Duplicates, Mode, Roles, DUPLICATE_ROUNDS};
use crate::unixctl;

/// How long any one request (OVSDB, control socket, API) may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dial of the northd leader's raft port may take (upstream's).
const NORTHD_DIAL: Duration = Duration::from_secs(3);
/// Failed dials of the northd endpoint tolerated before the lock is released (upstream's).
const NORTHD_DIAL_FAILURES: u32 = 3;
/// Port the northd endpoint is dialled on: the NB raft port of the member running it.
const NB_RAFT_PORT: u16 = 6643;
/// The lock the active ovn-northd holds in the SB.
const NORTHD_LOCK: &str = "ovn_northd";
/// How long a steal holds the lock before letting go (`ovsdb-client -t 1 steal`).
const STEAL_HOLD: Duration = Duration::from_secs(1);

/// Why the checker stops.
#[derive(Debug)]
pub struct Fatal(pub String);

/// The checker's state between rounds.
pub struct Checker {
    config: Config,
    mode: Mode,
    peers: Vec<String>,
    pods: Api<Pod>,
    client: kube::Client,
    pod_name: String,
    namespace: String,
    pod_ip: String,
    duplicates: Duplicates,
    northd_dial_failures: u32,
}

impl Checker {
    /// A checker for the pod `pod_name` of `namespace` (the downward API's `POD_NAME` and
    /// `POD_NAMESPACE`, which upstream requires too).
    pub fn new(
        config: Config,
        client: kube::Client,
        pod_name: String,
        namespace: String,
    ) -> Result<Checker, String> {
        if pod_name.is_empty() || namespace.is_empty() {
            return Err("env variables POD_NAME and POD_NAMESPACE must be set".into());
        }
        Ok(Checker {
            mode: config.mode(),
            peers: config.peers(),
            pod_ip: config.local_address(),
            pods: Api::namespaced(client.clone(), &namespace),
            client,
            pod_name,
            namespace,
            config,
            duplicates: Duplicates::default(),
            northd_dial_failures: 0,
        })
    }

    /// The mode this checker runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Rounds every `--probeInterval` seconds (the first after one interval, as upstream) until
    /// `stop` completes or a round finds a second leader for too long.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), Fatal> {
        let interval = Duration::from_secs(self.config.probe_interval.max(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
            self.round().await?;
        }
    }

    /// One round.
    pub async fn round(&mut self) -> Result<(), Fatal> {
        match self.mode {
            Mode::Ic => self.ic_round().await,
            Mode::Single | Mode::Raft => {
                if let Err(e) = alive(Path::new(RUN_DIR)) {
                    error!("ovn is not alive: {e}");
                    return Ok(());
                }
                self.ovn_round().await
            }
        }
    }

    async fn ovn_round(&mut self) -> Result<(), Fatal> {
        let mut roles = Roles::default();
        if self.mode == Mode::Raft {
            for db in [Database::Nb, Database::Sb] {
                match local_leader(db).await {
                    Ok(true) => roles.leads.push(db),
                    Ok(false) => {}
                    Err(e) => error!("{e}"),
                }
            }
            for db in [Database::Nb, Database::Sb] {
                self.check_duplicate(db, roles.leads.contains(&db), true)
                    .await?;
            }
        }
        roles.northd_active = northd_active().await;
        if !self.apply(&roles).await {
            return Ok(());
        }
        if self.mode == Mode::Raft
            && roles.leads.contains(&Database::Sb)
            && self.northd_service_exists().await
            && !self.northd_endpoint_alive().await
        {
            warn!("no available northd leader, try to release the lock");
            steal_northd_lock().await;
        }
        if self.config.enable_compact {
            compact(Database::Nb).await;
            compact(Database::Sb).await;
        }
        Ok(())
    }

    async fn ic_round(&mut self) -> Result<(), Fatal> {
        let mut roles = Roles::default();
        for db in [Database::IcNb, Database::IcSb] {
            match local_leader(db).await {
                Ok(true) => roles.leads.push(db),
                Ok(false) => {}
                Err(e) => error!("{e}"),
            }
        }
        if !self.apply(&roles).await {
            return Ok(());
        }
        for db in [Database::IcNb, Database::IcSb] {
            self.check_duplicate(db, roles.leads.contains(&db), false)
                .await?;
        }
        Ok(())
    }

    /// Labels the pod with `roles`, read first so an unchanged pod costs no write (and labels
    /// someone else changed are put back); false when the pod could not be read or patched.
    async fn apply(&mut self, roles: &Roles) -> bool {
        let want = labels(self.mode, roles);
        match tokio::time::timeout(TIMEOUT, self.pods.get(&self.pod_name)).await {
            Ok(Ok(pod)) if carries(pod.metadata.labels.as_ref(), &want) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                error!(
                    "failed to get pod {}/{}: {e}",
                    self.namespace, self.pod_name
                );
                return false;
            }
            Err(_) => {
                error!(
                    "failed to get pod {}/{}: no answer within {TIMEOUT:?}",
                    self.namespace, self.pod_name
                );
                return false;
            }
        }
        let body = json!({"metadata": {"labels": want}});
        let (params, patch) = (PatchParams::default(), Patch::Merge(&body));
        let call = self.pods.patch(&self.pod_name, &params, &patch);
        match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(_)) => {
                info!(
                    "labelled pod {}/{}: {}",
                    self.namespace,
                    self.pod_name,
                    want.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                true
            }
            Ok(Err(e)) => {
                error!(
                    "failed to patch labels for pod {}/{}: {e}",
                    self.namespace, self.pod_name
                );
                false
            }
            Err(_) => {
                error!(
                    "failed to patch labels for pod {}/{}: no answer within {TIMEOUT:?}",
                    self.namespace, self.pod_name
                );
                false
            }
        }
    }

    /// Asks every peer whether it leads `db` when this member does; `patient`: tolerate
    /// [`DUPLICATE_ROUNDS`] - 1 rounds of it (NB/SB, while raft converges), else none (IC).
    async fn check_duplicate(
        &mut self,
        db: Database,
        leads: bool,
        patient: bool,
    ) -> Result<(), Fatal> {
        if !leads {
            self.duplicates.observe(db, None);
            return Ok(());
        }
        let mut other = None;
        let mut failed = false;
        for peer in &self.peers {
            match ask_leader(&remote_at(peer, db), db).await {
                Ok(true) => {
                    other = Some(peer.clone());
                    break;
                }
                Ok(false) => {}
                Err(e) => {
                    error!("{e}");
                    failed = true;
                }
            }
        }
        if other.is_none() && failed {
            // Nobody else claimed it, but not everybody answered: no evidence either way.
            return Ok(());
        }
        let Some(count) = self.duplicates.observe(db, other.as_deref()) else {
            return Ok(());
        };
        let at = other.unwrap_or_default();
        let limit = if patient { DUPLICATE_ROUNDS } else { 1 };
        if count < limit {
            warn!(
                "found another {} leader at {at} ({count}/{limit} consecutive observations), waiting for raft convergence",
                db.label().trim_end_matches("-leader")
            );
            return Ok(());
        }
        Err(Fatal(format!(
            "found another {} leader at {at} for {count} consecutive observations, exiting process to restart",
            db.label().trim_end_matches("-leader")
        )))
    }

    async fn northd_service_exists(&self) -> bool {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        match tokio::time::timeout(TIMEOUT, services.get_opt("ovn-northd")).await {
            Ok(Ok(Some(_))) => true,
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                error!("get svc ovn-northd namespace {} error {e}", self.namespace);
                false
            }
            Err(_) => {
                error!(
                    "get svc ovn-northd namespace {}: no answer within {TIMEOUT:?}",
                    self.namespace
                );
                false
            }
        }
    }

    /// Whether a ready address of the `ovn-northd` Service (of this pod's address family)
    /// accepts a connection on the NB raft port; a failure counts only from the third in a row.
    async fn northd_endpoint_alive(&mut self) -> bool {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = ListParams::default().labels("kubernetes.io/service-name=ovn-northd");
        let list = match tokio::time::timeout(TIMEOUT, slices.list(&params)).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                error!(
                    "failed to list endpoint slices for service {}/ovn-northd: {e}",
                    self.namespace
                );
                return false;
            }
            Err(_) => {
                error!("failed to list endpoint slices for service {}/ovn-northd: no answer within {TIMEOUT:?}", self.namespace);
                return false;
            }
        };
        let family = if self.pod_ip.contains(':') {
            "IPv6"
        } else {
            "IPv4"
        };
        for address in ready_addresses(&list.items, family) {
            debug!("found address {address} in endpoint slices of service ovn-northd, checking availability");
            if self.dial_northd(&address).await {
                return true;
            }
        }
        false
    }

    async fn dial_northd(&mut self, address: &str) -> bool {
        let Ok(ip) = address.parse::<IpAddr>() else {
            return false;
        };
        let to = SocketAddr::new(ip, NB_RAFT_PORT);
        match tokio::time::timeout(NORTHD_DIAL, tokio::net::TcpStream::connect(to)).await {
            Ok(Ok(_)) => {
                self.northd_dial_failures = 0;
                true
            }
            Ok(Err(e)) => self.dial_failed(address, &e.to_string()),
            Err(_) => self.dial_failed(address, "timed out"),
        }
    }

    fn dial_failed(&mut self, address: &str, why: &str) -> bool {
        error!("failed to connect to northd leader {address}, err: {why}");
        self.northd_dial_failures += 1;
        self.northd_dial_failures < NORTHD_DIAL_FAILURES
    }
}

/// Whether `current` labels already hold every label of `want` with its value.
pub fn carries(
    current: Option<&BTreeMap<String, String>>,
    want: &BTreeMap<String, String>,
) -> bool {
    want.iter()
        .all(|(k, v)| current.and_then(|c| c.get(k)) == Some(v))
}

/// The addresses of ready endpoints of `family` (`IPv4`/`IPv6`) in `slices`.
pub fn ready_addresses(slices: &[EndpointSlice], family: &str) -> Vec<String> {
    slices
        .iter()
        .filter(|s| s.address_type == family)
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter().cloned())
        .collect()
}

/// Whether northd and both databases run: each pid file names a live process (what
/// `ovn-ctl status_northd|status_ovnnb|status_ovnsb` checks).
pub fn alive(run_dir: &Path) -> Result<(), String> {
    for (what, file) in [
        ("northd", "ovn-northd.pid"),
        ("ovnnb", "ovnnb_db.pid"),
        ("ovnsb", "ovnsb_db.pid"),
    ] {
        let path = run_dir.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{what}: {}: {e}", path.display()))?;
        let pid: u32 = text
            .trim()
            .parse()
            .map_err(|_| format!("{what}: {}: not a process id", path.display()))?;
        if !Path::new("/proc").join(pid.to_string()).exists() {
            return Err(format!("{what} (pid {pid}) is not running"));
        }
    }
    Ok(())
}

/// Whether the local server of `db` leads it (a standalone server always does).
async fn local_leader(db: Database) -> Result<bool, String> {
    ask_leader(&format!("unix:{}", db.socket().display()), db).await
}

/// Asks the server at `remote` whether it leads `db` (`_Server.Database.leader`).
pub async fn ask_leader(remote: &str, db: Database) -> Result<bool, String> {
    let fail = |e: String| {
        format!(
            "failed to query leader info from ovsdb-server {remote} for database {}: {e}",
            db.name()
        )
    };
    let parsed = Remote::parse(remote).map_err(|e| fail(e.to_string()))?;
    let timeouts = Timeouts {
        connect: TIMEOUT,
        request: TIMEOUT,
        probe_interval: TIMEOUT,
    };
    let exchange = async {
        let (conn, _notes) = Connection::open(&parsed, None, &timeouts)
            .await
            .map_err(|e| e.to_string())?;
        let select = json!(["_Server", {"op": "select", "table": "Database",
            "where": [["name", "==", db.name()]], "columns": ["leader"]}]);
        let reply = conn.request("transact", select).await;
        conn.close();
        reply.map_err(|e| e.to_string())
    };
    let reply = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {TIMEOUT:?}")))?
        .map_err(fail)?;
    leader_of(&reply).map_err(fail)
}

/// The `leader` column of the one row a `_Server` select returns.
pub fn leader_of(reply: &Value) -> Result<bool, String> {
    let result = reply.get(0).ok_or("empty reply")?;
    if let Some(e) = result.get("error") {
        return Err(e.to_string());
    }
    let rows = result["rows"].as_array().ok_or("no rows in the reply")?;
    match rows.as_slice() {
        [row] => row["leader"]
            .as_bool()
            .ok_or_else(|| format!("unexpected data format for leader info: {}", row["leader"])),
        [] => Err("no rows returned".into()),
        more => Err(format!("unexpected number of rows: {}", more.len())),
    }
}

/// Whether this member's ovn-northd is the active one (`ovn-appctl -t ovn-northd status`).
async fn northd_active() -> bool {
    match unixctl::call_target(Path::new(RUN_DIR), "ovn-northd", "status", &[], TIMEOUT).await {
        Ok(out) => {
            debug!("checkNorthdActive: output {out}");
            out.contains("active") && !out.contains("standby")
        }
        Err(e) => {
            error!("checkNorthdActive execute err {e}");
            false
        }
    }
}

/// Compacts the local server's database (a duplicate snapshot is not an error).
async fn compact(db: Database) {
    match unixctl::call(&db.control(), "ovsdb-server/compact", &[], TIMEOUT).await {
        Ok(out) if !out.trim().is_empty() => debug!("compact {} database: {out}", db.name()),
        Ok(_) => {}
        Err(e) if e.contains("not storing a duplicate snapshot") => {}
        Err(e) => error!("failed to compact {} database: {e}", db.name()),
    }
}

/// Takes the `ovn_northd` lock from whoever holds it on the local SB server and lets it go a
/// second later, so a live northd can acquire it (what `ovsdb-client -t 1 steal` does).
async fn steal_northd_lock() {
    let remote = match Remote::parse(&format!("unix:{}", Database::Sb.socket().display())) {
        Ok(r) => r,
        Err(e) => {
            error!("stealLock err {e}");
            return;
        }
    };
    let timeouts = Timeouts {
        connect: TIMEOUT,
        request: TIMEOUT,
        probe_interval: TIMEOUT,
    };
    let steal = async {
        let (conn, _notes) = Connection::open(&remote, None, &timeouts)
            .await
            .map_err(|e| e.to_string())?;
        let reply = conn.request("steal", json!([NORTHD_LOCK])).await;
        tokio::time::sleep(STEAL_HOLD).await;
        conn.close();
        reply.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(TIMEOUT + STEAL_HOLD, steal).await {
        Ok(Ok(reply)) => debug!("stealLock: {reply}"),
        Ok(Err(e)) => error!("stealLock err {e}"),
        Err(_) => error!("stealLock err: no answer within {TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_column_is_read_from_one_row() {
        assert_eq!(leader_of(&json!([{"rows": [{"leader": true}]}])), Ok(true));
        assert_eq!(
            leader_of(&json!([{"rows": [{"leader": false}]}])),
            Ok(false)
        );
        assert!(leader_of(&json!([{"rows": []}]))
            .unwrap_err()
            .contains("no rows"));
        assert!(leader_of(&json!([{"rows": [{}, {}]}]))
            .unwrap_err()
            .contains("number of rows"));
        assert!(leader_of(&json!([{"error": "unknown database"}]))
            .unwrap_err()
            .contains("unknown database"));
        assert!(leader_of(&json!([{"rows": [{"leader": "yes"}]}])).is_err());
    }

    #[test]
    fn a_pod_carrying_the_labels_needs_no_patch() {
        let want = BTreeMap::from([("ovn-nb-leader".to_string(), "true".to_string())]);
        let mut current = BTreeMap::from([("app".to_string(), "ovn-central".to_string())]);
        assert!(!carries(None, &want));
        assert!(!carries(Some(&current), &want));
        current.insert("ovn-nb-leader".into(), "false".into());
        assert!(!carries(Some(&current), &want));
        current.insert("ovn-nb-leader".into(), "true".into());
        assert!(carries(Some(&current), &want));
    }

    #[test]
    fn only_ready_endpoints_of_the_family_are_dialled() {
        let slices: Vec<EndpointSlice> = serde_json::from_value(json!([
            {"metadata": {"name": "a"}, "addressType": "IPv4", "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]}]},
            {"metadata": {"name": "b"}, "addressType": "IPv6", "endpoints": [
                {"addresses": ["fd00::1"], "conditions": {"ready": true}}]}
        ]))
        .unwrap();
        assert_eq!(ready_addresses(&slices, "IPv4"), ["10.0.0.1", "10.0.0.3"]);
        assert_eq!(ready_addresses(&slices, "IPv6"), ["fd00::1"]);
    }

    #[test]
    fn a_member_is_alive_when_every_pid_file_names_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id().to_string();
        for f in ["ovn-northd.pid", "ovnnb_db.pid"] {
            std::fs::write(dir.path().join(f), &me).unwrap();
        }
        assert!(alive(dir.path()).unwrap_err().contains("ovnsb"));
        std::fs::write(dir.path().join("ovnsb_db.pid"), "4194304\n").unwrap();
        assert!(alive(dir.path()).unwrap_err().contains("not running"));
        std::fs::write(dir.path().join("ovnsb_db.pid"), &me).unwrap();
        assert_eq!(alive(dir.path()), Ok(()));
    }
}
