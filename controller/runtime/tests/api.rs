//! The runtime's API writes against the API-server fixture: finalizers never drop another
//! controller's, Events aggregate, conditions are written only when they change.

use k8s_openapi::api::core::v1::{ConfigMap, Event, ObjectReference};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use kube_apiserver_fixture::{ApiServer, Options};
use kube_ovn_runtime::events::{EventType, Published, Recorder};
use kube_ovn_runtime::finalizer;
use serde_json::json;

async fn start() -> (ApiServer, Client) {
    let server = ApiServer::start(Options::default())
        .await
        .expect("fixture starts");
    let client = server.client().expect("client");
    (server, client)
}

async fn configmap(api: &Api<ConfigMap>, name: &str) -> ConfigMap {
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap()
}

#[tokio::test]
async fn a_stale_finalizer_add_never_drops_another_controllers_finalizer() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let stale = configmap(&api, "a").await;
    // Another controller adds its finalizer first (to an object with no list yet) ...
    let other = finalizer::add(&api, &stale, "other.io/f").await.unwrap();
    assert!(other.is_some());
    // ... so ours, made from the stale copy, is refused rather than replacing the list.
    let err = finalizer::add(&api, &stale, "kube-ovn-controller")
        .await
        .expect_err("a stale add is refused");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    // With the fresh object (what the retried reconcile reads) it is appended.
    let fresh = api.get("a").await.unwrap();
    finalizer::add(&api, &fresh, "kube-ovn-controller")
        .await
        .unwrap();
    let now = api.get("a").await.unwrap();
    assert_eq!(now.finalizers(), ["other.io/f", "kube-ovn-controller"]);
    // A stale remove (index moved) is refused too, a fresh one removes only ours.
    let mut moved = now.clone();
    moved.metadata.finalizers = Some(vec!["kube-ovn-controller".into()]);
    assert!(finalizer::remove(&api, &moved, "kube-ovn-controller")
        .await
        .is_err());
    finalizer::remove(&api, &now, "kube-ovn-controller")
        .await
        .unwrap();
    assert_eq!(api.get("a").await.unwrap().finalizers(), ["other.io/f"]);
    // Adding what is there writes nothing.
    let rv = api.get("a").await.unwrap().resource_version();
    let cur = api.get("a").await.unwrap();
    assert!(finalizer::add(&api, &cur, "other.io/f")
        .await
        .unwrap()
        .is_none());
    assert_eq!(api.get("a").await.unwrap().resource_version(), rv);
}

#[tokio::test]
async fn concurrent_finalizer_adds_all_survive() {
    let (_server, client) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    configmap(&api, "b").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let api = api.clone();
        tasks.spawn(async move {
            let name = format!("ctl-{i}.io/f");
            // What a reconciler does: read, add, and on a refused test retry with a fresh read.
            for _ in 0..100 {
                let cur = api.get("b").await.unwrap();
                match finalizer::add(&api, &cur, &name).await {
                    Ok(_) => return,
                    Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => continue,
                    Err(e) => panic!("{e}"),
                }
            }
            panic!("{name} never added");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut got = api.get("b").await.unwrap().finalizers().to_vec();
    got.sort();
    let want: Vec<String> = (0..8).map(|i| format!("ctl-{i}.io/f")).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn repeated_events_bump_one_events_count() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = configmap(&cms, "c").await;
    let obj: ObjectReference = cm.object_ref(&());
    let rec = Recorder::new(client.clone(), "kube-ovn-controller");
    let w = EventType::Warning;
    assert_eq!(
        rec.publish(&obj, w, "AcquireAddressFailed", "no address")
            .await
            .unwrap(),
        Published::Created
    );
    for n in 2..=4 {
        assert_eq!(
            rec.publish(&obj, w, "AcquireAddressFailed", "no address")
                .await
                .unwrap(),
            Published::Counted(n)
        );
    }
    rec.publish(&obj, w, "AcquireAddressFailed", "another reason")
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(client, "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    let mut got: Vec<(String, i32)> = list
        .items
        .iter()
        .map(|e| {
            (
                e.message.clone().unwrap_or_default(),
                e.count.unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("another reason".to_string(), 1),
            ("no address".to_string(), 4)
        ]
    );
    let e = list.items.iter().find(|e| e.count == Some(4)).unwrap();
    assert_eq!(e.involved_object.name.as_deref(), Some("c"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(e.last_timestamp >= e.first_timestamp);
    // An event deleted (expired) meanwhile is written anew.
    events
        .delete(&e.name_any(), &Default::default())
        .await
        .unwrap();
    assert_eq!(
        rec.publish(&obj, w, "AcquireAddressFailed", "no address")
            .await
            .unwrap(),
        Published::Created
    );
}

#[tokio::test]
async fn an_object_in_an_event_loop_is_throttled_after_its_burst() {
    let (_server, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = configmap(&cms, "d").await;
    let rec = Recorder::new(client, "kube-ovn-controller");
    let mut throttled = 0;
    for i in 0..40 {
        let r = rec
            .publish(
                &cm.object_ref(&()),
                EventType::Normal,
                "R",
                &format!("m{i}"),
            )
            .await
            .unwrap();
        if r == Published::Throttled {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 15, "a burst of 25, then nothing for minutes");
}
