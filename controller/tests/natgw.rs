//! VPC NAT gateways and the iptables NAT family (seed 004) against the real binary and the
//! API fixture: with `ovn-vpc-nat-gw-config` enabling them, a VpcNatGateway gets upstream's
//! StatefulSet `vpc-nat-gw-<name>`; its pod (made here from the template, as the StatefulSet
//! controller would) gets `lanIp` on the VPC subnet — its port in NB — and the VPC's CIDRs and
//! init mark; the gateway's status and labels follow. EIPs get addresses of the external
//! subnet (random and static) with upstream's labels and finalizer, and are ready once the
//! gateway's pod runs; FIP, SNAT and DNAT rules get their status, labels and `vpc_eip`
//! annotation, the EIPs their `status.nat`; invalid or conflicting rules get an Event and stay
//! not ready; an EIP in use waits for its rules before it goes; deleting the gateway removes
//! its StatefulSet.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube_ovn_common::crd::{
    IptablesDnatRule, IptablesEip, IptablesFipRule, IptablesSnatRule, Subnet, Vpc, VpcNatGateway,
};
use serde_json::{json, Value};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);
const PROVIDER: &str = "ovn-vpc-external-network.kube-system";
const IMAGE: &str = "docker.io/kubeovn/vpc-nat-gateway:v1.12.26";
const POD: &str = "vpc-nat-gw-gw1-0";
const FINALIZER: &str = "kubeovn.io/kube-ovn-controller";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn create<K>(api: &Api<K>, v: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &obj(v)).await.unwrap();
}

/// Seed 004's external network (NAD and Subnet), the feature's ConfigMaps, the VPC with its
/// default route to the gateway and its two subnets.
async fn natgw_world(w: &World) {
    let ar = ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    };
    let config = json!({"cniVersion": "0.3.0", "type": "macvlan", "master": "eth1", "mode": "bridge",
        "ipam": {"type": "kube-ovn", "server_socket": "/run/openvswitch/kube-ovn-daemon.sock",
                 "provider": PROVIDER}});
    create(
        &Api::<DynamicObject>::namespaced_with(w.client.clone(), "kube-system", &ar),
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
               "metadata": {"name": "ovn-vpc-external-network", "namespace": "kube-system"},
               "spec": {"config": config.to_string()}}),
    )
    .await;
    let subnets: Api<Subnet> = Api::all(w.client.clone());
    create(
        &subnets,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
               "metadata": {"name": "ovn-vpc-external-network"},
               "spec": {"cidrBlock": "192.168.0.0/24", "gateway": "192.168.0.1", "provider": PROVIDER,
                        "protocol": "IPv4", "excludeIps": ["192.168.0.1..192.168.0.10"]}}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(w.client.clone(), "kube-system");
    create(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "ovn-vpc-nat-config", "namespace": "kube-system"},
               "data": {"image": IMAGE}}),
    )
    .await;
    create(
        &cms,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "ovn-vpc-nat-gw-config", "namespace": "kube-system"},
               "data": {"enable-vpc-nat-gw": "true"}}),
    )
    .await;
    create(
        &Api::<Vpc>::all(w.client.clone()),
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "test-vpc-1"},
               "spec": {"staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254",
                                          "policy": "policyDst"}]}}),
    )
    .await;
    for (name, cidr) in [("net1", "10.0.1.0/24"), ("net1b", "10.0.2.0/24")] {
        create(
            &subnets,
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                   "spec": {"vpc": "test-vpc-1", "cidrBlock": cidr, "protocol": "IPv4"}}),
        )
        .await;
    }
}

fn status_of<K: serde::Serialize>(o: &K) -> Value {
    serde_json::to_value(o).unwrap()["status"].clone()
}

async fn ready<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    eventually(&format!("{name} ready"), LONG, || async {
        let o = api.get_opt(name).await.ok()??;
        (status_of(&o)["ready"] == json!(true)).then_some(o)
    })
    .await
}

