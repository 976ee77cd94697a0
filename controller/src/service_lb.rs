//! What a Service and its EndpointSlices put on the OVN load balancers, computed without I/O
//! exactly as upstream's endpoint handler does:
//!
//! * VIP hosts: the `switch_lb_vip` annotation, else the `router_lb_vip` list, else the
//!   ClusterIPs (`spec.externalIPs` are kube-proxy's, as upstream leaves them); with
//!   `--enable-ovn-lb-prefer-local`, LoadBalancer ingress IPs too.
//! * One VIP `<host>:<port>` per host and Service port, on the load balancer of the port's
//!   protocol — the session one with `sessionAffinity: ClientIP`.
//! * Backends: each ready (`ready` unset or true) address of the VIP's family in every slice
//!   whose port of the same name has a number, as `<ip>:<targetPort>`, sorted. A VIP with no
//!   backend is removed (the client's SYN then reaches the node, where the reject rule answers).
//! * `ip_port_mappings` (`<backend ip>` → `<lsp>:<source ip>`) for health-checked VIPs (switch
//!   LB rules, IPv4, unless `service_health_check: "false"`) and prefer-local VIPs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::pod_info::PodInfo;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::names::pod_lsp;
use kube_ovn_nb::objects::VpcLoadBalancers;

/// The source address upstream gives prefer-local mappings (no probe is sent from it).
pub const MASQUERADE_CHECK_IP: &str = "0.0.0.0";
/// `external_ids` key of a health check naming the backends' subnet.
pub const HEALTH_CHECK_SUBNET_KEY: &str = "switch_lb_subnet";
/// The affinity timeout of the session load balancers (Kubernetes' default for ClientIP).
pub const SESSION_AFFINITY_TIMEOUT: i32 = 10800;

/// A Service port's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// From a Service port's `protocol` (unset = TCP); unknown protocols have no load balancer.
    pub fn parse(p: Option<&str>) -> Option<Proto> {
        match p.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// The load balancer of this protocol among a VPC's six.
    pub fn lb(self, lbs: &VpcLoadBalancers, session: bool) -> &str {
        match (self, session) {
            (Proto::Tcp, false) => &lbs.tcp,
            (Proto::Tcp, true) => &lbs.tcp_session,
            (Proto::Udp, false) => &lbs.udp,
            (Proto::Udp, true) => &lbs.udp_session,
            (Proto::Sctp, false) => &lbs.sctp,
            (Proto::Sctp, true) => &lbs.sctp_session,
        }
    }
}

/// `ip:port`, with IPv6 bracketed (upstream's JoinHostPort).
pub fn join_host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn is_v6(ip: &str) -> bool {
    ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6())
}

/// The valid ClusterIPs (upstream's ServiceClusterIPs: `None`, empty and unparsable skipped).
pub fn cluster_ips(svc: &Service) -> Vec<String> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    if ips.is_empty() {
        return spec
            .cluster_ip
            .iter()
            .filter(|ip| ip.parse::<IpAddr>().is_ok())
            .cloned()
            .collect();
    }
    ips.into_iter()
        .filter(|ip| ip.parse::<IpAddr>().is_ok())
        .collect()
}

fn annotation<'a>(svc: &'a Service, key: &str) -> Option<&'a str> {
    svc.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn ingress_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|i| i.ip.clone())
                .filter(|ip| !ip.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn is_type(svc: &Service, t: &str) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("ClusterIP")
        == t
}

/// Every address whose VIPs belong to the Service (upstream's getVipIps: the rule VIPs, else
/// the ClusterIPs plus the ingress IPs when the external-IP subnet annotation is set). What
/// GC and stale-VIP removal treat as the Service's.
pub fn claimed_ips(svc: &Service) -> Vec<String> {
    if let Some(v) = annotation(svc, ann::SWITCH_LB_VIP) {
        return split_list(v);
    }
    if let Some(v) = annotation(svc, ann::ROUTER_LB_VIP) {
        return split_list(v);
    }
    let mut ips = cluster_ips(svc);
    if annotation(svc, ann::SERVICE_EXTERNAL_IP_FROM_SUBNET).is_some_and(|s| !s.is_empty()) {
        ips.extend(ingress_ips(svc));
    }
    ips
}

