//! kube-rs clients against the fixture: CRUD, watches and reflectors,
//! optimistic concurrency, selectors, finalizers, CRDs, Leases and apply.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use kube_apiserver_fixture::{ApiServer, Options};
use serde_json::json;
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(15);

async fn start(options: Options) -> (ApiServer, Client) {
    let server = ApiServer::start(options).await.expect("fixture starts");
    let client = server.client().expect("client for fixture");
    (server, client)
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

fn pod(name: &str, labels: serde_json::Value, node: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Pulls items from `stream` until `done` holds, failing after the deadline.
async fn drive_until<S: Stream + Unpin>(
    stream: &mut S,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Next item of a stream, failing after the deadline.
async fn next<S: Stream + Unpin>(stream: &mut S, what: &str) -> S::Item {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("stream ended before {what}"))
}

#[tokio::test]
async fn reflector_sees_add_update_delete() {
    let (_server, client) = start(Options::default()).await;
    namespace(&client, "app").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "app");
    pods.create(&PostParams::default(), &pod("early", json!({}), "n1"))
        .await
        .unwrap();

    let (reader, writer) = reflector::store::<Pod>();
    let mut stream = Box::pin(reflector(
        writer,
        watcher(pods.clone(), watcher::Config::default()),
    ));
    let has = |name: &str| reader.state().iter().any(|p| p.name_any() == name);
    drive_until(&mut stream, "initial list", || has("early")).await;

    pods.create(
        &PostParams::default(),
        &pod("late", json!({"v": "1"}), "n1"),
    )
    .await
    .unwrap();
    drive_until(&mut stream, "added pod", || has("late")).await;

    pods.patch(
        "late",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
    )
    .await
    .unwrap();
    let label = |name: &str| {
        reader
            .state()
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.labels().get("v").cloned())
    };
    drive_until(&mut stream, "updated label", || {
        label("late").as_deref() == Some("2")
    })
    .await;

    pods.delete("early", &DeleteParams::default())
        .await
        .unwrap();
    drive_until(&mut stream, "deleted pod", || !has("early")).await;
    assert!(has("late"));
    let stored = pods.get("late").await.unwrap();
    assert_eq!(
        stored.status.and_then(|s| s.phase).as_deref(),
        Some("Pending")
    );
}

/// Lists page with `limit`/`continue` like a real API server: every page carries the first
/// page's resourceVersion, so a watch from it replays a change made between pages; a paging
/// reflector ends with every object; a mangled token is 410 Gone.
#[tokio::test]
async fn lists_page_and_changes_between_pages_are_replayed() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    for i in 0..7 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm{i}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let rv = first.metadata.resource_version.clone().unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    // Changed after the first page was served, in a later page.
    cms.patch(
        "cm6",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    let mut names: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let page = cms
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        names.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(names, (0..7).map(|i| format!("cm{i}")).collect::<Vec<_>>());
    let mut events = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut events, "the replayed change").await.unwrap() {
        WatchEvent::Modified(cm) => assert_eq!(cm.name_any(), "cm6"),
        other => panic!("expected the change made between pages, got {other:?}"),
    }
    let bad = cms
        .list(&ListParams::default().limit(3).continue_token("garbage"))
        .await;
    assert_eq!(api_error(bad).code, 410);

    // kube-rs's watcher pages its initial list; the reflector still ends with everything.
    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().page_size(2);
    let mut stream = Box::pin(reflector(writer, watcher(cms.clone(), config)));
    drive_until(&mut stream, "all seven through pages of two", || {
        reader.state().len() == 7
    })
    .await;
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "first"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let config = watcher::Config::default().streaming_lists();
    let mut stream = Box::pin(reflector(writer, watcher(cms.clone(), config)));
    let has = |name: &str| reader.state().iter().any(|c| c.name_any() == name);
    drive_until(&mut stream, "initial events", || has("first")).await;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "second"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    drive_until(&mut stream, "a later event", || has("second")).await;
}

