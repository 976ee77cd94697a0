//! Services end to end against the real NB (real binary, API fixture): VIPs per protocol and
//! affinity, named target ports, ready endpoints only, dual-stack, VIPs without endpoints
//! removed, deletion, GC of unclaimed VIPs (and load balancers that are not the cluster's left
//! alone), and adoption of an upstream-written VIP layout without a single NB write.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::{SwitchLbRule, Vip};
use kube_ovn_nb::objects::string_map;
use ovsdb::Datum;
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);
const TCP: &str = "cluster-tcp-loadbalancer";
const UDP: &str = "cluster-udp-loadbalancer";
const TCP_SESSION: &str = "cluster-tcp-session-loadbalancer";
const UDP_SESSION: &str = "cluster-udp-session-loadbalancer";

/// The `vips` map of the load balancer `lb` as the NB replica holds it.
fn vips(w: &World, lb: &str) -> BTreeMap<String, String> {
    let c = w.nb.cache();
    c.table("Load_Balancer")
        .and_then(|t| {
            t.iter()
                .find(|(_, r)| r.get("name") == Some(&Datum::from(lb)))
                .map(|(_, r)| string_map(r, "vips"))
        })
        .unwrap_or_default()
}

/// Waits until `vip` on `lb` is `want` (`None`: absent).
async fn vip_is(w: &World, lb: &str, vip: &str, want: Option<&str>) {
    eventually(&format!("{lb} {vip} = {want:?}"), LONG, || async {
        (vips(w, lb).get(vip).map(String::as_str) == want).then_some(())
    })
    .await;
}

async fn create_service(w: &World, name: &str, spec: Value, annotations: Value) {
    let s: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": spec,
    }))
    .unwrap();
    Api::<Service>::namespaced(w.client.clone(), "default")
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

/// An EndpointSlice as the EndpointSlice controller writes it; `endpoints` are
/// `(address, ready)`.
fn slice(
    name: &str,
    service: &str,
    family: &str,
    ports: Value,
    endpoints: &[(&str, bool)],
) -> EndpointSlice {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(a, ready)| json!({"addresses": [a], "conditions": {"ready": ready, "serving": ready, "terminating": false}}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {
            "kubernetes.io/service-name": service,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }},
        "addressType": family,
        "ports": ports,
        "endpoints": eps,
    }))
    .unwrap()
}

async fn put_slice(w: &World, s: EndpointSlice) {
    let api: Api<EndpointSlice> = Api::namespaced(w.client.clone(), "default");
    let name = s.metadata.name.clone().unwrap();
    match api.get_opt(&name).await.unwrap() {
        None => {
            api.create(&PostParams::default(), &s).await.unwrap();
        }
        Some(old) => {
            let mut s = s;
            s.metadata.resource_version = old.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &s)
                .await
                .unwrap();
        }
    }
}

