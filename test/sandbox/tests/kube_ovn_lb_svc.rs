//! Seed 003 ("LoadBalancer Type Service") end to end, with real packets: kube-ovn-controller
//! started with `--enable-lb-svc`, the NetworkAttachmentDefinition `lb-svc-attachment`
//! (macvlan on the nodes' provider NIC, kube-ovn as its IPAM) and the Subnet `attach-subnet`
//! whose provider is `lb-svc-attachment.kube-system`, a Deployment of two backends and a
//! `type: LoadBalancer` Service. The controller creates the Deployment `lb-svc-<svc>`, the
//! sandbox runs its pod with the attachment as `net1`, the pod's agent (`kube-ovn-lb-svc`, run
//! beside the pod since sandbox pods are bare network namespaces) converges the DNAT from the
//! LB IP to the ClusterIP, the Service gets its `EXTERNAL-IP` (allocated, then a static
//! `loadBalancerIP`), and a client on the external host gets answers from both backends
//! through the LB IP. Deleting the Service removes its lb-svc Deployment.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::multus;
use kube_ovn_sandbox::workload::{connect, Proto};
use kube_ovn_sandbox::{probe, sys, Sandbox, SandboxConfig, SandboxState};
use serde_json::json;

const READY: Duration = Duration::from_secs(90);
const PROVIDER: &str = "lb-svc-attachment.kube-system";

/// The agent process of an lb-svc pod; killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        sys::stop_pid(self.0.id() as i32, Duration::from_secs(5));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `kube-ovn-lb-svc` for pod `namespace/name` against the sandbox's API, converging the
/// pod's network namespace (its log goes to the run directory).
fn start_agent(build: &KubeOvnBuild, state: &SandboxState, namespace: &str, name: &str) -> Agent {
    let bin = build
        .controller
        .parent()
        .expect("binary directory")
        .join("kube-ovn-lb-svc");
    let log = std::fs::File::create(state.run_dir.join(format!("lb-svc-{name}.log"))).unwrap();
    let child = Command::new(bin)
        .arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .arg(format!(
            "--netns={}",
            sys::netns_path(&state.pod_netns(namespace, name))
        ))
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", namespace)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kube-ovn-lb-svc started");
    Agent(child)
}

/// The Running pod whose name starts with `prefix`, once there is one.
async fn running_pod(pods: &Api<Pod>, prefix: &str) -> String {
    probe::until(READY, "a Running pod", || async {
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(prefix))
                    && p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .and_then(|p| p.metadata.name.clone())
            .ok_or_else(|| format!("no Running pod {prefix}*"))
    })
    .await
    .unwrap()
}

/// The Service's `status.loadBalancer.ingress[0].ip`, once set.
async fn external_ip(services: &Api<Service>, name: &str) -> IpAddr {
    probe::until(READY, "EXTERNAL-IP", || async {
        let svc = services.get(name).await.map_err(|e| e.to_string())?;
        svc.status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .and_then(|i| i.first().and_then(|i| i.ip.clone()))
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| "no ingress yet".to_string())
    })
    .await
    .unwrap()
}

/// Connects from the external host to `lb` until every backend of `names` answered.
async fn answers_from_all(netns: &str, lb: SocketAddr, names: &BTreeSet<String>) {
    let seen = probe::until(READY, "answers from every backend", || async {
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            if let Ok(reply) = connect(netns, Proto::Tcp, lb, b"", Duration::from_secs(2)) {
                seen.insert(reply.trim().to_string());
            }
            if &seen == names {
                return Ok(seen);
            }
        }
        Err(format!("{lb} answered from {seen:?} only"))
    })
    .await
    .unwrap();
    assert_eq!(&seen, names);
}