#[tokio::test]
async fn stale_resource_version_conflicts() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(
        api_error(cms.create(&PostParams::default(), &cm).await).reason,
        "AlreadyExists"
    );

    let mut fresh = created.clone();
    fresh.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let replaced = cms
        .replace("c", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );

    let status = api_error(cms.replace("c", &PostParams::default(), &fresh).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(api_error(cms.get("missing").await).code, 404);
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_and_watches() {
    let (_server, client) = start(Options::default()).await;
    namespace(&client, "sel").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "sel");
    for (name, labels, node) in [
        ("a", json!({"app": "web", "tier": "front"}), "n1"),
        ("b", json!({"app": "web"}), "n2"),
        ("c", json!({"app": "db"}), "n1"),
    ] {
        pods.create(&PostParams::default(), &pod(name, labels, node))
            .await
            .unwrap();
    }
    let names = |list: kube::core::ObjectList<Pod>| {
        let mut names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
        names.sort();
        names
    };
    let list = |selector: ListParams| {
        let pods = pods.clone();
        async move { names(pods.list(&selector).await.unwrap()) }
    };
    assert_eq!(
        list(ListParams::default().labels("app=web")).await,
        ["a", "b"]
    );
    assert_eq!(list(ListParams::default().labels("app!=web")).await, ["c"]);
    assert_eq!(
        list(ListParams::default().labels("app in (db, web),tier")).await,
        ["a"]
    );
    assert_eq!(
        list(ListParams::default().labels("app notin (web),!tier")).await,
        ["c"]
    );
    assert_eq!(
        list(ListParams::default().fields("spec.nodeName=n1")).await,
        ["a", "c"]
    );
    assert_eq!(
        list(ListParams::default().fields("metadata.name!=a,spec.nodeName==n1")).await,
        ["c"]
    );
    let all: Api<Pod> = Api::all(client.clone());
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("metadata.namespace=sel"))
                .await
                .unwrap()
        )
        .len(),
        3
    );
    assert_eq!(
        api_error(pods.list(&ListParams::default().labels("app in web")).await).code,
        400
    );

    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    pods.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    match next(&mut events, "c starts matching").await.unwrap() {
        WatchEvent::Added(p) => assert_eq!(p.name_any(), "c"),
        other => panic!("expected ADDED for c, got {other:?}"),
    }
    match next(&mut events, "a stops matching").await.unwrap() {
        WatchEvent::Deleted(p) => assert_eq!(p.name_any(), "a"),
        other => panic!("expected DELETED for a, got {other:?}"),
    }
}

#[tokio::test]
async fn too_old_watch_is_expired_and_watcher_relists() {
    let options = Options {
        history_capacity: 4,
        bookmark_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let (_server, client) = start(options).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let churn = |prefix: &'static str| {
        let cms = cms.clone();
        async move {
            for i in 0..8 {
                let cm: ConfigMap =
                    serde_json::from_value(json!({"metadata": {"name": format!("{prefix}{i}")}}))
                        .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
            }
        }
    };
    let old_rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    churn("a").await;
    let mut stale = cms
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut stale, "expiry error").await.unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 ERROR event, got {other:?}"),
    }

    // The watcher's watch times out after a second; by then its resourceVersion
    // has been compacted away by unrelated churn, so it must relist.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut events = watcher(pods.clone(), watcher::Config::default().timeout(1)).boxed();
    let mut inits = 0;
    let mut saw_expiry = false;
    let deadline = Instant::now() + DEADLINE;
    while inits < 2 {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("watcher relists before the deadline")
            .expect("watcher stream continues");
        match event {
            Ok(watcher::Event::Init) => inits += 1,
            Ok(watcher::Event::InitDone) if inits == 1 => churn("b").await,
            Err(watcher::Error::WatchError(status)) if status.code == 410 => saw_expiry = true,
            _ => {}
        }
    }
    assert!(saw_expiry, "the relist was caused by a 410 watch error");
}

#[tokio::test]
async fn bookmarks_arrive_periodically() {
    let options = Options {
        bookmark_interval: Duration::from_millis(50),
        ..Options::default()
    };
    let (_server, client) = start(options).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut events, "a bookmark").await.unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_ends_after_timeout_seconds() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let started = Instant::now();
    let params = WatchParams::default().timeout(1).disable_bookmarks();
    let mut events = cms.watch(&params, "0").await.unwrap().boxed();
    let ended = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = events.next().await {
            event.expect("no errors before the timeout");
        }
    })
    .await;
    assert!(ended.is_ok(), "the server closed the watch");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before timeoutSeconds"
    );
}

