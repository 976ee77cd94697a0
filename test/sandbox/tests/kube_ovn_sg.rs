//! SecurityGroups with real packets through kube-ovn-rs on two nodes: a server in a group that
//! admits one TCP port from the members of a client group only; a client in that group (its
//! egress allowed), a stranger in none. The deny-all group drops what no rule allows; taking
//! the server out of its group opens it again.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::SecurityGroup;
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::{ask_tcp, until_reach};
use kube_ovn_sandbox::{leftovers, probe, Sandbox, SandboxConfig};
use serde_json::{json, Value};

const POD_READY: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(30);

async fn until(netns: &str, to: SocketAddr, reach: bool) -> (bool, Duration) {
    until_reach(netns, to, reach, CONVERGE).await
}

async fn pod(api: &Api<Pod>, name: &str, node: &str, groups: Option<&str>) {
    let mut meta = json!({"name": name});
    if let Some(g) = groups {
        meta["annotations"] = json!({"ovn.kubernetes.io/security_groups": g});
    }
    let p: Pod = serde_json::from_value(json!({
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.unwrap();
}

async fn group(api: &Api<SecurityGroup>, name: &str, spec: Value) {
    let sg: SecurityGroup = serde_json::from_value(
        json!({"apiVersion": "kubeovn.io/v1", "kind": "SecurityGroup",
               "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap();
    api.create(&PostParams::default(), &sg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn security_groups_admit_and_drop_real_traffic() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let sgs: Api<SecurityGroup> = Api::all(client.clone());
    group(
        &sgs,
        "clients",
        json!({"egressRules": [{"ipVersion": "ipv4", "protocol": "all", "priority": 1,
                                "remoteType": "address", "remoteAddress": "0.0.0.0/0",
                                "policy": "allow"}]}),
    )
    .await;
    group(
        &sgs,
        "web",
        json!({"ingressRules": [{"ipVersion": "ipv4", "protocol": "tcp", "priority": 1,
                                 "remoteType": "securityGroup", "remoteSecurityGroup": "clients",
                                 "portRangeMin": 8080, "portRangeMax": 8080, "policy": "allow"}]}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, "server", "node1", Some("web")).await;
    pod(&pods, "friend", "node2", Some("clients")).await;
    pod(&pods, "stranger", "node2", None).await;
    let mut servers = Vec::new();
    for name in ["server", "friend", "stranger"] {
        probe::running_pod_ip(&pods, name, POD_READY).await.unwrap();
        servers.push(
            sandbox
                .serve_pod("default", name, name, &[8080, 9090], &[])
                .unwrap(),
        );
    }
    let ip: IpAddr = probe::running_pod_ip(&pods, "server", POD_READY)
        .await
        .unwrap()
        .parse()
        .unwrap();
    let (http, other) = (SocketAddr::new(ip, 8080), SocketAddr::new(ip, 9090));
    let (friend, stranger) = (
        state.pod_netns("default", "friend"),
        state.pod_netns("default", "stranger"),
    );

    let (ok, admitted) = until(&friend, http, true).await;
    assert!(
        ok,
        "a member of clients never reached {http}\n{}",
        probe::report(&state)
    );
    let (ok, dropped) = until(&stranger, http, false).await;
    assert!(ok, "a pod in no group still reaches {http}");
    assert!(
        ask_tcp(&friend, other).await.is_err(),
        "a member of clients got in on a port no rule admits"
    );

    // Out of its group, the server is open to everyone.
    pods.patch(
        "server",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"ovn.kubernetes.io/security_groups": null}}}),
        ),
    )
    .await
    .unwrap();
    let (ok, opened) = until(&stranger, http, true).await;
    assert!(ok, "{http} stayed closed after the server left its group");
    assert!(until(&stranger, other, true).await.0);
    println!(
        "security groups: member admitted after {:.2}s, stranger dropped after {:.2}s, open after leaving {:.2}s",
        admitted.as_secs_f64(),
        dropped.as_secs_f64(),
        opened.as_secs_f64()
    );
    drop(servers);
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
