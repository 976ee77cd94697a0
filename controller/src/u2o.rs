//! The extra address of an underlay subnet interconnected with the overlay
//! (`u2oInterconnection`): upstream's IPAM key and IP CR `u2o-interconnection.<vpc>.<subnet>`
//! (namespace `default`, owned by the Subnet), `status.u2oInterconnectionIP/MAC/VPC`, and
//! `spec.u2oInterconnectionIP` honoured when given. Turning u2o off gives the address back.

use std::net::IpAddr;

use kube::api::{Api, Patch, PatchParams};
use kube::ResourceExt;
use kube_ovn_common::annotations as ann;
use kube_ovn_common::crd::subnet::SubnetSpec;
use kube_ovn_common::crd::Subnet;
use kube_ovn_common::names;
use kube_ovn_ipam::Request;
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::ipcr::{self, IpOwner, IpRecord};

/// Namespace upstream records a u2o address's IP CR under.
const IP_CR_NAMESPACE: &str = "default";

/// Whether a (normalised) subnet spec asks for the interconnection: an underlay subnet with
/// its physical gateway and `u2oInterconnection`.
pub fn active(spec: &SubnetSpec) -> bool {
    crate::subnet_ctl::is_underlay(spec) && spec.u2o_interconnection
}

/// Whether a u2o subnet of the default VPC is without OVN load balancers (`--enable-lb=false`
/// or `enableLb: false`): its pods then reach Services through their node.
pub fn without_lb(config: &crate::config::Config, spec: &SubnetSpec) -> bool {
    !(config.enable_lb && spec.enable_lb == Some(true))
}

/// A subnet's u2o address as allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// One address per family of the subnet, v4 first.
    pub ips: Vec<IpAddr>,
    /// The router port's MAC.
    pub mac: String,
}

/// The IPAM owner of a subnet's u2o address (what restoring its IP CR gives back).
fn owner(key: &str) -> String {
    format!("{IP_CR_NAMESPACE}/{key}")
}

/// Allocates or keeps the u2o address of `subnet` (normalised `spec`), records it in its IP CR
/// and the Subnet's status; when u2o is off, releases it and clears both. `None` when off.
pub async fn reconcile(
    ctx: &Ctx,
    subnet: &Subnet,
    spec: &SubnetSpec,
) -> Result<Option<Address>, Error> {
    let name = subnet.name_any();
    let status = subnet.status.clone().unwrap_or_default();
    let api: Api<Subnet> = Api::all(ctx.client.clone());
    if !active(spec) {
        let vpcs = [spec.vpc.as_str(), status.u2o_interconnection_vpc.as_str()];
        for vpc in vpcs.into_iter().filter(|v| !v.is_empty()) {
            let key = names::u2o_ip_cr(vpc, &name);
            ctx.ipam().release_pod(&owner(&key));
            ipcr::delete(ctx, &key).await?;
        }
        let set = !status.u2o_interconnection_ip.is_empty()
            || !status.u2o_interconnection_mac.is_empty()
            || !status.u2o_interconnection_vpc.is_empty();
        if set {
            patch_status(&api, &name, "", "", "").await?;
        }
        return Ok(None);
    }
    let key = names::u2o_ip_cr(&spec.vpc, &name);
    let wanted = ann::parse_ips(&spec.u2o_interconnection_ip).unwrap_or_default();
    let current = ann::parse_ips(&status.u2o_interconnection_ip).unwrap_or_default();
    let mut req = Request {
        pod: owner(&key),
        nic: key.clone(),
        check_conflict: true,
        ..Request::default()
    };
    if !wanted.is_empty() && wanted != current {
        req.ips = wanted;
    } else if !current.is_empty() && !status.u2o_interconnection_mac.is_empty() {
        // Ours already (restored from the IP CR, or kept from an earlier life).
        req.ips = current;
        req.mac = Some(status.u2o_interconnection_mac.clone());
        req.check_conflict = false;
    }
    let alloc = ctx.ipam().allocate(&name, &req)?;
    let ips: Vec<IpAddr> = [alloc.v4, alloc.v6].into_iter().flatten().collect();
    ipcr::ensure(
        ctx,
        &IpRecord {
            name: key.clone(),
            pod_name: key.clone(),
            namespace: IP_CR_NAMESPACE.to_string(),
            subnet: name.clone(),
            node_name: String::new(),
            ips: ips.clone(),
            mac: alloc.mac.clone(),
            pod_type: String::new(),
            owner: Some(IpOwner {
                api_version: "kubeovn.io/v1",
                kind: "Subnet",
                name: name.clone(),
                uid: subnet.uid().unwrap_or_default(),
            }),
        },
    )
    .await?;
    let text = ann::format_ips(&ips);
    if status.u2o_interconnection_ip != text
        || status.u2o_interconnection_mac != alloc.mac
        || status.u2o_interconnection_vpc != spec.vpc
    {
        patch_status(&api, &name, &text, &alloc.mac, &spec.vpc).await?;
    }
    Ok(Some(Address {
        ips,
        mac: alloc.mac,
    }))
}

async fn patch_status(
    api: &Api<Subnet>,
    name: &str,
    ip: &str,
    mac: &str,
    vpc: &str,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "u2oInterconnectionIP": ip,
            "u2oInterconnectionMAC": mac,
            "u2oInterconnectionVPC": vpc,
        }})),
    )
    .await?;
    Ok(())
}
