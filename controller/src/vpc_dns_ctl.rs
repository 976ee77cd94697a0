//! VpcDns reconciler (seed 004's custom vpc-dns): a CoreDNS Deployment `vpc-dns-<name>` in the
//! controller's namespace, its pods' first NIC on the VpcDns's subnet (inside the VPC) and a
//! second NIC through the NetworkAttachmentDefinition `default/<nad-name>` on `ovn-default`
//! with a route to the API server, and the SwitchLBRule `vpc-dns-<name>` that puts
//! `coredns-vip` (UDP/TCP 53, TCP 9153) in front of them — all as upstream's `vpc_dns.go`
//! builds them, from ConfigMap `vpc-dns-config`.
//!
//! One VpcDns per VPC is active. Upstream decides by racing status writes; here the one
//! already active keeps it, else the oldest (then by name) gets it, so two created together
//! cannot both deploy. An inactive one has no Deployment or rule, `status.active: false` and a
//! warning; when the active one goes, the next is deployed. With the ConfigMap missing or
//! `enable-vpc-dns: "false"`, every VpcDns is made inactive and its Deployment and rule removed
//! (upstream deletes the VpcDns objects themselves then; the user's objects are kept here).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use tracing::info;

use crate::context::{Ctx, Error};
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::{SwitchLbRule, VpcDns};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::hash_json;
use kube_ovn_runtime::Outcome;

/// The VpcDns queue's kind name.
pub const KIND: &str = "vpc-dns";
/// The ConfigMap (in the controller's namespace) with the global settings.
pub const CONFIG: &str = "vpc-dns-config";
/// The label upstream puts on the Deployment and the SwitchLBRule.
pub const NAME_LABEL: &str = "ovn.kubernetes.io/vpc-dns";
/// The pods' label key (the rule selects by it).
const APP_LABEL: &str = "k8s-app";
/// The container the Corefile, image and API-server environment are for.
const CONTAINER: &str = "coredns";
/// The subnet the second NIC sits on (upstream's constant, not the `--default-ls` flag).
const DEFAULT_SUBNET: &str = "ovn-default";

/// `vpc-dns-<name>`: the Deployment's and the rule's name.
pub fn deployment_name(name: &str) -> String {
    format!("vpc-dns-{name}")
}

/// What of a VpcDns the reconcilers read (status included: activity moves between objects).
pub fn signature(d: &VpcDns) -> u64 {
    hash_json(&json!([d.spec, d.status, d.metadata.deletion_timestamp]))
}

/// What of `vpc-dns-config` matters.
pub fn config_signature(c: &ConfigMap) -> u64 {
    hash_json(&json!(c.data))
}

/// Every VpcDns (a change to one can move activity to another, and the config concerns all).
pub fn all_keys(all: &[Arc<VpcDns>]) -> Vec<String> {
    all.iter().map(|d| d.name_any()).collect()
}

/// The settings read from `vpc-dns-config`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DnsConfig {
    /// `enable-vpc-dns` (default true).
    pub enabled: bool,
    /// `coredns-image` (else the cluster's CoreDNS Deployment's).
    pub image: String,
    /// `coredns-vip`.
    pub vip: String,
    /// `nad-name` (in namespace `default`).
    pub nad_name: String,
    /// `nad-provider`.
    pub nad_provider: String,
    /// `k8s-service-host` (else the controller's own `KUBERNETES_SERVICE_HOST`).
    pub service_host: String,
    /// `k8s-service-port`.
    pub service_port: String,
}

