//! Services through the HTTP API as kube-apiserver hands them out: the `kubernetes` Service,
//! allocation, conflicts, immutability, release on delete and the allocation state rebuilt from
//! the data directory after a restart.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube_apiserver_fixture::{ApiServer, Options};
use serde_json::json;

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn cluster_ips(svc: &Service) -> Vec<String> {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ips.clone())
        .unwrap_or_default()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn kubernetes_service_allocation_conflicts_and_release() {
    let server = ApiServer::start(Options::default()).await.unwrap();
    let api: Api<Service> = Api::default_namespaced(server.client().unwrap());
    let k = api.get("kubernetes").await.unwrap();
    let spec = k.spec.clone().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("https"), 443, Some("TCP"))
    );
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(6443))
    );
    assert_eq!(
        k.metadata
            .labels
            .unwrap()
            .get("provider")
            .map(String::as_str),
        Some("kubernetes")
    );

    let pp = PostParams::default();
    let a = api
        .create(
            &pp,
            &service(
                "a",
                json!({"ports": [{"port": 80}], "selector": {"app": "a"}}),
            ),
        )
        .await
        .unwrap();
    let ip = cluster_ips(&a)[0].clone();
    assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
    let err = api_error(
        api.create(&pp, &service("b", json!({"clusterIP": ip})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(
        err.message.contains("provided IP is already allocated"),
        "{}",
        err.message
    );
    let err = api_error(
        api.create(&pp, &service("b", json!({"clusterIP": "192.168.0.1"})))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("is not in the valid range"),
        "{}",
        err.message
    );
    let err = api_error(
        api.create(
            &pp,
            &service("b", json!({"ipFamilyPolicy": "RequireDualStack"})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    // Immutable: a patch moving the cluster IP is refused; one leaving it out keeps it.
    let err = api_error(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.96.9.9", "clusterIPs": ["10.96.9.9"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message.contains("may not change once set"),
        "{}",
        err.message
    );
    let mut replaced = service(
        "a",
        json!({"ports": [{"port": 81}], "selector": {"app": "a"}}),
    );
    replaced.metadata.resource_version = None;
    let after = api.replace("a", &pp, &replaced).await.unwrap();
    assert_eq!(cluster_ips(&after), vec![ip.clone()]);
    // Headless and ExternalName get no address; deleting releases it for an explicit request.
    let h = api
        .create(
            &pp,
            &service("h", json!({"clusterIP": "None", "selector": {"app": "h"}})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ips(&h), vec!["None".to_string()]);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let b = api
        .create(&pp, &service("b", json!({"clusterIP": ip})))
        .await
        .unwrap();
    assert_eq!(cluster_ips(&b), vec![ip]);
}

#[tokio::test]
async fn dual_stack_fixture_and_restart_keep_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        data_dir: Some(dir.path().to_path_buf()),
        service_cidrs: vec!["10.96.0.0/16".into(), "fd00:10:96::/112".into()],
        ..Options::default()
    };
    let server = ApiServer::start(options.clone()).await.unwrap();
    let api: Api<Service> = Api::default_namespaced(server.client().unwrap());
    let pp = PostParams::default();
    let d = api
        .create(&pp, &service("d", json!({"ipFamilyPolicy": "RequireDualStack", "type": "NodePort", "ports": [{"port": 53, "protocol": "UDP"}]})))
        .await
        .unwrap();
    let ips = cluster_ips(&d);
    assert_eq!(ips.len(), 2);
    assert!(
        ips[0].starts_with("10.96.") && ips[1].starts_with("fd00:10:96::"),
        "{ips:?}"
    );
    let node_port = d.spec.unwrap().ports.unwrap()[0].node_port.unwrap();
    server.shutdown().await;

    let server = ApiServer::start(options).await.unwrap();
    let api: Api<Service> = Api::default_namespaced(server.client().unwrap());
    assert_eq!(
        cluster_ips(&api.get("kubernetes").await.unwrap()),
        vec!["10.96.0.1".to_string()]
    );
    for ip in &ips {
        let err = api_error(
            api.create(&pp, &service("again", json!({"clusterIPs": [ip], "ipFamilies": [if ip.contains(':') {"IPv6"} else {"IPv4"}]})))
                .await
                .unwrap_err(),
        );
        assert!(err.message.contains("already allocated"), "{}", err.message);
    }
    let err = api_error(
        api.create(
            &pp,
            &service(
                "np",
                json!({"type": "NodePort", "ports": [{"port": 1, "nodePort": node_port}]}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message.contains("provided port is already allocated"),
        "{}",
        err.message
    );
}