#[tokio::test]
async fn finalizers_delay_deletion_until_removed() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let mut events = cms
        .watch(
            &WatchParams::default().fields("metadata.name=held"),
            &created.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();

    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = cms.get("held").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    match next(&mut events, "deletionTimestamp update").await.unwrap() {
        WatchEvent::Modified(o) => assert!(o.metadata.deletion_timestamp.is_some()),
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(cms.get("held").await).code, 404);
    match next(&mut events, "deletion").await.unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.name_any(), "held"),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            }],
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn crd_install_serves_custom_resources_with_status() {
    let (_server, client) = start(Options::default()).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();

    let gvk = GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (resource, caps) = kube::discovery::pinned_kind(&client, &gvk)
        .await
        .expect("discovered");
    assert_eq!(resource.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &resource);

    let mut widget = DynamicObject::new("w1", &resource);
    widget.data = json!({"spec": {"size": 1}, "status": {"ready": true}});
    let created = widgets
        .create(&PostParams::default(), &widget)
        .await
        .unwrap();
    assert_eq!(
        created.data.get("status"),
        None,
        "status is ignored on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let status = Patch::Merge(json!({"status": {"ready": true}, "spec": {"size": 99}}));
    let patched = widgets
        .patch_status("w1", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["ready"], true);
    assert_eq!(
        patched.data["spec"]["size"], 1,
        "status patch leaves spec alone"
    );

    let spec = Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": false}}));
    let patched = widgets
        .patch("w1", &PatchParams::default(), &spec)
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["size"], 2);
    assert_eq!(
        patched.data["status"]["ready"], true,
        "main resource ignores status"
    );
    assert_eq!(patched.metadata.generation, Some(2));

    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_error(widgets.get("w1").await).code, 404);
}

#[tokio::test]
async fn lease_replace_detects_competing_holders() {
    let (_server, client) = start(Options::default()).await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "controller"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();

    let mut seen_by_a = leases.get("controller").await.unwrap();
    let mut seen_by_b = leases.get("controller").await.unwrap();
    if let Some(spec) = seen_by_a.spec.as_mut() {
        spec.lease_transitions = Some(0);
    }
    leases
        .replace("controller", &PostParams::default(), &seen_by_a)
        .await
        .expect("holder renews");

    if let Some(spec) = seen_by_b.spec.as_mut() {
        spec.holder_identity = Some("b".into());
    }
    let status = api_error(
        leases
            .replace("controller", &PostParams::default(), &seen_by_b)
            .await,
    );
    assert_eq!(status.code, 409, "a stale takeover must conflict");
    let current = leases.get("controller").await.unwrap();
    assert_eq!(
        current.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let params = PatchParams::apply("fixture-test").force();
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let created = cms
        .patch("ssa", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap()["a"], "1");

    let again = cms
        .patch("ssa", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, created.metadata.resource_version,
        "no-op apply"
    );

    let more = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"x": "y"}}, "data": {"b": "2"}});
    let merged = cms
        .patch("ssa", &params, &Patch::Apply(&more))
        .await
        .unwrap();
    let data = merged.data.unwrap();
    assert_eq!((data["a"].as_str(), data["b"].as_str()), ("1", "2"));
    assert_eq!(merged.metadata.labels.unwrap()["x"], "y");
}

/// Like kube-apiserver, the fixture keeps `kubernetes.io/metadata.name` on every Namespace
/// (NetworkPolicy namespace selectors rely on it): set on create, restored on updates.
#[tokio::test]
async fn namespaces_carry_their_name_label() {
    const LABEL: &str = "kubernetes.io/metadata.name";
    let (_server, client) = start(Options::default()).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let default = api.get("default").await.unwrap();
    assert_eq!(
        default.labels().get(LABEL).map(String::as_str),
        Some("default")
    );
    namespace(&client, "x").await;
    let x = api.get("x").await.unwrap();
    assert_eq!(x.labels().get(LABEL).map(String::as_str), Some("x"));
    let patched = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {LABEL: "other", "ns": "x"}}})),
        )
        .await
        .unwrap();
    let labels = patched.labels();
    assert_eq!(labels.get(LABEL).map(String::as_str), Some("x"));
    assert_eq!(labels.get("ns").map(String::as_str), Some("x"));
    let mut replaced = patched.clone();
    replaced.metadata.labels = None;
    let replaced = api
        .replace("x", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(
        replaced.labels().get(LABEL).map(String::as_str),
        Some("x"),
        "a replace without labels keeps the name label"
    );
}

