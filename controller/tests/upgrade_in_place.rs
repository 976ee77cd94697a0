//! Upgrade in place: the NB of a small running cluster laid out as upstream Kube-OVN writes
//! it (built here with ovn-nbctl from upstream's naming rules, before our controller ever
//! runs) plus the Kubernetes objects with the annotations, specs and statuses upstream leaves.
//! Our controller, swapped in for upstream's, must adopt all of it without a single NB write,
//! without changing any pod's or node's address and without touching an IP CR's address.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{Ip, Subnet, Vpc};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use support::upstream_layout as up;
use support::World;

const LONG: Duration = Duration::from_secs(60);
const ROUTER: &str = "ovn-cluster";
const DEFAULT_LS: &str = "ovn-default";
const JOIN: &str = "join";
const DEFAULT_CIDR: &str = "10.16.0.0/16";
const JOIN_CIDR: &str = "100.64.0.0/16";
const TCP_LB: &str = "cluster-tcp-loadbalancer";
/// The tables whose rows the summary counts.
const TABLES: [&str; 11] = [
    "Logical_Router",
    "Logical_Router_Port",
    "Logical_Router_Policy",
    "Logical_Router_Static_Route",
    "Logical_Switch",
    "Logical_Switch_Port",
    "Load_Balancer",
    "Port_Group",
    "Address_Set",
    "ACL",
    "NB_Global",
];

/// A pod of the running cluster, with the address upstream's IPAM gave it.
struct ClusterPod {
    name: &'static str,
    node: usize,
    labels: Value,
    ip: String,
    mac: String,
    port_security: bool,
}

fn cluster_pods() -> Vec<ClusterPod> {
    let pod = |name, node, labels, n: u8, port_security| ClusterPod {
        name,
        node,
        labels,
        ip: format!("10.16.0.{n}"),
        mac: format!("4a:1e:0c:00:00:{n:02x}"),
        port_security,
    };
    vec![
        pod("web-0", 0, json!({"app": "web"}), 2, false),
        pod("web-1", 1, json!({"app": "web"}), 3, false),
        pod("client", 0, json!({"role": "client"}), 4, true),
        pod("batch", 1, json!({"role": "batch"}), 5, false),
    ]
}

/// Builds an API object from JSON.
fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

/// Everything an upgraded cluster's users would notice change: every pod's and node's
/// annotations and every IP CR's address.
#[derive(Debug, PartialEq)]
struct Addresses {
    pods: BTreeMap<String, BTreeMap<String, String>>,
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    ips: BTreeMap<String, (String, String)>,
}

async fn addresses(w: &World) -> Addresses {
    let pods = w
        .pods()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.name_any(), p.annotations().clone()))
        .collect();
    let nodes = Api::<Node>::all(w.client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.annotations().clone()))
        .collect();
    let ips = Api::<Ip>::all(w.client.clone())
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| {
            let spec = i.spec.clone();
            (i.name_any(), (spec.ip_address, spec.mac_address))
        })
        .collect();
    Addresses { pods, nodes, ips }
}

/// Rows per table in the NB replica.
fn row_counts(w: &World) -> BTreeMap<&'static str, usize> {
    let c = w.nb.cache();
    TABLES
        .iter()
        .map(|t| (*t, c.table(t).map(|t| t.iter().count()).unwrap_or(0)))
        .collect()
}

/// The counters that say the controller has reconciled the whole cluster once.
async fn reconciled(w: &World, pods: usize) -> Option<f64> {
    let mut total = 0.0;
    for (kind, at_least) in [
        ("subnet", 2.0),
        ("node", 2.0),
        ("pod", pods as f64),
        ("service", 2.0),
        ("network-policy", 1.0),
        ("network-policy-nodes", 1.0),
        ("security-group", 1.0),
    ] {
        let n = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                &format!("kind=\"{kind}\""),
            )
            .await?;
        if n < at_least {
            return None;
        }
        total += n;
    }
    Some(total)
}