impl DnsConfig {
    /// Reads the ConfigMap's data; a bad `enable-vpc-dns` is an error.
    pub fn from_data(data: &BTreeMap<String, String>) -> Result<DnsConfig, String> {
        let get = |k: &str| data.get(k).cloned().unwrap_or_default();
        let enabled = match data.get("enable-vpc-dns").map(String::as_str) {
            None => true,
            Some(v) => parse_bool(v)
                .ok_or_else(|| format!("{CONFIG}: enable-vpc-dns {v:?} is not a boolean"))?,
        };
        Ok(DnsConfig {
            enabled,
            image: get("coredns-image"),
            vip: get("coredns-vip"),
            nad_name: get("nad-name"),
            nad_provider: get("nad-provider"),
            service_host: get("k8s-service-host"),
            service_port: get("k8s-service-port"),
        })
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The VpcDns of `vpc` that serves it: the active one (the oldest if several claim it), else
/// the oldest, then by name.
pub fn serving<'a>(all: &'a [Arc<VpcDns>], vpc: &str) -> Option<&'a Arc<VpcDns>> {
    all.iter()
        .filter(|d| d.spec.vpc == vpc && d.metadata.deletion_timestamp.is_none())
        .min_by_key(|d| {
            let active = d.status.as_ref().is_some_and(|s| s.active);
            (
                !active,
                d.metadata.creation_timestamp.as_ref().map(|t| t.0),
                d.name_any(),
            )
        })
}

/// The `<provider>.kubernetes.io/routes` value: the API server through the default subnet's
/// gateway of the same family (none if the address is not an IP).
fn api_route(service_host: &str, default_gateway: &str) -> Option<String> {
    let host = service_host.split('/').next().unwrap_or_default();
    let ip: IpAddr = host.parse().ok()?;
    let dst = if service_host.contains('/') {
        service_host.to_string()
    } else if ip.is_ipv4() {
        format!("{service_host}/32")
    } else {
        format!("{service_host}/128")
    };
    let gw = default_gateway.split(',').find(|g| {
        g.parse::<IpAddr>()
            .is_ok_and(|g| g.is_ipv4() == ip.is_ipv4())
    })?;
    Some(json!([{"dst": dst, "gw": gw}]).to_string())
}

/// The Deployment as upstream's coredns template and `genVpcDNSDeployment` make it.
pub fn deployment(
    dns: &VpcDns,
    config: &DnsConfig,
    namespace: &str,
    default_gateway: &str,
) -> Deployment {
    let name = deployment_name(&dns.name_any());
    let corefile = if dns.spec.corefile.is_empty() {
        "vpc-dns-corefile"
    } else {
        dns.spec.corefile.as_str()
    };
    let mut annotations = BTreeMap::from([
        (ann::LOGICAL_SWITCH.to_string(), dns.spec.subnet.clone()),
        (
            "k8s.v1.cni.cncf.io/networks".to_string(),
            format!("default/{}", config.nad_name),
        ),
        (
            ann::key(&config.nad_provider, ann::Field::LogicalSwitch).into_owned(),
            DEFAULT_SUBNET.to_string(),
        ),
    ]);
    if let Some(route) = api_route(&config.service_host, default_gateway) {
        annotations.insert(
            format!("{}.kubernetes.io/routes", config.nad_provider),
            route,
        );
    }
    let mut env = Vec::new();
    if !config.service_host.is_empty() {
        env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": config.service_host}));
    }
    if !config.service_port.is_empty() {
        env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": config.service_port}));
    }
    let replicas = if dns.spec.replicas != 0 {
        dns.spec.replicas
    } else {
        2
    };
    let v = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {NAME_LABEL: "true"}},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {APP_LABEL: name}},
            "template": {
                "metadata": {"labels": {APP_LABEL: name}, "annotations": annotations},
                "spec": {
                    "priorityClassName": "system-cluster-critical",
                    "serviceAccountName": "vpc-dns",
                    "automountServiceAccountToken": true,
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": {"matchExpressions": [
                                {"key": APP_LABEL, "operator": "In", "values": [name]}]},
                            "topologyKey": "kubernetes.io/hostname"}}]}},
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": CONTAINER,
                        "image": config.image,
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"limits": {"memory": "170Mi"},
                                      "requests": {"cpu": "100m", "memory": "70Mi"}},
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "env": env,
                        "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns",
                                          "readOnly": true}],
                        "ports": [
                            {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                            {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"},
                            {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                        "securityContext": {"allowPrivilegeEscalation": false,
                            "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                            "readOnlyRootFilesystem": true},
                    }],
                    "dnsPolicy": "Default",
                    "volumes": [{"name": "config-volume", "configMap": {"name": corefile,
                        "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                },
            },
        },
    });
    serde_json::from_value(v).expect("a Deployment built from its own fields")
}

/// The SwitchLBRule in front of the Deployment's pods, as upstream's `genVpcDNSSlr`.
pub fn switch_lb_rule(dns_name: &str, vip: &str, namespace: &str) -> SwitchLbRule {
    let name = deployment_name(dns_name);
    serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "SwitchLBRule",
        "metadata": {"name": name, "labels": {NAME_LABEL: "true"}},
        "spec": {
            "vip": vip, "namespace": namespace,
            "selector": [format!("{APP_LABEL}:{name}")],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"}],
        },
    }))
    .expect("a SwitchLBRule built from its own fields")
}