/// Whether the Service uses the session load balancers.
pub fn session_affinity(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.session_affinity.as_deref())
        == Some("ClientIP")
}

/// The ClientIP timeout the Service asks for, when it differs from the one the shared session
/// load balancers have (OVN keeps one `affinity_timeout` per load balancer).
pub fn unsupported_affinity_timeout(svc: &Service) -> Option<i32> {
    if !session_affinity(svc) {
        return None;
    }
    let t = svc
        .spec
        .as_ref()?
        .session_affinity_config
        .as_ref()?
        .client_ip
        .as_ref()?
        .timeout_seconds?;
    (t != SESSION_AFFINITY_TIMEOUT).then_some(t)
}

/// Whether the Service has a pod selector.
pub fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty())
}

/// How the VIP hosts were chosen, which decides health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipHosts {
    /// The addresses to put VIPs on.
    pub hosts: Vec<String>,
    /// Whether the VIPs are health-checked (a rule VIP, IPv4, checks not turned off).
    pub health_check: bool,
    /// Whether backends on the client's node are preferred (`internalTrafficPolicy` or
    /// `externalTrafficPolicy: Local` with prefer-local on).
    pub prefer_local: bool,
}

/// The VIP hosts of a Service (`prefer_local_enabled` = `--enable-lb` and
/// `--enable-ovn-lb-prefer-local`).
pub fn vip_hosts(svc: &Service, prefer_local_enabled: bool) -> VipHosts {
    let checks_off = annotation(svc, ann::SERVICE_HEALTH_CHECK) == Some("false");
    let (mut hosts, health_check) =
        if let Some(v) = annotation(svc, ann::SWITCH_LB_VIP).filter(|v| !v.is_empty()) {
            (
                vec![v.to_string()],
                !is_v6(v) && v.parse::<IpAddr>().is_ok() && !checks_off,
            )
        } else if let Some(v) = annotation(svc, ann::ROUTER_LB_VIP).filter(|v| !v.is_empty()) {
            let hosts = split_list(v);
            let check = !checks_off
                && hosts
                    .iter()
                    .any(|h| h.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()));
            (hosts, check)
        } else {
            (cluster_ips(svc), false)
        };
    let mut prefer_local = false;
    if prefer_local_enabled {
        let spec = svc.spec.as_ref();
        if is_type(svc, "LoadBalancer") {
            hosts.extend(ingress_ips(svc));
            prefer_local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
        } else if is_type(svc, "ClusterIP") {
            prefer_local = spec.and_then(|s| s.internal_traffic_policy.as_deref()) == Some("Local");
        }
    }
    VipHosts {
        hosts,
        health_check,
        prefer_local,
    }
}

/// The provider of a pod whose `<provider>.kubernetes.io/ip_address` holds one of `addresses`
/// (only the default provider until attachments exist).
fn provider_of(pod: &PodInfo, addresses: &[String]) -> Option<&'static str> {
    let provider = kube_ovn_common::names::DEFAULT_PROVIDER;
    let ips = pod.metadata.annotations.as_ref()?.get(ann::IP_ADDRESS)?;
    let ips: Vec<&str> = ips.split(',').map(str::trim).collect();
    addresses
        .iter()
        .any(|a| ips.contains(&a.as_str()))
        .then_some(provider)
}

/// The logical switch port of an endpoint's pod (a VM launcher pod's is named after its VM).
fn endpoint_lsp(pod: &PodInfo, provider: &str) -> String {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let vm_key = format!("{provider}.kubernetes.io/virtualmachine");
    let target = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&vm_key))
        .map(String::as_str)
        .unwrap_or(name);
    pod_lsp(target, ns, provider)
}

