//! A custom VPC's external connection (`spec.enableExternal`, `spec.extraExternalSubnets`;
//! upstream's `handleAddVpcExternalSubnet`/`handleDelVpcExternalSubnet`): per external subnet
//! the `lrp` OvnEip `<vpc>-<subnet>` (an address of that subnet, IPAM owner and port the EIP's
//! name), the gateway port pair `<vpc>-<subnet>`/`<subnet>-<vpc>` on that address, and its
//! `Gateway_Chassis` on the nodes labelled `ovn.kubernetes.io/external-gw=true`, ordered per
//! VPC by the SHA-256 of VPC and chassis name so that VPCs spread their active gateways.
//! Without `extraExternalSubnets` the subnet is `--external-gateway-switch`'s. No default
//! route is added: as upstream, the VPC's `staticRoutes` send traffic to the external gateway.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::{OvnEip, Subnet, Vpc};
use kube_ovn_common::ovn_nat as on;
use kube_ovn_nb::objects::{self, ExternalPort};
use kube_ovn_runtime::trigger::hash_of;
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::ovn_eip_ctl;

/// What of a Node the external connections read: its gateway label and chassis.
pub fn node_signature(n: &Node) -> u64 {
    hash_of(&(
        n.labels().get(on::LABEL_EXTERNAL_GW),
        n.annotations().get(ann::CHASSIS),
    ))
}

/// The VPCs with an external connection (a gateway node change concerns them).
pub fn external_vpcs(vpcs: &[Arc<Vpc>]) -> Vec<String> {
    vpcs.iter()
        .filter(|v| v.spec.enable_external || v.status.as_ref().is_some_and(|s| s.enable_external))
        .map(|v| v.name_any())
        .collect()
}

/// The chassis of the gateway nodes (label `ovn.kubernetes.io/external-gw=true` and a chassis
/// annotation), in the order VPC `vpc` prefers them: ascending SHA-256 (hex) of
/// `<vpc><chassis>`, as upstream.
pub fn gateway_chassis(vpc: &str, nodes: &[Arc<Node>]) -> Vec<String> {
    let mut chassis: Vec<(String, String)> = nodes
        .iter()
        .filter(|n| n.labels().get(on::LABEL_EXTERNAL_GW).map(String::as_str) == Some("true"))
        .filter_map(|n| n.annotations().get(ann::CHASSIS).cloned())
        .filter(|c| !c.is_empty())
        .map(|c| {
            let d = ring::digest::digest(&ring::digest::SHA256, format!("{vpc}{c}").as_bytes());
            let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            (hex, c)
        })
        .collect();
    chassis.sort();
    chassis.into_iter().map(|(_, c)| c).collect()
}

/// The external subnets a VPC asks for: none unless `enableExternal`; then
/// `extraExternalSubnets`, else the default external switch.
pub fn wanted(vpc: &Vpc, default_switch: &str) -> Vec<String> {
    if !vpc.spec.enable_external {
        return Vec::new();
    }
    let mut out = if vpc.spec.extra_external_subnets.is_empty() {
        vec![default_switch.to_string()]
    } else {
        vpc.spec.extra_external_subnets.clone()
    };
    out.sort();
    out.dedup();
    out
}

/// The external subnets a VPC's status says are connected.
pub fn connected(vpc: &Vpc, default_switch: &str) -> Vec<String> {
    let st = vpc.status.clone().unwrap_or_default();
    if !st.enable_external {
        return Vec::new();
    }
    if st.extra_external_subnets.is_empty() {
        vec![default_switch.to_string()]
    } else {
        st.extra_external_subnets
    }
}

/// The name of VPC `vpc`'s gateway port (and its `lrp` OvnEip) on `subnet`.
pub fn port_name(vpc: &str, subnet: &str) -> String {
    format!("{vpc}-{subnet}")
}

/// The `<ip>/<prefix>` networks of addresses in a subnet, per family of its CIDRs.
pub fn networks(subnet: &Subnet, ips: &[std::net::IpAddr]) -> Vec<String> {
    subnet
        .spec
        .cidr_block
        .split(',')
        .filter_map(|cidr| {
            let net: ipnet::IpNet = cidr.parse().ok()?;
            let ip = ips.iter().find(|ip| ip.is_ipv4() == net.addr().is_ipv4())?;
            Some(format!("{ip}/{}", net.prefix_len()))
        })
        .collect()
}

