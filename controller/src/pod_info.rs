//! The part of a Pod the controller reads, as its own watchable resource: the pod store holds
//! one per pod of the cluster, and a full `Pod` (container specs, statuses, volumes, …) costs
//! several times as much to decode and to keep. Everything else in the object is skipped while
//! it is deserialized.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_ovn_common::annotations as ann;
use serde::Deserialize;

/// kubectl's record of the last applied configuration: large, and read by nobody here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A Pod as the controller sees it (`v1` `pods`, read-only: writes go through `Api<Pod>`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodInfo {
    /// The pod's metadata (annotations, owners, deletion), managed fields dropped on arrival.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The scheduling facts.
    #[serde(default)]
    pub spec: PodInfoSpec,
    /// The lifecycle facts.
    #[serde(default)]
    pub status: PodInfoStatus,
    /// [`PodInfo::nics`], read once: policies read a pod's NICs per rule and family, and
    /// reading the annotations each time was a tenth of a cold start's controller CPU at
    /// 1,000 policies. A pod object is never changed after it is decoded.
    #[serde(skip)]
    nics: std::sync::OnceLock<Vec<Nic>>,
    /// [`PodInfo::key`], made once: a cold start names each pod in some thirty policies'
    /// memories, and formatting the key each time was three tenths of computing a policy's
    /// rows.
    #[serde(skip)]
    key: std::sync::OnceLock<Arc<str>>,
}

/// One of a pod's NICs as its annotations record it: the default one (provider `ovn`) and
/// every attachment kube-ovn allocated (`<provider>.kubernetes.io/allocated`).
#[derive(Debug, Clone, PartialEq)]
pub struct Nic {
    /// `ovn`, or the attachment's provider.
    pub provider: String,
    /// Allocated (the NIC's address and, for an OVN NIC, its port exist).
    pub allocated: bool,
    /// Its logical switch: set only for NICs on an OVN subnet (IPAM-only attachments have none).
    pub switch: Option<String>,
    /// `ip_address`, each address with its family (`IPv4`/`IPv6`; unparsable ones left out).
    pub ips: Vec<(Arc<str>, &'static str)>,
}

const ALLOCATED_SUFFIX: &str = ".kubernetes.io/allocated";

/// `spec` fields the controller reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfoSpec {
    /// Where the pod runs (empty until scheduled).
    #[serde(default)]
    pub node_name: Option<String>,
    /// Host-network pods get no logical port.
    #[serde(default)]
    pub host_network: Option<bool>,
    /// Containers: their named ports resolve NetworkPolicy ports.
    #[serde(default)]
    pub containers: Vec<ContainerPorts>,
    /// Init containers: restartable ones (sidecars) serve named ports too.
    #[serde(default, rename = "initContainers")]
    pub init_containers: Vec<ContainerPorts>,
}

/// The ports of a container (the rest of it is skipped).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPorts {
    /// `Always` marks a sidecar init container.
    #[serde(default)]
    pub restart_policy: Option<String>,
    /// Declared ports.
    #[serde(default)]
    pub ports: Vec<NamedContainerPort>,
}

/// One declared container port.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamedContainerPort {
    /// The port's name, if any.
    #[serde(default)]
    pub name: Option<String>,
    /// The number.
    #[serde(default)]
    pub container_port: i32,
}

/// `status` fields the controller reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodInfoStatus {
    /// `Succeeded`/`Failed` pods give their addresses back.
    #[serde(default)]
    pub phase: Option<String>,
}

impl PodInfo {
    /// The node the pod is bound to, or "".
    pub fn node_name(&self) -> &str {
        self.spec.node_name.as_deref().unwrap_or("")
    }

    /// The number of the pod's container port called `name` (sidecar init containers
    /// included), as NetworkPolicy named ports resolve.
    pub fn named_port(&self, name: &str) -> Option<i32> {
        self.spec
            .init_containers
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .chain(self.spec.containers.iter())
            .flat_map(|c| c.ports.iter())
            .find(|p| p.name.as_deref() == Some(name) && p.container_port != 0)
            .map(|p| p.container_port)
    }

    /// `namespace/name`.
    pub fn key(&self) -> &Arc<str> {
        self.key.get_or_init(|| {
            Arc::from(format!(
                "{}/{}",
                self.metadata.namespace.as_deref().unwrap_or(""),
                kube::ResourceExt::name_any(self)
            ))
        })
    }

