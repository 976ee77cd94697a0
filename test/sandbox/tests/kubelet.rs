//! The kubelet stand-ins honour the CNI contract with any plugin, before our own CNI exists: a
//! recording shell plugin sees exactly what a container runtime passes (env, stdin, chained
//! `prevResult`, a real network namespace), its result becomes the pod's status, failures become
//! Events and are retried, deletes call DEL and remove the namespace. Also: Node registration and
//! readiness, scheduling, hostNetwork pods.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube_ovn_sandbox::{leftovers, sys, NodeInfo, Sandbox, SandboxConfig};
use serde_json::{json, Value};

/// Records every call (one JSON line: command, env, stdin) next to itself and answers with an
/// address derived from a counter. Pods named `fail-*` fail until a file `allow` exists.
const PLUGIN: &str = r#"#!/bin/sh
dir=$(dirname "$0")
stdin=$(cat)
printf '{"command":"%s","netns":"%s","ifname":"%s","containerid":"%s","args":"%s","path":"%s","netns_exists":%s,"stdin":%s}\n' \
  "$CNI_COMMAND" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_CONTAINERID" "$CNI_ARGS" "$CNI_PATH" \
  "$([ -e "$CNI_NETNS" ] && echo true || echo false)" "$stdin" >> "$dir/calls"
case "$CNI_COMMAND" in
ADD)
  case "$CNI_ARGS" in
  *K8S_POD_NAME=fail-*)
    if [ ! -e "$dir/allow" ]; then
      echo '{"cniVersion":"1.0.0","code":11,"msg":"fake plugin refuses","details":"no allow file"}'
      exit 1
    fi;;
  esac
  if echo "$stdin" | grep -q prevResult; then n=$(cat "$dir/n"); else
    n=$(( $(cat "$dir/n" 2>/dev/null || echo 10) + 1 )); echo $n > "$dir/n"; fi
  echo "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"$CNI_NETNS\"}],\"ips\":[{\"address\":\"10.99.0.$n/24\",\"interface\":0}]}";;
DEL) ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}';;
esac
"#;

fn install_plugin(node: &NodeInfo) {
    let bin = node.cni_bin_dir().join("fake");
    std::fs::write(&bin, PLUGIN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        node.cni_conf_dir().join("10-fake.conflist"),
        json!({"cniVersion": "1.0.0", "name": "fakenet", "plugins": [
            {"type": "fake", "role": "main"},
            {"type": "fake", "role": "chained"},
        ]})
        .to_string(),
    )
    .unwrap();
}

