//! The subcommands that run a tool inside a Kube-OVN component pod, as upstream's plugin does
//! with `kubectl exec`: `nbctl`/`sbctl` in the ovn-central pod leading that database,
//! `icnbctl`/`icsbctl` in the ovn-ic-server leader, `vsctl`/`ofctl`/`dpctl`/`appctl` in the
//! node's ovs-ovn pod, and `nb|sb status|kick|backup|dbstatus`. The tool's output is streamed and its
//! exit status becomes ours.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use kube::ResourceExt;
use tokio::io::AsyncWriteExt;

/// How long a component pod lookup retries (upstream tries ten times a second apart).
const LOOKUP: Duration = Duration::from_secs(10);

/// Which database a `nb|sb` command concerns.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    /// OVN_Northbound.
    Nb,
    /// OVN_Southbound.
    Sb,
}

impl Db {
    /// The label upstream's leader checker puts on the ovn-central pod leading this database.
    pub fn label(self) -> &'static str {
        match self {
            Db::Nb => "ovn-nb-leader",
            Db::Sb => "ovn-sb-leader",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Db::Nb => "OVN_Northbound",
            Db::Sb => "OVN_Southbound",
        }
    }

    fn ctl(self) -> &'static str {
        match self {
            Db::Nb => "/var/run/ovn/ovnnb_db.ctl",
            Db::Sb => "/var/run/ovn/ovnsb_db.ctl",
        }
    }
}