/// The address and MAC of VPC `vpc`'s gateway port on `subnet_name`: its `lrp` OvnEip
/// `<vpc>-<subnet>`'s, created with a newly allocated address when missing.
pub async fn lrp_address(
    ctx: &Ctx,
    vpc: &str,
    subnet_name: &str,
) -> Result<(Vec<std::net::IpAddr>, String), Error> {
    if ctx.ipam().subnet(subnet_name).is_none() {
        return Err(Error::Other(format!(
            "failed to get external subnet {subnet_name}"
        )));
    }
    let name = port_name(vpc, subnet_name);
    let existing = ctx.stores.ovn_eips.get(&ObjectRef::new(&name));
    let (ips, mac) = match existing
        .as_ref()
        .and_then(|e| ovn_eip_ctl::restored_address(e))
    {
        Some(held) => held,
        None => {
            let (v4, v6, mac) =
                ovn_eip_ctl::allocate(ctx, &name, subnet_name, Vec::new(), None, true)?;
            ctx.queues
                .add(crate::subnet_ctl::STATUS_KIND, subnet_name.to_string());
            (v4.into_iter().chain(v6).collect::<Vec<_>>(), mac)
        }
    };
    if existing.is_none() {
        let v4 = ips
            .iter()
            .find(|i| i.is_ipv4())
            .map(ToString::to_string)
            .unwrap_or_default();
        let v6 = ips
            .iter()
            .find(|i| i.is_ipv6())
            .map(ToString::to_string)
            .unwrap_or_default();
        let mut eip: OvnEip = serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "OvnEip",
            "metadata": {"name": name, "finalizers": [ann::FINALIZER]},
            "spec": {"externalSubnet": subnet_name, "v4Ip": v4, "v6Ip": v6,
                     "macAddress": mac, "type": on::EIP_TYPE_LRP},
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        eip.metadata.labels = Some(ovn_eip_ctl::eip_labels(
            &eip,
            subnet_name,
            on::EIP_TYPE_LRP,
            &v4,
            &v6,
        ));
        match Api::<OvnEip>::all(ctx.client.clone())
            .create(&PostParams::default(), &eip)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok((ips, mac))
}

/// Connects VPC `vpc` to `subnet`: its `lrp` OvnEip (created with the allocated address when
/// missing), the port pair and gateway chassis. An error names what is missing.
pub async fn connect(ctx: &Ctx, vpc: &str, subnet_name: &str) -> Result<(), Error> {
    let subnet = ctx
        .stores
        .subnets
        .get(&ObjectRef::new(subnet_name))
        .ok_or_else(|| Error::Other(format!("failed to get external subnet {subnet_name}")))?;
    let (ips, mac) = lrp_address(ctx, vpc, subnet_name).await?;
    let chassis = gateway_chassis(vpc, &ctx.stores.nodes.state());
    if chassis.is_empty() {
        return Err(Error::Other(format!(
            "no external gw nodes: label nodes {}=true to connect vpc {vpc} to {subnet_name}",
            on::LABEL_EXTERNAL_GW
        )));
    }
    let port = ExternalPort {
        switch: subnet_name,
        router: vpc,
        networks: networks(&subnet, &ips),
        mac: &mac,
        chassis,
    };
    ctx.apply(&format!("vpc {vpc} external {subnet_name}"), |plan| {
        objects::external_gateway_port(plan, &port)
    })
    .await?;
    Ok(())
}

/// Disconnects VPC `vpc` from `subnet`: the port pair goes, and its `lrp` OvnEip (whose
/// deletion frees the address).
pub async fn disconnect(ctx: &Ctx, vpc: &str, subnet: &str) -> Result<(), Error> {
    ctx.apply(&format!("vpc {vpc} drop external {subnet}"), |plan| {
        objects::remove_external_gateway_port(plan, subnet, vpc)
    })
    .await?;
    match Api::<OvnEip>::all(ctx.client.clone())
        .delete(&port_name(vpc, subnet), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gw: Option<&str>, chassis: &str) -> Arc<Node> {
        let mut labels = serde_json::Map::new();
        if let Some(v) = gw {
            labels.insert(on::LABEL_EXTERNAL_GW.into(), json!(v));
        }
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels,
                "annotations": {ann::CHASSIS: chassis}}}))
            .unwrap(),
        )
    }

    #[test]
    fn gateway_chassis_are_the_labelled_nodes_in_a_per_vpc_order() {
        let nodes = vec![
            node("n1", Some("true"), "c1"),
            node("n2", Some("false"), "c2"),
            node("n3", Some("true"), "c3"),
            node("n4", None, "c4"),
        ];
        let a = gateway_chassis("vpc1", &nodes);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec!["c1", "c3"]);
        // The order is the hash's: stable for a VPC, computed from its name.
        assert_eq!(gateway_chassis("vpc1", &nodes), a);
        let hex = |s: &str| -> String {
            ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        };
        let first = if hex("vpc1c1") < hex("vpc1c3") {
            "c1"
        } else {
            "c3"
        };
        assert_eq!(a[0], first);
    }

    #[test]
    fn wanted_subnets_follow_enable_external_and_the_extra_list() {
        let mut v: Vpc =
            serde_json::from_value(json!({"metadata": {"name": "vpc1"}, "spec": {}})).unwrap();
        assert!(wanted(&v, "external").is_empty());
        v.spec.enable_external = true;
        assert_eq!(wanted(&v, "external"), vec!["external"]);
        v.spec.extra_external_subnets = vec!["ext2".into(), "ext1".into()];
        assert_eq!(wanted(&v, "external"), vec!["ext1", "ext2"]);
        assert!(connected(&v, "external").is_empty());
    }
}