async fn cluster_lbs(w: &World) {
    eventually("the cluster load balancers", LONG, || async {
        let c = w.nb.cache();
        let t = c.table("Load_Balancer")?;
        [TCP, UDP, TCP_SESSION, UDP_SESSION]
            .iter()
            .all(|n| t.by_name(n).next().is_some())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_vips_follow_services_and_endpoint_slices() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    cluster_lbs(&w).await;
    let svcs: Api<Service> = Api::namespaced(w.client.clone(), "default");

    // TCP by a named target port, UDP by number; one endpoint not ready.
    create_service(
        &w,
        "web",
        json!({"clusterIP": "10.96.10.10", "clusterIPs": ["10.96.10.10"], "selector": {"app": "web"},
               "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                         {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}]}),
        json!({}),
    )
    .await;
    let ports = json!([{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}]);
    put_slice(
        &w,
        slice(
            "web-a",
            "web",
            "IPv4",
            ports.clone(),
            &[
                ("10.16.0.11", true),
                ("10.16.0.10", true),
                ("10.16.0.12", false),
            ],
        ),
    )
    .await;
    vip_is(
        &w,
        TCP,
        "10.96.10.10:80",
        Some("10.16.0.10:8080,10.16.0.11:8080"),
    )
    .await;
    vip_is(
        &w,
        UDP,
        "10.96.10.10:53",
        Some("10.16.0.10:5353,10.16.0.11:5353"),
    )
    .await;
    eventually("the vpc annotation", LONG, || async {
        let s = svcs.get("web").await.ok()?;
        (s.metadata.annotations?.get("ovn.kubernetes.io/vpc")? == "ovn-cluster").then_some(())
    })
    .await;

    // The third endpoint turns ready; a second slice adds one more.
    put_slice(
        &w,
        slice(
            "web-a",
            "web",
            "IPv4",
            ports.clone(),
            &[
                ("10.16.0.11", true),
                ("10.16.0.10", true),
                ("10.16.0.12", true),
            ],
        ),
    )
    .await;
    put_slice(
        &w,
        slice(
            "web-b",
            "web",
            "IPv4",
            ports.clone(),
            &[("10.16.0.13", true)],
        ),
    )
    .await;
    vip_is(
        &w,
        TCP,
        "10.96.10.10:80",
        Some("10.16.0.10:8080,10.16.0.11:8080,10.16.0.12:8080,10.16.0.13:8080"),
    )
    .await;

    // ClientIP affinity moves both VIPs to the session load balancers.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"sessionAffinity": "ClientIP"}})),
    )
    .await
    .unwrap();
    vip_is(
        &w,
        TCP_SESSION,
        "10.96.10.10:80",
        Some("10.16.0.10:8080,10.16.0.11:8080,10.16.0.12:8080,10.16.0.13:8080"),
    )
    .await;
    vip_is(
        &w,
        UDP_SESSION,
        "10.96.10.10:53",
        Some("10.16.0.10:5353,10.16.0.11:5353,10.16.0.12:5353,10.16.0.13:5353"),
    )
    .await;
    vip_is(&w, TCP, "10.96.10.10:80", None).await;
    vip_is(&w, UDP, "10.96.10.10:53", None).await;

    // Dropping the UDP port drops its VIP; a changed port number moves the TCP VIP.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]}})),
    )
    .await
    .unwrap();
    vip_is(&w, UDP_SESSION, "10.96.10.10:53", None).await;
    vip_is(&w, TCP_SESSION, "10.96.10.10:80", None).await;
    vip_is(
        &w,
        TCP_SESSION,
        "10.96.10.10:8000",
        Some("10.16.0.10:8080,10.16.0.11:8080,10.16.0.12:8080,10.16.0.13:8080"),
    )
    .await;

    // No ready endpoint left: the VIP goes (upstream removes it; the node rejects the rest).
    put_slice(
        &w,
        slice(
            "web-a",
            "web",
            "IPv4",
            ports.clone(),
            &[("10.16.0.10", false)],
        ),
    )
    .await;
    put_slice(&w, slice("web-b", "web", "IPv4", ports.clone(), &[])).await;
    vip_is(&w, TCP_SESSION, "10.96.10.10:8000", None).await;

    // Dual-stack: each family's slice feeds its own VIP, IPv6 bracketed.
    create_service(
        &w,
        "dual",
        json!({"clusterIP": "10.96.10.20", "clusterIPs": ["10.96.10.20", "fd00:10:96::20"],
               "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
               "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        json!({}),
    )
    .await;
    let http = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    put_slice(
        &w,
        slice(
            "dual-4",
            "dual",
            "IPv4",
            http.clone(),
            &[("10.16.0.20", true)],
        ),
    )
    .await;
    put_slice(
        &w,
        slice(
            "dual-6",
            "dual",
            "IPv6",
            http.clone(),
            &[("fd00:16::20", true)],
        ),
    )
    .await;
    vip_is(&w, TCP, "10.96.10.20:80", Some("10.16.0.20:8080")).await;
    vip_is(&w, TCP, "[fd00:10:96::20]:80", Some("[fd00:16::20]:8080")).await;

    // A user's load balancer with the same VIP is not ours to touch.
    w.nbctl(&["lb-add", "user-lb", "10.96.10.20:80", "192.168.0.1:80"]);

    // Deleting the Service removes both families' VIPs.
    svcs.delete("dual", &DeleteParams::default()).await.unwrap();
    vip_is(&w, TCP, "10.96.10.20:80", None).await;
    vip_is(&w, TCP, "[fd00:10:96::20]:80", None).await;
    assert_eq!(
        vips(&w, "user-lb")
            .get("10.96.10.20:80")
            .map(String::as_str),
        Some("192.168.0.1:80"),
        "a foreign load balancer's VIP was touched"
    );

    // A VIP no Service claims, written while the controller was down, is collected on start.
    w.kill_controller();
    w.nbctl(&[
        "set",
        "load_balancer",
        TCP,
        "vips:\"10.96.99.99:80\"=\"10.16.0.99:80\"",
    ]);
    vip_is(&w, TCP, "10.96.99.99:80", Some("10.16.0.99:80")).await;
    w.start_controller();
    vip_is(&w, TCP, "10.96.99.99:80", None).await;
    assert_eq!(
        vips(&w, "user-lb")
            .get("10.96.10.20:80")
            .map(String::as_str),
        Some("192.168.0.1:80"),
        "GC touched a load balancer that is not the cluster's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_written_service_vips_are_adopted_without_writes() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    cluster_lbs(&w).await;
    // Let the controller settle the topology (subnets and the node's port), then stop it.
    eventually("the topology reconciled", LONG, || async {
        let subnets = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let nodes = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await?;
        let port =
            w.nb.cache()
                .table("Logical_Switch_Port")?
                .by_name("node-node1")
                .next()
                .is_some();
        (subnets >= 2.0 && nodes >= 1.0 && port).then_some(())
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // Services as upstream left them: annotated with their VPC, VIPs on the cluster load
    // balancers with sorted backends, one ClientIP Service on the session ones.
    let vpc = json!({"ovn.kubernetes.io/vpc": "ovn-cluster"});
    let http = json!([{"name": "http", "port": 8080, "protocol": "TCP"}]);
    let n = 20;
    for i in 0..n {
        let name = format!("s{i}");
        let mut spec = json!({"clusterIP": format!("10.96.20.{i}"), "clusterIPs": [format!("10.96.20.{i}")],
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]});
        if i == 0 {
            spec["sessionAffinity"] = json!("ClientIP");
        }
        create_service(&w, &name, spec, vpc.clone()).await;
        put_slice(
            &w,
            slice(
                &format!("{name}-x"),
                &name,
                "IPv4",
                http.clone(),
                &[
                    (&format!("10.16.1.{i}"), true),
                    (&format!("10.16.2.{i}"), true),
                ],
            ),
        )
        .await;
        let lb = if i == 0 { TCP_SESSION } else { TCP };
        w.nbctl(&[
            "set",
            "load_balancer",
            lb,
            &format!("vips:\"10.96.20.{i}:80\"=\"10.16.1.{i}:8080,10.16.2.{i}:8080\""),
        ]);
    }
    // The kubernetes Service every cluster has (the API fixture makes it, the sandbox keeps its
    // endpoint at node1's address), with the VIP upstream writes for it.
    let node1 = w.sandbox.state().nodes[0].ip;
    let api_backend = format!("{node1}:6443");
    w.nbctl(&[
        "set",
        "load_balancer",
        TCP,
        &format!("vips:\"10.96.0.1:443\"=\"{api_backend}\""),
    ]);
    vip_is(&w, TCP, "10.96.0.1:443", Some(&api_backend)).await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    let services = f64::from(n + 1);
    eventually("every service reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"service\"")
            .await
            .filter(|c| *c >= services)
    })
    .await;
    // The rest of start-up (subnets, the node) reconciles too.
    eventually("subnets and the node reconciled", LONG, || async {
        let subnets = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        let nodes = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await?;
        (subnets >= 2.0 && nodes >= 1.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting upstream's VIPs")
        .await;
    assert_eq!(
        vips(&w, TCP).len(),
        n as usize,
        "cluster-tcp-loadbalancer VIPs"
    );
    assert_eq!(
        vips(&w, TCP_SESSION)
            .get("10.96.20.0:80")
            .map(String::as_str),
        Some("10.16.1.0:8080,10.16.2.0:8080")
    );
}

/// The health-check rows: vip → external_ids.
fn health_checks(w: &World) -> BTreeMap<String, BTreeMap<String, String>> {
    let c = w.nb.cache();
    c.table("Load_Balancer_Health_Check")
        .map(|t| {
            t.iter()
                .map(|(_, r)| {
                    let vip = r
                        .get("vip")
                        .and_then(|d| d.as_atom()?.as_str().map(str::to_string))
                        .unwrap_or_default();
                    (vip, string_map(r, "external_ids"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_lb_rule_with_static_endpoints_gets_a_checked_vip() {
    let mut w = World::new(1, false).await;
    w.start_controller();
    cluster_lbs(&w).await;
    let mut ips = Vec::new();
    for p in ["be1", "be2"] {
        w.pods()
            .create(&PostParams::default(), &support::pod(p, Some("node1")))
            .await
            .unwrap();
    }
    for p in ["be1", "be2"] {
        let ip = eventually(&format!("{p} allocated"), LONG, || async {
            let pod = w.pods().get(p).await.ok()?;
            pod.metadata
                .annotations?
                .get("ovn.kubernetes.io/ip_address")
                .cloned()
        })
        .await;
        ips.push(ip);
    }
    let rules: Api<SwitchLbRule> = Api::all(w.client.clone());
    let rule: SwitchLbRule = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "SwitchLBRule", "metadata": {"name": "r1"},
        "spec": {"vip": "10.16.0.250", "namespace": "default", "endpoints": ips,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }))
    .unwrap();
    rules.create(&PostParams::default(), &rule).await.unwrap();

    // The Service, its mirrored endpoints, the health-check Vip of the subnet, then the VIP.
    let mut backends = ips
        .iter()
        .map(|ip| format!("{ip}:8080"))
        .collect::<Vec<_>>();
    backends.sort();
    vip_is(&w, TCP, "10.16.0.250:80", Some(&backends.join(","))).await;
    let check = eventually("the subnet's health-check vip", LONG, || async {
        let v = Api::<Vip>::all(w.client.clone())
            .get("ovn-default")
            .await
            .ok()?;
        let ip = v.status?.v4ip;
        (!ip.is_empty()).then_some(ip)
    })
    .await;
    let mappings = eventually("ip_port_mappings", LONG, || async {
        let c = w.nb.cache();
        let t = c.table("Load_Balancer")?;
        let (_, r) = t
            .iter()
            .find(|(_, r)| r.get("name") == Some(&Datum::from(TCP)))?;
        let m = string_map(r, "ip_port_mappings");
        (m.len() == 2).then_some(m)
    })
    .await;
    assert_eq!(mappings.get(&ips[0]), Some(&format!("be1.default:{check}")));
    assert_eq!(mappings.get(&ips[1]), Some(&format!("be2.default:{check}")));
    let hc = eventually("the health check", LONG, || async {
        health_checks(&w).remove("10.16.0.250:80")
    })
    .await;
    assert_eq!(
        hc.get("switch_lb_subnet").map(String::as_str),
        Some("ovn-default")
    );
    let st = eventually("the rule's status", LONG, || async {
        let r = rules.get("r1").await.ok()?;
        r.status.filter(|s| !s.service.is_empty())
    })
    .await;
    assert_eq!(
        (st.service.as_str(), st.ports.as_str()),
        ("default/slr-r1", "80/TCP")
    );

    // Deleting the rule takes its Service, VIP, mappings, check and the check Vip away.
    rules.delete("r1", &DeleteParams::default()).await.unwrap();
    vip_is(&w, TCP, "10.16.0.250:80", None).await;
    eventually("the rule's leftovers gone", LONG, || async {
        let svc_gone = Api::<Service>::namespaced(w.client.clone(), "default")
            .get_opt("slr-r1")
            .await
            .ok()?
            .is_none();
        let vip_gone = Api::<Vip>::all(w.client.clone())
            .get_opt("ovn-default")
            .await
            .ok()?
            .is_none();
        let checks_gone = health_checks(&w).is_empty();
        let c = w.nb.cache();
        let t = c.table("Load_Balancer")?;
        let (_, r) = t
            .iter()
            .find(|(_, r)| r.get("name") == Some(&Datum::from(TCP)))?;
        let mappings_gone = string_map(r, "ip_port_mappings").is_empty();
        (svc_gone && vip_gone && checks_gone && mappings_gone).then_some(())
    })
    .await;
}
