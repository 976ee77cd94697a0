//! Custom VPCs with real packets through kube-ovn-rs on two nodes (seed 004 "Config VPC"): two
//! VPCs each with a 10.0.1.0/24 subnet, pods on both nodes, even one address in both VPCs. Every
//! pod reaches its own VPC's pods across nodes and never the other VPC's; a second subnet of
//! the first VPC is reached through its router. The seed's static route `0.0.0.0/0` via
//! `10.0.1.254` takes traffic to an outside address to the pod holding 10.0.1.254 (which
//! answers for it), until a priority-11 `drop` policy route on that traffic cuts the path
//! (policy routes act on what static routes matched; the VPC's own CIDRs keep their 31000
//! allow), and the path is back once the policy is removed. Then the seed's `policySrc` route
//! sends the second subnet's traffic to another next hop, and the seed's policy pair (drop at
//! priority 11 over a reroute of the whole subnet at 10) first cuts, then — without the drop —
//! reroutes the first subnet's traffic to a third next hop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_sandbox::kubeovn::KubeOvnBuild;
use kube_ovn_sandbox::workload::ask_tcp;
use kube_ovn_sandbox::{leftovers, probe, sys, Sandbox, SandboxConfig, SandboxState};
use serde_json::{json, Value};

const POD_READY: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(20);
const PORT: u16 = 8080;

/// (namespace, pod, node, address, subnet annotation)
const PODS: [(&str, &str, &str, &str, Option<&str>); 8] = [
    // The next hop of vpc1's default route.
    ("ns1", "gw", "node2", "10.0.1.254", None),
    // The next hop of the seed's policySrc route (for net1b's sources).
    ("ns1", "gw2", "node1", "10.0.1.253", None),
    // The next hop of the seed's priority-10 reroute policy.
    ("ns1", "gw3", "node1", "10.0.1.252", None),
    ("ns1", "a1", "node1", "10.0.1.10", None),
    ("ns1", "a2", "node2", "10.0.1.11", None),
    ("ns1", "c", "node2", "10.0.2.10", Some("net1b")),
    ("ns2", "b1", "node1", "10.0.1.20", None),
    // The same address as a2, in the other VPC.
    ("ns2", "b2", "node2", "10.0.1.11", None),
];

/// An address outside the VPC that the next-hop pod answers for.
const OUTSIDE: &str = "192.168.50.1";
const DROP: &str = "ip4.src==10.0.1.0/24 && ip4.dst==192.168.50.1";

async fn create<K>(api: &Api<K>, obj: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap();
}

/// What `from` (ns/pod) gets asking `ip` (the answering server's name, or why none answered).
async fn answer(state: &SandboxState, from: (&str, &str), ip: &str) -> Result<String, String> {
    let to = SocketAddr::new(ip.parse::<IpAddr>().unwrap(), PORT);
    ask_tcp(&state.pod_netns(from.0, from.1), to)
        .await
        .map(|a| a.trim().to_string())
        .map_err(|e| format!("{e:?}"))
}

