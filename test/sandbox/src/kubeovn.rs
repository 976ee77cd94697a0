//! Installing kube-ovn-rs into a sandbox the way a cluster install does: the CRDs, the
//! controller (host network, next to the central databases), and on every node the daemon (in
//! the node's namespace, on its OVS), the `kube-ovn` CNI binary in the node's plugin directory
//! and the `01-kube-ovn.conflist` pointing at that node's daemon socket. Processes get pidfiles
//! in the run directory, so any teardown finds them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::node::NodeInfo;
use crate::sys;

/// The binaries and manifests of a kube-ovn-rs build.
#[derive(Debug, Clone)]
pub struct KubeOvnBuild {
    /// `kube-ovn-controller`.
    pub controller: PathBuf,
    /// `kube-ovn-daemon`.
    pub daemon: PathBuf,
    /// The `kube-ovn` CNI plugin.
    pub cni: PathBuf,
    /// The `kubectl ko` plugin.
    pub kubectl_ko: PathBuf,
    /// `dist/crds/kube-ovn-crd.yaml`.
    pub crds: PathBuf,
    /// Extra controller flags (e.g. `--enable-anp=true`): features off by default that a test
    /// turns on, as a cluster's install would.
    pub controller_args: Vec<String>,
    /// Extra daemon flags (e.g. `--enable-tproxy=true`), likewise.
    pub daemon_args: Vec<String>,
    /// `dist/manifests`: the install manifests, whose RBAC rules the processes are held to.
    pub manifests: PathBuf,
}

/// The controller's kubeconfig in the run directory: its service account's token.
pub const CONTROLLER_KUBECONFIG: &str = "kube-ovn-controller.kubeconfig";

impl KubeOvnBuild {
    /// The build next to a binary of the same cargo target directory (`target/<profile>/`), with
    /// the CRDs from the source tree; `None` unless every file exists.
    pub fn beside(binary_dir: &Path, source_root: &Path) -> Option<KubeOvnBuild> {
        let b = KubeOvnBuild {
            controller: binary_dir.join("kube-ovn-controller"),
            daemon: binary_dir.join("kube-ovn-daemon"),
            cni: binary_dir.join("kube-ovn"),
            kubectl_ko: binary_dir.join("kubectl-ko"),
            crds: source_root.join("dist/crds/kube-ovn-crd.yaml"),
            controller_args: Vec::new(),
            daemon_args: Vec::new(),
            manifests: source_root.join("dist/manifests"),
        };
        ([&b.controller, &b.daemon, &b.cni, &b.kubectl_ko, &b.crds]
            .iter()
            .all(|p| p.is_file())
            && b.manifests.is_dir())
        .then_some(b)
    }

    /// The build a test binary of this workspace runs beside: test binaries live in
    /// `target/<profile>/deps`, the product binaries one level up; when they are missing they
    /// are built first, in the same profile.
    pub fn of_test_binary() -> Result<KubeOvnBuild, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} has no target directory", exe.display()))?;
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if let Some(build) = KubeOvnBuild::beside(dir, &source) {
            return Ok(build);
        }
        // One test binary run on its own (`cargo test -p kube-ovn-sandbox --test x`) has not
        // built the other packages' binaries: build them in the same profile. Cargo has let go
        // of the build directory's lock by the time tests run.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.current_dir(&source).args([
            "build",
            "-p",
            "kube-ovn-controller",
            "-p",
            "kube-ovn-daemon",
            "-p",
            "kube-ovn-cni",
            "--bins",
        ]);
        if dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().map_err(|e| format!("cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("building the kube-ovn binaries failed: {status}"));
        }
        KubeOvnBuild::beside(dir, &source).ok_or_else(|| {
            format!(
                "kube-ovn binaries missing in {} after building them",
                dir.display()
            )
        })
    }
}

/// Installs every CRD of the bundle (already installed ones are left as they are).
pub async fn install_crds(client: &kube::Client, bundle: &Path) -> Result<()> {
    let text = std::fs::read_to_string(bundle).map_err(|e| Error::io(bundle, e))?;
    install_crd_yaml(client, &text, &bundle.display().to_string()).await
}

