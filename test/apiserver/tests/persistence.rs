//! `--data-dir` / `Options::data_dir`: objects (including CRD-defined ones) survive a restart.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::Client;
use kube_apiserver_fixture::{ApiServer, Options};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": name}})).unwrap()
}

fn gadgets() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Gadget"),
        "gadgets",
    )
}

#[tokio::test]
async fn library_data_dir_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        data_dir: Some(dir.path().to_path_buf()),
        ..Options::default()
    };
    let server = ApiServer::start(options.clone()).await.unwrap();
    let client = server.client().unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster",
                 "names": {"plural": "gadgets", "kind": "Gadget"},
                 "versions": [{"name": "v1", "served": true, "storage": true}]},
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let gadget_api: Api<DynamicObject> = Api::all_with(client.clone(), &gadgets());
    let mut gadget = DynamicObject::new("g1", &gadgets());
    gadget.data = json!({"spec": {"colour": "red"}});
    gadget_api
        .create(&PostParams::default(), &gadget)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let before = cms
        .create(&PostParams::default(), &config_map("kept"))
        .await
        .unwrap();
    server.shutdown().await;

    let server = ApiServer::start(options).await.unwrap();
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let after = cms.get("kept").await.expect("configmap survived");
    assert_eq!(after.metadata.uid, before.metadata.uid);
    let gadget = Api::<DynamicObject>::all_with(client, &gadgets())
        .get("g1")
        .await
        .expect("custom resource survived");
    assert_eq!(gadget.data["spec"]["colour"], "red");
    let newer = cms
        .create(&PostParams::default(), &config_map("new"))
        .await
        .unwrap();
    let rv = |cm: &ConfigMap| {
        cm.metadata
            .resource_version
            .as_deref()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert!(
        rv(&newer) > rv(&before),
        "resourceVersion keeps increasing across restarts"
    );
}

/// Starts the binary and returns it with the URL it printed.
async fn start_binary(data_dir: &std::path::Path, kubeconfig: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-apiserver-fixture"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--kubeconfig-out")
        .arg(kubeconfig)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("binary prints its address in time")
        .unwrap()
        .expect("a line");
    let address = line
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    (child, format!("http://{address}"))
}

fn client_for(url: &str) -> Client {
    Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

#[tokio::test]
async fn binary_data_dir_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let kubeconfig = dir.path().join("kubeconfig");

    let (mut first, url) = start_binary(&data_dir, &kubeconfig).await;
    assert!(
        std::fs::read_to_string(&kubeconfig).unwrap().contains(&url),
        "kubeconfig names the server"
    );
    let cms: Api<ConfigMap> = Api::default_namespaced(client_for(&url));
    cms.create(&PostParams::default(), &config_map("durable"))
        .await
        .unwrap();
    first.kill().await.unwrap();

    let (mut second, url) = start_binary(&data_dir, &kubeconfig).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client_for(&url));
    let cm = cms
        .get("durable")
        .await
        .expect("configmap survived a restart of the binary");
    assert_eq!(cm.data.unwrap()["k"], "durable");
    second.kill().await.unwrap();
}