/// The parts of a Deployment this reconciler sets (compared to decide whether to replace it).
fn owned_fields(d: &Deployment) -> Value {
    let spec = d.spec.as_ref();
    let template = spec.map(|s| &s.template);
    let container = template
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER));
    json!({
        "labels": d.metadata.labels,
        "replicas": spec.and_then(|s| s.replicas),
        "selector": spec.map(|s| &s.selector),
        "template_labels": template.and_then(|t| t.metadata.as_ref()).map(|m| &m.labels),
        "annotations": template.and_then(|t| t.metadata.as_ref()).map(|m| &m.annotations),
        "image": container.map(|c| &c.image),
        "env": container.map(|c| c.env.clone().unwrap_or_default()),
        "volumes": template.and_then(|t| t.spec.as_ref()).map(|s| &s.volumes),
    })
}

/// Reconciles the VpcDns `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let namespace = crate::run::Identity::from_env().namespace;
    let all = ctx.stores.vpc_dnses.state();
    let dns = all
        .iter()
        .find(|d| d.name_any() == name && d.metadata.deletion_timestamp.is_none())
        .cloned();
    let Some(dns) = dns else {
        remove(&ctx, &namespace, &name).await?;
        return Ok(Outcome::Done);
    };
    let config = ctx
        .stores
        .configmaps
        .get(&ObjectRef::new(CONFIG).within(&namespace))
        .map(|c| DnsConfig::from_data(&c.data.clone().unwrap_or_default()))
        .transpose()
        .map_err(Error::Other)?;
    let Some(config) = config.filter(|c| c.enabled) else {
        remove(&ctx, &namespace, &name).await?;
        set_active(&ctx, &dns, false).await?;
        return Ok(Outcome::Done);
    };
    match deploy(&ctx, &dns, config, &all, &namespace).await {
        Ok(()) => {
            set_active(&ctx, &dns, true).await?;
            Ok(Outcome::Done)
        }
        Err(e) => {
            ctx.event(
                &dns.object_ref(&()),
                EventType::Warning,
                "VpcDnsNotDeployed",
                &e.to_string(),
            )
            .await;
            set_active(&ctx, &dns, false).await?;
            Err(e)
        }
    }
}

