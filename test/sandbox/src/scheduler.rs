//! The scheduler's job, reduced to what a sandbox needs: bind every pod created without a
//! `spec.nodeName` to a node whose labels match its `nodeSelector`, spreading pods evenly.

use std::collections::{BTreeMap, HashMap};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use tracing::warn;

/// Picks the node for a pod: among nodes whose labels include every `selector` pair, the one
/// with the fewest pods bound so far (ties broken by name, so the choice is deterministic).
pub fn choose<'a>(
    nodes: &'a BTreeMap<String, BTreeMap<String, String>>,
    selector: &BTreeMap<String, String>,
    load: &HashMap<String, usize>,
) -> Option<&'a str> {
    nodes
        .iter()
        .filter(|(_, labels)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .min_by_key(|(name, _)| (load.get(*name).copied().unwrap_or(0), name.as_str()))
        .map(|(name, _)| name.as_str())
}

/// Binds unscheduled pods until the task is aborted.
pub async fn run(client: kube::Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let nodes_api: Api<Node> = Api::all(client.clone());
    let mut load: HashMap<String, usize> = HashMap::new();
    let mut stream = watcher(pods, watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                warn!("scheduler watch: {e}");
                continue;
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        if spec.node_name.is_some() || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let nodes = match nodes_api.list(&Default::default()).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter_map(|n| Some((n.metadata.name?, n.metadata.labels.unwrap_or_default())))
                .collect::<BTreeMap<_, _>>(),
            Err(e) => {
                warn!("scheduler: listing nodes: {e}");
                continue;
            }
        };
        let selector = spec.node_selector.unwrap_or_default();
        let Some(node) = choose(&nodes, &selector, &load).map(str::to_string) else {
            warn!(
                "scheduler: no node matches the nodeSelector of {}/{}",
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default()
            );
            continue;
        };
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"spec": {"nodeName": node}});
        match Api::<Pod>::namespaced(client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => *load.entry(node).or_default() += 1,
            Err(e) => warn!("scheduler: binding {ns}/{name} to {node}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spreads_and_honours_node_selectors() {
        let nodes: BTreeMap<_, _> = [
            ("node1".to_string(), labels(&[("zone", "a")])),
            ("node2".to_string(), labels(&[("zone", "b")])),
        ]
        .into();
        let mut load = HashMap::new();
        assert_eq!(choose(&nodes, &BTreeMap::new(), &load), Some("node1"));
        load.insert("node1".to_string(), 1);
        assert_eq!(choose(&nodes, &BTreeMap::new(), &load), Some("node2"));
        load.insert("node2".to_string(), 5);
        assert_eq!(
            choose(&nodes, &labels(&[("zone", "b")]), &load),
            Some("node2")
        );
        assert_eq!(choose(&nodes, &labels(&[("zone", "c")]), &load), None);
    }
}