/// Pods as a reconcile sees them: by namespace/name, and a namespace's pods for Services whose
/// endpoints have no target references.
pub trait PodLookup {
    /// The pod `namespace/name`.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>>;
    /// The pods of `namespace`.
    fn pods_in(&self, namespace: &str) -> Vec<Arc<PodInfo>>;
}

/// The endpoints' pods with the addresses they back: through the target references when the
/// Service selects pods, else by matching addresses against the namespace's pods.
fn endpoint_pods(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    pods: &dyn PodLookup,
) -> Vec<(Arc<PodInfo>, Vec<String>)> {
    let mut out = Vec::new();
    if has_selector(svc) {
        for ep in slices.iter().flat_map(|s| s.endpoints.iter()) {
            let Some(t) = ep.target_ref.as_ref() else {
                continue;
            };
            let (Some(ns), Some(name)) = (t.namespace.as_deref(), t.name.as_deref()) else {
                continue;
            };
            if let Some(p) = pods.pod(ns, name) {
                out.push((p, ep.addresses.clone()));
            }
        }
    } else {
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        let candidates = pods.pods_in(ns);
        for ep in slices.iter().flat_map(|s| s.endpoints.iter()) {
            for p in &candidates {
                if provider_of(p, &ep.addresses).is_some() {
                    out.push((p.clone(), ep.addresses.clone()));
                }
            }
        }
    }
    out
}

/// The Service's VPC and subnet: its `logical_router` + `logical_switch` annotations when both
/// are set, else those of the first endpoint pod found, else the `vpc` annotation (or the
/// default VPC) and the default subnet.
pub fn vpc_and_subnet(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    pods: &dyn PodLookup,
    cluster_router: &str,
    default_subnet: &str,
) -> (String, String) {
    let (vpc, subnet) = (
        annotation(svc, ann::LOGICAL_ROUTER).unwrap_or(""),
        annotation(svc, ann::LOGICAL_SWITCH).unwrap_or(""),
    );
    if !vpc.is_empty() && !subnet.is_empty() {
        return (vpc.to_string(), subnet.to_string());
    }
    let (mut vpc, mut subnet) = (String::new(), String::new());
    for (pod, addresses) in endpoint_pods(svc, slices, pods) {
        if provider_of(&pod, &addresses).is_none() {
            continue;
        }
        let a = pod.metadata.annotations.as_ref();
        let get = |k: &str| a.and_then(|a| a.get(k)).cloned().unwrap_or_default();
        if vpc.is_empty() {
            vpc = get(ann::LOGICAL_ROUTER);
        }
        if subnet.is_empty() {
            subnet = get(ann::LOGICAL_SWITCH);
        }
        if !vpc.is_empty() && !subnet.is_empty() {
            break;
        }
    }
    if vpc.is_empty() {
        vpc = annotation(svc, ann::VPC)
            .filter(|v| !v.is_empty())
            .unwrap_or(cluster_router)
            .to_string();
    }
    if subnet.is_empty() {
        subnet = default_subnet.to_string();
    }
    (vpc, subnet)
}

/// One VIP of the Service as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vip {
    /// The port's protocol.
    pub proto: Proto,
    /// `<host>:<port>`.
    pub vip: String,
    /// Sorted `<ip>:<port>` backends; empty = the VIP must not exist.
    pub backends: Vec<String>,
    /// `ip_port_mappings` entries to keep (health-checked or prefer-local VIPs only).
    pub mappings: BTreeMap<String, String>,
}

impl Vip {
    /// The `vips` value: backends joined by commas.
    pub fn value(&self) -> String {
        self.backends.join(",")
    }
}

/// The ready backends of one Service port for a VIP host's family.
pub fn backends(slices: &[Arc<EndpointSlice>], port_name: &str, host: &str) -> Vec<String> {
    let v6 = is_v6(host);
    let mut out = Vec::new();
    for s in slices {
        let target = s
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
            .unwrap_or(0);
        if target == 0 {
            continue;
        }
        for ep in &s.endpoints {
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if a.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() == v6) {
                    out.push(join_host_port(a, target));
                }
            }
        }
    }
    out.sort();
    out
}

