//! LoadBalancer Services through lb-svc pods (upstream's `--enable-lb-svc`, seed 003): for a
//! `type: LoadBalancer` Service carrying `ovn.kubernetes.io/attachmentprovider`, the Deployment
//! `lb-svc-<svc>` in the Service's namespace whose pod has a second NIC on the provider's
//! attachment; the address that NIC gets (`<provider>.kubernetes.io/ip_address`, static from
//! `spec.loadBalancerIP` or allocated from the attachment subnet) becomes
//! `status.loadBalancer.ingress`. Deleting the Service, or turning it into another type, removes
//! the Deployment.
//!
//! Upstream then execs `lb-svc.sh` in the pod to install the DNAT; here the pod runs
//! `kube-ovn-lb-svc` (daemon/src/lbsvc), which reads the same Service and pod annotations and
//! converges the NAT itself, so the controller writes nothing but the Deployment and the
//! Service status. Everything but [`reconcile`] is pure.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::info;

use crate::attach::NetworkAttachmentDefinition;
use crate::context::{Ctx, Error};
use crate::pod_info::PodInfo;
use kube_ovn_common::annotations::{self as ann, Field};
use kube_ovn_common::attachment::NETWORKS_ANNOTATION;
use kube_ovn_common::crd::Subnet;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The lb-svc queue's kind name (one key per Service, `namespace/name`).
pub const KIND: &str = "lb-svc";
pub use kube_ovn_common::attachment::{
    LB_SVC_ATTACHMENT_PROVIDER as ATTACHMENT_PROVIDER, LB_SVC_DEFAULT_PROVIDER as DEFAULT_PROVIDER,
};
/// The ConfigMap (in the controller's namespace) whose `image` runs lb-svc pods and whose
/// optional `nodeSelector` (`key: value` lines) places them (upstream's `util.VpcNatConfig`).
pub const VPC_NAT_CONFIG: &str = "ovn-vpc-nat-config";
/// The NetworkAttachmentDefinition annotation naming a device-plugin resource the pod must
/// request (SR-IOV and the like).
pub const NAD_RESOURCE_NAME: &str = "k8s.v1.cni.cncf.io/resourceName";
/// The lb-svc container's name.
pub const CONTAINER: &str = "lb-svc";
/// The command the lb-svc container runs: kube-ovn-rs's agent (upstream: `sleep infinity`,
/// with the NAT exec'd in by the controller).
pub const AGENT_COMMAND: &str = "/kube-ovn/kube-ovn-lb-svc";
/// The ServiceAccount (and RoleBinding) the agent runs as in each lb-svc namespace, bound to
/// the shipped ClusterRole [`AGENT_CLUSTER_ROLE`] (upstream's pods call no API and run as the
/// namespace's `default` account).
pub const AGENT_ACCOUNT: &str = "kube-ovn-lb-svc";
/// The agent's ClusterRole (get/list/watch pods and services), shipped in the manifests.
pub const AGENT_CLUSTER_ROLE: &str = kube_ovn_common::manifests::rbac::LB_SVC_CLUSTER_ROLE;
/// The type this feature serves.
pub const LOAD_BALANCER: &str = "LoadBalancer";
/// Kubernetes' label value length limit.
const LABEL_VALUE_MAX: usize = 63;
/// Hex digits of the hash a too-long label value ends with (upstream's `NormalizeLabelValue`).
const LABEL_HASH_LEN: usize = 8;

/// The Deployment's name, `lb-svc-<svc>`.
pub fn deployment_name(service: &str) -> String {
    format!("lb-svc-{service}")
}

