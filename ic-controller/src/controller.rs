//! The interconnection loop, upstream's `resyncInterConnection` and `SynRouteToPolicy`: one
//! key on the reconciler runtime's queue, queued by every change of the `ovn-ic-config`
//! ConfigMap, the Subnets and the Nodes, and re-run every second (upstream's period) so
//! transit switches appearing in IC NB and routes learned by ovn-ic are followed. Every pass
//! plans against replicated caches, so a converged AZ gets no write.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::node::internal_ips;
use kube_ovn_runtime::{Backoff, Outcome, Queue};
use ovsdb::model::Model;
use ovsdb::models::sb::Chassis;
use ovsdb::plan::Plan;
use ovsdb::{Remote, Replica, ReplicaConfig, Timeouts};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Config;
use crate::logic::{self, Enabled, IcConfig, IcState};
use crate::ovnic::{IcRemotes, OvnIc};
use crate::{icdb, nb};

/// The ConfigMap upstream reads (`util.InterconnectionConfig`).
pub const CONFIG_MAP: &str = "ovn-ic-config";
/// The node label marking interconnection gateways (`util.ICGatewayLabel`).
pub const GW_LABEL: &str = "ovn.kubernetes.io/ic-gw";
/// Upstream's resync period.
const PERIOD: Duration = Duration::from_secs(1);
/// The queue's only key.
const KEY: &str = "ovn-ic";

/// Database names.
const NB_DB: &str = "OVN_Northbound";
const SB_DB: &str = "OVN_Southbound";
const IC_NB_DB: &str = "OVN_IC_Northbound";
const IC_SB_DB: &str = "OVN_IC_Southbound";

/// Replicas of the two IC databases at one address pair.
struct IcDbs {
    nb_addr: String,
    sb_addr: String,
    nb: Replica,
    sb: Replica,
}

/// What a pass remembers (upstream's package globals).
struct State {
    enabled: Enabled,
    last: Option<IcConfig>,
    last_ts: Vec<String>,
    conflicts: BTreeSet<String>,
    ic: Option<IcDbs>,
    ovn_ic: OvnIc,
    /// Transactions written since start, per database (logged; zero on a converged restart).
    writes: u64,
}

/// The controller: API stores, OVN replicas and the pass state.
pub struct Controller {
    config: Config,
    client: kube::Client,
    namespace: String,
    nb: Replica,
    sb: Replica,
    config_maps: Store<ConfigMap>,
    subnets: Store<Subnet>,
    nodes: Store<Node>,
    state: Mutex<State>,
}

/// Timeouts of every OVSDB connection, from the flags.
fn timeouts(config: &Config) -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(config.ovsdb_con_timeout.max(1)),
        request: Duration::from_secs(config.ovn_timeout.max(1)),
        probe_interval: Duration::from_secs(config.ovsdb_inactivity_timeout.max(1)),
    }
}