/// Installs every CRD of a multi-document YAML text from `origin` (for messages).
pub async fn install_crd_yaml(client: &kube::Client, text: &str, origin: &str) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in serde_norway::Deserializer::from_str(text) {
        let crd = CustomResourceDefinition::deserialize(doc)
            .map_err(|e| Error::Invalid(format!("{origin}: {e}")))?;
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates the service accounts and RBAC objects of the install manifests' `*-sa.yaml` files in
/// `dir` (what `dist/install.sh` applies first), so the API holds them as in a cluster; the
/// fixture enforces the same rules from the files themselves.
pub async fn install_accounts(client: &kube::Client, dir: &Path) -> Result<()> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-sa.yaml"))
        .collect();
    files.sort();
    let params = PostParams::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        for doc in serde_norway::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(doc)
                .map_err(|e| Error::Invalid(format!("{}: {e}", file.display())))?;
            let typed = |what: &str, e: serde_json::Error| {
                Error::Invalid(format!("{}: a {what}: {e}", file.display()))
            };
            let ns = value["metadata"]["namespace"]
                .as_str()
                .unwrap_or("kube-system")
                .to_string();
            let outcome = match value["kind"].as_str() {
                Some("ServiceAccount") => {
                    let o: ServiceAccount =
                        serde_json::from_value(value).map_err(|e| typed("ServiceAccount", e))?;
                    Api::namespaced(client.clone(), &ns)
                        .create(&params, &o)
                        .await
                        .map(drop)
                }
                Some("ClusterRole") => {
                    let o: ClusterRole =
                        serde_json::from_value(value).map_err(|e| typed("ClusterRole", e))?;
                    Api::all(client.clone()).create(&params, &o).await.map(drop)
                }
                Some("ClusterRoleBinding") => {
                    let o: ClusterRoleBinding = serde_json::from_value(value)
                        .map_err(|e| typed("ClusterRoleBinding", e))?;
                    Api::all(client.clone()).create(&params, &o).await.map(drop)
                }
                Some("Role") => {
                    let o: Role = serde_json::from_value(value).map_err(|e| typed("Role", e))?;
                    Api::namespaced(client.clone(), &ns)
                        .create(&params, &o)
                        .await
                        .map(drop)
                }
                Some("RoleBinding") => {
                    let o: RoleBinding =
                        serde_json::from_value(value).map_err(|e| typed("RoleBinding", e))?;
                    Api::namespaced(client.clone(), &ns)
                        .create(&params, &o)
                        .await
                        .map(drop)
                }
                _ => Ok(()),
            };
            match outcome {
                Ok(()) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn spawn_logged(mut cmd: Command, log: &Path, pidfile: &Path) -> Result<Child> {
    let out = std::fs::File::create(log).map_err(|e| Error::io(log, e))?;
    let err = out.try_clone().map_err(|e| Error::io(log, e))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Command {
            command: format!("{cmd:?}"),
            detail: e.to_string(),
        })?;
    std::fs::write(pidfile, child.id().to_string()).map_err(|e| Error::io(pidfile, e))?;
    Ok(child)
}

/// Starts the controller in the root namespace against the sandbox's API and NB.
pub fn start_controller(
    build: &KubeOvnBuild,
    run_dir: &Path,
    kubeconfig: &Path,
    nb: &str,
) -> Result<Child> {
    let mut cmd = Command::new(&build.controller);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--ovn-nb-addr={nb}"))
        // Port 0: several sandboxes (and a host controller) may run side by side.
        .arg("--pprof-port=0")
        .args(&build.controller_args)
        .env("POD_NAME", "kube-ovn-controller-sandbox")
        .env("KUBE_NAMESPACE", "kube-system");
    spawn_logged(
        cmd,
        &run_dir.join("controller.log"),
        &run_dir.join("controller.pid"),
    )
}

/// The CNI configuration kube-ovn installs on a node, with that node's daemon socket.
pub fn conflist(node: &NodeInfo) -> String {
    serde_json::json!({
        "name": "kube-ovn",
        "cniVersion": "0.3.1",
        "plugins": [{
            "type": "kube-ovn",
            "server_socket": daemon_socket(node).display().to_string(),
        }],
    })
    .to_string()
}

/// Where a node's daemon listens.
pub fn daemon_socket(node: &NodeInfo) -> PathBuf {
    node.dir.join("kube-ovn-daemon.sock")
}

/// Installs the CNI plugin and configuration on a node and starts its daemon there.
pub fn start_node_agent(build: &KubeOvnBuild, node: &NodeInfo) -> Result<Child> {
    let bin = node.cni_bin_dir().join("kube-ovn");
    std::fs::copy(&build.cni, &bin).map_err(|e| Error::io(&bin, e))?;
    let conf = node.cni_conf_dir().join("01-kube-ovn.conflist");
    std::fs::write(&conf, conflist(node)).map_err(|e| Error::io(&conf, e))?;
    let mut cmd = sys::in_netns(&node.netns, &build.daemon);
    cmd.arg(format!("--kubeconfig={}", node.kubeconfig().display()))
        .arg(format!("--ovs-socket={}", node.ovs_remote()))
        .arg(format!("--bind-socket={}", daemon_socket(node).display()))
        .arg("--pprof-port=0")
        .args(&build.daemon_args)
        .env("NODE_NAME", &node.name);
    spawn_logged(
        cmd,
        &node.dir.join("daemon.log"),
        &node.dir.join("daemon.pid"),
    )
}
