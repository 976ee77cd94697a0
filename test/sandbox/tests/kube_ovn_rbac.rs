//! The shipped RBAC (dist/manifests) is sufficient and least-privilege. kube-ovn-controller
//! and the daemons run as their service accounts (`ovn`, `kube-ovn-cni`) with their own
//! tokens; the API fixture resolves them through the shipped ClusterRoleBindings, answers 403
//! to anything the rules do not allow, and records every (verb, group, resource, subresource)
//! per account. A representative workload — pods on two nodes, a namespace-bound subnet, a
//! Service with endpoints, a NetworkPolicy, a SecurityGroup, a Vip, then deleting them — must
//! pass without one denial, and every (verb, resource) the rules grant must have been used,
//! unless the generator names why it is needed on a path the sandbox does not reach
//! (`Rule::unexercised` in common/src/manifests/rbac.rs).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PostParams};
use kube_apiserver_fixture::access::Recorded;
use kube_ovn_common::manifests::rbac::{self, Account};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::{leftovers, probe, rbac as sandbox_rbac, Sandbox, SandboxConfig};
use serde_json::json;

const POD_READY: Duration = Duration::from_secs(90);
/// How long the controller and daemons may take to get to every request they make.
const SETTLE: Duration = Duration::from_secs(60);

fn kubeovn(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "kubeovn.io".into(),
        version: "v1".into(),
        api_version: "kubeovn.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// (verb, group, resource[/subresource]) of one account, as recorded.
fn used_by(recorded: &[Recorded], account: &Account) -> BTreeSet<(String, String, String)> {
    let user = sandbox_rbac::user_of(account.service_account);
    recorded
        .iter()
        .filter(|r| r.user == user)
        .map(|r| {
            let a = &r.attributes;
            let resource = if a.subresource.is_empty() {
                a.resource.clone()
            } else {
                format!("{}/{}", a.resource, a.subresource)
            };
            (a.verb.clone(), a.group.clone(), resource)
        })
        .collect()
}

/// Every (verb, group, resource) a rule the test must see used grants, not yet used.
fn unused_grants(
    account: &Account,
    used: &BTreeSet<(String, String, String)>,
) -> Vec<(String, String, String)> {
    let mut missing = Vec::new();
    for rule in account.rules.iter().filter(|r| r.unexercised.is_none()) {
        for verb in rule.verbs {
            for group in rule.groups {
                for resource in rule.resources {
                    let key = (verb.to_string(), group.to_string(), resource.to_string());
                    if !used.contains(&key) {
                        missing.push(key);
                    }
                }
            }
        }
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_rbac_is_sufficient_and_least_privilege() {
    let start = Instant::now();
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let client = sandbox.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node, app) in [("web1", "node1", "web"), ("cli1", "node2", "cli")] {
        create(
            &pods,
            json!({"metadata": {"name": name, "labels": {"app": app}},
                   "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}),
        )
        .await;
    }
    let web_ip = probe::running_pod_ip(&pods, "web1", POD_READY)
        .await
        .unwrap();
    probe::running_pod_ip(&pods, "cli1", POD_READY)
        .await
        .unwrap();

    // A subnet bound to a namespace, and a pod in it.
    let subnets: Api<DynamicObject> = Api::all_with(client.clone(), &kubeovn("Subnet", "subnets"));
    create(
        &subnets,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "rbac"},
               "spec": {"cidrBlock": "10.71.0.0/24", "namespaces": ["rbac"]}}),
    )
    .await;
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": "rbac"}}),
    )
    .await;
    let deadline = Instant::now() + SETTLE;
    while !subnets.get("rbac").await.ok().is_some_and(|s| {
        s.data["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    }) {
        assert!(Instant::now() < deadline, "subnet rbac never Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let team: Api<Pod> = Api::namespaced(client.clone(), "rbac");
    create(
        &team,
        json!({"metadata": {"name": "r1"},
               "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}}),
    )
    .await;
    let r1 = probe::running_pod_ip(&team, "r1", POD_READY).await.unwrap();
    assert!(r1.starts_with("10.71.0."), "{r1} is not from subnet rbac");

    // A Service with an endpoint, a NetworkPolicy, a SecurityGroup and a Vip.
    create(
        &Api::<Service>::namespaced(client.clone(), "default"),
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await;
    create(
        &Api::<NetworkPolicy>::namespaced(client.clone(), "default"),
        json!({"metadata": {"name": "web"},
               "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}]}]}}),
    )
    .await;
    let sgs: Api<DynamicObject> =
        Api::all_with(client.clone(), &kubeovn("SecurityGroup", "security-groups"));
    create(
        &sgs,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "SecurityGroup", "metadata": {"name": "rbac"},
               "spec": {"ingressRules": [{"ipVersion": "ipv4", "protocol": "tcp", "priority": 1,
                        "remoteType": "address", "remoteAddress": web_ip, "portRangeMin": 80,
                        "portRangeMax": 80, "policy": "allow"}]}}),
    )
    .await;
    let vips: Api<DynamicObject> = Api::all_with(client.clone(), &kubeovn("Vip", "vips"));
    create(
        &vips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vip", "metadata": {"name": "rbac"},
               "spec": {"subnet": "ovn-default"}}),
    )
    .await;

    // The controller takes the Vip (finalizer and address) before it goes again.
    let deadline = Instant::now() + SETTLE;
    while !vips.get("rbac").await.ok().is_some_and(|v| {
        v.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty())
            && v.data["status"]["v4ip"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty())
    }) {
        assert!(Instant::now() < deadline, "vip rbac never allocated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Take it all down again: the controller's delete and finalizer paths.
    let gone = DeleteParams::default();
    pods.delete("cli1", &gone).await.unwrap();
    team.delete("r1", &gone).await.unwrap();
    vips.delete("rbac", &gone).await.unwrap();
    let deadline = Instant::now() + SETTLE;
    while vips.get_opt("rbac").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "vip rbac kept its finalizer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sgs.delete("rbac", &gone).await.unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), "default")
        .delete("web", &gone)
        .await
        .unwrap();

    let accounts = [rbac::controller(), rbac::daemon()];
    let deadline = Instant::now() + SETTLE;
    let recorded = loop {
        let recorded = sandbox.api_requests();
        let missing: Vec<_> = accounts
            .iter()
            .flat_map(|a| unused_grants(a, &used_by(&recorded, a)))
            .collect();
        if missing.is_empty() {
            break recorded;
        }
        if Instant::now() > deadline {
            for a in &accounts {
                println!("{} used:", a.service_account);
                for u in used_by(&recorded, a) {
                    println!("  {u:?}");
                }
            }
            panic!("granted but never used (remove them, or say in Rule::unexercised why they are needed): {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let denied: Vec<&Recorded> = recorded.iter().filter(|r| !r.allowed).collect();
    for a in &accounts {
        println!(
            "{}: {} distinct (verb, group, resource) used",
            a.service_account,
            used_by(&recorded, a).len()
        );
    }
    assert!(denied.is_empty(), "the shipped rules denied: {denied:#?}");
    println!("rbac test took {:.1}s", start.elapsed().as_secs_f64());
    sandbox.down().await.unwrap();
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}
