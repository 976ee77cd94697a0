//! Test harness: a sandbox (API fixture + real OVN central), the CRDs installed, and the real
//! `kube-ovn-controller` binary run as a process that can be killed -9 and restarted.
#![allow(dead_code)]

pub mod nb;
pub mod upstream_layout;

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube_ovn_common::crd;
use kube_ovn_sandbox::loopback::Loopback;
use kube_ovn_sandbox::{Sandbox, SandboxConfig};
use ovsdb::{Remote, Replica, ReplicaConfig};
use serde_json::json;

pub struct World {
    pub sandbox: Sandbox,
    pub client: kube::Client,
    pub nb: Replica,
    pub controller: Option<Child>,
    /// The loopback address this world's controller serves its metrics on (at upstream's
    /// default port, [`METRICS_PORT`]).
    pub metrics_addr: Loopback,
    /// Flags every controller started by this world gets in addition to the defaults.
    pub controller_args: Vec<String>,
}

pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long a settled controller shows no activity ([`World::controller_settled`]).
pub const SETTLE_QUIET: Duration = Duration::from_millis(1500);

/// The lease duration every test controller runs with (`--leader-elect-lease-duration`).
pub const LEASE_DURATION: Duration = Duration::from_secs(3);

/// The controller's metrics port: upstream's default `--pprof-port`, which every test controller
/// keeps; each listens on a loopback address of its own instead.
pub const METRICS_PORT: u16 = 10660;