/// A label value that fits Kubernetes' 63 characters: the value itself, or its first 54
/// characters, `-` and the first 8 hex digits of its SHA-256 (upstream's `NormalizeLabelValue`).
pub fn normalize_label_value(value: &str) -> String {
    if value.len() <= LABEL_VALUE_MAX {
        return value.to_string();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let keep = LABEL_VALUE_MAX - LABEL_HASH_LEN - 1;
    let mut cut = keep;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{}", &value[..cut], &hex[..LABEL_HASH_LEN])
}

/// The labels of the Deployment, its selector and its pods: `app=lb-svc-<svc>`,
/// `namespace=<ns>`, `service=<svc>` — also how the agent and [`service_of_pod`] find the
/// Service of an lb-svc pod.
pub fn labels(namespace: &str, service: &str) -> BTreeMap<String, String> {
    [
        ("app", normalize_label_value(&deployment_name(service))),
        ("namespace", namespace.to_string()),
        ("service", service.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether kube-ovn serves the Service through an lb-svc pod: type LoadBalancer and the
/// attachment-provider annotation present (upstream skips the others).
pub fn wants_lb_svc(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(LOAD_BALANCER)
        && svc.annotations().contains_key(ATTACHMENT_PROVIDER)
}

/// The Service's attachment provider: its annotation, or [`DEFAULT_PROVIDER`] when empty.
pub fn provider(svc: &Service) -> String {
    kube_ovn_common::attachment::lb_svc_provider(svc.annotations())
}

/// The NetworkAttachmentDefinition `(name, namespace)` a provider names: its first two
/// dot-separated parts; `None` for a provider without a dot.
pub fn nad_of(provider: &str) -> Option<(String, String)> {
    let mut parts = provider.split('.');
    let name = parts.next()?;
    let namespace = parts.next()?;
    Some((name.to_string(), namespace.to_string()))
}

fn spec_lb_ip(svc: &Service) -> &str {
    svc.spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.as_deref())
        .unwrap_or("")
}

/// The lb-svc pod template's annotations: the Multus selection `<nad-ns>/<nad>`, the
/// attachment subnet `<provider>.kubernetes.io/logical_switch` as the Service names it (empty
/// when it does not), the static `<provider>.kubernetes.io/ip_address` from
/// `spec.loadBalancerIP`, and the Service's own `ovn.kubernetes.io/logical_switch` for the
/// primary NIC.
pub fn pod_annotations(svc: &Service) -> BTreeMap<String, String> {
    let provider = provider(svc);
    let (nad, nad_ns) = nad_of(&provider).unwrap_or_default();
    let subnet_key = ann::key(&provider, Field::LogicalSwitch).into_owned();
    let mut a = BTreeMap::from([
        (NETWORKS_ANNOTATION.to_string(), format!("{nad_ns}/{nad}")),
        (
            subnet_key.clone(),
            svc.annotations()
                .get(&subnet_key)
                .cloned()
                .unwrap_or_default(),
        ),
    ]);
    let ip = spec_lb_ip(svc);
    if !ip.is_empty() {
        a.insert(
            ann::key(&provider, Field::IpAddress).into_owned(),
            ip.to_string(),
        );
    }
    if let Some(ls) = svc.annotations().get(ann::LOGICAL_SWITCH) {
        a.insert(ann::LOGICAL_SWITCH.to_string(), ls.clone());
    }
    a
}

/// Upstream's `nodeSelector` of [`VPC_NAT_CONFIG`]: `key: value` lines (others skipped);
/// `None` when the key is missing or empty.
pub fn node_selector(config: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    let text = config.get("nodeSelector").filter(|t| !t.is_empty())?;
    Some(
        text.lines()
            .filter_map(|line| {
                let parts: Vec<&str> = line.trim().split(':').collect();
                (parts.len() == 2)
                    .then(|| (parts[0].trim().to_string(), parts[1].trim().to_string()))
            })
            .collect(),
    )
}

/// The Deployment `lb-svc-<svc>` as upstream's `genLbSvcDeployment` makes it — one replica,
/// Recreate, a privileged container `lb-svc` from `image`, no grace period, a device-plugin
/// request when the NAD names a resource — except that the container runs [`AGENT_COMMAND`].
pub fn deployment(
    svc: &Service,
    nad: &NetworkAttachmentDefinition,
    image: &str,
    node_selector: Option<BTreeMap<String, String>>,
) -> Deployment {
    let namespace = svc.namespace().unwrap_or_default();
    let labels = labels(&namespace, &svc.name_any());
    let mut resources = json!({"limits": {}, "requests": {}});
    if let Some(r) = nad.annotations().get(NAD_RESOURCE_NAME) {
        resources["limits"][r] = json!("1");
        resources["requests"][r] = json!("1");
    }
    let mut pod_spec = json!({
        "containers": [{
            "name": CONTAINER,
            "image": image,
            "command": [AGENT_COMMAND],
            "imagePullPolicy": "IfNotPresent",
            "securityContext": {"privileged": true, "allowPrivilegeEscalation": true},
            "resources": resources,
        }],
        "terminationGracePeriodSeconds": 0,
        "serviceAccountName": AGENT_ACCOUNT,
    });
    if let Some(sel) = node_selector {
        pod_spec["nodeSelector"] = json!(sel);
    }
    let v = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": deployment_name(&svc.name_any()), "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": pod_annotations(svc)},
                "spec": pod_spec,
            },
            "strategy": {"type": "Recreate"},
        },
    });
    serde_json::from_value(v).expect("a Deployment built from its own fields")
}

