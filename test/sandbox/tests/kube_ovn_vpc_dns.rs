//! Seed 004's custom vpc-dns with real packets: a VpcDns in a custom VPC gets its CoreDNS
//! Deployment (pods on the VPC subnet plus a `ovn-nad` attachment on ovn-default) and the VIP
//! 10.96.0.3 in front of them; a pod of the VPC asks the VIP and gets the answer of one of the
//! DNS pods (CoreDNS cannot run here: a responder in each DNS pod's namespace answers with that
//! pod's own address, so the answer says which pod the VIP reached). The VpcDns is active;
//! once it is deleted the VIP stops answering.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_ovn_common::crd::{Subnet, Vpc, VpcDns};
use kube_ovn_sandbox::dns::{query_a, DnsResponder};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{multus, probe, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(90);
const VIP: &str = "10.96.0.3";
const NAME: &str = "kubernetes.default.svc.cluster.local";

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

/// The Running pods of the VpcDns's Deployment and their first addresses.
async fn dns_pods(pods: &Api<Pod>, want: usize) -> Vec<(String, Ipv4Addr)> {
    probe::until(READY, "the vpc-dns pods Running", || async {
        let list = pods
            .list(&ListParams::default().labels("k8s-app=vpc-dns-dns1"))
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<(String, Ipv4Addr)> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| {
                let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
                Some((p.metadata.name.clone()?, ip))
            })
            .collect();
        (running.len() == want)
            .then_some(running)
            .ok_or_else(|| format!("{} of {want} Running", list.items.len()))
    })
    .await
    .unwrap()
}