/// Checks what the Deployment needs, then writes the Deployment and the rule.
async fn deploy(
    ctx: &Ctx,
    dns: &VpcDns,
    mut config: DnsConfig,
    all: &[Arc<VpcDns>],
    namespace: &str,
) -> Result<(), Error> {
    let name = dns.name_any();
    if config.vip.is_empty() {
        return Err(Error::Other(format!("{CONFIG}: coredns-vip should be set")));
    }
    if config.image.is_empty() {
        config.image = cluster_coredns_image(ctx).await?;
    }
    if config.service_host.is_empty() {
        config.service_host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    }
    if ctx
        .stores
        .vpcs
        .get(&ObjectRef::new(&dns.spec.vpc))
        .is_none()
    {
        return Err(Error::Other(format!("vpc {:?} not found", dns.spec.vpc)));
    }
    if ctx
        .stores
        .subnets
        .get(&ObjectRef::new(&dns.spec.subnet))
        .is_none()
    {
        return Err(Error::Other(format!(
            "subnet {:?} not found",
            dns.spec.subnet
        )));
    }
    let nad = ObjectRef::new(&config.nad_name).within("default");
    if ctx.stores.nads.get(&nad).is_none() {
        return Err(Error::Other(format!(
            "network attachment definition default/{} not found",
            config.nad_name
        )));
    }
    if let Some(other) = serving(all, &dns.spec.vpc).filter(|d| d.name_any() != name) {
        remove(ctx, namespace, &name).await?;
        return Err(Error::Other(format!(
            "only one vpc-dns can be deployed in a vpc: {} serves vpc {}",
            other.name_any(),
            dns.spec.vpc
        )));
    }
    let gateway = ctx
        .stores
        .subnets
        .get(&ObjectRef::new(&ctx.config.default_ls))
        .map(|s| s.spec.gateway.clone())
        .ok_or_else(|| Error::Other(format!("subnet {} not found", ctx.config.default_ls)))?;
    let want = deployment(dns, &config, namespace, &gateway);
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    let dp_name = deployment_name(&name);
    match deployments.get_opt(&dp_name).await? {
        None => {
            info!(vpc_dns = %name, deployment = %dp_name, "creating the vpc-dns deployment");
            deployments.create(&PostParams::default(), &want).await?;
        }
        Some(have) if owned_fields(&have) != owned_fields(&want) => {
            info!(vpc_dns = %name, deployment = %dp_name, "updating the vpc-dns deployment");
            let mut replacement = want.clone();
            replacement.metadata.resource_version = have.metadata.resource_version.clone();
            deployments
                .replace(&dp_name, &PostParams::default(), &replacement)
                .await?;
        }
        Some(_) => {}
    }
    let rules = Api::<SwitchLbRule>::all(ctx.client.clone());
    let rule = switch_lb_rule(&name, &config.vip, namespace);
    match ctx.stores.switch_lb_rules.get(&ObjectRef::new(&dp_name)) {
        None => match rules.create(&PostParams::default(), &rule).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        },
        Some(have) if have.spec != rule.spec => {
            rules
                .patch(
                    &dp_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": rule.spec})),
                )
                .await?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The image of the cluster's own CoreDNS (`kube-system/coredns`), upstream's default.
async fn cluster_coredns_image(ctx: &Ctx) -> Result<String, Error> {
    let dp = Api::<Deployment>::namespaced(ctx.client.clone(), "kube-system")
        .get_opt("coredns")
        .await?;
    dp.and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .and_then(|s| s.containers.into_iter().find(|c| c.name == CONTAINER))
        .and_then(|c| c.image)
        .ok_or_else(|| {
            Error::Other(format!(
                "{CONFIG}: coredns-image is not set and kube-system/coredns has no coredns container"
            ))
        })
}

/// Removes the Deployment and the rule of the VpcDns `name`.
async fn remove(ctx: &Ctx, namespace: &str, name: &str) -> Result<(), Error> {
    let dp_name = deployment_name(name);
    let gone = |r: Result<_, kube::Error>| match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::from(e)),
    };
    if ctx
        .stores
        .switch_lb_rules
        .get(&ObjectRef::new(&dp_name))
        .is_some()
    {
        gone(
            Api::<SwitchLbRule>::all(ctx.client.clone())
                .delete(&dp_name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
    }
    let deployments = Api::<Deployment>::namespaced(ctx.client.clone(), namespace);
    if let Some(d) = deployments.get_opt(&dp_name).await? {
        if d.labels().get(NAME_LABEL).map(String::as_str) == Some("true") {
            info!(vpc_dns = %name, deployment = %dp_name, "removing the vpc-dns deployment");
            gone(
                deployments
                    .delete(&dp_name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )?;
        }
    }
    Ok(())
}

/// Writes `status.active` when it differs.
async fn set_active(ctx: &Ctx, dns: &VpcDns, active: bool) -> Result<(), Error> {
    if dns.status.as_ref().is_some_and(|s| s.active == active) {
        return Ok(());
    }
    Api::<VpcDns>::all(ctx.client.clone())
        .patch_status(
            &dns.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"active": active}})),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str, vpc: &str, active: bool, created: &str) -> Arc<VpcDns> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "kubeovn.io/v1", "kind": "VpcDns",
                "metadata": {"name": name, "creationTimestamp": created},
                "spec": {"vpc": vpc, "subnet": "s"},
                "status": {"active": active},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_active_one_keeps_serving_else_the_oldest() {
        let all = vec![
            dns("b", "v1", false, "2026-01-01T00:00:00Z"),
            dns("a", "v1", false, "2026-01-02T00:00:00Z"),
            dns("c", "v2", false, "2026-01-03T00:00:00Z"),
        ];
        assert_eq!(serving(&all, "v1").unwrap().name_any(), "b");
        let all = vec![
            dns("b", "v1", false, "2026-01-01T00:00:00Z"),
            dns("a", "v1", true, "2026-01-02T00:00:00Z"),
        ];
        assert_eq!(serving(&all, "v1").unwrap().name_any(), "a");
        assert!(serving(&all, "v3").is_none());
    }

    #[test]
    fn config_defaults_and_bad_booleans() {
        let c = DnsConfig::from_data(&BTreeMap::from([(
            "coredns-vip".to_string(),
            "10.96.0.3".to_string(),
        )]))
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.vip, "10.96.0.3");
        let off = BTreeMap::from([("enable-vpc-dns".to_string(), "F".to_string())]);
        assert!(!DnsConfig::from_data(&off).unwrap().enabled);
        let bad = BTreeMap::from([("enable-vpc-dns".to_string(), "yes".to_string())]);
        assert!(DnsConfig::from_data(&bad).is_err());
    }

    /// Upstream's template and genVpcDNSDeployment, field by field.
    #[test]
    fn deployment_matches_upstream() {
        let d = dns("test-cjh1", "cjh-vpc-1", false, "2026-01-01T00:00:00Z");
        let config = DnsConfig {
            enabled: true,
            image: "registry.k8s.io/coredns/coredns:v1.11.1".into(),
            vip: "10.96.0.3".into(),
            nad_name: "ovn-nad".into(),
            nad_provider: "ovn-nad.default.ovn".into(),
            service_host: "10.96.0.1".into(),
            service_port: "443".into(),
        };
        let dp = serde_json::to_value(deployment(&d, &config, "kube-system", "10.16.0.1")).unwrap();
        assert_eq!(dp["metadata"]["name"], "vpc-dns-test-cjh1");
        assert_eq!(
            dp["metadata"]["labels"],
            json!({"ovn.kubernetes.io/vpc-dns": "true"})
        );
        assert_eq!(dp["spec"]["replicas"], 2);
        assert_eq!(
            dp["spec"]["selector"]["matchLabels"],
            json!({"k8s-app": "vpc-dns-test-cjh1"})
        );
        let t = &dp["spec"]["template"];
        assert_eq!(
            t["metadata"]["annotations"],
            json!({
                "ovn.kubernetes.io/logical_switch": "s",
                "k8s.v1.cni.cncf.io/networks": "default/ovn-nad",
                "ovn-nad.default.ovn.kubernetes.io/logical_switch": "ovn-default",
                "ovn-nad.default.ovn.kubernetes.io/routes": "[{\"dst\":\"10.96.0.1/32\",\"gw\":\"10.16.0.1\"}]",
            })
        );
        let c = &t["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.k8s.io/coredns/coredns:v1.11.1");
        assert_eq!(
            c["env"],
            json!([{"name": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"},
                   {"name": "KUBERNETES_SERVICE_PORT", "value": "443"}])
        );
        assert_eq!(t["spec"]["serviceAccountName"], "vpc-dns");
        assert_eq!(
            t["spec"]["volumes"][0]["configMap"]["name"],
            "vpc-dns-corefile"
        );
        let rule =
            serde_json::to_value(switch_lb_rule("test-cjh1", "10.96.0.3", "kube-system")).unwrap();
        assert_eq!(
            rule["spec"]["selector"],
            json!(["k8s-app:vpc-dns-test-cjh1"])
        );
        assert_eq!(rule["spec"]["ports"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_api_route_follows_the_family() {
        assert_eq!(
            api_route("fd00::1", "10.16.0.1,fd00:10:16::1").as_deref(),
            Some("[{\"dst\":\"fd00::1/128\",\"gw\":\"fd00:10:16::1\"}]")
        );
        assert_eq!(api_route("", "10.16.0.1"), None);
    }
}
