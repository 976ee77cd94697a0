//! The EndpointSlice controller stand-in against the API fixture, with pod statuses written
//! directly (what a kubelet would report): slices appear with generated names, follow readiness,
//! keep their name across updates, fall back to a placeholder and go with their Service.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_apiserver_fixture::{ApiServer, Options};
use kube_ovn_sandbox::endpointslice::{
    self, CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use serde_json::json;

async fn slices_of(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("{LABEL_SERVICE_NAME}={svc}")))
        .await
        .unwrap()
        .items
}

async fn eventually<F, Fut>(what: &str, mut f: F) -> Vec<EndpointSlice>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Vec<EndpointSlice>>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn make_pod(api: &Api<Pod>, name: &str, ip: &str, port: i32, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x",
            "ports": [{"name": "http", "containerPort": port}]}]},
    }))
    .unwrap();
    api.create(&PostParams::default(), &pod).await.unwrap();
    set_ready(api, name, Some(ip), ready).await;
}

async fn set_ready(api: &Api<Pod>, name: &str, ip: Option<&str>, ready: bool) {
    let mut status = json!({"phase": "Running",
        "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .unwrap();
}

fn ready_of(slice: &EndpointSlice) -> Vec<(String, bool)> {
    let mut v: Vec<_> = slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.as_ref().unwrap().ready.unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn slices_follow_pods_and_services() {
    let server = ApiServer::start(Options::default()).await.unwrap();
    let client = server.client().unwrap();
    let controller = tokio::spawn(endpointslice::run(client.clone()));
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());

    make_pod(&pods, "a", "10.16.0.2", 8080, true).await;
    make_pod(&pods, "b", "10.16.0.3", 8080, false).await;
    make_pod(&pods, "c", "10.16.0.4", 9090, true).await;
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
    .unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();

    let got = eventually("two slices (8080 and 9090)", || async {
        let s = slices_of(&slices, "web").await;
        (s.len() == 2).then_some(s)
    })
    .await;
    for s in &got {
        let name = s.metadata.name.clone().unwrap();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "{name}"
        );
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), Some(&owner.uid)),
            ("Service", svc.metadata.uid.as_ref())
        );
        assert_eq!(s.address_type, "IPv4");
    }
    let by_port = |port: i32, got: &[EndpointSlice]| {
        got.iter()
            .find(|s| s.ports.as_ref().unwrap()[0].port == Some(port))
            .cloned()
            .unwrap()
    };
    let s8080 = by_port(8080, &got);
    assert_eq!(
        ready_of(&s8080),
        vec![("10.16.0.2".into(), true), ("10.16.0.3".into(), false)]
    );
    let s9090 = by_port(9090, &got);

    // Readiness flips update the slice in place; the other slice is not rewritten.
    set_ready(&pods, "b", None, true).await;
    let name = s8080.metadata.name.clone().unwrap();
    let updated = eventually("b ready", || async {
        let s = slices.get(&name).await.ok()?;
        (ready_of(&s) == vec![("10.16.0.2".into(), true), ("10.16.0.3".into(), true)])
            .then(|| vec![s])
    })
    .await;
    assert_eq!(updated[0].metadata.name, s8080.metadata.name);
    let after = slices
        .get(s9090.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version,
        s9090.metadata.resource_version
    );

    // No pods left: one placeholder without ports or endpoints.
    for p in ["a", "b", "c"] {
        pods.delete(p, &DeleteParams::default()).await.unwrap();
    }
    let placeholder = eventually("placeholder", || async {
        let s = slices_of(&slices, "web").await;
        (s.len() == 1
            && s[0].endpoints.is_empty()
            && s[0].ports.as_ref().is_some_and(|p| p.is_empty()))
        .then_some(s)
    })
    .await;
    assert_eq!(placeholder[0].address_type, "IPv4");

    // The Service goes: so do its slices.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("slices gone", || async {
        slices_of(&slices, "web").await.is_empty().then(Vec::new)
    })
    .await;
    controller.abort();
}