    /// The pod's NICs (see [`Nic`]).
    pub fn nics(&self) -> &[Nic] {
        self.nics.get_or_init(|| {
            let Some(a) = self.metadata.annotations.as_ref() else {
                return Vec::new();
            };
            let get = |provider: &str, field: &str| {
                a.get(&format!("{provider}.kubernetes.io/{field}")).cloned()
            };
            let ips = |v: Option<&String>| -> Vec<(Arc<str>, &'static str)> {
                v.map(|v| v.split(',').filter_map(family_of).collect())
                    .unwrap_or_default()
            };
            let mut out = Vec::new();
            // The default NIC counts as soon as it has an address (its peers' view).
            if a.contains_key(ann::IP_ADDRESS) || a.contains_key(ann::ALLOCATED) {
                out.push(Nic {
                    provider: "ovn".into(),
                    allocated: a.get(ann::ALLOCATED).map(String::as_str) == Some("true"),
                    switch: a.get(ann::LOGICAL_SWITCH).cloned(),
                    ips: ips(a.get(ann::IP_ADDRESS)),
                });
            }
            for (k, v) in a {
                let Some(provider) = k.strip_suffix(ALLOCATED_SUFFIX) else {
                    continue;
                };
                if provider == "ovn" || v != "true" {
                    continue;
                }
                out.push(Nic {
                    provider: provider.to_string(),
                    allocated: true,
                    switch: get(provider, "logical_switch"),
                    ips: ips(get(provider, "ip_address").as_ref()),
                });
            }
            out
        })
    }

    /// Whether the pod uses the host's network.
    pub fn host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }

    /// Whether the pod ran to completion (its addresses are released like a deleted pod's).
    pub fn finished(&self) -> bool {
        matches!(self.status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// A digest of everything the pod reconciler reads of the pod: annotations, owners,
    /// deletion, node, host network, whether it finished. Two versions with the same digest
    /// reconcile alike, so an event that changes nothing of it (a status update, or the
    /// controller's own annotation patch coming back) needs no reconcile.
    pub fn signature(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let m = &self.metadata;
        // kubectl's copy of the applied object is dropped from stored pods (and read by no
        // one), but a patch's reply still carries it.
        for (k, v) in m.annotations.iter().flatten() {
            if k != LAST_APPLIED {
                (k, v).hash(&mut h);
            }
        }
        for o in m.owner_references.iter().flatten() {
            (&o.api_version, &o.kind, &o.name, &o.uid, o.controller).hash(&mut h);
        }
        m.deletion_timestamp.is_some().hash(&mut h);
        (self.node_name(), self.host_network(), self.finished()).hash(&mut h);
        h.finish()
    }
}

/// An address (a CIDR's host part counts) with its family; none when it does not parse.
fn family_of(addr: &str) -> Option<(Arc<str>, &'static str)> {
    let host = addr.split('/').next()?;
    let family = match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => "IPv4",
        std::net::IpAddr::V6(_) => "IPv6",
    };
    Some((Arc::from(addr), family))
}

impl kube::Resource for PodInfo {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full Pod decodes into the few facts the controller needs; what it does not need is
    /// skipped, and a pod without spec or status is still a pod.
    #[test]
    fn decodes_the_facts_and_skips_the_rest() {
        let p: PodInfo = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "annotations": {"ovn.kubernetes.io/allocated": "true"}},
            "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Succeeded", "podIP": "10.16.0.2", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        assert_eq!(p.node_name(), "n1");
        assert!(p.host_network());
        assert!(p.finished());
        assert_eq!(
            p.metadata.annotations.unwrap()["ovn.kubernetes.io/allocated"],
            "true"
        );
        let bare: PodInfo =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "b"}})).unwrap();
        assert_eq!(bare.node_name(), "");
        assert!(!bare.host_network() && !bare.finished());
    }

    /// The signature follows what the reconciler reads and ignores the rest.
    #[test]
    fn signature_changes_with_what_the_reconciler_reads() {
        let pod = |v: serde_json::Value| serde_json::from_value::<PodInfo>(v).unwrap().signature();
        let base = pod(serde_json::json!({
            "metadata": {"name": "a", "annotations": {"x": "1"}, "resourceVersion": "5"},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}
        }));
        let same = pod(serde_json::json!({
            "metadata": {"name": "a", "annotations": {"x": "1"}, "resourceVersion": "9",
                         "labels": {"l": "v"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}
        }));
        assert_eq!(
            base, same,
            "resourceVersion, labels and a live phase change nothing"
        );
        let applied = pod(serde_json::json!({
            "metadata": {"name": "a", "annotations": {"x": "1", LAST_APPLIED: "{}"}},
            "spec": {"nodeName": "n1"}
        }));
        assert_eq!(base, applied, "kubectl's last-applied copy is not read");
        for changed in [
            serde_json::json!({"metadata": {"name": "a", "annotations": {"x": "2"}},
                               "spec": {"nodeName": "n1"}}),
            serde_json::json!({"metadata": {"name": "a", "annotations": {"x": "1"}},
                               "spec": {"nodeName": "n2"}}),
            serde_json::json!({"metadata": {"name": "a", "annotations": {"x": "1"},
                               "deletionTimestamp": "2026-11-23T00:00:00Z"},
                               "spec": {"nodeName": "n1"}}),
            serde_json::json!({"metadata": {"name": "a", "annotations": {"x": "1"}},
                               "spec": {"nodeName": "n1"}, "status": {"phase": "Succeeded"}}),
            serde_json::json!({"metadata": {"name": "a", "annotations": {"x": "1"},
                               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                    "name": "s", "uid": "u"}]},
                               "spec": {"nodeName": "n1"}}),
        ] {
            assert_ne!(base, pod(changed.clone()), "{changed}");
        }
    }
}
