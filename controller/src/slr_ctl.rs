//! SwitchLBRule reconciler: a rule is realised as upstream does, through a headless Service
//! `slr-<rule>` in the rule's namespace annotated `ovn.kubernetes.io/switch_lb_vip` with the
//! rule's VIP (the Service reconciler puts that VIP, its health check and `ip_port_mappings` on
//! the VPC's load balancers). Pods are selected by the Service's selector; static endpoints
//! go into an `Endpoints` object of the same name, which Kubernetes mirrors into EndpointSlices.
//! The status names the Service and the ports. Deleting a rule deletes its Service and, once no
//! health check of its subnet is left, the subnet's health-check Vip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::context::{Ctx, Error};
use crate::service_lb::HEALTH_CHECK_SUBNET_KEY;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::{SwitchLbRule, Vip};
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::trigger::{hash_json, hash_of};
use kube_ovn_runtime::Outcome;

/// The SwitchLBRule queue's kind name.
pub const KIND: &str = "switch-lb-rule";

/// The annotations of a rule that steer its Service.
const STEERING: [&str; 3] = [
    ann::LOGICAL_ROUTER,
    ann::LOGICAL_SWITCH,
    ann::SERVICE_HEALTH_CHECK,
];

/// What of a rule the reconciler reads.
pub fn signature(r: &SwitchLbRule) -> u64 {
    let a = r.annotations();
    let steer: Vec<Option<&String>> = STEERING.iter().map(|k| a.get(*k)).collect();
    hash_of(&(
        hash_json(&r.spec),
        hash_json(&steer),
        hash_json(&r.status),
        r.metadata.deletion_timestamp.is_some(),
    ))
}

/// The Service a rule is realised by.
pub fn service_name(rule: &str) -> String {
    format!("slr-{rule}")
}

/// The rule a Service realises: `slr-<rule>` carrying the switch LB VIP annotation.
pub fn rule_of_service(s: &Service) -> Vec<String> {
    match s.name_any().strip_prefix("slr-") {
        Some(rule) if s.annotations().contains_key(ann::SWITCH_LB_VIP) => vec![rule.to_string()],
        _ => Vec::new(),
    }
}

/// What a rule last put in place: enough to undo it once the rule is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    namespace: String,
    vips: BTreeSet<String>,
    subnet: Option<String>,
}

/// The rules realised so far (name → what was placed).
#[derive(Default)]
pub struct SlrRecords {
    inner: Mutex<HashMap<String, Placed>>,
}

impl SlrRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Placed>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn namespace_of(rule: &SwitchLbRule) -> String {
    if rule.spec.namespace.is_empty() {
        "default".into()
    } else {
        rule.spec.namespace.clone()
    }
}

fn vip_keys(rule: &SwitchLbRule) -> BTreeSet<String> {
    rule.spec
        .ports
        .iter()
        .map(|p| crate::service_lb::join_host_port(&rule.spec.vip, p.port))
        .collect()
}

/// A rule port's backend port: its `targetPort`, or the port itself when unset (as the API
/// server defaults a Service's).
fn target_port(p: &kube_ovn_common::crd::lb_rule::LbRulePort) -> i32 {
    if p.target_port == 0 {
        p.port
    } else {
        p.target_port
    }
}

fn protocol(p: &str) -> &str {
    if p.is_empty() {
        "TCP"
    } else {
        p
    }
}