/// The agent's ServiceAccount and the RoleBinding granting it [`AGENT_CLUSTER_ROLE`] in
/// `namespace`.
pub fn agent_account(namespace: &str) -> (ServiceAccount, RoleBinding) {
    let meta = json!({"name": AGENT_ACCOUNT, "namespace": namespace});
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta});
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": AGENT_CLUSTER_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": AGENT_ACCOUNT, "namespace": namespace}]});
    (
        serde_json::from_value(sa).expect("a ServiceAccount built from its own fields"),
        serde_json::from_value(rb).expect("a RoleBinding built from its own fields"),
    )
}

/// The subnet the static LB IP must lie in: the one the Service names in
/// `<provider>.kubernetes.io/logical_switch`, else the only subnet of the provider.
pub fn attachment_subnet<'a>(
    svc: &Service,
    subnets: &'a [Arc<Subnet>],
) -> Result<Option<&'a Subnet>, String> {
    let provider = provider(svc);
    let key = ann::key(&provider, Field::LogicalSwitch).into_owned();
    if let Some(name) = svc.annotations().get(&key).filter(|n| !n.is_empty()) {
        return subnets
            .iter()
            .find(|s| s.name_any() == *name)
            .map(|s| Some(s.as_ref()))
            .ok_or_else(|| format!("subnet {name} of service {} not found", svc.name_any()));
    }
    let of_provider: Vec<&Subnet> = subnets
        .iter()
        .filter(|s| s.spec.provider == provider)
        .map(|s| s.as_ref())
        .collect();
    Ok((of_provider.len() == 1).then(|| of_provider[0]))
}

/// Upstream's `validateSvc`: a static `spec.loadBalancerIP` must be an address, and inside
/// the attachment subnet's CIDR when that subnet is known.
pub fn validate(svc: &Service, subnet: Option<&Subnet>) -> Result<(), String> {
    let ip = spec_lb_ip(svc);
    if ip.is_empty() {
        return Ok(());
    }
    let Ok(addr) = ip.parse::<IpAddr>() else {
        return Err(format!(
            "invalid static loadbalancerIP {ip} for svc {}",
            svc.name_any()
        ));
    };
    if let Some(s) = subnet {
        let inside = s
            .spec
            .cidr_block
            .split(',')
            .filter_map(|c| c.trim().parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(&addr));
        if !inside {
            return Err(format!(
                "the loadbalancer IP {ip} is not in the range of subnet {}, cidr {}",
                s.name_any(),
                s.spec.cidr_block
            ));
        }
    }
    Ok(())
}

/// The running lb-svc pod of the Service among `pods` (by its labels; pods being deleted are
/// skipped); `None` unless exactly one runs.
pub fn running_pod<'a>(
    pods: &'a [Arc<PodInfo>],
    namespace: &str,
    service: &str,
) -> Option<&'a PodInfo> {
    let want = labels(namespace, service);
    let mine: Vec<&PodInfo> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let l = p.labels();
            l.get("app") == want.get("app") && l.get("namespace") == want.get("namespace")
        })
        .collect();
    match mine.as_slice() {
        [p] if p.status.phase.as_deref() == Some("Running") => Some(p),
        _ => None,
    }
}

