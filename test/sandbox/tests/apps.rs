//! The workload controllers run pods as kube-controller-manager's would: a Deployment's
//! ReplicaSet and pods carry Kubernetes' names, labels and owner references, scale down and up,
//! roll to a new template and go away with their owner; a StatefulSet starts its pods one at a
//! time in ordinal order, replaces them for a new template from the highest ordinal, scales down
//! from the highest ordinal and goes away with its owner.
//! Pods are real (network namespaces wired by Debian's bridge plugin), so "Running" means the
//! kubelet stand-ins ran them.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_ovn_sandbox::apps::{
    pod_ready, CONTROLLER_REVISION_HASH, POD_INDEX, POD_TEMPLATE_HASH, STS_POD_NAME,
};
use kube_ovn_sandbox::{leftovers, node, probe, sys, Sandbox, SandboxConfig};
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

async fn sandbox() -> Sandbox {
    assert!(
        std::path::Path::new(kube_ovn_sandbox::node::SYSTEM_CNI_DIR)
            .join("bridge")
            .exists(),
        "Debian's containernetworking-plugins are missing (test/sandbox/install-deps.sh installs them)"
    );
    let sandbox = Sandbox::up(SandboxConfig::isolated(2))
        .await
        .expect("sandbox");
    for (i, n) in sandbox.state().nodes.iter().enumerate() {
        node::install_bridge_network(n, i).unwrap();
    }
    sandbox
}

