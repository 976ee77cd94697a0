//! LoadBalancer Services through lb-svc pods (`--enable-lb-svc`, seed 003) against the real
//! binary and the API fixture: a Service gets upstream's Deployment `lb-svc-<svc>`; once its pod
//! (made here from the template, as a ReplicaSet would) runs with the attachment address the
//! controller allocated, `status.loadBalancer.ingress` carries it — dynamic and static; a
//! `loadBalancerIP` outside the attachment subnet is refused with an Event and no Deployment;
//! turning the Service into a ClusterIP one or deleting it removes the Deployment.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube_ovn_common::crd::Subnet;
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);
const PROVIDER: &str = "lb-svc-attachment.kube-system";
const IMAGE: &str = "docker.io/kubeovn/vpc-nat-gateway:v1.15.0";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Seed 003's NAD (macvlan, kube-ovn as its IPAM; the NAD CRD comes with every sandbox), the
/// attachment subnet and ovn-vpc-nat-config.
async fn lb_svc_world(w: &World) {
    let ar = ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    };
    let config = json!({"cniVersion": "0.3.0", "type": "macvlan", "master": "eth1", "mode": "bridge",
        "ipam": {"type": "kube-ovn", "server_socket": "/run/openvswitch/kube-ovn-daemon.sock",
                 "provider": PROVIDER}});
    let nad: DynamicObject = obj(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "lb-svc-attachment", "namespace": "kube-system"},
        "spec": {"config": config.to_string()}
    }));
    Api::<DynamicObject>::namespaced_with(w.client.clone(), "kube-system", &ar)
        .create(&PostParams::default(), &nad)
        .await
        .unwrap();
    Api::<Subnet>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": "attach-subnet"},
                "spec": {"cidrBlock": "172.18.0.0/16", "gateway": "172.18.0.1", "provider": PROVIDER,
                         "protocol": "IPv4", "excludeIps": ["172.18.0.0..172.18.0.10"]}})),
        )
        .await
        .unwrap();
    let cm: ConfigMap = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ovn-vpc-nat-config", "namespace": "kube-system"},
        "data": {"image": IMAGE}}));
    Api::<ConfigMap>::namespaced(w.client.clone(), "kube-system")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

async fn create_service(w: &World, name: &str, lb_ip: Option<&str>) {
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": "dynamic"},
        "ports": [{"name": "test", "port": 80, "protocol": "TCP", "targetPort": 80}]});
    if let Some(ip) = lb_ip {
        spec["loadBalancerIP"] = json!(ip);
    }
    let svc: Service = obj(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default",
            "annotations": {"ovn.kubernetes.io/attachmentprovider": PROVIDER,
                            "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "attach-subnet"}},
        "spec": spec}));
    services(w)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
}

fn services(w: &World) -> Api<Service> {
    Api::namespaced(w.client.clone(), "default")
}

fn deployments(w: &World) -> Api<Deployment> {
    Api::namespaced(w.client.clone(), "default")
}

async fn deployment(w: &World, name: &str) -> Value {
    let dp = eventually(&format!("deployment {name}"), LONG, || async {
        deployments(w).get_opt(name).await.unwrap()
    })
    .await;
    serde_json::to_value(dp).unwrap()
}

/// What a ReplicaSet would make of the Deployment's template: a pod on node1, then Running.
async fn run_pod_of(w: &World, dp: &Value, name: &str) {
    let t = &dp["spec"]["template"];
    let pod: Pod = obj(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default",
            "labels": t["metadata"]["labels"], "annotations": t["metadata"]["annotations"]},
        "spec": {"nodeName": "node1", "containers": t["spec"]["containers"]}}));
    w.pods().create(&PostParams::default(), &pod).await.unwrap();
    w.pods()
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
}

async fn ingress_of(w: &World, svc: &str) -> Vec<String> {
    eventually(&format!("{svc} ingress"), LONG, || async {
        let s = services(w).get(svc).await.ok()?;
        let ips: Vec<String> = s
            .status?
            .load_balancer?
            .ingress?
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        (!ips.is_empty()).then_some(ips)
    })
    .await
}

