//! `kubectl ko tcpdump {namespace/pod} [tcpdump options…]`: captures a pod's traffic as
//! upstream's plugin does. A host-network pod's capture runs in its node's ovs-ovn pod; any
//! other pod's runs in its node's kube-ovn-cni pod, inside the pod's network namespace (the
//! `pod_netns` its OVS interface records), on `eth0` (or, for an `internal-port` NIC, on the
//! OVS interface itself). The OVS interface is looked up in the node's OVS as JSON, not by
//! scraping `ovs-vsctl`'s text.

use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::Value;

use crate::remote;

/// How long a lookup in the node's OVS may take.
const LOOKUP: Duration = Duration::from_secs(30);

/// The pod NIC type annotation (`veth-pair` or `internal-port`).
const POD_NIC_TYPE: &str = "ovn.kubernetes.io/pod_nic_type";

/// `namespace/pod` (or `pod`, in `default`, as upstream) → (namespace, pod).
pub fn split_target(target: &str) -> (String, String) {
    match target.split_once('/') {
        Some((ns, pod)) => (ns.to_string(), pod.to_string()),
        None => ("default".to_string(), target.to_string()),
    }
}

/// The interface's name and `external_ids:pod_netns` from `ovs-vsctl --format=json
/// --columns=name,external_ids find interface …` output (the first row).
pub fn interface_of(json_text: &str) -> Result<Option<(String, String)>, String> {
    let v: Value = serde_json::from_str(json_text).map_err(|e| format!("ovs-vsctl output: {e}"))?;
    let headings = v["headings"]
        .as_array()
        .ok_or("ovs-vsctl output has no headings")?;
    let col = |name: &str| {
        headings
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("ovs-vsctl output has no {name} column"))
    };
    let (name_col, ids_col) = (col("name")?, col("external_ids")?);
    let Some(row) = v["data"].as_array().and_then(|d| d.first()) else {
        return Ok(None);
    };
    let name = row[name_col].as_str().unwrap_or_default().to_string();
    let netns = row[ids_col][1]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p[0] == "pod_netns")
        .and_then(|p| p[1].as_str())
        .unwrap_or_default()
        .to_string();
    Ok(Some((name, netns)))
}

/// The OVS interface of pod `namespace/name` on `node` (looked up in that node's ovs-ovn pod
/// `ovs`) and the network namespace it records.
pub async fn pod_interface(
    client: &kube::Client,
    kube_ovn_ns: &str,
    ovs: &str,
    node: &str,
    namespace: &str,
    name: &str,
) -> Result<(String, String), String> {
    let find = [
        "ovs-vsctl",
        "--format=json",
        "--columns=name,external_ids",
        "find",
        "interface",
        &format!("external_ids:iface-id={name}.{namespace}"),
    ]
    .map(String::from)
    .to_vec();
    let (code, out) = remote::capture_within(LOOKUP, client, kube_ovn_ns, ovs, None, find).await?;
    if code != ExitCode::SUCCESS {
        return Err(format!("ovs-vsctl failed in {ovs}"));
    }
    let Some((nic, netns)) = interface_of(&out)? else {
        return Err(format!("nic doesn't exist on node {node}"));
    };
    if netns.is_empty() {
        return Err(format!(
            "interface {nic} on node {node} records no pod_netns"
        ));
    }
    Ok((nic, netns))
}

/// Runs the capture; tcpdump's exit code becomes ours.
pub async fn run(
    client: &kube::Client,
    kube_ovn_ns: &str,
    target: &str,
    args: Vec<String>,
) -> Result<ExitCode, String> {
    let (namespace, name) = split_target(target);
    let pod = Api::<Pod>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await
        .map_err(|e| format!("pod {namespace}/{name}: {e}"))?;
    let spec = pod
        .as_ref()
        .and_then(|p| p.spec.clone())
        .unwrap_or_default();
    let Some(node) = spec.node_name.clone().filter(|n| !n.is_empty()) else {
        return Err(format!("Pod {target} not exists on any node"));
    };
    let ovs = remote::find_pod(client, kube_ovn_ns, "app=ovs", Some(&node), "")
        .await
        .map_err(|_| format!("ovs-ovn not exist on node {node}"))?;
    let mut argv: Vec<String> = vec!["tcpdump".into(), "-nn".into()];
    if spec.host_network == Some(true) {
        argv.extend(args);
        eprintln!(
            "+ kubectl exec {ovs} -n {kube_ovn_ns} -- {}",
            argv.join(" ")
        );
        return remote::exec(client, kube_ovn_ns, &ovs, None, argv).await;
    }
    let (nic, netns) = pod_interface(client, kube_ovn_ns, &ovs, &node, &namespace, &name).await?;
    let cni = remote::find_pod(client, kube_ovn_ns, "app=kube-ovn-cni", Some(&node), "")
        .await
        .map_err(|_| format!("kube-ovn-cni not exist on node {node}"))?;
    let internal = pod
        .as_ref()
        .and_then(|p| p.metadata.annotations.as_ref())
        .and_then(|a| a.get(POD_NIC_TYPE))
        .is_some_and(|t| t == "internal-port");
    let iface = if internal { nic } else { "eth0".to_string() };
    let mut argv = vec![
        "nsenter".to_string(),
        format!("--net={netns}"),
        "tcpdump".into(),
        "-nn".into(),
        "-i".into(),
        iface,
    ];
    argv.extend(args);
    eprintln!(
        "+ kubectl exec {cni} -n {kube_ovn_ns} -- {}",
        argv.join(" ")
    );
    remote::exec(client, kube_ovn_ns, &cni, None, argv).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_pod_name_is_in_default() {
        assert_eq!(split_target("web"), ("default".into(), "web".into()));
        assert_eq!(split_target("ns1/web"), ("ns1".into(), "web".into()));
    }

    #[test]
    fn the_interface_and_its_namespace_come_from_ovs_json() {
        let out = r#"{"data":[["5d1a3c_h",["map",[["iface-id","web.default"],["pod_netns","/var/run/netns/cni-1"]]]]],"headings":["name","external_ids"]}"#;
        assert_eq!(
            interface_of(out).unwrap(),
            Some(("5d1a3c_h".into(), "/var/run/netns/cni-1".into()))
        );
        let none = r#"{"data":[],"headings":["name","external_ids"]}"#;
        assert_eq!(interface_of(none).unwrap(), None);
        assert!(interface_of(r#"{"data":[],"headings":["name"]}"#).is_err());
        assert!(interface_of("name : x").is_err());
    }
}
