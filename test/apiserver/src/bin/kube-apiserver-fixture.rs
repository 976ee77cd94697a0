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