/// Asks until the answer is `want`'s server (Some) or no answer (None), within [`CONVERGE`].
async fn until_answer(
    state: &SandboxState,
    from: (&str, &str),
    ip: &str,
    want: Option<&str>,
) -> Result<Duration, String> {
    let start = std::time::Instant::now();
    loop {
        let got = answer(state, from, ip).await;
        let ok = match want {
            Some(w) => got.as_deref() == Ok(w),
            None => got.is_err(),
        };
        if ok {
            return Ok(start.elapsed());
        }
        if start.elapsed() > CONVERGE {
            return Err(format!(
                "{}/{} asking {ip}: got {got:?}, wanted {want:?}\n{}",
                from.0,
                from.1,
                probe::report(state)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_vpcs_with_one_cidr_are_isolated_and_a_drop_policy_cuts_a_path() {
    let mut config = SandboxConfig::isolated(2);
    config.kube_ovn = Some(KubeOvnBuild::of_test_binary().expect("kube-ovn build"));
    let (run_dir, prefix) = (config.run_dir.clone(), config.prefix.clone());
    let sandbox = Sandbox::up(config).await.expect("sandbox with kube-ovn");
    let state = sandbox.state().clone();
    let client = sandbox.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in ["ns1", "ns2"] {
        create(
            &namespaces,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await;
    }
    let vpcs: Api<Vpc> = Api::all(client.clone());
    let subnets: Api<Subnet> = Api::all(client.clone());
    let default_route = json!([{"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254",
                                "policy": "policyDst"}]);
    for (vpc, ns, routes) in [
        ("vpc1", "ns1", default_route.clone()),
        ("vpc2", "ns2", json!([])),
    ] {
        create(
            &vpcs,
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": vpc},
                   "spec": {"namespaces": [ns], "staticRoutes": routes}}),
        )
        .await;
    }
    for (name, vpc, cidr, ns) in [
        ("net1", "vpc1", "10.0.1.0/24", Some("ns1")),
        ("net1b", "vpc1", "10.0.2.0/24", None),
        ("net2", "vpc2", "10.0.1.0/24", Some("ns2")),
    ] {
        let mut spec = json!({"vpc": vpc, "cidrBlock": cidr, "protocol": "IPv4"});
        if let Some(ns) = ns {
            spec["namespaces"] = json!([ns]);
        }
        create(
            &subnets,
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                   "spec": spec}),
        )
        .await;
    }
    for (ns, name, node, ip, subnet) in PODS {
        let mut annotations = json!({"ovn.kubernetes.io/ip_address": ip});
        if let Some(s) = subnet {
            annotations["ovn.kubernetes.io/logical_switch"] = json!(s);
        }
        create(
            &Api::<Pod>::namespaced(client.clone(), ns),
            json!({"metadata": {"name": name, "annotations": annotations},
                   "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}}),
        )
        .await;
    }
    let mut servers = Vec::new();
    for (ns, name, _, ip, _) in PODS {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let got = probe::running_pod_ip(&pods, name, POD_READY)
            .await
            .unwrap_or_else(|e| panic!("{ns}/{name} never ran: {e}\n{}", probe::report(&state)));
        assert_eq!(got, ip, "{ns}/{name}");
        servers.push(sandbox.serve_pod(ns, name, name, &[PORT], &[]).unwrap());
    }

    // Each VPC's pods reach each other across nodes; the shared address answers from the
    // asker's own VPC.
    let first = until_answer(&state, ("ns1", "a1"), "10.0.1.11", Some("a2"))
        .await
        .unwrap();
    until_answer(&state, ("ns2", "b1"), "10.0.1.11", Some("b2"))
        .await
        .unwrap();
    until_answer(&state, ("ns1", "a2"), "10.0.1.10", Some("a1"))
        .await
        .unwrap();
    until_answer(&state, ("ns2", "b2"), "10.0.1.20", Some("b1"))
        .await
        .unwrap();
    // Never the other VPC's: its addresses absent from ours do not answer.
    for (from, ip) in [
        (("ns1", "a1"), "10.0.1.20"),
        (("ns1", "a2"), "10.0.1.20"),
        (("ns2", "b1"), "10.0.1.10"),
        (("ns2", "b2"), "10.0.1.10"),
        (("ns2", "b1"), "10.0.2.10"),
    ] {
        let got = answer(&state, from, ip).await;
        assert!(
            got.is_err(),
            "{from:?} reached {ip} in another VPC: {got:?}"
        );
    }

    // Across the first VPC's router to its second subnet.
    until_answer(&state, ("ns1", "a1"), "10.0.2.10", Some("c"))
        .await
        .unwrap();
    // The default route takes an outside address to its next hop, the gw pod. Each next-hop
    // pod answers for that address.
    for gw in ["gw", "gw2", "gw3"] {
        sys::run_command(sys::in_netns(&state.pod_netns("ns1", gw), "ip").args([
            "addr",
            "add",
            &format!("{OUTSIDE}/32"),
            "dev",
            "lo",
        ]))
        .unwrap();
    }
    let routed = until_answer(&state, ("ns1", "a1"), OUTSIDE, Some("gw"))
        .await
        .unwrap();
    until_answer(&state, ("ns1", "c"), OUTSIDE, Some("gw"))
        .await
        .unwrap();
    assert!(answer(&state, ("ns2", "b1"), OUTSIDE).await.is_err());

    // A drop policy route (seed 004's priority 11) on that traffic cuts the path.
    let drop_policy = json!({"spec": {"policyRoutes": [
        {"action": "drop", "match": DROP, "priority": 11}
    ]}});
    vpcs.patch("vpc1", &PatchParams::default(), &Patch::Merge(drop_policy))
        .await
        .unwrap();
    let cut = until_answer(&state, ("ns1", "a1"), OUTSIDE, None)
        .await
        .unwrap();
    assert!(answer(&state, ("ns1", "a2"), OUTSIDE).await.is_err());
    // Sources outside its match, and the VPC's own CIDRs, keep their paths.
    assert_eq!(
        answer(&state, ("ns1", "c"), OUTSIDE).await.as_deref(),
        Ok("gw")
    );
    assert_eq!(
        answer(&state, ("ns1", "a1"), "10.0.2.10").await.as_deref(),
        Ok("c")
    );
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"policyRoutes": null}})),
    )
    .await
    .unwrap();
    let restored = until_answer(&state, ("ns1", "a1"), OUTSIDE, Some("gw"))
        .await
        .unwrap();

    // The seed's policySrc route: traffic from net1b (10.0.2.0/24, a longer prefix than the
    // 0.0.0.0/0 destination route) leaves through gw2; net1's keeps the destination route.
    let src_route = json!({"spec": {"staticRoutes": [
        {"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254", "policy": "policyDst"},
        {"cidr": "10.0.2.0/24", "nextHopIP": "10.0.1.253", "policy": "policySrc"}
    ]}});
    vpcs.patch("vpc1", &PatchParams::default(), &Patch::Merge(src_route))
        .await
        .unwrap();
    let by_source = until_answer(&state, ("ns1", "c"), OUTSIDE, Some("gw2"))
        .await
        .unwrap();
    assert_eq!(
        answer(&state, ("ns1", "a1"), OUTSIDE).await.as_deref(),
        Ok("gw")
    );
    assert_eq!(
        answer(&state, ("ns1", "c"), "10.0.1.10").await.as_deref(),
        Ok("a1"),
        "the VPC's own subnets stay directly routed"
    );

    // The seed's two policy routes together: the priority-11 drop wins over the priority-10
    // reroute of all of net1's traffic; without the drop the reroute sends it to gw3, past
    // the static routes, while the VPC's own CIDRs keep their 31000 allow and net1b's sources
    // (outside the match) their policySrc route.
    let seed_policies = |with_drop: bool| {
        let mut routes = vec![json!({"action": "reroute", "match": "ip4.src==10.0.1.0/24",
                                     "nextHopIP": "10.0.1.252", "priority": 10})];
        if with_drop {
            routes.insert(0, json!({"action": "drop", "match": DROP, "priority": 11}));
        }
        json!({"spec": {"policyRoutes": routes}})
    };
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(seed_policies(true)),
    )
    .await
    .unwrap();
    until_answer(&state, ("ns1", "a1"), OUTSIDE, None)
        .await
        .unwrap();
    vpcs.patch(
        "vpc1",
        &PatchParams::default(),
        &Patch::Merge(seed_policies(false)),
    )
    .await
    .unwrap();
    let rerouted = until_answer(&state, ("ns1", "a1"), OUTSIDE, Some("gw3"))
        .await
        .unwrap();
    assert_eq!(
        answer(&state, ("ns1", "a2"), OUTSIDE).await.as_deref(),
        Ok("gw3")
    );
    assert_eq!(
        answer(&state, ("ns1", "a1"), "10.0.2.10").await.as_deref(),
        Ok("c")
    );
    assert_eq!(
        answer(&state, ("ns1", "c"), OUTSIDE).await.as_deref(),
        Ok("gw2")
    );
    println!(
        "vpcs: same-VPC cross-node reach after {:.2}s, static route to the next hop after {:.2}s, drop policy cut after {:.2}s, restored after {:.2}s, policySrc route after {:.2}s, reroute policy after {:.2}s",
        first.as_secs_f64(),
        routed.as_secs_f64(),
        cut.as_secs_f64(),
        restored.as_secs_f64(),
        by_source.as_secs_f64(),
        rerouted.as_secs_f64()
    );
    drop(servers);
    sandbox.down().await.unwrap();
    assert!(leftovers(&run_dir, &prefix).is_empty());
}