/// `status.loadBalancer.ingress` from the pod's attachment address(es)
/// (`<provider>.kubernetes.io/ip_address`, comma-separated when dual-stack); `None` while the
/// pod has none.
pub fn ingress(pod_annotations: &BTreeMap<String, String>, provider: &str) -> Option<Value> {
    let ips = pod_annotations.get(ann::key(provider, Field::IpAddress).as_ref())?;
    let list: Vec<Value> = ips
        .split(',')
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .map(|ip| json!({"ip": ip}))
        .collect();
    (!list.is_empty()).then_some(Value::Array(list))
}

/// The Service key of an lb-svc pod (its `namespace`/`service` labels and an `app` label of
/// `lb-svc-…`), for the pod watch.
pub fn service_of_pod(p: &PodInfo) -> Vec<String> {
    let l = p.labels();
    match (l.get("namespace"), l.get("service"), l.get("app")) {
        (Some(ns), Some(svc), Some(app)) if app.starts_with("lb-svc-") => {
            vec![format!("{ns}/{svc}")]
        }
        _ => Vec::new(),
    }
}

/// What of an lb-svc pod the reconciler reads: labels, annotations, phase, deletion.
pub fn pod_signature(p: &PodInfo) -> u64 {
    hash_of(&(
        hash_json(&p.metadata.labels),
        hash_json(&p.metadata.annotations),
        hash_json(&p.status.phase),
        p.metadata.deletion_timestamp.is_some(),
    ))
}

/// What of a Service the reconciler reads: type, annotations, `loadBalancerIP`, ingress,
/// deletion.
pub fn signature(s: &Service) -> u64 {
    let ingress = s.status.as_ref().and_then(|st| st.load_balancer.as_ref());
    hash_of(&(
        hash_json(&s.spec.as_ref().map(|sp| &sp.type_)),
        hash_json(&s.metadata.annotations),
        spec_lb_ip(s).to_string(),
        hash_json(&ingress),
        s.metadata.deletion_timestamp.is_some(),
    ))
}