/// `spec.selector` (`key: value` strings) as a label selector.
fn selector(rule: &SwitchLbRule) -> BTreeMap<String, String> {
    rule.spec
        .selector
        .iter()
        .filter_map(|s| {
            let (k, v) = s.trim().split_once(':')?;
            (!v.contains(':')).then(|| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The address families of the rule's VIP(s) and the matching family policy.
fn families(vip: &str) -> (Vec<&'static str>, &'static str) {
    let mut fams = BTreeSet::new();
    for ip in vip
        .split(',')
        .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok())
    {
        fams.insert(if ip.is_ipv4() { "IPv4" } else { "IPv6" });
    }
    let policy = if fams.len() > 1 {
        "PreferDualStack"
    } else {
        "SingleStack"
    };
    (fams.into_iter().collect(), policy)
}

/// The parts of the rule's Service the reconciler owns: annotations, ports, selector,
/// affinity, families (merged into the existing Service, as upstream updates it).
pub fn desired_service(rule: &SwitchLbRule, existing: Option<&Service>) -> Service {
    let ns = namespace_of(rule);
    let name = service_name(&rule.name_any());
    let ports: Vec<Value> = rule
        .spec
        .ports
        .iter()
        .map(|p| {
            let target = target_port(p);
            let mut v =
                json!({"protocol": protocol(&p.protocol), "port": p.port, "targetPort": target});
            if !p.name.is_empty() {
                v["name"] = json!(p.name);
            }
            v
        })
        .collect();
    // Static endpoints and a selector would fight over the endpoints.
    let selector = if rule.spec.endpoints.is_empty() {
        selector(rule)
    } else {
        BTreeMap::new()
    };
    let (fams, policy) = families(&rule.spec.vip);
    let affinity = if rule.spec.session_affinity.is_empty() {
        "None"
    } else {
        rule.spec.session_affinity.as_str()
    };
    let mut svc = existing.cloned().unwrap_or_else(|| {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP"},
        }))
        .unwrap_or_default()
    });
    let annotations = svc
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(ann::SWITCH_LB_VIP.into(), rule.spec.vip.clone());
    for k in STEERING {
        if let Some(v) = rule.annotations().get(k).filter(|v| !v.is_empty()) {
            annotations.insert(k.into(), v.clone());
        }
    }
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.ports = serde_json::from_value(Value::Array(ports)).ok();
    spec.selector = (!selector.is_empty()).then_some(selector);
    spec.session_affinity = Some(affinity.into());
    spec.ip_families = Some(fams.into_iter().map(String::from).collect());
    spec.ip_family_policy = Some(policy.into());
    svc
}

/// The static endpoints of a rule as a legacy `Endpoints` object (mirrored to EndpointSlices
/// by Kubernetes).
pub fn desired_endpoints(rule: &SwitchLbRule, existing: Option<&Endpoints>) -> Endpoints {
    let ns = namespace_of(rule);
    let addresses: Vec<Value> = rule
        .spec
        .endpoints
        .iter()
        .map(|ip| json!({"ip": ip, "targetRef": {"namespace": ns}}))
        .collect();
    let ports: Vec<Value> = rule
        .spec
        .ports
        .iter()
        .map(|p| {
            let target = target_port(p);
            let mut v = json!({"protocol": protocol(&p.protocol), "port": target});
            if !p.name.is_empty() {
                v["name"] = json!(p.name);
            }
            v
        })
        .collect();
    let mut eps = existing.cloned().unwrap_or_else(|| {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": service_name(&rule.name_any()), "namespace": ns},
        }))
        .unwrap_or_default()
    });
    eps.subsets = serde_json::from_value(json!([{"addresses": addresses, "ports": ports}])).ok();
    eps
}