/// What the VIP is made of: the rule's EndpointSlices and the NB's load balancers and which
/// switches hold them.
async fn vip_report(client: &kube::Client, state: &kube_ovn_sandbox::SandboxState) -> String {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let mut out = String::from("--- EndpointSlices in kube-system\n");
    match slices.list(&ListParams::default()).await {
        Ok(l) => {
            for s in l.items {
                out.push_str(&format!(
                    "{}: {}\n",
                    s.metadata.name.unwrap_or_default(),
                    serde_json::to_string(&s.endpoints).unwrap_or_default()
                ));
            }
        }
        Err(e) => out.push_str(&format!("list: {e}\n")),
    }
    let db = format!("--db={}", state.central.nb);
    for args in [
        vec!["lb-list"],
        vec!["--columns=name,load_balancer", "list", "Logical_Switch"],
    ] {
        let o = std::process::Command::new("ovn-nbctl")
            .arg(&db)
            .args(&args)
            .output();
        out.push_str(&format!("--- ovn-nbctl {}\n", args.join(" ")));
        match o {
            Ok(o) => out.push_str(&String::from_utf8_lossy(&o.stdout)),
            Err(e) => out.push_str(&format!("{e}\n")),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vpc_pod_resolves_through_the_vpc_dns_vip() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();

    // Seed 004's steps: the NAD, the config, the VPC and its subnet, then the VpcDns.
    multus::create_nad(
        client.clone(),
        "default",
        "ovn-nad",
        &json!({"cniVersion": "0.3.0", "type": "kube-ovn",
                "server_socket": "/run/openvswitch/kube-ovn-daemon.sock",
                "provider": "ovn-nad.default.ovn"}),
    )
    .await
    .unwrap();
    create(
        &Api::<ConfigMap>::namespaced(client.clone(), "kube-system"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "vpc-dns-config", "namespace": "kube-system"},
               "data": {"coredns-vip": VIP, "nad-name": "ovn-nad",
                        "nad-provider": "ovn-nad.default.ovn", "coredns-image": "coredns:sandbox",
                        "k8s-service-host": "10.96.0.1", "k8s-service-port": "443"}}),
    )
    .await;
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns1"}}),
    )
    .await;
    create(
        &Api::<Vpc>::all(client.clone()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "vpc1"},
               "spec": {"namespaces": ["ns1"]}}),
    )
    .await;
    create(
        &Api::<Subnet>::all(client.clone()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "net1"},
               "spec": {"vpc": "vpc1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4",
                        "namespaces": ["ns1"]}}),
    )
    .await;
    let dnses: Api<VpcDns> = Api::all(client.clone());
    create(
        &dnses,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcDns", "metadata": {"name": "dns1"},
               "spec": {"vpc": "vpc1", "subnet": "net1"}}),
    )
    .await;
    // As a user (or upstream's e2e) does, the client pod comes once the subnet is ready: a pod
    // reconciled before the controller has seen the subnet lands in the default subnet.
    let subnets: Api<Subnet> = Api::all(client.clone());
    probe::until(READY, "subnet net1 ready", || async {
        let s = subnets.get("net1").await.map_err(|e| e.to_string())?;
        let ready = s.status.as_ref().is_some_and(|st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        ready.then_some(()).ok_or_else(|| "not ready".to_string())
    })
    .await
    .unwrap();
    create(
        &Api::<Pod>::namespaced(client.clone(), "ns1"),
        json!({"metadata": {"name": "cli"},
               "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}}),
    )
    .await;

    // The Deployment's two pods run with their first NIC in the VPC subnet; each answers DNS
    // with its own address.
    let kube_system: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let pods = dns_pods(&kube_system, 2).await;
    let mut responders = Vec::new();
    for (name, ip) in &pods {
        assert_eq!(
            ip.octets()[..3],
            [10, 0, 1],
            "{name} at {ip}, not in the VPC subnet"
        );
        responders.push(DnsResponder::start(&state.pod_netns("kube-system", name), *ip).unwrap());
    }
    let ns1: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    let cli_ip = probe::running_pod_ip(&ns1, "cli", READY)
        .await
        .unwrap_or_else(|e| panic!("cli never ran: {e}\n{}", probe::report(&state)));
    assert!(
        cli_ip.to_string().starts_with("10.0.1."),
        "cli at {cli_ip}, not in the VPC subnet"
    );
    let active = dnses.get("dns1").await.unwrap().status.map(|s| s.active);
    assert_eq!(active, Some(true));

    // Through the VIP, the answers come from the DNS pods (both, over enough queries).
    let cli = state.pod_netns("ns1", "cli");
    let vip = SocketAddr::new(VIP.parse().unwrap(), 53);
    let dns_ips: BTreeSet<Ipv4Addr> = pods.iter().map(|(_, ip)| *ip).collect();
    let started = std::time::Instant::now();
    let mut seen = BTreeSet::new();
    let mut last = String::new();
    while seen.len() < dns_ips.len() && started.elapsed() < READY {
        match query_a(&cli, vip, NAME, Duration::from_secs(1)) {
            Ok(answers) => {
                assert_eq!(answers.len(), 1, "{answers:?}");
                assert!(
                    dns_ips.contains(&answers[0]),
                    "{answers:?} not from {dns_ips:?}"
                );
                seen.insert(answers[0]);
            }
            Err(e) => last = e,
        }
    }
    assert_eq!(
        seen,
        dns_ips,
        "not every DNS pod answered through {VIP} (last error: {last})\n{}{}",
        vip_report(&client, &state).await,
        probe::report(&state)
    );
    println!(
        "vpc-dns: both DNS pods answered through {VIP} within {:?}",
        started.elapsed()
    );

    // Deleted: the Deployment and the rule go, and the VIP stops answering.
    dnses
        .delete("dns1", &DeleteParams::default())
        .await
        .unwrap();
    probe::until(READY, "the VIP silent", || async {
        match query_a(&cli, vip, NAME, Duration::from_millis(500)) {
            Err(_) => Ok(()),
            Ok(a) => Err(format!("still answered {a:?}")),
        }
    })
    .await
    .unwrap();
    drop(responders);
}
