//! The generated CRDs installed into the test API server: every kind is served
//! as declared, and Subnets and Vpcs can be created, read back and have their
//! status written through the status subresource with kube's typed `Api`.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use kube_apiserver_fixture::{ApiServer, Options};
use kube_ovn_common::crd::{self, BigInt, Condition, Subnet, Vpc};
use serde_json::json;

async fn server_with_crds() -> (ApiServer, Client) {
    let server = ApiServer::start(Options::default())
        .await
        .expect("fixture starts");
    let client = server.client().expect("client for fixture");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for c in crd::all() {
        crds.create(&PostParams::default(), &c)
            .await
            .unwrap_or_else(|e| panic!("installing {:?}: {e}", c.metadata.name));
    }
    (server, client)
}

#[tokio::test]
async fn every_kind_is_served_with_its_scope() {
    let (_server, client) = server_with_crds().await;
    for c in crd::all() {
        let gvk = GroupVersionKind::gvk("kubeovn.io", "v1", &c.spec.names.kind);
        let (resource, caps) = tokio::time::timeout(
            Duration::from_secs(15),
            discovery::pinned_kind(&client, &gvk),
        )
        .await
        .expect("discovery answers")
        .unwrap_or_else(|e| panic!("{} not served: {e}", c.spec.names.kind));
        assert_eq!(resource.plural, c.spec.names.plural);
        let namespaced = c.spec.scope == "Namespaced";
        assert_eq!(
            caps.scope == Scope::Namespaced,
            namespaced,
            "{}",
            c.spec.names.kind
        );
    }
}

#[tokio::test]
async fn subnet_create_read_and_status() {
    let (_server, client) = server_with_crds().await;
    let subnets: Api<Subnet> = Api::all(client.clone());
    let subnet: Subnet = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1",
        "kind": "Subnet",
        "metadata": {"name": "tenant-a"},
        "spec": {
            "cidrBlock": "10.66.0.0/16",
            "excludeIps": ["10.66.0.1"],
            "namespaces": ["tenant-a"],
            "gatewayType": "centralized",
            "gatewayNode": "node-1",
            "natOutgoing": true,
            "provider": "ovn",
            "vlan": "vlan10",
            "acls": [{"direction": "to-lport", "priority": 1010, "match": "ip4.src == 10.66.0.2", "action": "drop"}]
        }
    }))
    .unwrap();
    let created = subnets
        .create(&PostParams::default(), &subnet)
        .await
        .unwrap();
    assert_eq!(created.spec, subnet.spec);
    assert!(
        created.status.is_none(),
        "status is not set through the main resource"
    );

    let mut status = crd::subnet::SubnetStatus {
        v4_available_ips: BigInt::from(65532i64),
        v4_using_ips: BigInt::from(1i64),
        v4_using_ip_range: "10.66.0.2".into(),
        v4_available_ip_range: "10.66.0.3-10.66.255.254".into(),
        ..Default::default()
    };
    status.conditions.push(Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "ResetLogicalSwitchAclSuccess".into(),
        ..Default::default()
    });
    let patched = subnets
        .patch_status(
            "tenant-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status.as_ref(), Some(&status));

    let read = subnets.get("tenant-a").await.unwrap();
    assert_eq!(read.spec, subnet.spec);
    assert_eq!(read.status, Some(status));
    assert_eq!(read.spec.acls[0].priority, 1010);
    let status_only = subnets.get_status("tenant-a").await.unwrap();
    assert_eq!(status_only.status, read.status);
    assert!(!read.resource_version().unwrap_or_default().is_empty());
}

#[tokio::test]
async fn vpc_create_read_and_status() {
    let (_server, client) = server_with_crds().await;
    let vpcs: Api<Vpc> = Api::all(client.clone());
    let vpc: Vpc = serde_json::from_value(json!({
        "apiVersion": "kubeovn.io/v1",
        "kind": "Vpc",
        "metadata": {"name": "tenant-vpc"},
        "spec": {
            "namespaces": ["tenant-a"],
            "staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254", "policy": "policyDst"}],
            "policyRoutes": [{"priority": 31000, "match": "ip4.dst == 10.0.1.0/24", "action": "allow"}],
            "enableExternal": true
        }
    }))
    .unwrap();
    let created = vpcs.create(&PostParams::default(), &vpc).await.unwrap();
    assert_eq!(created.spec, vpc.spec);

    let mut with_status = created.clone();
    with_status.status = Some(crd::vpc::VpcStatus {
        standby: true,
        router: "tenant-vpc".into(),
        default_logical_switch: "tenant-a".into(),
        subnets: vec!["tenant-a".into()],
        enable_external: true,
        ..Default::default()
    });
    let replaced = vpcs
        .replace_status("tenant-vpc", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(replaced.status, with_status.status);

    let read = vpcs.get("tenant-vpc").await.unwrap();
    assert_eq!(read.spec, vpc.spec);
    assert_eq!(read.spec.static_routes[0].next_hop_ip, "10.0.1.254");
    assert_eq!(read.status, with_status.status);
    let listed = vpcs.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
}