/// Upstream writes `tcp:[10.0.0.1]:6641` even for IPv4; our remote parser wants it bare.
pub fn normalize_remotes(list: &str) -> String {
    list.split(',')
        .map(|r| {
            let r = r.trim();
            if let Some((proto @ ("tcp" | "ssl"), rest)) = r.split_once(':') {
                if let Some((host, port)) = rest.strip_prefix('[').and_then(|x| x.split_once("]:"))
                {
                    if host.parse::<std::net::Ipv4Addr>().is_ok() {
                        return format!("{proto}:{host}:{port}");
                    }
                }
            }
            r.to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Starts a replica of `db` at `addr` with `tables`, waiting up to the request timeout.
async fn replica(
    config: &Config,
    addr: &str,
    db: &str,
    tables: &[&str],
) -> Result<Replica, String> {
    let remotes =
        Remote::parse_list(&normalize_remotes(addr)).map_err(|e| format!("{db} {addr}: {e}"))?;
    let mut rc = ReplicaConfig::new(remotes, db);
    rc.tables = tables.iter().map(|t| t.to_string()).collect();
    rc.timeouts = timeouts(config);
    if std::env::var("ENABLE_SSL").as_deref() == Ok("true") {
        rc.tls = Some(ovsdb::transport::TlsFiles {
            ca_cert: "/var/run/tls/cacert".into(),
            certificate: "/var/run/tls/cert".into(),
            private_key: "/var/run/tls/key".into(),
        });
    }
    Replica::start(rc, rc_wait(config))
        .await
        .map_err(|e| format!("{db} at {addr}: {e}"))
}

fn rc_wait(config: &Config) -> Duration {
    Duration::from_secs(config.ovn_timeout.max(1))
}

/// Plans with `f` against `r`'s cache and sends the transaction if it writes anything;
/// returns whether it did.
async fn commit(
    r: &Replica,
    db: &str,
    f: impl FnOnce(&mut Plan<'_>) -> Result<(), String>,
) -> Result<bool, String> {
    let txn = {
        let cache = r.cache();
        let mut plan = Plan::new(&cache, db);
        f(&mut plan)?;
        if plan.is_empty() {
            return Ok(false);
        }
        plan.into_transaction()
    };
    r.transact(&txn)
        .await
        .map_err(|e| format!("{db} transaction: {e}"))?;
    Ok(true)
}

fn store<K>(api: Api<K>, cfg: watcher::Config, queue: Queue, tasks: &mut JoinSet<()>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    let (reader, writer) = reflector::store::<K>();
    let stream = reflector::reflector(writer, watcher(api, cfg)).default_backoff();
    tasks.spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => queue.add(KEY),
                Err(e) => warn!("watch: {e}"),
            }
        }
    });
    reader
}