async fn pods_with(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Waits until exactly `n` pods match `selector`, all Running and Ready with their netns.
async fn running(
    state: &kube_ovn_sandbox::SandboxState,
    pods: &Api<Pod>,
    selector: &str,
    n: usize,
) -> Vec<Pod> {
    probe::until(WITHIN, &format!("{n} Running pods {selector}"), || async {
        let list = pods_with(pods, selector).await;
        let ok = list.len() == n
            && list.iter().all(|p| {
                pod_ready(p)
                    && std::path::Path::new(&sys::netns_path(
                        &state.pod_netns("default", p.metadata.name.as_deref().unwrap_or_default()),
                    ))
                    .exists()
            });
        let names: Vec<_> = list
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        if ok {
            Ok(list)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_own_replicasets_that_own_pods() {
    let sandbox = sandbox().await;
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deploy: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }))
    .unwrap();
    let deploy = deploys
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();
    let list = running(&state, &pods, "app=web", 3).await;

    let rs_list = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs_list.len(), 1);
    let rs = &rs_list[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone();
    let rs_name = rs.metadata.name.clone().unwrap();
    assert_eq!(rs_name, format!("web-{hash}"));
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
    assert_eq!(Some(&owner.uid), deploy.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    let mut suffixes = BTreeSet::new();
    for p in &list {
        let name = p.metadata.name.clone().unwrap();
        let suffix = name
            .strip_prefix(&format!("{rs_name}-"))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
            "{name}"
        );
        suffixes.insert(suffix.to_string());
        assert_eq!(p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.controller),
            ("ReplicaSet", rs_name.as_str(), Some(true))
        );
        assert_eq!(Some(&o.uid), rs.metadata.uid.as_ref());
    }
    assert_eq!(suffixes.len(), 3);
    let ready = |n: i32| {
        let deploys = deploys.clone();
        async move {
            probe::until(WITHIN, &format!("web status at {n} ready"), || async {
                let d = deploys.get("web").await.map_err(|e| e.to_string())?;
                let s = d.status.clone().unwrap_or_default();
                if s.ready_replicas == Some(n)
                    && s.available_replicas == Some(n)
                    && s.replicas == Some(n)
                    && s.updated_replicas == Some(n)
                {
                    Ok(d)
                } else {
                    Err(format!("{s:?}"))
                }
            })
            .await
            .unwrap()
        }
    };
    ready(3).await;

    // Scale to 1 and back.
    let scale = |n: i32| {
        let deploys = deploys.clone();
        async move {
            deploys
                .patch(
                    "web",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"replicas": n}})),
                )
                .await
                .unwrap();
        }
    };
    scale(1).await;
    running(&state, &pods, "app=web", 1).await;
    ready(1).await;
    scale(3).await;
    running(&state, &pods, "app=web", 3).await;
    ready(3).await;

    // A new template rolls out: a second ReplicaSet takes over, the first ends at 0.
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}),
            ),
        )
        .await
        .unwrap();
    let rolled = probe::until(WITHIN, "rollout to the new template", || async {
        let list = pods_with(&pods, "app=web").await;
        let new: Vec<_> = list
            .iter()
            .filter(|p| {
                p.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH] != hash && pod_ready(p)
            })
            .collect();
        if list.len() == 3 && new.len() == 3 {
            Ok(())
        } else {
            Err(format!("{} pods, {} new", list.len(), new.len()))
        }
    })
    .await;
    rolled.unwrap();
    let d = ready(3).await;
    assert_eq!(
        d.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let old = sets.get(&rs_name).await.unwrap();
    assert_eq!(old.spec.unwrap().replicas, Some(0));

    // Deleting the Deployment deletes its ReplicaSets and their pods.
    deploys
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    probe::until(WITHIN, "web's ReplicaSets and pods gone", || async {
        let rs = sets
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
            .len();
        let p = pods_with(&pods, "app=web").await.len();
        if rs == 0 && p == 0 {
            Ok(())
        } else {
            Err(format!("{rs} ReplicaSets, {p} pods"))
        }
    })
    .await
    .unwrap();
    let (run_dir, prefix) = (state.run_dir.clone(), state.prefix.clone());
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_start_pods_in_order_and_scale_down_from_the_top() {
    let sandbox = sandbox().await;
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }))
    .unwrap();
    let sts = sets.create(&PostParams::default(), &sts).await.unwrap();
    // Whenever db-1 exists, db-0 is already Running and Ready (OrderedReady).
    probe::until(WITHIN, "db-0 then db-1", || async {
        let list = pods_with(&pods, "app=db").await;
        let get = |n: &str| list.iter().find(|p| p.metadata.name.as_deref() == Some(n));
        if get("db-1").is_some() {
            assert!(
                get("db-0").is_some_and(pod_ready),
                "db-1 created before db-0 was ready"
            );
        }
        if list.len() == 2 && list.iter().all(pod_ready) {
            Ok(())
        } else {
            Err(format!("{} pods", list.len()))
        }
    })
    .await
    .unwrap();
    let list = running(&state, &pods, "app=db", 2).await;
    for p in &list {
        let name = p.metadata.name.clone().unwrap();
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[STS_POD_NAME], name);
        assert_eq!(labels[POD_INDEX], name.trim_start_matches("db-"));
        assert!(labels[CONTROLLER_REVISION_HASH].starts_with("db-"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.name.as_str(), o.controller),
            ("StatefulSet", "db", Some(true))
        );
        assert_eq!(Some(&o.uid), sts.metadata.uid.as_ref());
    }
    probe::until(WITHIN, "db status", || async {
        let s = sets
            .get("db")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if s.ready_replicas == Some(2) && s.replicas == 2 {
            Ok(())
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await
    .unwrap();

    // A new template replaces the pods from the highest ordinal down, each once the rest is
    // ready; names stay.
    let old_revision = list[0].metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH].clone();
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}})),
    )
    .await
    .unwrap();
    probe::until(WITHIN, "db rolled to the new template", || async {
        let list = pods_with(&pods, "app=db").await;
        let new = list
            .iter()
            .filter(|p| {
                p.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH] != old_revision
                    && pod_ready(p)
            })
            .count();
        let s = sets
            .get("db")
            .await
            .map_err(|e| e.to_string())?
            .status
            .unwrap_or_default();
        if list.len() == 2
            && new == 2
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(2)
        {
            Ok(())
        } else {
            Err(format!("{} pods, {new} new, {s:?}", list.len()))
        }
    })
    .await
    .unwrap();
    let list = running(&state, &pods, "app=db", 2).await;
    let mut names: Vec<_> = list
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1"]);

    // Scale down removes the highest ordinal.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    let left = running(&state, &pods, "app=db", 1).await;
    assert_eq!(left[0].metadata.name.as_deref(), Some("db-0"));
    assert_eq!(
        left[0].metadata.uid,
        list.iter()
            .find(|p| p.metadata.name.as_deref() == Some("db-0"))
            .unwrap()
            .metadata
            .uid
    );

    sets.delete("db", &DeleteParams::default()).await.unwrap();
    probe::until(WITHIN, "db's pods gone", || async {
        let n = pods_with(&pods, "app=db").await.len();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} pods"))
        }
    })
    .await
    .unwrap();
    let (run_dir, prefix) = (state.run_dir.clone(), state.prefix.clone());
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