/// The `ip_port_mappings` of the endpoints' pods: each address (IPv6 bracketed) →
/// `<lsp>:<check ip>`; pods being deleted are left out.
pub fn ip_port_mappings(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    pods: &dyn PodLookup,
    check_ip: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (pod, addresses) in endpoint_pods(svc, slices, pods) {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let provider =
            provider_of(&pod, &addresses).unwrap_or(kube_ovn_common::names::DEFAULT_PROVIDER);
        let lsp = endpoint_lsp(&pod, provider);
        for a in &addresses {
            let key = if is_v6(a) {
                format!("[{a}]")
            } else {
                a.clone()
            };
            out.insert(key, format!("{lsp}:{check_ip}"));
        }
    }
    out
}

/// Everything one Service puts on its VPC's load balancers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Every VIP (host × port), with or without backends.
    pub vips: Vec<Vip>,
    /// Whether the session load balancers are used.
    pub session: bool,
    /// Whether the VIPs get health checks.
    pub health_check: bool,
    /// Whether prefer-local mappings are kept.
    pub prefer_local: bool,
}

/// The Service's VIPs. `check_ips` gives the health-check source address of a family
/// (`false` = IPv4), from the subnet's check Vip; unused unless the VIPs are health-checked.
pub fn desired(
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
    pods: &dyn PodLookup,
    hosts: &VipHosts,
    check_ip: &dyn Fn(bool) -> Option<String>,
) -> Desired {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut vips = Vec::new();
    for host in &hosts.hosts {
        let source = if hosts.prefer_local {
            Some(MASQUERADE_CHECK_IP.to_string())
        } else if hosts.health_check {
            check_ip(is_v6(host))
        } else {
            None
        };
        let mappings = match source {
            Some(src) if hosts.health_check || hosts.prefer_local => {
                ip_port_mappings(svc, slices, pods, &src)
            }
            _ => BTreeMap::new(),
        };
        for p in &ports {
            let Some(proto) = Proto::parse(p.protocol.as_deref()) else {
                continue;
            };
            let name = p.name.as_deref().unwrap_or("");
            vips.push(Vip {
                proto,
                vip: join_host_port(host, p.port),
                backends: backends(slices, name, host),
                mappings: mappings.clone(),
            });
        }
    }
    Desired {
        vips,
        session: session_affinity(svc),
        health_check: hosts.health_check,
        prefer_local: hosts.prefer_local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    struct Pods(HashMap<(String, String), Arc<PodInfo>>);

    impl PodLookup for Pods {
        fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodInfo>> {
            self.0
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
        }
        fn pods_in(&self, namespace: &str) -> Vec<Arc<PodInfo>> {
            let mut v: Vec<_> = self
                .0
                .iter()
                .filter(|((ns, _), _)| ns == namespace)
                .map(|(_, p)| p.clone())
                .collect();
            v.sort_by_key(|p| p.metadata.name.clone());
            v
        }
    }

    fn pods(list: &[(&str, &str, &str, &str)]) -> Pods {
        Pods(
            list.iter()
                .map(|(ns, name, ips, ls)| {
                    let p: PodInfo = serde_json::from_value(json!({"metadata": {
                        "name": name, "namespace": ns,
                        "annotations": {ann::IP_ADDRESS: ips, ann::LOGICAL_SWITCH: ls,
                                        ann::LOGICAL_ROUTER: "ovn-cluster"}}}))
                    .unwrap();
                    ((ns.to_string(), name.to_string()), Arc::new(p))
                })
                .collect(),
        )
    }

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    fn slice(family: &str, ports: serde_json::Value, eps: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "s", "namespace": "default"},
                "addressType": family, "ports": ports, "endpoints": eps
            }))
            .unwrap(),
        )
    }

    fn no_check(_: bool) -> Option<String> {
        None
    }

    #[test]
    fn ports_map_to_protocol_vips_with_sorted_ready_backends() {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                               {"name": "dns", "port": 53, "protocol": "UDP"},
                               {"name": "sig", "port": 9, "protocol": "SCTP"}]}}));
        let sl = slice(
            "IPv4",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]),
            json!([
                {"addresses": ["10.16.0.9"], "conditions": {"ready": true}},
                {"addresses": ["10.16.0.10"]},
                {"addresses": ["10.16.0.11"], "conditions": {"ready": false, "serving": true, "terminating": true}},
            ]),
        );
        let d = desired(&s, &[sl], &pods(&[]), &vip_hosts(&s, false), &no_check);
        assert!(!d.session && !d.health_check);
        let by_vip: BTreeMap<&str, (Proto, String)> = d
            .vips
            .iter()
            .map(|v| (v.vip.as_str(), (v.proto, v.value())))
            .collect();
        assert_eq!(
            by_vip["10.96.0.10:80"],
            (Proto::Tcp, "10.16.0.10:8080,10.16.0.9:8080".to_string()),
            "named target port resolved through the slice, terminating endpoint left out, sorted as strings"
        );
        assert_eq!(
            by_vip["10.96.0.10:53"],
            (Proto::Udp, "10.16.0.10:5353,10.16.0.9:5353".into())
        );
        assert_eq!(
            by_vip["10.96.0.10:9"],
            (Proto::Sctp, String::new()),
            "no slice port: no backend"
        );
    }

    #[test]
    fn dual_stack_vips_take_backends_of_their_family_bracketed() {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIPs": ["10.96.0.10", "fd00:10:96::a"], "selector": {"app": "web"},
                     "ports": [{"name": "", "port": 80}]}}));
        let v4 = slice(
            "IPv4",
            json!([{"name": "", "port": 80}]),
            json!([{"addresses": ["10.16.0.9"]}]),
        );
        let v6 = slice(
            "IPv6",
            json!([{"name": "", "port": 80}]),
            json!([{"addresses": ["fd00::9"]}]),
        );
        let d = desired(&s, &[v4, v6], &pods(&[]), &vip_hosts(&s, false), &no_check);
        let got: Vec<(String, String)> =
            d.vips.iter().map(|v| (v.vip.clone(), v.value())).collect();
        assert_eq!(
            got,
            [
                ("10.96.0.10:80".to_string(), "10.16.0.9:80".to_string()),
                ("[fd00:10:96::a]:80".to_string(), "[fd00::9]:80".to_string())
            ]
        );
    }

    #[test]
    fn client_ip_affinity_uses_the_session_balancers_and_flags_other_timeouts() {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "sessionAffinity": "ClientIP",
                     "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                     "ports": [{"port": 80}]}}));
        let d = desired(&s, &[], &pods(&[]), &vip_hosts(&s, false), &no_check);
        assert!(d.session);
        let lbs = VpcLoadBalancers::for_custom_vpc("v");
        assert_eq!(Proto::Tcp.lb(&lbs, d.session), "vpc-v-tcp-sess-load");
        assert_eq!(unsupported_affinity_timeout(&s), Some(60));
        let default = svc(json!({"spec": {"sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}}));
        assert_eq!(unsupported_affinity_timeout(&default), None);
    }

    #[test]
    fn headless_and_external_name_services_have_no_vips() {
        let headless = svc(
            json!({"spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 80}]}}),
        );
        assert!(vip_hosts(&headless, false).hosts.is_empty());
        let ext = svc(json!({"spec": {"type": "ExternalName", "externalName": "x.example"}}));
        assert!(claimed_ips(&ext).is_empty());
    }

    #[test]
    fn switch_lb_rule_vips_are_health_checked_with_mappings_to_the_pods_ports() {
        let s = svc(json!({"metadata": {"name": "slr-a", "namespace": "default",
                "annotations": {ann::SWITCH_LB_VIP: "10.16.0.100"}},
            "spec": {"clusterIP": "None", "selector": {"app": "a"}, "ports": [{"name": "t", "port": 443}]}}));
        let sl = slice(
            "IPv4",
            json!([{"name": "t", "port": 8443}]),
            json!([{"addresses": ["10.16.0.9"], "targetRef": {"kind": "Pod", "namespace": "default", "name": "a-1"}}]),
        );
        let p = pods(&[("default", "a-1", "10.16.0.9", "ovn-default")]);
        let hosts = vip_hosts(&s, false);
        assert!(hosts.health_check);
        assert_eq!(claimed_ips(&s), ["10.16.0.100"]);
        let d = desired(&s, std::slice::from_ref(&sl), &p, &hosts, &|v6| {
            (!v6).then(|| "10.16.0.2".to_string())
        });
        assert_eq!(d.vips[0].vip, "10.16.0.100:443");
        assert_eq!(d.vips[0].value(), "10.16.0.9:8443");
        assert_eq!(d.vips[0].mappings["10.16.0.9"], "a-1.default:10.16.0.2");
        assert_eq!(
            vpc_and_subnet(&s, &[sl], &p, "ovn-cluster", "ovn-default"),
            ("ovn-cluster".to_string(), "ovn-default".to_string())
        );
        let off = svc(
            json!({"metadata": {"annotations": {ann::SWITCH_LB_VIP: "10.16.0.100",
            ann::SERVICE_HEALTH_CHECK: "false"}}, "spec": {}}),
        );
        assert!(!vip_hosts(&off, false).health_check);
    }

    #[test]
    fn selectorless_services_find_their_pods_by_address_for_vpc_and_subnet() {
        let s = svc(json!({"metadata": {"name": "ext", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}));
        let sl = slice(
            "IPv4",
            json!([{"name": "", "port": 80}]),
            json!([{"addresses": ["10.17.0.5"]}]),
        );
        let p = pods(&[
            ("default", "x", "10.17.0.5", "sub17"),
            ("default", "y", "10.16.0.5", "ovn-default"),
        ]);
        assert_eq!(
            vpc_and_subnet(
                &s,
                std::slice::from_ref(&sl),
                &p,
                "ovn-cluster",
                "ovn-default"
            ),
            ("ovn-cluster".to_string(), "sub17".to_string())
        );
        // Nothing matches: the vpc annotation, else the default VPC and subnet.
        let annotated = svc(
            json!({"metadata": {"namespace": "default", "annotations": {ann::VPC: "v1"}},
            "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            vpc_and_subnet(&annotated, &[], &p, "ovn-cluster", "ovn-default"),
            ("v1".to_string(), "ovn-default".to_string())
        );
    }

    #[test]
    fn prefer_local_adds_ingress_vips_and_masquerade_mappings() {
        let s = svc(json!({"metadata": {"name": "lb", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.30", "externalTrafficPolicy": "Local",
                     "selector": {"app": "a"}, "ports": [{"name": "", "port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.18.0.50"}]}}}));
        let hosts = vip_hosts(&s, true);
        assert_eq!(hosts.hosts, ["10.96.0.30", "172.18.0.50"]);
        assert!(hosts.prefer_local && !hosts.health_check);
        assert!(
            vip_hosts(&s, false).hosts.len() == 1,
            "only with prefer-local"
        );
        let sl = slice(
            "IPv4",
            json!([{"name": "", "port": 80}]),
            json!([{"addresses": ["10.16.0.9"], "targetRef": {"kind": "Pod", "namespace": "default", "name": "a-1"}}]),
        );
        let p = pods(&[("default", "a-1", "10.16.0.9", "ovn-default")]);
        let d = desired(&s, &[sl], &p, &hosts, &no_check);
        assert_eq!(d.vips[1].mappings["10.16.0.9"], "a-1.default:0.0.0.0");
    }
}