impl Controller {
    /// Connects to the local NB and SB and starts the watches; the tasks go into `tasks`.
    pub async fn start(
        config: Config,
        client: kube::Client,
        namespace: String,
        tasks: &mut JoinSet<()>,
    ) -> Result<Arc<Controller>, String> {
        let queue = Queue::new(
            "ovn-ic",
            Backoff {
                min: Duration::from_secs(1),
                max: Duration::from_secs(20),
            },
        );
        let config_maps = store(
            Api::<ConfigMap>::namespaced(client.clone(), &namespace),
            watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP}")),
            queue.clone(),
            tasks,
        );
        let subnets = store(
            Api::<Subnet>::all(client.clone()),
            watcher::Config::default(),
            queue.clone(),
            tasks,
        );
        let nodes = store(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            queue.clone(),
            tasks,
        );
        let nb = loop {
            match replica(&config, &config.ovn_nb_addr, NB_DB, nb::TABLES).await {
                Ok(r) => break r,
                Err(e) => warn!("{e}; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        let sb = loop {
            match replica(&config, &config.ovn_sb_addr, SB_DB, &[Chassis::TABLE]).await {
                Ok(r) => break r,
                Err(e) => warn!("{e}; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        for (what, ready) in [
            ("configmaps", config_maps.wait_until_ready().await.is_ok()),
            ("subnets", subnets.wait_until_ready().await.is_ok()),
            ("nodes", nodes.wait_until_ready().await.is_ok()),
        ] {
            if !ready {
                return Err(format!("{what} never synced"));
            }
        }
        let ctl = Arc::new(Controller {
            config,
            client,
            namespace,
            nb,
            sb,
            config_maps,
            subnets,
            nodes,
            state: Mutex::new(State {
                enabled: Enabled::Unknown,
                last: None,
                last_ts: Vec::new(),
                conflicts: BTreeSet::new(),
                ic: None,
                ovn_ic: OvnIc::default(),
                writes: 0,
            }),
        });
        let c = ctl.clone();
        queue.run(tasks, 1, move |_key| {
            let c = c.clone();
            async move {
                c.pass().await?;
                Ok(Outcome::After(PERIOD))
            }
        });
        queue.add(KEY);
        info!("started");
        Ok(ctl)
    }

    /// Stops ovn-ic (on shutdown; the established NB and IC rows stay).
    pub async fn shutdown(&self) {
        self.state.lock().await.ovn_ic.stop().await;
    }

    /// One pass: interconnection, then the learned routes' policies.
    async fn pass(&self) -> Result<(), String> {
        let mut st = self.state.lock().await;
        let before = st.writes;
        let r = self.resync(&mut st).await;
        let p = self.sync_route_policies(&mut st).await;
        if st.writes != before {
            info!(writes = st.writes, "ovn-ic pass wrote");
        }
        r.and(p)
    }

    async fn write(
        &self,
        st: &mut State,
        r: &Replica,
        db: &str,
        f: impl FnOnce(&mut Plan<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        if commit(r, db, f).await? {
            st.writes += 1;
            info!(db, "wrote");
        }
        Ok(())
    }

    fn ic_config(&self) -> Option<IcConfig> {
        let cm = self
            .config_maps
            .get(&ObjectRef::new(CONFIG_MAP).within(&self.namespace))?;
        Some(cm.data.clone().unwrap_or_default().into_iter().collect())
    }

    async fn resync(&self, st: &mut State) -> Result<(), String> {
        match self.ic_config() {
            None => self.disable(st, None).await,
            Some(c) if c.get("enable-ic").map(String::as_str) == Some("false") => {
                self.disable(st, Some(c)).await
            }
            Some(c) => self.reconcile(st, c).await,
        }
    }

    /// The replicas of the IC databases `config` points at.
    async fn ic_dbs<'s>(&self, st: &'s mut State, config: &IcConfig) -> Result<&'s IcDbs, String> {
        let host = config.get("ic-db-host").cloned().unwrap_or_default();
        if host.is_empty() {
            return Err("ovn-ic-config has no ic-db-host".into());
        }
        let port = |k: &str, d: &str| config.get(k).cloned().unwrap_or_else(|| d.to_string());
        let nb_addr = logic::host_address(&host, &port("ic-nb-port", "6645"));
        let sb_addr = logic::host_address(&host, &port("ic-sb-port", "6646"));
        let fresh = !matches!(&st.ic, Some(d) if d.nb_addr == nb_addr && d.sb_addr == sb_addr);
        if fresh {
            let nb = replica(&self.config, &nb_addr, IC_NB_DB, icdb::NB_TABLES).await?;
            let sb = replica(&self.config, &sb_addr, IC_SB_DB, icdb::SB_TABLES).await?;
            st.ic = Some(IcDbs {
                nb_addr,
                sb_addr,
                nb,
                sb,
            });
        }
        st.ic.as_ref().ok_or_else(|| "no IC databases".to_string())
    }

    async fn disable(&self, st: &mut State, config: Option<IcConfig>) -> Result<(), String> {
        if st.enabled == Enabled::False {
            return Ok(());
        }
        info!("start to remove ovn-ic");
        let config = config.or_else(|| st.last.clone());
        if let Some(c) = &config {
            if c.get("ic-db-host").is_some_and(|h| !h.is_empty()) {
                self.ic_dbs(st, c).await?;
            }
        }
        self.set_auto_route(st, false).await?;
        let az = config
            .as_ref()
            .and_then(|c| c.get("az-name").cloned())
            .unwrap_or_default();
        self.disable_ovn_ic(st, &az).await?;
        st.enabled = Enabled::False;
        st.last = None;
        info!("finish removing ovn-ic");
        Ok(())
    }

    async fn reconcile(&self, st: &mut State, config: IcConfig) -> Result<(), String> {
        let auto_route = config.get("auto-route").map(String::as_str) == Some("true");
        if auto_route {
            self.refresh_conflicts(st).await?;
        }
        self.set_auto_route(st, auto_route).await?;
        let mut state = logic::classify(st.enabled, st.last.as_ref(), &config);
        let mut cur_ts = Vec::new();
        if state == IcState::NoAction {
            let dbs = self.ic_dbs(st, &config).await?;
            cur_ts = ts_names(&dbs.nb);
            if cur_ts == st.last_ts {
                // ovn-ic must stay up while interconnection is on.
                return self.ensure_ovn_ic(st, &config).await;
            }
            state = IcState::ConfigChange;
        }
        match state {
            IcState::NoAction => Ok(()),
            IcState::FirstEstablish => {
                info!("start to establish ovn-ic");
                self.establish(st, &config).await?;
                st.last_ts = ts_names(&self.ic_dbs(st, &config).await?.nb);
                st.enabled = Enabled::True;
                st.last = Some(config);
                info!("finish establishing ovn-ic");
                Ok(())
            }
            IcState::GatewayChange => {
                info!("start to reconcile ovn-ic gateways");
                self.establish(st, &config).await?;
                st.enabled = Enabled::True;
                st.last = Some(config);
                info!("finish reconciling ovn-ic gateways");
                Ok(())
            }
            IcState::ConfigChange => {
                let last = st.last.clone().unwrap_or_default();
                // The old AZ's rows are in the IC databases the old host names.
                let mut old = config.clone();
                if let Some(h) = last.get("ic-db-host") {
                    old.insert("ic-db-host".into(), h.clone());
                }
                if old.get("ic-db-host").is_some_and(|h| !h.is_empty()) {
                    self.ic_dbs(st, &old).await?;
                }
                let az = last.get("az-name").cloned().unwrap_or_default();
                self.disable_ovn_ic(st, &az).await?;
                info!("start to reestablish ovn-ic");
                self.establish(st, &config).await?;
                if cur_ts.is_empty() {
                    cur_ts = ts_names(&self.ic_dbs(st, &config).await?.nb);
                }
                st.enabled = Enabled::True;
                st.last = Some(config);
                st.last_ts = cur_ts;
                info!("finish reestablishing ovn-ic");
                Ok(())
            }
        }
    }

    async fn ensure_ovn_ic(&self, st: &mut State, config: &IcConfig) -> Result<(), String> {
        let dbs = self.ic_dbs(st, config).await?;
        let remotes = IcRemotes {
            nb: self.config.ovn_nb_addr.clone(),
            sb: self.config.ovn_sb_addr.clone(),
            ic_nb: dbs.nb_addr.clone(),
            ic_sb: dbs.sb_addr.clone(),
        };
        st.ovn_ic.ensure(&remotes).await
    }

    async fn establish(&self, st: &mut State, config: &IcConfig) -> Result<(), String> {
        let az = config.get("az-name").cloned().unwrap_or_default();
        if az.is_empty() {
            return Err("ovn-ic-config has no az-name".into());
        }
        let nb = self.nb.clone();
        self.write(st, &nb, NB_DB, |p| nb::set_az_name(p, &az))
            .await?;
        self.ensure_ovn_ic(st, config).await?;
        let switches = icdb::transit_switches(&self.ic_dbs(st, config).await?.nb.cache());
        let gw = logic::parse_gw_nodes(config.get("gw-nodes").map_or("", String::as_str));
        self.sync_gateway_labels(&gw).await?;
        for (i, (ts, subnet)) in switches.iter().enumerate() {
            let lsp = format!("{ts}-{az}");
            let lrp = format!("{az}-{ts}");
            let exists = nb::lsp_exists(&self.nb.cache(), &lsp);
            if !exists && gw.is_empty() {
                continue;
            }
            let chassis = self.gateway_chassis(&gw, i).await?;
            if exists {
                self.write(st, &nb, NB_DB, |p| {
                    nb::reconcile_gateway_chassis(p, &lrp, &chassis).map_err(|e| e.to_string())
                })
                .await?;
                continue;
            }
            if self
                .nb
                .cache()
                .by_name::<ovsdb::models::nb::LogicalSwitch>(ts)
                .is_empty()
            {
                return Err(format!(
                    "transit switch {ts} is not in the NB yet (ovn-ic creates it)"
                ));
            }
            let addr = self.acquire_address(subnet)?;
            let mac = random_mac();
            let router = self.config.cluster_router.clone();
            self.write(st, &nb, NB_DB, |p| {
                nb::create_patch_port(p, ts, &router, &az, &addr, &mac)
                    .and_then(|_| nb::reconcile_gateway_chassis(p, &lrp, &chassis))
                    .map_err(|e| e.to_string())
            })
            .await?;
            info!(ts, lrp, addresses = ?addr, gateways = ?chassis, "transit switch port created");
        }
        Ok(())
    }

    /// A free address per family of the transit switch subnet: none of the remote ports has it.
    fn acquire_address(&self, subnet: &str) -> Result<Vec<String>, String> {
        let taken = nb::remote_port_addresses(&self.nb.cache());
        let cidrs = logic::split_cidrs(subnet);
        if cidrs.is_empty() {
            return Err("transit switch has no external_ids:subnet".into());
        }
        for _ in 0..1000 {
            let addrs = cidrs
                .iter()
                .map(|c| logic::random_address(c, random_u128()))
                .collect::<Result<Vec<_>, _>>()?;
            if !taken.contains(&addrs.join(",")) && !addrs.iter().any(|a| taken.contains(a)) {
                return Ok(addrs);
            }
        }
        Err(format!("no free address in transit switch subnet {subnet}"))
    }

    /// The chassis of the gateways of the `order`-th transit switch, labelling each gateway.
    async fn gateway_chassis(&self, gw: &[String], order: usize) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for node in logic::rotate(gw, order) {
            let chassis = self
                .sb
                .cache()
                .list::<Chassis>()
                .into_iter()
                .flatten()
                .find(|c| c.hostname == node)
                .map(|c| c.name)
                .ok_or_else(|| format!("no chassis for gw {node:?}"))?;
            self.set_gw_label(&node, "true").await?;
            out.push(chassis);
        }
        Ok(out)
    }

    async fn set_gw_label(&self, node: &str, value: &str) -> Result<(), String> {
        let current = self
            .nodes
            .get(&ObjectRef::new(node))
            .ok_or_else(|| format!("gw node {node} not found"))?;
        if current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(GW_LABEL))
            .map(String::as_str)
            == Some(value)
        {
            return Ok(());
        }
        Api::<Node>::all(self.client.clone())
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {GW_LABEL: value}}})),
            )
            .await
            .map_err(|e| format!("label ic gw node {node}: {e}"))?;
        Ok(())
    }

    /// Unlabels gateways no longer in `gw-nodes` (all of them when `keep` is empty).
    async fn sync_gateway_labels(&self, keep: &[String]) -> Result<(), String> {
        for n in self.nodes.state() {
            let name = n.metadata.name.clone().unwrap_or_default();
            let labelled = n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(GW_LABEL))
                .map(String::as_str)
                == Some("true");
            if labelled && !keep.contains(&name) {
                self.set_gw_label(&name, "false").await?;
            }
        }
        Ok(())
    }

    /// Teardown of the AZ `az`, upstream's `disableOVNIC`: gateways unlabelled, ovn-ic stopped,
    /// transit switch ports and switches removed, learned routes removed, the AZ's IC SB rows
    /// removed.
    async fn disable_ovn_ic(&self, st: &mut State, az: &str) -> Result<(), String> {
        self.sync_gateway_labels(&[]).await?;
        st.ovn_ic.stop().await;
        let nb = self.nb.clone();
        if !az.is_empty() {
            self.write(st, &nb, NB_DB, |p| {
                nb::delete_ic_resources(p, az).map_err(|e| e.to_string())
            })
            .await?;
        }
        self.write(st, &nb, NB_DB, |p| {
            nb::delete_learned_routes(p).map_err(|e| e.to_string())
        })
        .await?;
        if !az.is_empty() {
            if let Some(sb) = st.ic.as_ref().map(|d| d.sb.clone()) {
                let found = icdb::az_by_name(&sb.cache(), az);
                match found {
                    Some(u) => {
                        self.write(st, &sb, IC_SB_DB, |p| {
                            icdb::remove_az(p, u).map(|_| ()).map_err(|e| e.to_string())
                        })
                        .await?
                    }
                    None => info!(az, "availability zone already gone from IC SB"),
                }
            }
        }
        Ok(())
    }

    /// Upstream's `setAutoRoute`: the blacklist holds the join subnet, subnets with
    /// `disableInterConnection`, the conflicting CIDRs (with auto-route) and every node IP.
    async fn set_auto_route(&self, st: &mut State, enable: bool) -> Result<(), String> {
        let mut subnets = self.subnets.state();
        subnets.sort_by_key(|s| s.metadata.name.clone());
        let mut blacklist: Vec<String> = subnets
            .iter()
            .filter(|s| {
                s.spec.disable_inter_connection
                    || s.metadata.name.as_deref() == Some(self.config.node_switch.as_str())
            })
            .map(|s| s.spec.cidr_block.clone())
            .collect();
        if enable {
            blacklist.extend(st.conflicts.iter().cloned());
        } else {
            st.conflicts.clear();
        }
        let mut nodes = self.nodes.state();
        nodes.sort_by_key(|n| n.metadata.name.clone());
        for n in nodes {
            let ips = internal_ips(&n);
            let v4 = ips.iter().find(|i| i.is_ipv4());
            let v6 = ips.iter().find(|i| i.is_ipv6());
            blacklist.extend(v4.into_iter().chain(v6).map(|i| i.to_string()));
        }
        let nb = self.nb.clone();
        self.write(st, &nb, NB_DB, |p| {
            nb::set_auto_route(p, enable, &blacklist)
        })
        .await
    }

    /// Upstream's `refreshConflictCIDRs`: remote prefixes overlapping local subnets become
    /// (sticky) conflicts, and the learned routes for them are deleted.
    async fn refresh_conflicts(&self, st: &mut State) -> Result<(), String> {
        let local: Vec<String> = self
            .subnets
            .state()
            .iter()
            .flat_map(|s| logic::split_cidrs(&s.spec.cidr_block))
            .collect();
        let (persisted, learned) = {
            let cache = self.nb.cache();
            let blacklist = nb::nb_global(&cache)
                .and_then(|g| g.options.get("ic-route-blacklist").cloned())
                .unwrap_or_default();
            (
                logic::persisted_conflicts(&local, &blacklist),
                nb::learned_routes(&cache),
            )
        };
        let prefixes: Vec<String> = learned.iter().map(|(_, r)| r.ip_prefix.clone()).collect();
        let mut sticky: Vec<String> = st.conflicts.iter().cloned().collect();
        sticky.extend(persisted);
        let conflicts = logic::merge_conflicts(&local, &prefixes, &sticky);
        if !conflicts.is_empty()
            && conflicts.iter().cloned().collect::<BTreeSet<_>>() != st.conflicts
        {
            info!(
                ?conflicts,
                "ovn-ic cidr conflicts, adding them to ic-route-blacklist"
            );
        }
        st.conflicts = conflicts.iter().cloned().collect();
        let doomed: Vec<ovsdb::Uuid> = learned
            .iter()
            .filter(|(_, r)| {
                conflicts
                    .iter()
                    .any(|c| c == &r.ip_prefix || logic::cidr_overlap(c, &r.ip_prefix))
            })
            .map(|(_, r)| r.uuid)
            .collect();
        if !doomed.is_empty() {
            let nb = self.nb.clone();
            self.write(st, &nb, NB_DB, |p| {
                for u in &doomed {
                    nb::delete_route(p, *u).map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .await?;
            info!(routes = doomed.len(), "deleted conflicting learned routes");
        }
        Ok(())
    }

    async fn sync_route_policies(&self, st: &mut State) -> Result<(), String> {
        let nb = self.nb.clone();
        let router = self.config.cluster_router.clone();
        self.write(st, &nb, NB_DB, |p| {
            nb::sync_route_policies(p, &router).map_err(|e| e.to_string())
        })
        .await
    }
}

fn ts_names(r: &Replica) -> Vec<String> {
    icdb::transit_switches(&r.cache())
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn random_u128() -> u128 {
    u128::from_le_bytes(*ovsdb::Uuid::new_v4().as_bytes())
}

/// A random locally administered unicast MAC, as upstream's `util.GenerateMac`.
fn random_mac() -> String {
    let b = ovsdb::Uuid::new_v4();
    let mut b: [u8; 6] = b.as_bytes()[..6].try_into().unwrap_or([2, 0, 0, 0, 0, 1]);
    b[0] = (b[0] | 0x02) & 0xfe;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
