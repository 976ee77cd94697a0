//! What the pod agents (`kube-ovn-lb-svc`, `kube-ovn-vpc-nat-gw`, `kube-ovn-pinger`) share:
//! their Kubernetes client, from `--kubeconfig` when given, else `KUBECONFIG` or the in-cluster
//! configuration of their pod.

/// The API client of an agent started with `--kubeconfig=<kubeconfig>` (empty: inferred).
pub async fn client(kubeconfig: &str) -> Result<kube::Client, String> {
    let config = if kubeconfig.is_empty() {
        kube::Config::infer().await.map_err(|e| e.to_string())?
    } else {
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
        kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .map_err(|e| e.to_string())?
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}
