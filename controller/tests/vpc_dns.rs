//! VpcDns against the real binary (seed 004's custom vpc-dns): the CoreDNS Deployment and the
//! SwitchLBRule as upstream makes them from `vpc-dns-config`, one active VpcDns per VPC, the
//! next one deployed when the active one goes, and everything removed when the feature is
//! turned off.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube_ovn_common::crd::{Subnet, SwitchLbRule, Vpc, VpcDns};
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn setup(w: &World) {
    let nads: Api<DynamicObject> = Api::namespaced_with(
        w.client.clone(),
        "default",
        &ApiResource {
            group: "k8s.cni.cncf.io".into(),
            version: "v1".into(),
            api_version: "k8s.cni.cncf.io/v1".into(),
            kind: "NetworkAttachmentDefinition".into(),
            plural: "network-attachment-definitions".into(),
        },
    );
    let config = json!({"cniVersion": "0.3.0", "type": "kube-ovn",
        "server_socket": "/run/openvswitch/kube-ovn-daemon.sock", "provider": "ovn-nad.default.ovn"});
    nads.create(
        &PostParams::default(),
        &obj(
            json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "ovn-nad", "namespace": "default"},
            "spec": {"config": config.to_string()}}),
        ),
    )
    .await
    .unwrap();
    Api::<Vpc>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
                "metadata": {"name": "v1"}, "spec": {}})),
        )
        .await
        .unwrap();
    Api::<Subnet>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": "v1-s1"},
                "spec": {"vpc": "v1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4"}})),
        )
        .await
        .unwrap();
    configmaps(w)
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "vpc-dns-config", "namespace": "kube-system"},
                "data": {"coredns-vip": "10.96.0.3", "nad-name": "ovn-nad",
                         "nad-provider": "ovn-nad.default.ovn", "coredns-image": "coredns:test",
                         "k8s-service-host": "10.96.0.1", "k8s-service-port": "443"}})),
        )
        .await
        .unwrap();
}

fn configmaps(w: &World) -> Api<ConfigMap> {
    Api::namespaced(w.client.clone(), "kube-system")
}

fn deployments(w: &World) -> Api<Deployment> {
    Api::namespaced(w.client.clone(), "kube-system")
}

async fn create_dns(w: &World, name: &str) {
    Api::<VpcDns>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcDns",
                "metadata": {"name": name}, "spec": {"vpc": "v1", "subnet": "v1-s1"}})),
        )
        .await
        .unwrap();
}

async fn active(w: &World, name: &str) -> Option<bool> {
    let d = Api::<VpcDns>::all(w.client.clone()).get(name).await.ok()?;
    d.status.map(|s| s.active)
}

/// Waits until `name` is deployed (Deployment, rule, active) or, with `false`, has none of it.
async fn deployed(w: &World, name: &str, yes: bool) {
    let dp = format!("vpc-dns-{name}");
    eventually(&format!("vpc-dns {name} deployed: {yes}"), LONG, || async {
        let has_dp = deployments(w).get_opt(&dp).await.ok()?.is_some();
        let has_rule = Api::<SwitchLbRule>::all(w.client.clone())
            .get_opt(&dp)
            .await
            .ok()?
            .is_some();
        let is_active = active(w, name).await == Some(true);
        (has_dp == yes && has_rule == yes && is_active == yes).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_dns_deploys_one_per_vpc_promotes_the_next_and_stops_when_disabled() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    setup(&w).await;

    create_dns(&w, "a").await;
    deployed(&w, "a", true).await;
    let dp = deployments(&w).get("vpc-dns-a").await.unwrap();
    let dp = serde_json::to_value(dp).unwrap();
    assert_eq!(
        dp["spec"]["template"]["metadata"]["annotations"],
        json!({
            "ovn.kubernetes.io/logical_switch": "v1-s1",
            "k8s.v1.cni.cncf.io/networks": "default/ovn-nad",
            "ovn-nad.default.ovn.kubernetes.io/logical_switch": "ovn-default",
            "ovn-nad.default.ovn.kubernetes.io/routes": "[{\"dst\":\"10.96.0.1/32\",\"gw\":\"10.16.0.1\"}]",
        })
    );
    assert_eq!(
        dp["spec"]["template"]["spec"]["containers"][0]["image"],
        "coredns:test"
    );
    let rule = Api::<SwitchLbRule>::all(w.client.clone())
        .get("vpc-dns-a")
        .await
        .unwrap();
    assert_eq!(rule.spec.vip, "10.96.0.3");
    assert_eq!(rule.spec.namespace, "kube-system");
    assert_eq!(rule.spec.selector, vec!["k8s-app:vpc-dns-a".to_string()]);

    // A second VpcDns for the same VPC stays inactive, with a warning.
    create_dns(&w, "b").await;
    eventually("b inactive with a warning", LONG, || async {
        let events = Api::<Event>::all(w.client.clone())
            .list(&ListParams::default())
            .await
            .ok()?;
        let warned = events.items.iter().any(|e| {
            e.involved_object.name.as_deref() == Some("b")
                && e.reason.as_deref() == Some("VpcDnsNotDeployed")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("only one vpc-dns"))
        });
        (warned && active(&w, "b").await == Some(false)).then_some(())
    })
    .await;
    assert!(deployments(&w)
        .get_opt("vpc-dns-b")
        .await
        .unwrap()
        .is_none());
    assert_eq!(active(&w, "a").await, Some(true));

    // Deleting the active one deploys the other.
    Api::<VpcDns>::all(w.client.clone())
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    deployed(&w, "b", true).await;
    eventually("a's deployment and rule gone", LONG, || async {
        let dp = deployments(&w).get_opt("vpc-dns-a").await.ok()?;
        let rule = Api::<SwitchLbRule>::all(w.client.clone())
            .get_opt("vpc-dns-a")
            .await
            .ok()?;
        (dp.is_none() && rule.is_none()).then_some(())
    })
    .await;

    // A restart changes nothing.
    w.controller_settled().await;
    let before = deployments(&w).get("vpc-dns-b").await.unwrap();
    w.kill_controller();
    w.start_controller();
    w.controller_settled().await;
    let after = deployments(&w).get("vpc-dns-b").await.unwrap();
    assert_eq!(
        before.metadata.resource_version,
        after.metadata.resource_version
    );

    // Turned off: b is inactive and its Deployment and rule go.
    configmaps(&w)
        .patch(
            "vpc-dns-config",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"enable-vpc-dns": "false"}})),
        )
        .await
        .unwrap();
    deployed(&w, "b", false).await;
}