/// Reconciles the Service `namespace/name`: its lb-svc Deployment and its ingress status.
pub async fn reconcile(ctx: Arc<Ctx>, key: String) -> Result<Outcome, Error> {
    if !(ctx.config.enable_lb && ctx.config.enable_lb_svc) {
        return Ok(Outcome::Done);
    }
    let Some((namespace, name)) = key.split_once('/') else {
        return Ok(Outcome::Done);
    };
    let svc = ctx
        .stores
        .services
        .get(&ObjectRef::new(name).within(namespace))
        .filter(|s| s.metadata.deletion_timestamp.is_none());
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    let Some(svc) = svc.filter(|s| wants_lb_svc(s)) else {
        delete_deployment(&deployments, namespace, name).await?;
        return Ok(Outcome::Done);
    };
    let subnets = ctx.stores.subnets.state();
    let checked = attachment_subnet(&svc, &subnets).and_then(|subnet| validate(&svc, subnet));
    if let Err(msg) = checked {
        ctx.event(
            &svc.object_ref(&()),
            EventType::Warning,
            "ValidateSvcFailed",
            &msg,
        )
        .await;
        return Err(Error::Other(msg));
    }
    let provider = provider(&svc);
    let nad =
        nad_of(&provider).and_then(|(n, ns)| ctx.stores.nads.get(&ObjectRef::new(&n).within(&ns)));
    let Some(nad) = nad else {
        let msg = format!(
            "network attachment definition of provider {provider} not found (the provider \
             should be <name>.<namespace>)"
        );
        ctx.event(
            &svc.object_ref(&()),
            EventType::Warning,
            "GetNADFailed",
            &msg,
        )
        .await;
        return Err(Error::Other(msg));
    };
    let config_ns = crate::run::Identity::from_env().namespace;
    let config = Api::<ConfigMap>::namespaced(ctx.client.clone(), &config_ns)
        .get_opt(VPC_NAT_CONFIG)
        .await?
        .and_then(|c| c.data)
        .unwrap_or_default();
    let Some(image) = config.get("image").filter(|i| !i.is_empty()) else {
        return Err(Error::Other(format!(
            "{config_ns}/{VPC_NAT_CONFIG} should have image field"
        )));
    };
    let want = deployment(&svc, &nad, image, node_selector(&config));
    let dp_name = deployment_name(name);
    match deployments.get_opt(&dp_name).await? {
        None => {
            ensure_agent_account(&ctx.client, namespace).await?;
            info!(service = %key, deployment = %dp_name, "creating lb-svc deployment");
            deployments.create(&PostParams::default(), &want).await?;
        }
        Some(have) => {
            let have_ann = have
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default();
            let want_ann = pod_annotations(&svc);
            if have_ann != want_ann {
                info!(service = %key, deployment = %dp_name, "updating lb-svc pod annotations");
                // Replaces the template's annotations (a JSON merge patch would keep removed keys).
                let patch = json!([{"op": "replace", "path": "/spec/template/metadata/annotations",
                                    "value": want_ann}]);
                let patch: json_patch::Patch =
                    serde_json::from_value(patch).map_err(|e| Error::Other(e.to_string()))?;
                deployments
                    .patch(&dp_name, &PatchParams::default(), &Patch::<()>::Json(patch))
                    .await?;
            }
        }
    }
    let pods = ctx.stores.pods.state();
    let Some(pod) = running_pod(&pods, namespace, name) else {
        // The pod watch queues the Service again once its pod runs.
        return Ok(Outcome::Done);
    };
    let Some(ingress) = ingress(pod.annotations(), &provider) else {
        return Ok(Outcome::Done);
    };
    let current = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| serde_json::to_value(i).unwrap_or_default());
    if current.as_ref() != Some(&ingress) {
        info!(service = %key, ingress = %ingress, "lb-svc ingress");
        Api::<Service>::namespaced(ctx.client.clone(), namespace)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": ingress}}})),
            )
            .await?;
    }
    Ok(Outcome::Done)
}

/// Creates the agent's ServiceAccount and RoleBinding in `namespace` unless there (they stay:
/// other lb-svc Services of the namespace share them).
async fn ensure_agent_account(client: &kube::Client, namespace: &str) -> Result<(), Error> {
    let (sa, rb) = agent_account(namespace);
    let created = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        other => other,
    };
    created(
        Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &sa)
            .await
            .map(drop),
    )?;
    created(
        Api::<RoleBinding>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &rb)
            .await
            .map(drop),
    )?;
    Ok(())
}