#[tokio::test]
async fn bad_requests_get_status_errors() {
    let (_server, client) = start(Options::default()).await;
    let request = |method: &str, uri: &str, content_type: &str, body: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body.as_bytes().to_vec())
            .unwrap()
    };
    let cases = [
        (
            request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                "{nope",
            ),
            400,
            "BadRequest",
        ),
        (
            request(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/x",
                "text/plain",
                "{}",
            ),
            415,
            "UnsupportedMediaType",
        ),
        (
            request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                r#"{"metadata":{}}"#,
            ),
            422,
            "Invalid",
        ),
        (
            request(
                "POST",
                "/api/v1/namespaces/missing/configmaps",
                "application/json",
                r#"{"metadata":{"name":"a"}}"#,
            ),
            404,
            "NotFound",
        ),
        (
            request(
                "PUT",
                "/api/v1/namespaces/default/configmaps",
                "application/json",
                "{}",
            ),
            405,
            "MethodNotAllowed",
        ),
        (
            request(
                "GET",
                "/api/v1/namespaces/default/configmaps?labelSelector=a+in+b",
                "",
                "",
            ),
            400,
            "BadRequest",
        ),
    ];
    for (req, code, reason) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let status = api_error(client.request::<serde_json::Value>(req).await);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (code, reason),
            "{what}"
        );
    }
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let bad_patch = Patch::Json::<()>(
        serde_json::from_value(json!([{"op": "remove", "path": "/nope"}])).unwrap(),
    );
    assert_eq!(
        api_error(cms.patch("p", &PatchParams::default(), &bad_patch).await).code,
        400
    );
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_objects() {
    let (_server, client) = start(Options::default()).await;
    namespace(&client, "gone").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "cm-"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.name_any().starts_with("cm-") && created.name_any().len() > 3);
    Api::<Namespace>::all(client.clone())
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    assert!(cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        api_error(Api::<Namespace>::all(client).get("gone").await).code,
        404
    );
}

#[tokio::test]
async fn dry_run_writes_answer_as_real_ones_and_change_nothing() {
    let (_server, client) = start(Options::default()).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client);
    let mut watch = cms
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"k": "1"}})).unwrap();
    let answered = cms.create(&dry, &cm).await.unwrap();
    assert_eq!(answered.data, cm.data);
    assert!(answered.metadata.uid.is_some());
    assert_eq!(api_error(cms.get("c").await).code, 404);

    cms.create(&PostParams::default(), &cm).await.unwrap();
    let patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let patched = cms
        .patch("c", &patch, &Patch::Merge(json!({"data": {"k": "2"}})))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "2");
    let delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    cms.delete("c", &delete).await.unwrap();
    assert_eq!(cms.get("c").await.unwrap().data.unwrap()["k"], "1");
    // The one real write is the only event a watch saw.
    let first = next(&mut watch, "the real create").await.unwrap();
    assert!(matches!(first, WatchEvent::Added(ref c) if c.name_any() == "c"));
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "3"}})),
    )
    .await
    .unwrap();
    let second = next(&mut watch, "the real patch").await.unwrap();
    assert!(
        matches!(second, WatchEvent::Modified(ref c) if c.data.as_ref().unwrap()["k"] == "3"),
        "{second:?}"
    );

    let raw = hyper::http::Request::post("/api/v1/namespaces/default/configmaps?dryRun=Some")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&cm).unwrap())
        .unwrap();
    let refused: Result<serde_json::Value, _> = cms.into_client().request(raw).await;
    assert_eq!(api_error(refused).code, 400);
}