async fn gone(w: &World, name: &str) {
    eventually(&format!("deployment {name} deleted"), LONG, || async {
        deployments(w)
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_services_get_lb_svc_deployments_and_ingress() {
    let mut w = World::new(1, false).await;
    lb_svc_world(&w).await;
    w.controller_args = vec!["--enable-lb-svc=true".into()];
    w.start_controller();

    // Dynamic: the address the attachment IPAM gives the pod is the ingress.
    create_service(&w, "dyn", None).await;
    let dp = deployment(&w, "lb-svc-dyn").await;
    let labels = json!({"app": "lb-svc-dyn", "namespace": "default", "service": "dyn"});
    assert_eq!(dp["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(dp["spec"]["replicas"], 1);
    assert_eq!(dp["spec"]["strategy"]["type"], "Recreate");
    let t = &dp["spec"]["template"];
    assert_eq!(t["metadata"]["labels"], labels);
    assert_eq!(
        t["metadata"]["annotations"],
        json!({"k8s.v1.cni.cncf.io/networks": "kube-system/lb-svc-attachment",
               "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "attach-subnet"})
    );
    let c = &t["spec"]["containers"][0];
    assert_eq!(c["name"], "lb-svc");
    assert_eq!(c["image"], IMAGE);
    assert_eq!(c["command"], json!(["/kube-ovn/kube-ovn-lb-svc"]));
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(t["spec"]["terminationGracePeriodSeconds"], 0);
    assert_eq!(t["spec"]["serviceAccountName"], "kube-ovn-lb-svc");
    let rb: RoleBinding = Api::namespaced(w.client.clone(), "default")
        .get("kube-ovn-lb-svc")
        .await
        .unwrap();
    assert_eq!(rb.role_ref.name, "system:kube-ovn-lb-svc");
    Api::<ServiceAccount>::namespaced(w.client.clone(), "default")
        .get("kube-ovn-lb-svc")
        .await
        .unwrap();
    run_pod_of(&w, &dp, "lb-svc-dyn-6869d98dd8-cjvll").await;
    let ips = ingress_of(&w, "dyn").await;
    let pod = w.pods().get("lb-svc-dyn-6869d98dd8-cjvll").await.unwrap();
    let a = pod.metadata.annotations.unwrap();
    assert_eq!(
        ips,
        vec![a[&format!("{PROVIDER}.kubernetes.io/ip_address")].clone()]
    );
    let ip: std::net::Ipv4Addr = ips[0].parse().unwrap();
    assert!(ip.octets()[..2] == [172, 18] && ip.octets()[3] > 10, "{ip}");
    eventually("dyn's vpc annotation", LONG, || async {
        let s = services(&w).get("dyn").await.ok()?;
        (s.metadata.annotations?.get("ovn.kubernetes.io/vpc")? == "ovn-cluster").then_some(())
    })
    .await;

    // Static: spec.loadBalancerIP becomes the pod's attachment address, then the ingress.
    create_service(&w, "st", Some("172.18.0.50")).await;
    let dp = deployment(&w, "lb-svc-st").await;
    assert_eq!(
        dp["spec"]["template"]["metadata"]["annotations"]
            [format!("{PROVIDER}.kubernetes.io/ip_address")],
        "172.18.0.50"
    );
    run_pod_of(&w, &dp, "lb-svc-st-5d4f7c9b8-x2kq7").await;
    assert_eq!(ingress_of(&w, "st").await, vec!["172.18.0.50".to_string()]);

    // Outside the attachment subnet: an Event, no Deployment.
    create_service(&w, "bad", Some("10.99.0.1")).await;
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    let ev = eventually("bad told its loadBalancerIP is outside", LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some("bad")
                && e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("ValidateSvcFailed")
        })
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some("the loadbalancer IP 10.99.0.1 is not in the range of subnet attach-subnet, cidr 172.18.0.0/16")
    );
    assert!(deployments(&w)
        .get_opt("lb-svc-bad")
        .await
        .unwrap()
        .is_none());

    // A type change takes the Deployment away; so does a delete.
    services(&w)
        .patch(
            "st",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP", "loadBalancerIP": null}})),
        )
        .await
        .unwrap();
    gone(&w, "lb-svc-st").await;
    services(&w)
        .delete("dyn", &DeleteParams::default())
        .await
        .unwrap();
    gone(&w, "lb-svc-dyn").await;
}
