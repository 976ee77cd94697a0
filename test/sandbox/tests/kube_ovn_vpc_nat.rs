//! Seed 004's VPC NAT gateway end to end, with real packets: the external network (the
//! NetworkAttachmentDefinition `ovn-vpc-external-network`, macvlan on the nodes' provider NIC
//! with kube-ovn as IPAM, and its Subnet on the sandbox's external network), a custom VPC whose
//! static route `0.0.0.0/0` goes to the gateway's `lanIp`, two pods in it and a VpcNatGateway.
//! The controller makes the gateway's StatefulSet, the sandbox runs its pod with the external
//! attachment as `net1`, and the pod's agent (`kube-ovn-vpc-nat-gw`, run beside the pod since
//! sandbox pods are bare network namespaces) converges the EIPs, routes and NAT. The external
//! host reaches pod `a` by its FIP, pod `b` through a DNAT port, and sees each pod's egress
//! with the EIP of its FIP or of the SNAT rule; a restarted gateway pod (a fresh network
//! namespace, its agent started anew) gets every rule back; deleting each rule stops exactly
//! its flow, and deleting an unused EIP takes its address off the gateway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Resource;
use kube_ovn_common::crd::{
    IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::{self, connect, Proto};
use kube_ovn_sandbox::{multus, probe, sys, Sandbox, SandboxConfig, SandboxState};
use serde_json::{json, Value};

const READY: Duration = Duration::from_secs(90);
const CONVERGE: Duration = Duration::from_secs(30);
const PROVIDER: &str = "ovn-vpc-external-network.kube-system";
const PORT: u16 = 8080;
const ECHO_PORT: u16 = 9000;
const LAN_IP: &str = "10.0.1.254";

/// The agent process of the gateway pod; killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        sys::stop_pid(self.0.id() as i32, Duration::from_secs(5));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(build: &KubeOvnBuild, state: &SandboxState, namespace: &str, name: &str) -> Agent {
    let bin = build
        .controller
        .parent()
        .expect("binary directory")
        .join("kube-ovn-vpc-nat-gw");
    let log = std::fs::File::create(state.run_dir.join(format!("vpc-nat-gw-{name}.log"))).unwrap();
    let child = Command::new(bin)
        .arg(format!("--kubeconfig={}", state.kubeconfig.display()))
        .arg(format!(
            "--netns={}",
            sys::netns_path(&state.pod_netns(namespace, name))
        ))
        .env("POD_NAME", name)
        .env("POD_NAMESPACE", namespace)
        .env_remove("GATEWAY_V4")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kube-ovn-vpc-nat-gw started");
    Agent(child)
}

/// A TCP server in the external host's namespace answering every connection with the
/// address it came from (what the outside sees as the source).
async fn create<K>(api: &Api<K>, obj: Value)
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

/// What `netns` gets connecting to `to` (the reply line, or why none).
async fn ask(netns: &str, to: SocketAddr) -> Result<String, String> {
    let ns = netns.to_string();
    tokio::task::spawn_blocking(move || {
        connect(&ns, Proto::Tcp, to, b"", Duration::from_millis(1500))
    })
    .await
    .unwrap()
    .map(|s| s.trim().to_string())
    .map_err(|e| format!("{e:?}"))
}