/// The NB of the cluster, as upstream's controller left it.
fn write_upstream_nb(w: &World, nodes: &[(String, IpAddr)], pods: &[ClusterPod]) {
    up::nb_global(w, "v1.17.0");
    up::cluster_router(w, ROUTER);
    up::cluster_load_balancers(w);
    up::overlay_subnet(
        w,
        ROUTER,
        JOIN,
        JOIN_CIDR,
        "100.64.0.1",
        "4a:1e:0c:ff:00:01",
        false,
    );
    up::overlay_subnet(
        w,
        ROUTER,
        DEFAULT_LS,
        DEFAULT_CIDR,
        "10.16.0.1",
        "4a:1e:0c:ff:00:02",
        true,
    );
    up::default_route(w, ROUTER, "100.64.0.1");
    up::u2o_overlay_sets(w, ROUTER, &[JOIN_CIDR, DEFAULT_CIDR]);
    up::deny_all_security_group(w);
    let mut ports_by_node: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
    for (i, (node, ip)) in nodes.iter().enumerate() {
        up::node(w, ROUTER, node, &join_ip(i), &node_mac(i), *ip);
    }
    let mut uuids = BTreeMap::new();
    for p in pods {
        let u = up::pod_port(
            w,
            DEFAULT_LS,
            "default",
            p.name,
            &p.mac,
            &p.ip,
            p.port_security,
        );
        ports_by_node[p.node].push(u.clone());
        uuids.insert(p.name, u);
    }
    for (i, (node, _)) in nodes.iter().enumerate() {
        up::add_to_port_group(
            w,
            &format!("node.{node}").replace('-', "."),
            &ports_by_node[i],
        );
        up::distributed_gateway(w, ROUTER, DEFAULT_LS, node, &join_ip(i), &ports_by_node[i]);
    }
    // Services: the API server's (its endpoint is node1's address) and web's.
    up::vip(w, TCP_LB, "10.96.0.1:443", &format!("{}:6443", nodes[0].1));
    up::vip(
        w,
        TCP_LB,
        "10.96.100.10:80",
        &format!("{}:8080,{}:8080", pods[0].ip, pods[1].ip),
    );
    // The NetworkPolicy: web pods reachable from clients on 5432; the nodes' allows.
    let members = vec![uuids["web-0"].clone(), uuids["web-1"].clone()];
    up::ingress_policy(
        w,
        "default",
        "db-access",
        &members,
        &[pods[2].ip.clone()],
        5432,
    );
    for (node, ip) in nodes {
        up::node_policy_allows(w, node, *ip);
    }
}

fn join_ip(node: usize) -> String {
    format!("100.64.0.{}", node + 2)
}

fn node_mac(node: usize) -> String {
    format!("4a:1e:0c:fe:00:{:02x}", node + 2)
}

