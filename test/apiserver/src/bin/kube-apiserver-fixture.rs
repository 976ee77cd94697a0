//! Standalone Kubernetes API server test fixture for sandboxes and manual
//! kubectl use. Not a production API server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use kube_apiserver_fixture::{ApiServer, Options};

/// Serve a test-only Kubernetes API until interrupted.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Keep objects in this directory so they survive a restart.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Write a kubeconfig for this server to the file.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Service CIDRs, comma-separated (one per IP family), as kube-apiserver's flag.
    #[arg(long, default_value = kube_apiserver_fixture::services::DEFAULT_SERVICE_CIDR, value_delimiter = ',')]
    service_cluster_ip_range: Vec<String>,
    /// Node-port range `first-last`, as kube-apiserver's flag.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),
    /// Serve `pods/exec` by running the command in a podman container: the one the pod's
    /// annotation `test.kube-ovn-rs/podman-container` names (how the containerized
    /// conformance scripts give their containers Pod objects).
    #[arg(long)]
    exec_podman: bool,
}

/// The annotation naming the podman container behind a pod (see `--exec-podman`).
const PODMAN_CONTAINER: &str = "test.kube-ovn-rs/podman-container";

/// `podman exec -i <container> <argv>` for an exec on a pod annotated with its container.
fn podman_exec(
    target: &kube_apiserver_fixture::exec::ExecTarget,
) -> Result<std::process::Command, String> {
    let container = target.pod["metadata"]["annotations"][PODMAN_CONTAINER]
        .as_str()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("the pod has no {PODMAN_CONTAINER} annotation"))?;
    let mut cmd = std::process::Command::new("podman");
    cmd.args(["exec", "-i", container]).args(&target.command);
    Ok(cmd)
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not first-last"))?;
    let first = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a port"))?;
    let last = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a port"))?;
    Ok((first, last))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let server = ApiServer::start(Options {
        listen: args.listen,
        data_dir: args.data_dir,
        service_cidrs: args.service_cluster_ip_range,
        node_port_range: args.service_node_port_range,
        exec: args
            .exec_podman
            .then(|| kube_apiserver_fixture::exec::ExecHandler::new(podman_exec)),
        ..Options::default()
    })
    .await?;
    if let Some(path) = &args.kubeconfig_out {
        std::fs::write(path, server.kubeconfig_yaml())?;
    }
    println!("listening on {}", server.address());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
