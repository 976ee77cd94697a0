//! One-time cluster initialisation, as upstream's `InitOVN`: NB_Global options, the default
//! VPC's router and load balancers, and the `ovn-cluster` Vpc plus the `join` and default
//! Subnet CRs when missing. Everything is idempotent: on a converged cluster it writes nothing.

use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_ovn_nb::objects::{self, GlobalSettings};
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::subnet_ctl::default_lbs;
use kube_ovn_common::crd::{Subnet, Vpc};
use kube_ovn_common::net::{self, Protocol};

/// Runs the NB side of initialisation.
pub async fn init_nb(ctx: &Ctx) -> Result<usize, Error> {
    let c = &ctx.config;
    let settings = GlobalSettings {
        ls_dnat_mod_dl_dst: c.ls_dnat_mod_dl_dst,
        ls_ct_skip_dst_lport_ips: c.ls_ct_skip_dst_lport_ips,
        node_local_dns_ip: c.node_local_dns_ip.clone(),
        skip_conntrack_dst_cidrs: c.skip_conntrack_dst_cidrs.clone(),
        ipsec: c.enable_ovn_ipsec,
    };
    let router = c.cluster_router.clone();
    let lbs = default_lbs(ctx);
    let enable_lb = c.enable_lb;
    let prefer_local = c.enable_ovn_lb_prefer_local;
    ctx.apply("init", |plan| {
        objects::nb_global(plan, &settings)?;
        objects::vpc_router(plan, &router)?;
        objects::ensure_u2o_sets(plan, &router)?;
        if enable_lb {
            objects::vpc_load_balancers(plan, &lbs, prefer_local)?;
        }
        objects::deny_all_group(plan)
    })
    .await
}

/// Creates the default Vpc and the join/default Subnets when absent (never changes existing
/// ones: they are the user's from then on).
pub async fn init_crs(ctx: &Ctx) -> Result<(), Error> {
    let c = &ctx.config;
    let vpcs: Api<Vpc> = Api::all(ctx.client.clone());
    if vpcs.get_opt(&c.cluster_router).await?.is_none() {
        let vpc: Vpc = serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Vpc",
            "metadata": {"name": c.cluster_router}, "spec": {}
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        create_ignoring_conflict(vpcs.create(&PostParams::default(), &vpc).await)?;
    }
    let lbs = default_lbs(ctx);
    let status = json!({"status": {
        "default": true, "standby": true, "router": c.cluster_router,
        "defaultLogicalSwitch": c.default_ls,
        "tcpLoadBalancer": lbs.tcp, "tcpSessionLoadBalancer": lbs.tcp_session,
        "udpLoadBalancer": lbs.udp, "udpSessionLoadBalancer": lbs.udp_session,
        "sctpLoadBalancer": lbs.sctp, "sctpSessionLoadBalancer": lbs.sctp_session,
    }});
    let current = vpcs.get(&c.cluster_router).await?;
    let current_status = serde_json::to_value(&current.status).unwrap_or_default();
    let same = status["status"]
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| current_status.get(k) == Some(v)));
    if !same {
        vpcs.patch_status(
            &c.cluster_router,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    }

    let subnets: Api<Subnet> = Api::all(ctx.client.clone());
    if subnets.get_opt(&c.node_switch).await?.is_none() {
        let gw = c.join_gateway();
        let join: Subnet = serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": c.node_switch},
            "spec": {
                "vpc": c.cluster_router, "default": false, "provider": "ovn",
                "cidrBlock": c.node_switch_cidr, "gateway": gw,
                "excludeIps": net::entries(&gw).collect::<Vec<_>>(),
                "protocol": Protocol::of_list(&c.node_switch_cidr).as_str(),
                "disableInterConnection": true,
            }
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        create_ignoring_conflict(subnets.create(&PostParams::default(), &join).await)?;
    }
    if subnets.get_opt(&c.default_ls).await?.is_none() {
        let gw = c.default_subnet_gateway();
        let exclude: Vec<&str> = if c.default_exclude_ips.trim().is_empty() {
            net::entries(&gw).collect()
        } else {
            net::entries(&c.default_exclude_ips).collect()
        };
        let default: Subnet = serde_json::from_value(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": c.default_ls},
            "spec": {
                "vpc": c.cluster_router, "default": true, "provider": "ovn",
                "cidrBlock": c.default_cidr, "gateway": gw, "excludeIps": exclude,
                "disableGatewayCheck": !c.default_gateway_check,
                "natOutgoing": true, "gatewayType": "distributed",
                "protocol": Protocol::of_list(&c.default_cidr).as_str(),
                "enableLb": c.enable_lb,
            }
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        create_ignoring_conflict(subnets.create(&PostParams::default(), &default).await)?;
    }
    Ok(())
}

fn create_ignoring_conflict<T>(r: Result<T, kube::Error>) -> Result<(), Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