/// What an [`until`] waits for.
enum Want<'a> {
    /// This answer.
    Is(&'a str),
    /// No answer.
    Nothing,
    /// No answer, or another one than this.
    Not(&'a str),
}

/// Asks until the answer is what `want` says, within [`CONVERGE`].
async fn until(state: &SandboxState, netns: &str, to: SocketAddr, want: Want<'_>) {
    let start = std::time::Instant::now();
    loop {
        let got = ask(netns, to).await;
        let ok = match want {
            Want::Is(w) => got.as_deref() == Ok(w),
            Want::Nothing => got.is_err(),
            Want::Not(w) => got.as_deref() != Ok(w),
        };
        if ok {
            println!("{netns} → {to}: {got:?} after {:?}", start.elapsed());
            return;
        }
        if start.elapsed() > CONVERGE {
            panic!(
                "{netns} asking {to}: got {got:?}, wanted {}\n{}",
                match want {
                    Want::Is(w) => format!("{w:?}"),
                    Want::Nothing => "no answer".into(),
                    Want::Not(w) => format!("anything but {w:?}"),
                },
                probe::report(state)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The EIP's `status.ip` once it is ready.
async fn eip_ip(eips: &Api<IptablesEip>, name: &str) -> Ipv4Addr {
    probe::until(READY, "a ready EIP", || async {
        let e = eips.get(name).await.map_err(|e| e.to_string())?;
        let st = e.status.unwrap_or_default();
        match st.ip.parse::<Ipv4Addr>() {
            Ok(ip) if st.ready => Ok(ip),
            _ => Err(format!("{name}: {st:?}")),
        }
    })
    .await
    .unwrap()
}

async fn until_ready<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    probe::until(READY, "a ready rule", || async {
        let o = api.get(name).await.map_err(|e| e.to_string())?;
        let v = serde_json::to_value(&o).unwrap();
        if v["status"]["ready"] == json!(true) {
            Ok(())
        } else {
            Err(format!("{name}: {}", v["status"]))
        }
    })
    .await
    .unwrap()
}

async fn until_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &DeleteParams::default()).await.unwrap();
    probe::until(READY, "the object gone", || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(format!("{name} still there")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vpc_nat_gateway_fip_snat_and_dnat_with_real_packets() {
    let build = KubeOvnBuild::of_test_binary().expect("kube-ovn build");
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(build.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let external = state.external.clone().expect("external host");
    let client = sandbox.client();

    // The feature's ConfigMaps and the gateway pods' account (the manifests ship it).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    create(
        &cms,
        json!({"metadata": {"name": "ovn-vpc-nat-config"},
               "data": {"image": kube_ovn_common::manifests::IMAGE}}),
    )
    .await;
    create(
        &cms,
        json!({"metadata": {"name": "ovn-vpc-nat-gw-config"},
               "data": {"enable-vpc-nat-gw": "true"}}),
    )
    .await;
    let _ = Api::<ServiceAccount>::namespaced(client.clone(), "kube-system")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "vpc-nat-gw"}})).unwrap(),
        )
        .await;

    // Seed 004's external network, on the sandbox's provider network.
    multus::create_nad(
        client.clone(),
        "kube-system",
        "ovn-vpc-external-network",
        &json!({"cniVersion": "0.3.0", "type": "macvlan", "master": "eth1", "mode": "bridge",
                "ipam": {"type": "kube-ovn", "provider": PROVIDER}}),
    )
    .await
    .unwrap();
    let net: Ipv4Addr = external.cidr.split('/').next().unwrap().parse().unwrap();
    let [o1, o2, o3, _] = net.octets();
    let subnets: Api<Subnet> = Api::all(client.clone());
    create(
        &subnets,
        json!({"metadata": {"name": "ovn-vpc-external-network"},
               "spec": {"protocol": "IPv4", "provider": PROVIDER, "cidrBlock": external.cidr,
                        "gateway": external.ip.to_string(),
                        "excludeIps": [format!("{o1}.{o2}.{o3}.1..{o1}.{o2}.{o3}.199")]}}),
    )
    .await;

    // The custom VPC, its default route to the gateway, its subnet and two pods.
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": "ns1"}}),
    )
    .await;
    create(
        &Api::<Vpc>::all(client.clone()),
        json!({"metadata": {"name": "vpc1"},
               "spec": {"staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": LAN_IP,
                                          "policy": "policyDst"}]}}),
    )
    .await;
    create(
        &subnets,
        json!({"metadata": {"name": "net1"},
               "spec": {"vpc": "vpc1", "cidrBlock": "10.0.1.0/24", "protocol": "IPv4"}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    for (name, node, ip) in [("a", "node1", "10.0.1.10"), ("b", "node2", "10.0.1.11")] {
        create(
            &pods,
            json!({"metadata": {"name": name, "annotations": {
                       "ovn.kubernetes.io/logical_switch": "net1",
                       "ovn.kubernetes.io/ip_address": ip}},
                   "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}),
        )
        .await;
    }
    let mut servers = Vec::new();
    for name in ["a", "b"] {
        probe::running_pod_ip(&pods, name, READY)
            .await
            .unwrap_or_else(|e| panic!("ns1/{name} never ran: {e}\n{}", probe::report(&state)));
        servers.push(sandbox.serve_pod("ns1", name, name, &[PORT], &[]).unwrap());
    }

    // The gateway: its StatefulSet's pod, and the agent beside it.
    let gws: Api<VpcNatGateway> = Api::all(client.clone());
    create(
        &gws,
        json!({"metadata": {"name": "gw1"},
               "spec": {"vpc": "vpc1", "subnet": "net1", "lanIp": LAN_IP,
                        "selector": ["kubernetes.io/os: linux"],
                        "externalSubnets": ["ovn-vpc-external-network"]}}),
    )
    .await;
    let system_pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let gw_ip = probe::running_pod_ip(&system_pods, "vpc-nat-gw-gw1-0", READY)
        .await
        .unwrap_or_else(|e| panic!("the gateway pod never ran: {e}\n{}", probe::report(&state)));
    assert_eq!(gw_ip, LAN_IP);
    let agent = start_agent(&build, &state, "kube-system", "vpc-nat-gw-gw1-0");
    let gw = probe::until(READY, "a ready gateway", || async {
        let g = gws.get("gw1").await.map_err(|e| e.to_string())?;
        match &g.status {
            Some(s) if s.ready => Ok(g),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let st = gw.status.clone().unwrap();
    assert_eq!(st.lan_ip, LAN_IP);
    assert_eq!(st.workload.kind, "StatefulSet");
    assert_eq!(st.workload.name, "vpc-nat-gw-gw1");
    assert_eq!(
        gw.metadata.finalizers,
        Some(vec!["kubeovn.io/kube-ovn-controller".to_string()])
    );
    let gw_pod = system_pods.get("vpc-nat-gw-gw1-0").await.unwrap();
    let a = gw_pod.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        a.get("ovn.kubernetes.io/vpc_nat_gw").map(String::as_str),
        Some("gw1")
    );
    assert_eq!(
        a.get("k8s.v1.cni.cncf.io/networks").map(String::as_str),
        Some("kube-system/ovn-vpc-external-network")
    );

    // Three EIPs from the external subnet.
    let eips: Api<IptablesEip> = Api::all(client.clone());
    for name in ["eipf01", "eips01", "eipd01"] {
        create(
            &eips,
            json!({"metadata": {"name": name}, "spec": {"natGwDp": "gw1"}}),
        )
        .await;
    }
    let eip_f = eip_ip(&eips, "eipf01").await;
    let eip_s = eip_ip(&eips, "eips01").await;
    let eip_d = eip_ip(&eips, "eipd01").await;
    for ip in [eip_f, eip_s, eip_d] {
        assert!(
            ip.octets()[..3] == net.octets()[..3] && ip.octets()[3] >= 200,
            "EIP {ip} from the external subnet's free range"
        );
    }

    workload::serve_peer_address(&external.netns, ECHO_PORT).expect("echo server");
    let echo = SocketAddr::new(IpAddr::V4(external.ip), ECHO_PORT);
    let (a_ns, b_ns) = (state.pod_netns("ns1", "a"), state.pod_netns("ns1", "b"));

    // FIP: the external host reaches a by its EIP; a's egress leaves with that EIP.
    let fips: Api<IptablesFipRule> = Api::all(client.clone());
    create(
        &fips,
        json!({"metadata": {"name": "fip01"},
               "spec": {"eip": "eipf01", "internalIp": "10.0.1.10"}}),
    )
    .await;
    until_ready(&fips, "fip01").await;
    let fip_addr = SocketAddr::new(IpAddr::V4(eip_f), PORT);
    until(&state, &external.netns, fip_addr, Want::Is("a")).await;
    until(&state, &a_ns, echo, Want::Is(&eip_f.to_string())).await;

    // SNAT of the subnet: b's egress leaves with the SNAT EIP (a keeps its FIP's).
    let snats: Api<IptablesSnatRule> = Api::all(client.clone());
    create(
        &snats,
        json!({"metadata": {"name": "snat01"},
               "spec": {"eip": "eips01", "internalCIDR": "10.0.1.0/24"}}),
    )
    .await;
    until_ready(&snats, "snat01").await;
    until(&state, &b_ns, echo, Want::Is(&eip_s.to_string())).await;
    until(&state, &a_ns, echo, Want::Is(&eip_f.to_string())).await;

    // DNAT of a port to b.
    let dnats: Api<IptablesDnatRule> = Api::all(client.clone());
    create(
        &dnats,
        json!({"metadata": {"name": "dnat01"},
               "spec": {"eip": "eipd01", "externalPort": "8888", "internalIp": "10.0.1.11",
                        "internalPort": PORT.to_string(), "protocol": "tcp"}}),
    )
    .await;
    until_ready(&dnats, "dnat01").await;
    let dnat_addr = SocketAddr::new(IpAddr::V4(eip_d), 8888);
    until(&state, &external.netns, dnat_addr, Want::Is("b")).await;

    // The EIPs record their users and the rules their EIP.
    probe::until(READY, "eip status.nat", || async {
        let nat = |n: &str| {
            let eips = eips.clone();
            let n = n.to_string();
            async move { eips.get(&n).await.map(|e| e.status.unwrap_or_default().nat) }
        };
        let got = (
            nat("eipf01").await.map_err(|e| e.to_string())?,
            nat("eips01").await.map_err(|e| e.to_string())?,
            nat("eipd01").await.map_err(|e| e.to_string())?,
        );
        if got == ("fip".into(), "snat".into(), "dnat".into()) {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
    .unwrap();
    let d = dnats.get("dnat01").await.unwrap();
    let labels = d.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("ovn.kubernetes.io/eip_v4_ip"),
        Some(&eip_d.to_string())
    );
    assert_eq!(
        labels
            .get("ovn.kubernetes.io/vpc_dnat_eport")
            .map(String::as_str),
        Some("8888")
    );
    assert_eq!(d.status.unwrap().nat_gw_dp, "gw1");

    // A restarted gateway pod gets every rule back: the pod is deleted, the StatefulSet
    // controller makes it again, the CNI wires a fresh network namespace (no EIP, route or
    // NAT rule in it) and its agent starts anew from the CRs.
    let old_uid = gw_pod.metadata.uid.clone();
    drop(agent);
    system_pods
        .delete("vpc-nat-gw-gw1-0", &DeleteParams::default())
        .await
        .unwrap();
    let restarted = std::time::Instant::now();
    probe::until(READY, "the gateway pod made again and Running", || async {
        let p = system_pods
            .get_opt("vpc-nat-gw-gw1-0")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("not made again yet")?;
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if p.metadata.uid != old_uid && running {
            Ok(())
        } else {
            Err(format!("uid {:?}, running {running}", p.metadata.uid))
        }
    })
    .await
    .unwrap();
    // Nothing carried over: without its agent the new pod forwards none of the flows.
    until(&state, &external.netns, fip_addr, Want::Nothing).await;
    let _agent = start_agent(&build, &state, "kube-system", "vpc-nat-gw-gw1-0");
    until(&state, &external.netns, fip_addr, Want::Is("a")).await;
    until(&state, &external.netns, dnat_addr, Want::Is("b")).await;
    until(&state, &a_ns, echo, Want::Is(&eip_f.to_string())).await;
    until(&state, &b_ns, echo, Want::Is(&eip_s.to_string())).await;
    println!(
        "gateway pod restart: FIP, DNAT and SNAT flows all back {:.1}s after the pod was deleted",
        restarted.elapsed().as_secs_f64()
    );

    // Deleting each rule stops exactly its flow.
    until_gone(&dnats, "dnat01").await;
    until(&state, &external.netns, dnat_addr, Want::Nothing).await;
    until(&state, &external.netns, fip_addr, Want::Is("a")).await;
    until(&state, &b_ns, echo, Want::Is(&eip_s.to_string())).await;

    until_gone(&fips, "fip01").await;
    until(&state, &external.netns, fip_addr, Want::Nothing).await;
    // a now leaves through the subnet's SNAT.
    until(&state, &a_ns, echo, Want::Is(&eip_s.to_string())).await;

    until_gone(&snats, "snat01").await;
    // Unsnatted, b's source is its VPC address, which the outside cannot answer.
    until(&state, &b_ns, echo, Want::Not(&eip_s.to_string())).await;

    // An EIP without users goes, and its address leaves the gateway's net1; the others stay.
    let gw_ns = state.pod_netns("kube-system", "vpc-nat-gw-gw1-0");
    let net1 = || {
        sys::run_command(
            sys::in_netns(&gw_ns, "ip").args(["-4", "-o", "addr", "show", "dev", "net1"]),
        )
        .unwrap()
    };
    assert!(net1().contains(&format!("{eip_d}/24")), "{}", net1());
    until_gone(&eips, "eipd01").await;
    let left = probe::until(CONVERGE, "eipd01 off net1", || async {
        let have = net1();
        if have.contains(&format!("{eip_d}/")) {
            Err(have)
        } else {
            Ok(have)
        }
    })
    .await
    .unwrap();
    assert!(left.contains(&format!("{eip_f}/24")), "{left}");
    assert!(left.contains(&format!("{eip_s}/24")), "{left}");
    drop(servers);
    sandbox.down().await.expect("sandbox down");
}