/// The Kubernetes side of the cluster, with everything upstream writes on it.
async fn write_upstream_objects(w: &World, nodes: &[(String, IpAddr)], pods: &[ClusterPod]) {
    let pp = PostParams::default();
    let vpcs: Api<Vpc> = Api::all(w.client.clone());
    vpcs.create(
        &pp,
        &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
        "metadata": {"name": ROUTER}, "spec": {}})),
    )
    .await
    .unwrap();
    vpcs.patch_status(
        ROUTER,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "default": true, "standby": true, "router": ROUTER, "defaultLogicalSwitch": DEFAULT_LS,
            "subnets": [JOIN, DEFAULT_LS],
            "tcpLoadBalancer": "cluster-tcp-loadbalancer",
            "tcpSessionLoadBalancer": "cluster-tcp-session-loadbalancer",
            "udpLoadBalancer": "cluster-udp-loadbalancer",
            "udpSessionLoadBalancer": "cluster-udp-session-loadbalancer",
            "sctpLoadBalancer": "cluster-sctp-loadbalancer",
            "sctpSessionLoadBalancer": "cluster-sctp-session-loadbalancer",
        }})),
    )
    .await
    .unwrap();

    // The Subnets after upstream's formatSubnet, with its finalizer and a Ready status.
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    let ready = json!([{"type": "Ready", "status": "True", "reason": "ResetLogicalSwitchAclSuccess",
        "message": "", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]);
    for (name, spec, used, using_range, available, available_range) in [
        (
            JOIN,
            json!({"vpc": ROUTER, "default": false, "provider": "ovn", "cidrBlock": JOIN_CIDR,
                   "gateway": "100.64.0.1", "excludeIps": ["100.64.0.1"], "protocol": "IPv4",
                   "disableInterConnection": true}),
            nodes.len(),
            format!("100.64.0.2-100.64.0.{}", nodes.len() + 1),
            65533 - nodes.len(),
            format!("100.64.0.{}-100.64.255.254", nodes.len() + 2),
        ),
        (
            DEFAULT_LS,
            json!({"vpc": ROUTER, "default": true, "provider": "ovn", "cidrBlock": DEFAULT_CIDR,
                   "gateway": "10.16.0.1", "excludeIps": ["10.16.0.1"], "protocol": "IPv4",
                   "natOutgoing": true, "gatewayType": "distributed", "disableGatewayCheck": false,
                   "enableLb": true}),
            pods.len(),
            format!("10.16.0.2-10.16.0.{}", pods.len() + 1),
            65533 - pods.len(),
            format!("10.16.0.{}-10.16.255.254", pods.len() + 2),
        ),
    ] {
        subnets
            .create(
                &pp,
                &obj(json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
                "metadata": {"name": name, "finalizers": ["kubeovn.io/kube-ovn-controller"]},
                "spec": spec})),
            )
            .await
            .unwrap();
        subnets
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": ready,
                    "v4usingIPs": used, "v4usingIPrange": using_range,
                    "v4availableIPs": available, "v4availableIPrange": available_range,
                    "v6usingIPs": 0, "v6availableIPs": 0}})),
            )
            .await
            .unwrap();
    }

    // Nodes: the join annotations and IP CR of handleAddNode.
    let node_api: Api<Node> = Api::all(w.client.clone());
    let ips: Api<Ip> = Api::all(w.client.clone());
    for (i, (node, _)) in nodes.iter().enumerate() {
        node_api
            .patch(
                node,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "ovn.kubernetes.io/ip_address": join_ip(i),
                    "ovn.kubernetes.io/mac_address": node_mac(i),
                    "ovn.kubernetes.io/cidr": JOIN_CIDR,
                    "ovn.kubernetes.io/gateway": "100.64.0.1",
                    "ovn.kubernetes.io/logical_switch": JOIN,
                    "ovn.kubernetes.io/allocated": "true",
                    "ovn.kubernetes.io/port_name": format!("node-{node}"),
                }}})),
            )
            .await
            .unwrap();
        let uid = node_api.get(node).await.unwrap().uid().unwrap();
        ips.create(
            &pp,
            &obj(ip_cr(
                &format!("node-{node}"),
                node,
                "",
                JOIN,
                node,
                &join_ip(i),
                &node_mac(i),
                Some(json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}])),
            )),
        )
        .await
        .unwrap();
    }

    // Pods: allocated and routed by upstream, with their IP CRs.
    for p in pods {
        let node = &nodes[p.node].0;
        let mut annotations = json!({
            "ovn.kubernetes.io/allocated": "true",
            "ovn.kubernetes.io/ip_address": p.ip,
            "ovn.kubernetes.io/mac_address": p.mac,
            "ovn.kubernetes.io/cidr": DEFAULT_CIDR,
            "ovn.kubernetes.io/gateway": "10.16.0.1",
            "ovn.kubernetes.io/logical_switch": DEFAULT_LS,
            "ovn.kubernetes.io/logical_router": ROUTER,
            "ovn.kubernetes.io/pod_nic_type": "veth-pair",
            "ovn.kubernetes.io/routed": "true",
        });
        if p.port_security {
            annotations["ovn.kubernetes.io/port_security"] = json!("true");
        }
        w.pods()
            .create(
                &pp,
                &obj(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": p.name, "namespace": "default", "labels": p.labels,
                             "annotations": annotations},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                         "ports": [{"name": "http", "containerPort": 8080}]}]}})),
            )
            .await
            .unwrap();
        ips.create(
            &pp,
            &obj(ip_cr(
                &format!("{}.default", p.name),
                p.name,
                "default",
                DEFAULT_LS,
                node,
                &p.ip,
                &p.mac,
                None,
            )),
        )
        .await
        .unwrap();
    }

    // Services as upstream annotates them, web's EndpointSlice as the slice controller writes it.
    let services: Api<Service> = Api::namespaced(w.client.clone(), "default");
    let vpc = json!({"metadata": {"annotations": {"ovn.kubernetes.io/vpc": ROUTER}}});
    services
        .patch(
            "kubernetes",
            &PatchParams::default(),
            &Patch::Merge(vpc.clone()),
        )
        .await
        .unwrap();
    services
        .create(&pp, &obj(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default",
                         "annotations": {"ovn.kubernetes.io/vpc": ROUTER}},
            "spec": {"clusterIP": "10.96.100.10", "clusterIPs": ["10.96.100.10"],
                     "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})))
        .await
        .unwrap();
    let endpoints: Vec<Value> = pods[..2]
        .iter()
        .map(|p| {
            json!({"addresses": [p.ip], "nodeName": nodes[p.node].0,
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "namespace": "default", "name": p.name}})
        })
        .collect();
    Api::<EndpointSlice>::namespaced(w.client.clone(), "default")
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-7xk2p", "namespace": "default", "labels": {
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints}),
            ),
        )
        .await
        .unwrap();

    Api::<NetworkPolicy>::namespaced(w.client.clone(), "default")
        .create(
            &pp,
            &obj(
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db-access", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                  "ports": [{"protocol": "TCP", "port": 5432}]}]}}),
            ),
        )
        .await
        .unwrap();
}