impl World {
    /// A sandbox with `nodes` nodes. With `kubelets` false, Nodes are created by the test.
    pub async fn new(nodes: usize, kubelets: bool) -> World {
        let mut cfg = SandboxConfig::isolated(nodes);
        cfg.kubelets = kubelets;
        // Dual-stack Services are allowed (the cluster's IPv4 range stays the first).
        cfg.service_cidrs = vec!["10.96.0.0/12".into(), "fd00:10:96::/112".into()];
        let sandbox = Sandbox::up(cfg).await.expect("sandbox");
        let client = sandbox.client();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for c in crd::all() {
            crds.create(&PostParams::default(), &c)
                .await
                .expect("install CRD");
        }
        if !kubelets {
            let api: Api<Node> = Api::all(client.clone());
            for n in &sandbox.state().nodes {
                let node: Node = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Node", "metadata": {"name": n.name},
                    "status": {"addresses": [{"type": "InternalIP", "address": n.ip.to_string()}]}
                }))
                .unwrap();
                api.create(&PostParams::default(), &node).await.unwrap();
            }
        }
        let mut rc = ReplicaConfig::new(
            Remote::parse_list(&sandbox.state().central.nb).unwrap(),
            "OVN_Northbound",
        );
        rc.external_id_keys = vec!["pod".into()];
        let nb = Replica::start(rc, Duration::from_secs(10)).await.unwrap();
        World {
            sandbox,
            client,
            nb,
            controller: None,
            metrics_addr: Loopback::claim().expect("a loopback address"),
            controller_args: Vec::new(),
        }
    }

    /// Starts the controller binary (a previous one must be stopped).
    pub fn start_controller(&mut self) {
        let child = self.spawn_controller("kube-ovn-controller-test", &self.metrics_addr);
        self.controller = Some(child);
    }

    /// Starts a controller process with its own identity, serving its metrics on `addr` as
    /// upstream's ENABLE_BIND_LOCAL_IP=true and POD_IPS make it.
    pub fn spawn_controller(&self, identity: &str, addr: &Loopback) -> Child {
        let st = self.sandbox.state();
        let log = std::fs::File::create(st.run_dir.join(format!(
            "controller-{identity}-{}.log",
            ovsdb::Uuid::new_v4().simple()
        )))
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_kube-ovn-controller"))
            .arg(format!("--kubeconfig={}", st.kubeconfig.display()))
            .arg(format!("--ovn-nb-addr={}", st.central.nb))
            .arg(format!(
                "--leader-elect-lease-duration={}s",
                LEASE_DURATION.as_secs()
            ))
            .arg("--leader-elect-renew-deadline=2s")
            .arg("--leader-elect-retry-period=200ms")
            .args(&self.controller_args)
            .env("ENABLE_BIND_LOCAL_IP", "true")
            .env("POD_IPS", addr.addr().to_string())
            .env("POD_NAME", identity)
            .env("KUBE_NAMESPACE", "kube-system")
            .env("RUST_LOG", "info,kube_ovn_controller::context=trace")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("kube-ovn-controller binary")
    }

    /// kill -9, as a crash would.
    pub fn kill_controller(&mut self) {
        if let Some(mut c) = self.controller.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until northd has settled on what was written to the NB (it writes NB_Global's
    /// `sb_cfg` after the fact, then `hv_cfg` once the chassis' ovn-controllers caught up, and
    /// new ports' `up`) and the replica heard all of it: a zero-writes check must start after
    /// this, or northd's own writes land in its window.
    pub async fn northd_settled(&self) {
        self.nbctl(&["--wait=hv", "sync"]);
        let nb_cfg = self
            .nbctl(&["get", "NB_Global", ".", "nb_cfg"])
            .trim()
            .to_string();
        eventually(
            "the replica caught up with northd",
            Duration::from_secs(60),
            || async {
                let c = self.nb.cache();
                let g = c
                    .table("NB_Global")?
                    .iter()
                    .next()
                    .map(|(_, r)| (**r).clone())?;
                let seen = |col: &str| g.get(col)?.as_atom()?.as_i64().map(|v| v.to_string());
                (seen("sb_cfg")? == nb_cfg && seen("hv_cfg")? == nb_cfg).then_some(())
            },
        )
        .await;
    }

    /// Waits until the running controller has nothing left to do: ready, every queue empty
    /// with nothing running, and no NB write, reconcile or queue add counted for
    /// [`SETTLE_QUIET`] (longer than the 1 s requeues a reconcile asks for while it waits on
    /// another object). A test that kills the controller to lay out an NB by hand waits for
    /// this first, or the next controller finishes the first one's work in its window.
    pub async fn controller_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet_since: Option<(Vec<f64>, Instant)> = None;
        loop {
            let text = self.metrics().await.unwrap_or_default();
            let sum = |name: &str| -> f64 {
                text.lines()
                    .filter(|l| l.starts_with(name))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let idle = self.ready().await
                && sum("workqueue_depth") == 0.0
                && sum("workqueue_longest_running_processor_seconds") == 0.0;
            let counts = vec![
                sum("kube_ovn_controller_nb_transactions_total"),
                sum("kube_ovn_controller_reconciles_total"),
                sum("workqueue_adds_total"),
                sum("workqueue_retries_total"),
            ];
            quiet_since = match quiet_since {
                Some((seen, since)) if idle && seen == counts => {
                    if since.elapsed() >= SETTLE_QUIET {
                        return;
                    }
                    Some((seen, since))
                }
                _ if idle => Some((counts, Instant::now())),
                _ => None,
            };
            assert!(
                Instant::now() < deadline,
                "timed out waiting for the controller to settle"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The controller's /metrics text, if it serves yet.
    pub async fn metrics(&self) -> Option<String> {
        self.http_get("/metrics").await
    }

    /// Whether the controller says it is ready (`/readyz`: caches synced, IPAM restored, the
    /// start-up GC run).
    pub async fn ready(&self) -> bool {
        self.http_get("/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
    }

    /// The raw HTTP response of the controller's health/metrics server to `GET path`.
    async fn http_get(&self, path: &str) -> Option<String> {
        let ip = self.metrics_addr.addr();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect((ip, METRICS_PORT)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(request.as_bytes()).ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        })
        .await
        .ok()
        .flatten()
    }

    /// A counter from /metrics (sum over label sets matching `filter`).
    pub async fn counter(&self, name: &str, filter: &str) -> Option<f64> {
        let text = self.metrics().await?;
        let mut found = false;
        let mut sum = 0.0;
        for line in text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(filter))
        {
            if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                sum += v;
                found = true;
            }
        }
        found.then_some(sum)
    }

    /// The NB transactions the controllers of this world logged (what wrote, how many ops), to
    /// say what an unexpected write was.
    pub fn logged_nb_writes(&self) -> Vec<String> {
        let dir = &self.sandbox.state().run_dir;
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("controller-") {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                out.extend(
                    text.lines()
                        .filter(|l| l.contains("nb transaction"))
                        .map(|l| format!("{name}: {l}")),
                );
            }
        }
        out
    }

    /// How many NB change batches arrived on `changes` (a subscription to the replica) since it
    /// was taken: a restart that writes nothing leaves it at 0.
    pub fn nb_change_batches(
        changes: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<ovsdb::ChangeBatch>>,
    ) -> usize {
        let mut batches = 0;
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            changes.try_recv()
        {
            batches += 1;
        }
        batches
    }

    /// Asserts that the controller wrote nothing to the NB (its own counter) and that the NB did
    /// not change (`changes`, subscribed before the controller started) during `what`.
    pub async fn assert_wrote_nothing(
        &self,
        changes: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<ovsdb::ChangeBatch>>,
        what: &str,
    ) {
        let writes = self
            .counter("kube_ovn_controller_nb_transactions_total", "")
            .await
            .unwrap_or(0.0);
        assert_eq!(
            writes,
            0.0,
            "{what} wrote {writes} transactions: {:#?}",
            self.logged_nb_writes()
        );
        let batches = Self::nb_change_batches(changes);
        assert_eq!(batches, 0, "the NB changed during {what}");
    }

    pub fn nbctl(&self, args: &[&str]) -> String {
        let out = Command::new("ovn-nbctl")
            .arg(format!("--db={}", self.sandbox.state().central.nb))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovn-nbctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_controller();
        if std::thread::panicking() {
            // The run directory goes with the sandbox: keep what the controllers logged in the
            // failed test's output (warnings, then the last lines).
            let run_dir = &self.sandbox.state().run_dir;
            let logs = std::fs::read_dir(run_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("controller-") && n.ends_with(".log"))
                });
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- warnings in {}", log.display());
                for l in lines
                    .iter()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                {
                    eprintln!("{l}");
                }
                eprintln!("--- last lines of {}", log.display());
                for l in &lines[lines.len().saturating_sub(60)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn pod(name: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        .unwrap()
}