/// Deletes the Service's lb-svc Deployment if there is one that is ours (its labels name the
/// Service).
async fn delete_deployment(
    deployments: &Api<Deployment>,
    namespace: &str,
    service: &str,
) -> Result<(), Error> {
    let dp_name = deployment_name(service);
    let Some(dp) = deployments.get_opt(&dp_name).await? else {
        return Ok(());
    };
    let want = labels(namespace, service);
    // Upstream's Deployments carry no labels of their own: their selector says whose it is.
    let selector = dp
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    if selector != want {
        return Ok(());
    }
    info!(namespace, service, deployment = %dp_name, "deleting lb-svc deployment");
    match deployments.delete(&dp_name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(annotations: Value, lb_ip: Option<&str>) -> Service {
        let mut spec = json!({"type": "LoadBalancer", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]});
        if let Some(ip) = lb_ip {
            spec["loadBalancerIP"] = json!(ip);
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "test-service", "namespace": "default", "annotations": annotations},
            "spec": spec}))
        .unwrap()
    }

    fn nad(annotations: Value) -> NetworkAttachmentDefinition {
        NetworkAttachmentDefinition {
            metadata: serde_json::from_value(json!({"name": "lb-svc-attachment",
                "namespace": "kube-system", "annotations": annotations}))
            .unwrap(),
            spec: Default::default(),
        }
    }

    fn subnet(name: &str, cidr: &str, provider: &str) -> Arc<Subnet> {
        Arc::new(
            serde_json::from_value(json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": name},
                "spec": {"cidrBlock": cidr, "provider": provider}}))
            .unwrap(),
        )
    }

    /// Upstream's genLbSvcDeployment, field by field (the command aside).
    #[test]
    fn deployment_matches_upstream() {
        let s = svc(
            json!({ATTACHMENT_PROVIDER: "lb-svc-attachment.kube-system",
                   "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "attach-subnet"}),
            Some("172.18.0.18"),
        );
        let dp = serde_json::to_value(deployment(
            &s,
            &nad(json!({})),
            "docker.io/kubeovn/vpc-nat-gateway:v1.15.0",
            None,
        ))
        .unwrap();
        let labels = json!({"app": "lb-svc-test-service", "namespace": "default", "service": "test-service"});
        assert_eq!(dp["metadata"]["name"], "lb-svc-test-service");
        assert_eq!(dp["metadata"]["namespace"], "default");
        assert_eq!(dp["spec"]["replicas"], 1);
        assert_eq!(dp["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(dp["spec"]["selector"], json!({"matchLabels": labels}));
        let t = &dp["spec"]["template"];
        assert_eq!(t["metadata"]["labels"], labels);
        assert_eq!(
            t["metadata"]["annotations"],
            json!({"k8s.v1.cni.cncf.io/networks": "kube-system/lb-svc-attachment",
                   "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "attach-subnet",
                   "lb-svc-attachment.kube-system.kubernetes.io/ip_address": "172.18.0.18"})
        );
        assert_eq!(t["spec"]["terminationGracePeriodSeconds"], 0);
        assert_eq!(t["spec"]["serviceAccountName"], AGENT_ACCOUNT);
        assert!(t["spec"].get("nodeSelector").is_none());
        let (sa, rb) = agent_account("default");
        assert_eq!(sa.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(rb.role_ref.name, "system:kube-ovn-lb-svc");
        assert_eq!(rb.subjects.unwrap()[0].name, AGENT_ACCOUNT);
        let c = &t["spec"]["containers"][0];
        assert_eq!(c["name"], "lb-svc");
        assert_eq!(c["image"], "docker.io/kubeovn/vpc-nat-gateway:v1.15.0");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], json!([AGENT_COMMAND]));
        assert_eq!(
            c["securityContext"],
            json!({"privileged": true, "allowPrivilegeEscalation": true})
        );
        assert_eq!(c["resources"], json!({"limits": {}, "requests": {}}));
    }

    /// An empty provider annotation means the default attachment; no subnet annotation leaves
    /// the key empty as upstream does; a NAD resource is requested; the ConfigMap's node
    /// selector places the pod.
    #[test]
    fn defaults_resources_and_node_selector() {
        let s = svc(
            json!({ATTACHMENT_PROVIDER: "", "ovn.kubernetes.io/logical_switch": "ovn-default"}),
            None,
        );
        assert!(wants_lb_svc(&s));
        assert_eq!(provider(&s), DEFAULT_PROVIDER);
        let cm = BTreeMap::from([(
            "nodeSelector".to_string(),
            "kubernetes.io/os: linux\nbroken\n zone : a \n".to_string(),
        )]);
        let sel = node_selector(&cm).unwrap();
        let dp = serde_json::to_value(deployment(
            &s,
            &nad(json!({NAD_RESOURCE_NAME: "intel.com/sriov"})),
            "img",
            Some(sel),
        ))
        .unwrap();
        let t = &dp["spec"]["template"];
        assert_eq!(
            t["metadata"]["annotations"],
            json!({"k8s.v1.cni.cncf.io/networks": "kube-system/lb-svc-attachment",
                   "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "",
                   "ovn.kubernetes.io/logical_switch": "ovn-default"})
        );
        assert_eq!(
            t["spec"]["nodeSelector"],
            json!({"kubernetes.io/os": "linux", "zone": "a"})
        );
        assert_eq!(
            t["spec"]["containers"][0]["resources"],
            json!({"limits": {"intel.com/sriov": "1"}, "requests": {"intel.com/sriov": "1"}})
        );
        assert_eq!(node_selector(&BTreeMap::new()), None);
    }

    #[test]
    fn only_annotated_load_balancers_are_served() {
        assert!(!wants_lb_svc(&svc(json!({}), None)));
        let mut s = svc(json!({ATTACHMENT_PROVIDER: "x.y"}), None);
        assert!(wants_lb_svc(&s));
        s.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        assert!(!wants_lb_svc(&s));
        assert_eq!(nad_of("a.b.ovn"), Some(("a".into(), "b".into())));
        assert_eq!(nad_of("nodot"), None);
    }

    /// Long names end in a hash, as upstream's NormalizeLabelValue (python's sha256 gave it).
    #[test]
    fn long_label_values_are_hashed() {
        let name = format!("lb-svc-{}", "a".repeat(60));
        assert_eq!(
            normalize_label_value(&name),
            format!("lb-svc-{}-d5c040f0", "a".repeat(47))
        );
        assert_eq!(normalize_label_value("lb-svc-x"), "lb-svc-x");
    }

    #[test]
    fn static_ip_is_validated_in_the_attachment_subnet() {
        let subnets = vec![
            subnet("attach-subnet", "172.18.0.0/16", DEFAULT_PROVIDER),
            subnet("other", "10.0.0.0/8", "ovn"),
        ];
        let ok = svc(
            json!({ATTACHMENT_PROVIDER: DEFAULT_PROVIDER}),
            Some("172.18.0.18"),
        );
        let sub = attachment_subnet(&ok, &subnets).unwrap();
        assert_eq!(sub.unwrap().name_any(), "attach-subnet");
        assert_eq!(validate(&ok, sub), Ok(()));
        let out = svc(
            json!({ATTACHMENT_PROVIDER: DEFAULT_PROVIDER}),
            Some("10.1.2.3"),
        );
        assert_eq!(
            validate(&out, attachment_subnet(&out, &subnets).unwrap()),
            Err("the loadbalancer IP 10.1.2.3 is not in the range of subnet attach-subnet, cidr 172.18.0.0/16".into())
        );
        let bad = svc(json!({ATTACHMENT_PROVIDER: DEFAULT_PROVIDER}), Some("nope"));
        assert!(validate(&bad, None).unwrap_err().contains("invalid static"));
        let named = svc(
            json!({ATTACHMENT_PROVIDER: DEFAULT_PROVIDER,
                   "lb-svc-attachment.kube-system.kubernetes.io/logical_switch": "missing"}),
            None,
        );
        assert!(attachment_subnet(&named, &subnets).is_err());
    }

    #[test]
    fn ingress_comes_from_the_attachment_address() {
        let a = BTreeMap::from([(
            "lb-svc-attachment.kube-system.kubernetes.io/ip_address".to_string(),
            "172.18.0.18,fd00::12".to_string(),
        )]);
        assert_eq!(
            ingress(&a, DEFAULT_PROVIDER),
            Some(json!([{"ip": "172.18.0.18"}, {"ip": "fd00::12"}]))
        );
        assert_eq!(ingress(&BTreeMap::new(), DEFAULT_PROVIDER), None);
    }

    #[test]
    fn the_running_pod_is_found_by_its_labels() {
        let pod = |name: &str, phase: &str| {
            Arc::new(
                serde_json::from_value::<PodInfo>(json!({
                    "metadata": {"name": name, "namespace": "default",
                        "labels": {"app": "lb-svc-test-service", "namespace": "default", "service": "test-service"}},
                    "spec": {}, "status": {"phase": phase}}))
                .unwrap(),
            )
        };
        let running = vec![pod("a", "Running")];
        let p = running_pod(&running, "default", "test-service").unwrap();
        assert_eq!(service_of_pod(p), vec!["default/test-service".to_string()]);
        assert!(running_pod(&[pod("a", "Pending")], "default", "test-service").is_none());
        assert!(running_pod(
            &[pod("a", "Running"), pod("b", "Running")],
            "default",
            "test-service"
        )
        .is_none());
    }
}