async fn warned(w: &World, name: &str, reason: &str) -> String {
    let events: Api<Event> = Api::all(w.client.clone());
    let ev = eventually(&format!("{name} told {reason}"), LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.involved_object.name.as_deref() == Some(name)
                && e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some(reason)
        })
    })
    .await;
    ev.message.unwrap_or_default()
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} gone"), LONG, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vpc_nat_gateway_eips_and_nat_rules() {
    let mut w = World::new(1, false).await;
    natgw_world(&w).await;
    w.start_controller();

    // The gateway's StatefulSet, as upstream's genNatGwStatefulSet.
    let gws: Api<VpcNatGateway> = Api::all(w.client.clone());
    create(
        &gws,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcNatGateway", "metadata": {"name": "gw1"},
               "spec": {"vpc": "test-vpc-1", "subnet": "net1", "lanIp": "10.0.1.254",
                        "selector": ["kubernetes.io/os: linux"],
                        "externalSubnets": ["ovn-vpc-external-network"]}}),
    )
    .await;
    let stss: Api<StatefulSet> = Api::namespaced(w.client.clone(), "kube-system");
    let sts = eventually("statefulset vpc-nat-gw-gw1", LONG, || async {
        stss.get_opt("vpc-nat-gw-gw1").await.ok()?
    })
    .await;
    let s = serde_json::to_value(&sts).unwrap();
    let labels = json!({"app": "vpc-nat-gw-gw1", "ovn.kubernetes.io/vpc-nat-gw": "true"});
    assert_eq!(s["metadata"]["labels"], labels);
    assert_eq!(s["spec"]["selector"]["matchLabels"], labels);
    let t = s["spec"]["template"].clone();
    assert_eq!(
        t["metadata"]["annotations"],
        json!({"k8s.v1.cni.cncf.io/networks": "kube-system/ovn-vpc-external-network",
               "ovn.kubernetes.io/vpc_nat_gw": "gw1",
               "ovn.kubernetes.io/logical_switch": "net1",
               "ovn.kubernetes.io/ip_address": "10.0.1.254",
               "ovn.kubernetes.io/routes":
                   "[{\"dst\":\"10.0.2.0/24\",\"gw\":\"10.0.1.1\"},{\"dst\":\"10.96.0.0/12\",\"gw\":\"10.0.1.1\"}]",
               "ovn-vpc-external-network.kube-system.kubernetes.io/routes":
                   "[{\"dst\":\"0.0.0.0/0\",\"gw\":\"192.168.0.1\"}]"})
    );
    let c = &t["spec"]["containers"][0];
    assert_eq!(c["name"], "vpc-nat-gw");
    assert_eq!(c["image"], IMAGE);
    assert_eq!(c["command"], json!(["/kube-ovn/kube-ovn-vpc-nat-gw"]));
    assert_eq!(
        t["spec"]["nodeSelector"],
        json!({"kubernetes.io/os": "linux"})
    );

    // The pod the StatefulSet controller would make, Running on node1: lanIp on net1, its port
    // in NB, the VPC's CIDRs and the init mark.
    let pods: Api<Pod> = Api::namespaced(w.client.clone(), "kube-system");
    create(
        &pods,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": POD, "namespace": "kube-system",
                            "labels": t["metadata"]["labels"],
                            "annotations": t["metadata"]["annotations"]},
               "spec": {"nodeName": "node1", "containers": t["spec"]["containers"]}}),
    )
    .await;
    pods.patch_status(
        POD,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .unwrap();
    let a = eventually("the gateway pod's VPC CIDRs", LONG, || async {
        let p = pods.get(POD).await.ok()?;
        let a = p.metadata.annotations?;
        (a.get("ovn.kubernetes.io/vpc_nat_gw_init")? == "true").then_some(a)
    })
    .await;
    assert_eq!(
        a["ovn.kubernetes.io/vpc_cidrs"],
        "[\"10.0.1.0/24\",\"10.0.2.0/24\"]"
    );
    assert_eq!(a["ovn.kubernetes.io/ip_address"], "10.0.1.254");
    let port = format!("{POD}.kube-system");
    let lsp = eventually("the gateway pod's port", LONG, || async {
        let out = w.nbctl(&[
            "--bare",
            "--columns=addresses",
            "find",
            "Logical_Switch_Port",
            &format!("name={port}"),
        ]);
        (!out.trim().is_empty()).then_some(out)
    })
    .await;
    assert!(lsp.contains("10.0.1.254"), "{lsp}");
    assert!(w.nbctl(&["lsp-get-ls", &port]).contains("net1"));
    // Ready once the StatefulSet says so.
    stss.patch_status(
        "vpc-nat-gw-gw1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"replicas": 1, "readyReplicas": 1,
                                        "observedGeneration": sts.metadata.generation}})),
    )
    .await
    .unwrap();
    let gw = ready(&gws, "gw1").await;
    let st = status_of(&gw);
    assert_eq!(st["lanIp"], "10.0.1.254");
    assert_eq!(st["externalSubnets"], json!(["ovn-vpc-external-network"]));
    assert_eq!(
        st["workload"],
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vpc-nat-gw-gw1",
               "nodes": ["node1"]})
    );
    let l = gw.metadata.labels.clone().unwrap();
    assert_eq!(l["ovn.kubernetes.io/subnet"], "net1");
    assert_eq!(l["ovn.kubernetes.io/vpc"], "test-vpc-1");
    assert_eq!(gw.metadata.finalizers, Some(vec![FINALIZER.to_string()]));

    // EIPs: random and static, from the external subnet.
    let eips: Api<IptablesEip> = Api::all(w.client.clone());
    create(
        &eips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesEIP", "metadata": {"name": "eip-random"},
               "spec": {"natGwDp": "gw1"}}),
    )
    .await;
    create(
        &eips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesEIP", "metadata": {"name": "eip-static"},
               "spec": {"natGwDp": "gw1", "v4ip": "192.168.0.50"}}),
    )
    .await;
    let random = ready(&eips, "eip-random").await;
    let ip: std::net::Ipv4Addr = random.status.as_ref().unwrap().ip.parse().unwrap();
    assert!(
        ip.octets()[..3] == [192, 168, 0] && ip.octets()[3] > 10,
        "{ip}"
    );
    assert_eq!(random.spec.v4ip, ip.to_string());
    assert!(!random.spec.mac_address.is_empty());
    assert_eq!(random.spec.namespace, "kube-system");
    let l = random.metadata.labels.clone().unwrap();
    assert_eq!(l["ovn.kubernetes.io/subnet"], "ovn-vpc-external-network");
    assert_eq!(l["ovn.kubernetes.io/eip_v4_ip"], ip.to_string());
    assert_eq!(l["ovn.kubernetes.io/vpc-nat-gw-name"], "gw1");
    assert_eq!(
        random.metadata.finalizers,
        Some(vec![FINALIZER.to_string()])
    );
    let fixed = ready(&eips, "eip-static").await;
    assert_eq!(fixed.status.unwrap().ip, "192.168.0.50");

    // Rules.
    let fips: Api<IptablesFipRule> = Api::all(w.client.clone());
    create(
        &fips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesFIPRule", "metadata": {"name": "fip01"},
               "spec": {"eip": "eip-static", "internalIp": "10.0.1.5"}}),
    )
    .await;
    let fip = ready(&fips, "fip01").await;
    assert_eq!(
        status_of(&fip),
        json!({"ready": true, "v4ip": "192.168.0.50", "v6ip": "", "natGwDp": "gw1", "redo": "",
               "internalIp": "10.0.1.5"})
    );
    let l = fip.metadata.labels.clone().unwrap();
    assert_eq!(l["ovn.kubernetes.io/eip_v4_ip"], "192.168.0.50");
    assert_eq!(l["ovn.kubernetes.io/vpc-nat-gw-name"], "gw1");
    assert_eq!(
        fip.metadata.annotations.unwrap()["ovn.kubernetes.io/vpc_eip"],
        "eip-static"
    );
    assert_eq!(fip.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    // A second FIP on the same EIP is refused.
    create(
        &fips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesFIPRule", "metadata": {"name": "fip02"},
               "spec": {"eip": "eip-static", "internalIp": "10.0.1.6"}}),
    )
    .await;
    assert_eq!(
        warned(&w, "fip02", "ValidateNatRuleFailed").await,
        "192.168.0.50 is used by the other fip fip01"
    );
    assert_eq!(
        status_of(&fips.get("fip02").await.unwrap())["ready"],
        Value::Null
    );
    fips.delete("fip02", &DeleteParams::default())
        .await
        .unwrap();
    let snats: Api<IptablesSnatRule> = Api::all(w.client.clone());
    create(
        &snats,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesSnatRule", "metadata": {"name": "snat01"},
               "spec": {"eip": "eip-random", "internalCIDR": "10.0.1.0/24"}}),
    )
    .await;
    assert_eq!(
        status_of(&ready(&snats, "snat01").await)["internalCIDR"],
        "10.0.1.0/24"
    );
    let dnats: Api<IptablesDnatRule> = Api::all(w.client.clone());
    create(
        &dnats,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesDnatRule", "metadata": {"name": "dnat01"},
               "spec": {"eip": "eip-random", "externalPort": "8888", "internalIp": "10.0.1.10",
                        "internalPort": "80", "protocol": "tcp"}}),
    )
    .await;
    let d = ready(&dnats, "dnat01").await;
    assert_eq!(
        d.metadata.labels.unwrap()["ovn.kubernetes.io/vpc_dnat_eport"],
        "8888"
    );
    create(
        &dnats,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesDnatRule", "metadata": {"name": "dnat-bad"},
               "spec": {"eip": "eip-random", "externalPort": "70000", "internalIp": "10.0.1.10",
                        "internalPort": "80", "protocol": "tcp"}}),
    )
    .await;
    assert_eq!(
        warned(&w, "dnat-bad", "ValidateNatRuleFailed").await,
        "dnat-bad: invalid externalPort \"70000\": must be between 1 and 65535"
    );
    // The EIPs list their users.
    eventually("eip status.nat", LONG, || async {
        let r = eips.get("eip-random").await.ok()?.status?.nat;
        let s = eips.get("eip-static").await.ok()?.status?.nat;
        (r == "dnat,snat" && s == "fip").then_some(())
    })
    .await;

    // An EIP in use stays until its rule goes; then its address is free again.
    eips.delete("eip-static", &DeleteParams::default())
        .await
        .unwrap();
    let held = eips.get("eip-static").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert_eq!(held.metadata.finalizers, Some(vec![FINALIZER.to_string()]));
    fips.delete("fip01", &DeleteParams::default())
        .await
        .unwrap();
    gone(&fips, "fip01").await;
    gone(&eips, "eip-static").await;
    create(
        &eips,
        json!({"apiVersion": "kubeovn.io/v1", "kind": "IptablesEIP", "metadata": {"name": "eip-again"},
               "spec": {"natGwDp": "gw1", "v4ip": "192.168.0.50"}}),
    )
    .await;
    assert_eq!(
        ready(&eips, "eip-again").await.status.unwrap().ip,
        "192.168.0.50"
    );

    // Deleting the gateway removes its StatefulSet.
    gws.delete("gw1", &DeleteParams::default()).await.unwrap();
    gone(&stss, "vpc-nat-gw-gw1").await;
    gone(&gws, "gw1").await;
}