/// The status upstream writes: the Service and the ports as `80/TCP,…`.
pub fn status_ports(rule: &SwitchLbRule) -> String {
    rule.spec
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.port, protocol(&p.protocol)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reconciles the SwitchLBRule `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let rule = ctx
        .stores
        .switch_lb_rules
        .get(&ObjectRef::new(&name))
        .filter(|r| r.metadata.deletion_timestamp.is_none());
    let Some(rule) = rule else {
        return remove(&ctx, &name).await;
    };
    if rule.spec.vip.is_empty() {
        ctx.event(
            &rule.object_ref(&()),
            EventType::Warning,
            "InvalidSwitchLBRule",
            "spec.vip must be set",
        )
        .await;
        return Ok(Outcome::Done);
    }
    let ns = namespace_of(&rule);
    let svc_name = service_name(&name);
    // Moved to another namespace: the old Service goes first.
    let previous = ctx.slr_records.lock().get(&name).cloned();
    if let Some(p) = previous.as_ref().filter(|p| p.namespace != ns) {
        delete_service(&ctx, &p.namespace, &svc_name).await?;
    }
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    if !rule.spec.endpoints.is_empty() {
        let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
        let existing = api.get_opt(&svc_name).await?;
        let want = desired_endpoints(&rule, existing.as_ref());
        match existing {
            None => {
                api.create(&PostParams::default(), &want).await?;
            }
            Some(e) if e.subsets != want.subsets => {
                api.replace(&svc_name, &PostParams::default(), &want)
                    .await?;
            }
            Some(_) => {}
        }
    }
    let existing = ctx
        .stores
        .services
        .get(&ObjectRef::new(&svc_name).within(&ns));
    let want = desired_service(&rule, existing.as_deref());
    match existing {
        None => match services.create(&PostParams::default(), &want).await {
            Ok(_) => {}
            // Created meanwhile (store lagging): its event re-queues nothing here, so retry.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Outcome::After(Duration::from_secs(1)))
            }
            Err(e) => return Err(e.into()),
        },
        Some(s) if *s != want => {
            services
                .replace(&svc_name, &PostParams::default(), &want)
                .await?;
        }
        Some(_) => {}
    }
    let service = format!("{ns}/{svc_name}");
    let ports = status_ports(&rule);
    let st = rule.status.clone().unwrap_or_default();
    if st.service != service || st.ports != ports {
        Api::<SwitchLbRule>::all(ctx.client.clone())
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"service": service, "ports": ports}})),
            )
            .await?;
    }
    ctx.slr_records.lock().insert(
        name,
        Placed {
            namespace: ns,
            vips: vip_keys(&rule),
            subnet: rule.annotations().get(ann::LOGICAL_SWITCH).cloned(),
        },
    );
    Ok(Outcome::Done)
}

async fn delete_service(ctx: &Ctx, ns: &str, name: &str) -> Result<(), Error> {
    match Api::<Service>::namespaced(ctx.client.clone(), ns)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Health checks (`vip` → `external_ids:switch_lb_subnet`) in the NB.
fn health_checks(ctx: &Ctx) -> Vec<(String, String)> {
    let cache = ctx.nb.cache();
    let Some(t) = cache.table("Load_Balancer_Health_Check") else {
        return Vec::new();
    };
    t.iter()
        .map(|(_, r)| {
            let vip = r
                .get("vip")
                .and_then(|d| d.as_atom()?.as_str().map(str::to_string))
                .unwrap_or_default();
            let ext = kube_ovn_nb::objects::string_map(r, "external_ids");
            (
                vip,
                ext.get(HEALTH_CHECK_SUBNET_KEY)
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

/// Undoes a gone rule: its Service goes (the Service reconciler removes its VIPs and health
/// checks), then the health-check Vip of each subnet left without a health check.
async fn remove(ctx: &Ctx, name: &str) -> Result<Outcome, Error> {
    let svc_name = service_name(name);
    let placed = ctx.slr_records.lock().get(name).cloned();
    let placed = match placed {
        Some(p) => p,
        None => {
            // Not placed by this process (deleted while it was down): the rule's Service,
            // wherever it is, still says what it was.
            let found = ctx.stores.services.state().into_iter().find(|s| {
                s.name_any() == svc_name && s.annotations().contains_key(ann::SWITCH_LB_VIP)
            });
            let Some(s) = found else {
                return Ok(Outcome::Done);
            };
            let vip = s.annotations()[ann::SWITCH_LB_VIP].clone();
            let vips = s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.as_ref())
                .into_iter()
                .flatten()
                .map(|p| crate::service_lb::join_host_port(&vip, p.port))
                .collect();
            Placed {
                namespace: s.namespace().unwrap_or_default(),
                vips,
                subnet: s.annotations().get(ann::LOGICAL_SWITCH).cloned(),
            }
        }
    };
    let checks = health_checks(ctx);
    let mut subnets: BTreeSet<String> = checks
        .iter()
        .filter(|(vip, s)| placed.vips.contains(vip) && !s.is_empty())
        .map(|(_, s)| s.clone())
        .collect();
    subnets.extend(placed.subnet.clone());
    delete_service(ctx, &placed.namespace, &svc_name).await?;
    if checks.iter().any(|(vip, _)| placed.vips.contains(vip)) {
        // The Service reconciler has not taken the VIPs' health checks away yet.
        ctx.slr_records.lock().insert(
            name.to_string(),
            Placed {
                subnet: subnets.iter().next().cloned(),
                ..placed
            },
        );
        return Ok(Outcome::After(Duration::from_millis(500)));
    }
    let vips: Api<Vip> = Api::all(ctx.client.clone());
    for subnet in &subnets {
        if checks.iter().any(|(_, s)| s == subnet) {
            continue;
        }
        match vips.delete(subnet, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.slr_records.lock().remove(name);
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(spec: Value) -> SwitchLbRule {
        serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "SwitchLBRule",
            "metadata": {"name": "r1", "annotations": {"ovn.kubernetes.io/logical_switch": "net1"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn a_rule_becomes_a_headless_service_as_upstream_builds_it() {
        let r = rule(json!({
            "vip": "10.16.0.250", "namespace": "app", "selector": ["app: web", "bad"],
            "sessionAffinity": "ClientIP",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                      {"name": "dns", "port": 53, "protocol": "UDP"}],
        }));
        let s = desired_service(&r, None);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["metadata"]["name"], "slr-r1");
        assert_eq!(v["metadata"]["namespace"], "app");
        assert_eq!(
            v["metadata"]["annotations"]["ovn.kubernetes.io/switch_lb_vip"],
            "10.16.0.250"
        );
        assert_eq!(
            v["metadata"]["annotations"]["ovn.kubernetes.io/logical_switch"],
            "net1"
        );
        assert_eq!(v["spec"]["clusterIP"], "None");
        assert_eq!(v["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(v["spec"]["sessionAffinity"], "ClientIP");
        assert_eq!(v["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(v["spec"]["ipFamilyPolicy"], "SingleStack");
        assert_eq!(v["spec"]["ports"][1]["targetPort"], 53);
        assert_eq!(status_ports(&r), "80/TCP,53/UDP");
        assert_eq!(
            vip_keys(&r),
            ["10.16.0.250:53".to_string(), "10.16.0.250:80".to_string()].into()
        );
    }

    #[test]
    fn static_endpoints_replace_the_selector() {
        let r = rule(json!({
            "vip": "10.16.0.250", "namespace": "app", "selector": ["app: web"],
            "endpoints": ["10.16.0.10", "10.16.0.11"],
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        }));
        let v = serde_json::to_value(desired_service(&r, None)).unwrap();
        assert!(v["spec"].get("selector").is_none(), "{v}");
        let e = serde_json::to_value(desired_endpoints(&r, None)).unwrap();
        assert_eq!(e["subsets"][0]["addresses"][1]["ip"], "10.16.0.11");
        assert_eq!(
            e["subsets"][0]["addresses"][0]["targetRef"]["namespace"],
            "app"
        );
        assert_eq!(
            e["subsets"][0]["ports"][0],
            json!({"name": "http", "port": 8080, "protocol": "TCP"})
        );
    }

    #[test]
    fn dual_stack_vips_ask_for_both_families() {
        assert_eq!(
            families("10.0.0.1,fd00::1"),
            (vec!["IPv4", "IPv6"], "PreferDualStack")
        );
        assert_eq!(families("fd00::1"), (vec!["IPv6"], "SingleStack"));
    }
}