/// A Running pod of `namespace` matching `labels` (and on `node`, if given), retried for a while
/// as the leader label moves during elections.
pub async fn find_pod(
    client: &kube::Client,
    namespace: &str,
    labels: &str,
    node: Option<&str>,
    name_prefix: &str,
) -> Result<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + LOOKUP;
    loop {
        let list = pods
            .list(&ListParams::default().labels(labels))
            .await
            .map_err(|e| format!("listing pods {labels} in {namespace}: {e}"))?;
        let found = list.items.iter().find(|p| {
            let spec_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
            p.name_any().starts_with(name_prefix)
                && p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                && node.is_none_or(|n| spec_node == Some(n))
        });
        if let Some(p) = found {
            return Ok(p.name_any());
        }
        if std::time::Instant::now() >= deadline {
            return Err(match node {
                Some(n) => format!("no Running pod {labels} on node {n} in {namespace}"),
                None => format!("no Running pod {labels} in {namespace}"),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The ovn-central pod leading `db` (upstream's leader label).
pub async fn leader_pod(client: &kube::Client, namespace: &str, db: Db) -> Result<String, String> {
    find_pod(
        client,
        namespace,
        &format!("{}=true", db.label()),
        None,
        "ovn-central",
    )
    .await
}

/// Runs `argv` in `pod` (container `container`, if given), copying its output to ours, and
/// returns its exit code.
pub async fn exec(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
) -> Result<ExitCode, String> {
    run(client, namespace, pod, container, argv, Sink::Stdout)
        .await
        .map(|(code, _)| code)
}

/// [`exec`], given up (and the exec's connection closed) when it takes longer than `limit`:
/// what the diagnostic commands use, so a hung tool cannot hang the whole report.
pub async fn exec_within(
    limit: Duration,
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
) -> Result<ExitCode, String> {
    let what = argv.join(" ");
    tokio::time::timeout(limit, exec(client, namespace, pod, container, argv))
        .await
        .map_err(|_| format!("`{what}` in {namespace}/{pod} did not finish within {limit:?}"))?
}

/// [`capture`] within `limit` (see [`exec_within`]).
pub async fn capture_within(
    limit: Duration,
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
) -> Result<(ExitCode, String), String> {
    let what = argv.join(" ");
    tokio::time::timeout(limit, capture(client, namespace, pod, container, argv))
        .await
        .map_err(|_| format!("`{what}` in {namespace}/{pod} did not finish within {limit:?}"))?
}

/// Runs `argv` in `pod` like [`exec`], writing its standard output into the local file `path`
/// (what `kubectl cp` does for upstream).
pub async fn exec_to_file(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
    path: &std::path::Path,
) -> Result<ExitCode, String> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    run(client, namespace, pod, container, argv, Sink::File(file))
        .await
        .map(|(code, _)| code)
}

/// Runs `argv` in `pod` like [`exec`], appending its standard output (up to 16 MiB) to `into`
/// as it comes, so a caller can read a long-running tool's output while it runs (a server
/// whose report grows with each client).
pub async fn exec_into(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    argv: Vec<String>,
    into: Shared,
) -> Result<ExitCode, String> {
    run(client, namespace, pod, None, argv, Sink::Shared(into))
        .await
        .map(|(code, _)| code)
}

/// Output shared with the caller while a tool runs (see [`exec_into`]).
pub type Shared = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Where a tool's standard output goes.
enum Sink {
    /// Ours.
    Stdout,
    /// Kept and returned (up to [`CAPTURE_LIMIT`]).
    Capture,
    /// A local file.
    File(tokio::fs::File),
    /// Appended to a buffer the caller reads meanwhile (up to [`CAPTURE_LIMIT`]).
    Shared(Shared),
}

/// The most of a tool's standard output [`capture`] keeps: lookups read short answers, and a
/// runaway output must not grow the plugin without bound.
const CAPTURE_LIMIT: u64 = 16 << 20;

/// Runs `argv` in `pod` like [`exec`], but returns its standard output (up to 16 MiB) instead
/// of printing it; its standard error is still copied to ours.
pub async fn capture(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
) -> Result<(ExitCode, String), String> {
    run(client, namespace, pod, container, argv, Sink::Capture)
        .await
        .map(|(code, out)| (code, out.unwrap_or_default()))
}

async fn run(
    client: &kube::Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    argv: Vec<String>,
    sink: Sink,
) -> Result<(ExitCode, Option<String>), String> {
    use tokio::io::AsyncReadExt;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    if let Some(c) = container {
        params = params.container(c);
    }
    let mut process = pods
        .exec(pod, argv.clone(), &params)
        .await
        .map_err(|e| format!("exec {argv:?} in {namespace}/{pod}: {e}"))?;
    let status = process.take_status();
    let mut out = process.stdout();
    let mut err = process.stderr();
    let keep = matches!(sink, Sink::Capture);
    let copy_out = async {
        let mut kept = Vec::new();
        let mut failed = None;
        if let Some(o) = out.as_mut() {
            match sink {
                Sink::Capture => {
                    let _ = o.take(CAPTURE_LIMIT).read_to_end(&mut kept).await;
                    // Whatever is beyond the limit is drained, so the tool can finish.
                    let _ = tokio::io::copy(o, &mut tokio::io::sink()).await;
                }
                Sink::Stdout => {
                    let _ = tokio::io::copy(o, &mut tokio::io::stdout()).await;
                }
                Sink::Shared(buf) => {
                    let mut chunk = [0u8; 8192];
                    while let Ok(n) = o.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        if let Ok(mut b) = buf.lock() {
                            if (b.len() as u64) < CAPTURE_LIMIT {
                                b.extend_from_slice(&chunk[..n]);
                            }
                        }
                    }
                }
                Sink::File(mut f) => {
                    if let Err(e) = tokio::io::copy(o, &mut f).await {
                        failed = Some(e.to_string());
                    } else if let Err(e) = f.flush().await {
                        failed = Some(e.to_string());
                    }
                }
            }
        }
        let _ = tokio::io::stdout().flush().await;
        (kept, failed)
    };
    let copy_err = async {
        if let Some(e) = err.as_mut() {
            let _ = tokio::io::copy(e, &mut tokio::io::stderr()).await;
        }
    };
    let ((kept, failed), ()) = tokio::join!(copy_out, copy_err);
    if let Some(e) = failed {
        return Err(format!("writing the output of {argv:?}: {e}"));
    }
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    process
        .join()
        .await
        .map_err(|e| format!("exec {argv:?} in {namespace}/{pod}: {e}"))?;
    let kept = keep.then(|| String::from_utf8_lossy(&kept).into_owned());
    Ok((exit_code(status.as_ref()), kept))
}

/// The exit code a finished exec reports: 0 on Success, the `ExitCode` cause on failure.
fn exit_code(status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>) -> ExitCode {
    let Some(s) = status else {
        return ExitCode::from(1);
    };
    if s.status.as_deref() == Some("Success") {
        return ExitCode::SUCCESS;
    }
    let code = s
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
        .and_then(|c| c.message.as_deref())
        .and_then(|m| m.parse::<u8>().ok())
        .unwrap_or(1);
    ExitCode::from(code)
}

/// `nbctl`/`sbctl …`: the ctl in the pod leading that database.
pub async fn db_ctl(
    client: &kube::Client,
    namespace: &str,
    db: Db,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    let pod = leader_pod(client, namespace, db).await?;
    let tool = match db {
        Db::Nb => "ovn-nbctl",
        Db::Sb => "ovn-sbctl",
    };
    exec(
        client,
        namespace,
        &pod,
        Some("ovn-central"),
        argv(tool, args),
    )
    .await
}

/// `icnbctl`/`icsbctl …`: the IC ctl in the ovn-ic-server pod leading that database.
pub async fn ic_ctl(
    client: &kube::Client,
    namespace: &str,
    db: Db,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    let (label, tool) = match db {
        Db::Nb => ("ovn-ic-nb-leader=true", "ovn-ic-nbctl"),
        Db::Sb => ("ovn-ic-sb-leader=true", "ovn-ic-sbctl"),
    };
    let pod = find_pod(client, namespace, label, None, "ovn-ic-server").await?;
    exec(client, namespace, &pod, None, argv(tool, args)).await
}

/// `vsctl|ofctl|dpctl|appctl <node> …`: `ovs-<tool>` in the node's ovs-ovn pod.
pub async fn ovs_ctl(
    client: &kube::Client,
    namespace: &str,
    tool: &str,
    node: &str,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .get(node)
        .await
        .map_err(|e| format!("node {node}: {e}"))?;
    let pod = find_pod(client, namespace, "app=ovs", Some(node), "")
        .await
        .map_err(|_| format!("ovs pod doesn't exist on node {node}"))?;
    exec(
        client,
        namespace,
        &pod,
        None,
        argv(&format!("ovs-{tool}"), args),
    )
    .await
}

/// `nb|sb status|kick <server>|dbstatus`.
pub async fn db_tool(
    client: &kube::Client,
    namespace: &str,
    db: Db,
    action: &str,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    let appctl = |cmd: &[&str]| -> Vec<String> {
        let mut v = vec!["ovn-appctl".to_string(), "-t".into(), db.ctl().into()];
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };
    match action {
        "status" => {
            let pod = leader_pod(client, namespace, db).await?;
            let code = exec(
                client,
                namespace,
                &pod,
                Some("ovn-central"),
                appctl(&["cluster/status", db.schema()]),
            )
            .await?;
            if code != ExitCode::SUCCESS {
                return Ok(code);
            }
            exec(
                client,
                namespace,
                &pod,
                Some("ovn-central"),
                appctl(&["ovsdb-server/get-db-storage-status", db.schema()]),
            )
            .await
        }
        "kick" => {
            let [server] = args.as_slice() else {
                return Err(format!("usage: kubectl ko {} kick <server-id>", prefix(db)));
            };
            let pod = leader_pod(client, namespace, db).await?;
            exec(
                client,
                namespace,
                &pod,
                Some("ovn-central"),
                appctl(&["cluster/kick", db.schema(), server]),
            )
            .await
        }
        "backup" => backup(client, namespace, db).await,
        "restore" => match db {
            Db::Nb => crate::restore::run(client, namespace).await,
            Db::Sb => {
                println!("restore cmd is only used for nb db");
                Ok(ExitCode::SUCCESS)
            }
        },
        "dbstatus" => {
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let list = pods
                .list(&ListParams::default().labels("app=ovn-central"))
                .await
                .map_err(|e| format!("listing ovn-central pods: {e}"))?;
            let mut code = ExitCode::SUCCESS;
            for p in list.items {
                let pod = p.name_any();
                println!("get dbstatus in pod {pod}");
                for d in [Db::Nb, Db::Sb] {
                    print!("{} db status ", prefix(d));
                    let mut v = vec!["ovn-appctl".to_string(), "-t".into(), d.ctl().into()];
                    v.extend([
                        "ovsdb-server/get-db-storage-status".into(),
                        d.schema().into(),
                    ]);
                    let c = exec(client, namespace, &pod, Some("ovn-central"), v).await?;
                    if c != ExitCode::SUCCESS {
                        code = c;
                    }
                }
            }
            Ok(code)
        }
        other => Err(format!(
            "unknown action {other:?}: kubectl ko {} status|kick|backup|dbstatus",
            prefix(db)
        )),
    }
}

/// `nb|sb backup`: a standalone copy of the database in the current directory,
/// `ovn<nb|sb>_db.<MMddHHMM><epoch>.backup` as upstream names it. A raft member's file is
/// converted with `ovsdb-tool cluster-to-standalone` in the leader's pod (upstream's way), copied
/// out and removed there; a standalone server's is taken with `ovsdb-client backup`, a
/// consistent snapshot of the live database.
async fn backup(client: &kube::Client, namespace: &str, db: Db) -> Result<ExitCode, String> {
    let pod = leader_pod(client, namespace, db).await?;
    let short = prefix(db);
    let suffix = jiff::Zoned::now().strftime("%m%d%H%M%s").to_string();
    let file = format!("/etc/ovn/ovn{short}_db.db");
    let name = format!("ovn{short}_db.{suffix}.backup");
    let local = std::env::current_dir()
        .map_err(|e| format!("current directory: {e}"))?
        .join(&name);
    let c = Some("ovn-central");
    let (clustered, _) = capture(
        client,
        namespace,
        &pod,
        c,
        argv("ovsdb-tool", vec!["db-is-clustered".into(), file.clone()]),
    )
    .await?;
    let code = if clustered == ExitCode::SUCCESS {
        let remote = format!("/etc/ovn/{name}");
        let code = exec(
            client,
            namespace,
            &pod,
            c,
            argv(
                "ovsdb-tool",
                vec!["cluster-to-standalone".into(), remote.clone(), file],
            ),
        )
        .await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
        let copied = exec_to_file(
            client,
            namespace,
            &pod,
            c,
            argv("cat", vec![remote.clone()]),
            &local,
        )
        .await;
        exec(
            client,
            namespace,
            &pod,
            c,
            argv("rm", vec!["-f".into(), remote]),
        )
        .await?;
        copied?
    } else {
        let sock = format!("unix:/var/run/ovn/ovn{short}_db.sock");
        exec_to_file(
            client,
            namespace,
            &pod,
            c,
            argv(
                "ovsdb-client",
                vec!["backup".into(), sock, db.schema().into()],
            ),
            &local,
        )
        .await?
    };
    if code == ExitCode::SUCCESS {
        println!("backup ovn-{short} db to {}", local.display());
    } else {
        let _ = std::fs::remove_file(&local);
    }
    Ok(code)
}

fn prefix(db: Db) -> &'static str {
    match db {
        Db::Nb => "nb",
        Db::Sb => "sb",
    }
}

fn argv(tool: &str, args: Vec<String>) -> Vec<String> {
    std::iter::once(tool.to_string()).chain(args).collect()
}