fn service(name: &str, lb_ip: Option<&str>) -> Service {
    let mut spec = json!({"type": "LoadBalancer", "selector": {"app": "web"},
                          "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]});
    if let Some(ip) = lb_ip {
        spec["loadBalancerIP"] = json!(ip);
    }
    // Seed 003's Service names its attachment provider (upstream acts only on annotated ones).
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": name, "annotations": {
                                      "ovn.kubernetes.io/attachmentprovider": PROVIDER}},
                                  "spec": spec}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loadbalancer_services_answer_through_lb_svc() {
    let mut build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    build.controller_args.push("--enable-lb-svc=true".into());
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let external = state.external.clone().expect("external host");
    let client = sandbox.client();

    // The lb-svc pods' image (the sandbox runs no images, but the Deployment names one).
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "ovn-vpc-nat-config", "namespace": "kube-system"},
        "data": {"image": kube_ovn_common::manifests::IMAGE},
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();

    // Seed 003's attachment network and subnet, on the sandbox's provider network.
    multus::create_nad(
        client.clone(),
        "kube-system",
        "lb-svc-attachment",
        &json!({"cniVersion": "0.3.0", "type": "macvlan", "master": "eth1", "mode": "bridge",
                "ipam": {"type": "kube-ovn", "provider": PROVIDER}}),
    )
    .await
    .unwrap();
    let net: Ipv4Addr = external.cidr.split('/').next().unwrap().parse().unwrap();
    let [a, b, c, _] = net.octets();
    let subnets: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "kubeovn.io".into(),
            version: "v1".into(),
            api_version: "kubeovn.io/v1".into(),
            kind: "Subnet".into(),
            plural: "subnets".into(),
        },
    );
    let subnet: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "attach-subnet"},
        "spec": {"protocol": "IPv4", "provider": PROVIDER, "cidrBlock": external.cidr,
                 "gateway": external.ip.to_string(),
                 "excludeIps": [format!("{a}.{b}.{c}.1..{a}.{b}.{c}.199")]},
    }))
    .unwrap();
    subnets
        .create(&PostParams::default(), &subnet)
        .await
        .unwrap();

    // Two backends from a Deployment, each answering with its name.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "x",
                                                       "ports": [{"containerPort": 8080}]}]}}},
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &web)
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let backends: Vec<String> = probe::until(READY, "two Running backends", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map_err(|e| e.to_string())?;
        let running: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if running.len() == 2 {
            Ok(running)
        } else {
            Err(format!("running: {running:?}"))
        }
    })
    .await
    .unwrap();
    let _servers: Vec<_> = backends
        .iter()
        .map(|p| sandbox.serve_pod("default", p, p, &[8080], &[]).unwrap())
        .collect();
    let names: BTreeSet<String> = backends.iter().cloned().collect();

    // A LoadBalancer Service with an allocated address.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services
        .create(&PostParams::default(), &service("web", None))
        .await
        .unwrap();
    probe::until(READY, "Deployment lb-svc-web", || async {
        deployments
            .get("lb-svc-web")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap();
    let lb_pod = running_pod(&pods, "lb-svc-web-").await;
    let _agent = start_agent(&build, &state, "default", &lb_pod);
    let lb_ip = external_ip(&services, "web").await;
    let last = match lb_ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(_) => panic!("an IPv6 LB address on an IPv4 subnet: {lb_ip}"),
    };
    assert!(
        net.octets()[..3] == lb_ip.to_string().parse::<Ipv4Addr>().unwrap().octets()[..3]
            && last >= 200,
        "EXTERNAL-IP {lb_ip} from attach-subnet's free range"
    );
    answers_from_all(&external.netns, SocketAddr::new(lb_ip, 80), &names).await;
    println!("EXTERNAL-IP {lb_ip} (allocated): the external host got answers from {names:?}");

    // A static loadBalancerIP.
    let fixed = format!("{a}.{b}.{c}.222");
    services
        .create(&PostParams::default(), &service("web-static", Some(&fixed)))
        .await
        .unwrap();
    let static_pod = running_pod(&pods, "lb-svc-web-static-").await;
    let _static_agent = start_agent(&build, &state, "default", &static_pod);
    let static_ip = external_ip(&services, "web-static").await;
    assert_eq!(static_ip.to_string(), fixed);
    answers_from_all(&external.netns, SocketAddr::new(static_ip, 80), &names).await;
    println!(
        "EXTERNAL-IP {static_ip} (loadBalancerIP): the external host got answers from {names:?}"
    );

    // Deleting the Service removes its lb-svc Deployment.
    services
        .delete("web-static", &DeleteParams::default())
        .await
        .unwrap();
    probe::until(READY, "Deployment lb-svc-web-static gone", || async {
        match deployments.get_opt("lb-svc-web-static").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
    sandbox.down().await.expect("sandbox down");
}