/// An IP CR as upstream's `createOrUpdateIPCR` creates it.
#[allow(clippy::too_many_arguments)]
fn ip_cr(
    name: &str,
    pod: &str,
    ns: &str,
    subnet: &str,
    node: &str,
    ip: &str,
    mac: &str,
    owners: Option<Value>,
) -> Value {
    let mut meta = json!({"name": name, "labels": {
            "ovn.kubernetes.io/subnet": subnet, "ovn.kubernetes.io/node-name": node,
            subnet: "", "ovn.kubernetes.io/ip_reserved": "false"},
        "finalizers": ["kubeovn.io/kube-ovn-controller"]});
    if let Some(o) = owners {
        meta["ownerReferences"] = o;
    }
    json!({"apiVersion": "kubeovn.io/v1", "kind": "IP", "metadata": meta,
        "spec": {"podName": pod, "namespace": ns, "subnet": subnet, "nodeName": node,
                 "ipAddress": ip, "v4IpAddress": ip, "v6IpAddress": "", "macAddress": mac,
                 "attachIps": [], "attachMacs": [], "attachSubnets": [], "podType": ""}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cluster_is_adopted_without_writes_or_address_changes() {
    let mut w = World::new(2, false).await;
    let nodes: Vec<(String, IpAddr)> = w
        .sandbox
        .state()
        .nodes
        .iter()
        .map(|n| (n.name.clone(), IpAddr::from(n.ip)))
        .collect();
    let pods = cluster_pods();
    write_upstream_nb(&w, &nodes, &pods);
    write_upstream_objects(&w, &nodes, &pods).await;

    // Let northd settle on the NB (it writes NB_Global's sb_cfg and the ports' `up`), and let
    // the replica hear every row written above, before anything is measured.
    w.northd_settled().await;
    let before = addresses(&w).await;
    let rows = row_counts(&w);

    let mut changes = w.nb.subscribe();
    let started = Instant::now();
    w.start_controller();
    // Converged: ready (caches synced, IPAM restored, start-up GC run), every object reconciled
    // at least once, and then no reconcile for a quiet second.
    let deadline = started + LONG;
    let mut last = None;
    let mut quiet_since = Instant::now();
    loop {
        let total = if w.ready().await {
            reconciled(&w, pods.len()).await
        } else {
            None
        };
        let now = Instant::now();
        if total != last {
            last = total;
            quiet_since = now;
        } else if total.is_some() && now - quiet_since >= Duration::from_secs(1) {
            break;
        }
        assert!(
            now < deadline,
            "the controller did not converge (reconciles {last:?}): {:#?}",
            w.logged_nb_writes()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = started.elapsed();

    w.assert_wrote_nothing(&mut changes, "adopting an upstream cluster")
        .await;
    let after = addresses(&w).await;
    for (name, want) in &before.pods {
        let got = &after.pods[name];
        for key in [
            "ovn.kubernetes.io/ip_address",
            "ovn.kubernetes.io/mac_address",
        ] {
            assert_eq!(got.get(key), want.get(key), "pod {name}: {key} changed");
        }
        assert_eq!(got, want, "pod {name}: annotations changed");
    }
    assert_eq!(after.ips, before.ips, "an IP CR changed its address");
    assert_eq!(after.nodes, before.nodes, "node annotations changed");
    assert_eq!(row_counts(&w), rows, "rows appeared or went");
    let summary: Vec<String> = rows.iter().map(|(t, n)| format!("{t}={n}")).collect();
    println!(
        "upgrade in place: adopted {} ({} pods, {} nodes, {} IP CRs); {} reconciles, NB writes = 0; settled in {:.1}s",
        summary.join(" "),
        before.pods.len(),
        before.nodes.len(),
        before.ips.len(),
        last.unwrap_or_default(),
        settled.as_secs_f64()
    );
}