fn calls(node: &NodeInfo) -> Vec<Value> {
    std::fs::read_to_string(node.cni_bin_dir().join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn ready_reason(node: &Node) -> Option<(String, String)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_runs_pods_through_any_cni_plugin_like_a_runtime() {
    let config = SandboxConfig::isolated(2);
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox up");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Nodes registered with their InternalIP, not Ready before a CNI config exists.
    let n1 = nodes.get("node1").await.unwrap();
    let addr = n1.status.as_ref().unwrap().addresses.as_ref().unwrap();
    assert!(addr
        .iter()
        .any(|a| a.type_ == "InternalIP" && a.address == state.nodes[0].ip.to_string()));
    assert!(n1
        .metadata
        .labels
        .as_ref()
        .unwrap()
        .contains_key("node-role.kubernetes.io/control-plane"));
    eventually("node1 NotReady", || async {
        let n = nodes.get("node1").await.ok()?;
        (ready_reason(&n)? == ("False".into(), "NetworkPluginNotReady".into())).then_some(())
    })
    .await;

    // A pod before the network exists stays Pending with an event saying why.
    pods.create(
        &PostParams::default(),
        &pod(
            "early",
            json!({"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}),
        ),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("NetworkNotReady event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.involved_object.name.as_deref() == Some("early")
                    && e.reason.as_deref() == Some("NetworkNotReady")
            })
            .then_some(())
    })
    .await;

    for n in &state.nodes {
        install_plugin(n);
    }
    eventually("node1 Ready", || async {
        let n = nodes.get("node1").await.ok()?;
        (ready_reason(&n)?.0 == "True").then_some(())
    })
    .await;

    // The early pod is retried and comes up; a pod without nodeName is scheduled; a pod with a
    // nodeSelector lands where it asks.
    pods.create(
        &PostParams::default(),
        &pod("free", json!({"containers": [{"name": "c", "image": "x"}]})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("picky", json!({"nodeSelector": {"kubernetes.io/hostname": "node2"}, "containers": [{"name": "c", "image": "x"}]})),
    )
    .await
    .unwrap();
    for name in ["early", "free", "picky"] {
        let ip = eventually(&format!("{name} Running"), || async {
            let p = pods.get(name).await.ok()?;
            let st = p.status?;
            (st.phase.as_deref() == Some("Running")).then_some(st.pod_ip?)
        })
        .await;
        assert!(ip.starts_with("10.99.0."), "{name}: {ip}");
        let netns = state.pod_netns("default", name);
        assert!(
            Path::new(&sys::netns_path(&netns)).exists(),
            "{name} has no netns"
        );
    }
    let picky = pods.get("picky").await.unwrap();
    assert_eq!(picky.spec.unwrap().node_name.as_deref(), Some("node2"));
    assert_eq!(
        picky.status.unwrap().host_ip.as_deref(),
        Some(state.nodes[1].ip.to_string().as_str())
    );

    // What the plugin saw for "early": the runtime's env and stdin, a live netns, the chain.
    let node1_calls = calls(&state.nodes[0]);
    let early: Vec<&Value> = node1_calls
        .iter()
        .filter(|c| c["args"].as_str().unwrap().contains("K8S_POD_NAME=early;"))
        .collect();
    assert_eq!(early.len(), 2, "one ADD per plugin of the list: {early:?}");
    for c in &early {
        assert_eq!(c["command"], "ADD");
        assert_eq!(c["ifname"], "eth0");
        assert_eq!(c["netns_exists"], true);
        assert_eq!(
            c["netns"],
            sys::netns_path(&state.pod_netns("default", "early"))
        );
        assert_eq!(c["containerid"].as_str().unwrap().len(), 64);
        assert_eq!(
            c["path"],
            state.nodes[0].cni_bin_dir().display().to_string()
        );
        assert!(c["args"]
            .as_str()
            .unwrap()
            .contains("K8S_POD_NAMESPACE=default"));
        assert_eq!(c["stdin"]["name"], "fakenet");
        assert_eq!(c["stdin"]["cniVersion"], "1.0.0");
    }
    assert_eq!(early[0]["stdin"]["role"], "main");
    assert!(early[0]["stdin"].get("prevResult").is_none());
    assert_eq!(early[1]["stdin"]["role"], "chained");
    assert!(
        early[1]["stdin"]["prevResult"]["ips"].is_array(),
        "{}",
        early[1]["stdin"]
    );

    // A failing plugin: Event with the plugin's error, pod Pending, then retried to success.
    pods.create(
        &PostParams::default(),
        &pod(
            "fail-once",
            json!({"nodeName": "node2", "containers": [{"name": "c", "image": "x"}]}),
        ),
    )
    .await
    .unwrap();
    let message = eventually("FailedCreatePodSandBox event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("fail-once")
                    && e.reason.as_deref() == Some("FailedCreatePodSandBox")
            })
            .and_then(|e| e.message)
    })
    .await;
    assert!(message.contains("fake plugin refuses"), "{message}");
    assert!(message.contains("11"), "{message}");
    let p = pods.get("fail-once").await.unwrap();
    assert_ne!(p.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    // The failed ADD was cleaned up with DEL, and its namespace removed.
    assert!(calls(&state.nodes[1]).iter().any(|c| c["command"] == "DEL"
        && c["args"]
            .as_str()
            .unwrap()
            .contains("K8S_POD_NAME=fail-once;")));
    std::fs::write(state.nodes[1].cni_bin_dir().join("allow"), "").unwrap();
    eventually("fail-once Running after retry", || async {
        let p = pods.get("fail-once").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    // hostNetwork pods take the node's IP and never call CNI.
    pods.create(&PostParams::default(), &pod("hostnet", json!({"nodeName": "node1", "hostNetwork": true, "containers": [{"name": "c", "image": "x"}]})))
        .await
        .unwrap();
    let ip = eventually("hostnet Running", || async {
        let st = pods.get("hostnet").await.ok()?.status?;
        (st.phase.as_deref() == Some("Running")).then_some(st.pod_ip?)
    })
    .await;
    assert_eq!(ip, state.nodes[0].ip.to_string());
    assert!(!calls(&state.nodes[0]).iter().any(|c| c["args"]
        .as_str()
        .unwrap()
        .contains("K8S_POD_NAME=hostnet;")));

    // Delete: DEL for every plugin, last first, with the ADD's container id; namespace gone.
    let early_id = early[0]["containerid"].clone();
    pods.delete("early", &DeleteParams::default())
        .await
        .unwrap();
    let netns = state.pod_netns("default", "early");
    eventually("early netns removed", || async {
        (!Path::new(&sys::netns_path(&netns)).exists()).then_some(())
    })
    .await;
    let dels: Vec<Value> = calls(&state.nodes[0])
        .into_iter()
        .filter(|c| c["command"] == "DEL" && c["containerid"] == early_id)
        .collect();
    assert_eq!(dels.len(), 2, "{dels:?}");
    assert_eq!(dels[0]["stdin"]["role"], "chained");
    assert_eq!(dels[1]["stdin"]["role"], "main");

    sandbox.down().await.expect("teardown");
    let left = leftovers(&run_dir, &prefix);
    assert!(left.is_empty(), "teardown left {left:?}");
}
