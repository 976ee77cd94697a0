//! Subnet reconciler: normalise the spec, keep IPAM's book, write the switch, router ports,
//! policies, gateway port groups and ACLs, and report status (address usage, conditions).
//! A subnet of a custom VPC is checked against its Vpc (ready, namespaces) and joins its
//! router only; CIDRs may overlap across VPCs, not within one.
//! Invalid specs get a `Validated=False` condition and an Event, never a crash. The default
//! subnet cannot be deleted: its finalizer stays and an Event says why.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use kube_ovn_ipam::{Family, SubnetConfig};
use kube_ovn_nb::objects::{self, Localnet, NodeJoin, OverlaySubnet, VpcLoadBalancers};
use ovsdb::model::Model;
use ovsdb::models::nb::LogicalRouter;
use serde_json::json;

use crate::context::{Ctx, Error};
use crate::subnet_rules::{self, Defaults};
use kube_ovn_common::annotations::{self, FINALIZER};
use kube_ovn_common::crd::{Subnet, Vlan};
use kube_ovn_common::net;
use kube_ovn_runtime::events::EventType;
use kube_ovn_runtime::{conditions, finalizer, Outcome};

/// The default VPC's load balancer names, from the flags.
pub fn default_lbs(ctx: &Ctx) -> VpcLoadBalancers {
    let c = &ctx.config;
    VpcLoadBalancers {
        tcp: c.cluster_tcp_loadbalancer.clone(),
        tcp_session: c.cluster_tcp_session_loadbalancer.clone(),
        udp: c.cluster_udp_loadbalancer.clone(),
        udp_session: c.cluster_udp_session_loadbalancer.clone(),
        sctp: c.cluster_sctp_loadbalancer.clone(),
        sctp_session: c.cluster_sctp_session_loadbalancer.clone(),
    }
}

/// The join addresses a node holds (from its annotations), if allocated.
pub fn node_join_ips(node: &Node) -> Vec<IpAddr> {
    let a = node.annotations();
    if a.get(annotations::ALLOCATED).map(String::as_str) != Some("true") {
        return Vec::new();
    }
    a.get(annotations::IP_ADDRESS)
        .and_then(|v| annotations::parse_ips(v).ok())
        .unwrap_or_default()
}

/// The subnet queue's kind name.
pub const KIND: &str = "subnet";
/// The kind name of the queue that refreshes a subnet's address counters.
pub const STATUS_KIND: &str = "subnet-status";

/// What of a Subnet its reconciler acts on: the spec, deletion, finalizers, labels and
/// annotations — not the status (its own status patches and everybody's counter updates would
/// otherwise re-run it for nothing).
pub fn signature(s: &Subnet) -> u64 {
    kube_ovn_runtime::trigger::hash_of(&(
        kube_ovn_runtime::trigger::hash_json(&s.spec),
        kube_ovn_runtime::trigger::meta_signature(s),
    ))
}

/// The centralized subnets that name `node` as a gateway (they depend on its join address
/// and readiness).
pub fn centralized_on(subnets: &[Arc<Subnet>], node: &str) -> Vec<String> {
    subnets
        .iter()
        .filter(|s| {
            s.spec.gateway_type == "centralized"
                && subnet_rules::gateway_nodes(&s.spec)
                    .iter()
                    .any(|n| n == node)
        })
        .map(|s| s.name_any())
        .collect()
}

/// Reconciles the Subnet `name`.
pub async fn reconcile(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let Some(subnet) = ctx.stores.subnets.get(&ObjectRef::new(&name)) else {
        // Gone without our finalizer (e.g. never reconciled): make sure nothing is left.
        release(&ctx, &name, None).await?;
        requeue_nodes(&ctx);
        return Ok(Outcome::Done);
    };
    let api: Api<Subnet> = Api::all(ctx.client.clone());
    let is_default = name == ctx.config.default_ls || subnet.spec.default;
    if subnet.metadata.deletion_timestamp.is_some() {
        if is_default && name == ctx.config.default_ls {
            ctx.event(
                &subnet.object_ref(&()),
                EventType::Warning,
                "DeleteSubnetFailed",
                "the default subnet cannot be deleted",
            )
            .await;
            return Ok(Outcome::Done);
        }
        release(&ctx, &name, Some(&subnet.spec.vpc)).await?;
        finalizer::remove(&api, &*subnet, FINALIZER).await?;
        if !subnet.spec.vpc.is_empty() && subnet.spec.vpc != ctx.config.cluster_router {
            // The Vpc's subnet list and overlay CIDRs go with it.
            ctx.queues
                .add(crate::vpc_ctl::KIND, subnet.spec.vpc.clone());
        }
        requeue_nodes(&ctx);
        return Ok(Outcome::Done);
    }
    let mut subnet = subnet;
    // Carry on with the patched object: waiting for its watch event costs a round.
    if let Some(patched) = finalizer::add(&api, &*subnet, FINALIZER).await? {
        subnet = Arc::new(patched);
    }
    let defaults = Defaults {
        default_vpc: &ctx.config.cluster_router,
        join: &ctx.config.node_switch,
        enable_lb: ctx.config.enable_lb,
    };
    let spec = match subnet_rules::normalize(&subnet.spec, &name, &defaults) {
        Ok(s) => s,
        Err(why) => {
            ctx.event(
                &subnet.object_ref(&()),
                EventType::Warning,
                "ValidateLogicalSwitchFailed",
                &why,
            )
            .await;
            set_conditions(&api, &subnet, false, "ValidateLogicalSwitchFailed", &why).await?;
            return Ok(Outcome::Done);
        }
    };
    if spec != subnet.spec {
        // Upstream writes the normalised spec back.
        let mut updated = (*subnet).clone();
        updated.spec = spec.clone();
        subnet = Arc::new(api.replace(&name, &Default::default(), &updated).await?);
    }
    let dropped = {
        let mut ipam = ctx.ipam();
        ipam.add_or_update_subnet(SubnetConfig {
            name: name.clone(),
            cidr_block: spec.cidr_block.clone(),
            gateway: spec.gateway.clone(),
            exclude_ips: spec.exclude_ips.clone(),
        })
    };
    let dropped = match dropped {
        Ok(d) => d,
        Err(e) => {
            let why = e.to_string();
            ctx.event(
                &subnet.object_ref(&()),
                EventType::Warning,
                "ValidateLogicalSwitchFailed",
                &why,
            )
            .await;
            set_conditions(&api, &subnet, false, "ValidateLogicalSwitchFailed", &why).await?;
            return Ok(Outcome::Done);
        }
    };
    for (_, owner) in &dropped {
        if !owner.pod.starts_with("node/") {
            ctx.queues.add(crate::pod_ctl::KIND, owner.pod.clone());
        }
    }
    if !dropped.is_empty() {
        ctx.event(
            &subnet.object_ref(&()),
            EventType::Warning,
            "AddressesOutOfRange",
            &format!(
                "{} allocations no longer fit the subnet and were released",
                dropped.len()
            ),
        )
        .await;
    }
    let vlan = if spec.vlan.is_empty() {
        None
    } else {
        match underlay_vlan(&ctx, &name, &spec.vlan) {
            Ok(Some(v)) => Some(v),
            // Not processed by the Vlan reconciler yet (or our store has not seen its status
            // patch): look again shortly, as upstream's requeue.
            Ok(None) => return Ok(Outcome::After(std::time::Duration::from_secs(1))),
            Err(why) => {
                ctx.event(
                    &subnet.object_ref(&()),
                    EventType::Warning,
                    "ValidateSubnetVlanFailed",
                    &why,
                )
                .await;
                set_conditions(&api, &subnet, false, "ValidateSubnetVlanFailed", &why).await?;
                return Ok(Outcome::Done);
            }
        }
    };
    let mut reason = "SetNonOvnSubnetSuccess";
    let mut activate = String::new();
    if subnet_rules::is_ovn_provider(&spec.provider) {
        let subnets = ctx.stores.subnets.state();
        let checked = if spec.vpc == ctx.config.cluster_router {
            subnet_rules::validate_default_vpc(
                &spec,
                &ctx.stores.vpcs.state(),
                &ctx.config.cluster_router,
            )
        } else {
            let vpc = ctx.stores.vpcs.get(&ObjectRef::new(&spec.vpc));
            subnet_rules::validate_custom_vpc(&spec, vpc.as_deref())
        }
        .and_then(
            |_| match subnet_rules::cidr_conflict(&name, &spec, &subnets) {
                Some(why) => Err(why),
                None => Ok(()),
            },
        );
        if let Err(why) = checked {
            // The Vpc becoming ready (or a conflicting subnet going) requeues the subnet.
            ctx.event(
                &subnet.object_ref(&()),
                EventType::Warning,
                "ValidateLogicalSwitchFailed",
                &why,
            )
            .await;
            set_conditions(&api, &subnet, false, "ValidateLogicalSwitchFailed", &why).await?;
            return Ok(Outcome::Done);
        }
        if spec.vpc != ctx.config.cluster_router {
            let u2o = crate::u2o::reconcile(&ctx, &subnet, &spec).await?;
            reason = write_custom_vpc_nb(&ctx, &name, &spec, vlan.as_deref(), u2o.as_ref()).await?;
            ctx.queues.add(crate::vpc_ctl::KIND, spec.vpc.clone());
        } else {
            let u2o = crate::u2o::reconcile(&ctx, &subnet, &spec).await?;
            (reason, activate) =
                write_nb(&ctx, &name, &spec, vlan.as_deref(), u2o.as_ref()).await?;
            if spec.gateway_type == "centralized" {
                // A node reconcile that still saw the subnet distributed may have re-added
                // its per-node rows: let every node re-state them against the current spec.
                requeue_nodes(&ctx);
            }
        }
    }
    if let Some(v) = &vlan {
        list_in_vlan(&ctx, v, &name).await?;
    }
    update_counters(&api, &ctx, &subnet, &activate).await?;
    set_conditions(&api, &subnet, true, reason, "").await?;
    Ok(Outcome::Done)
}

/// An underlay subnet's Vlan as upstream's `validateSubnetVlan` accepts it: `Ok(None)` while
/// the Vlan has not been processed (no provider yet, or not in its ProviderNetwork's
/// `status.vlans`), an error when it is missing or conflicts.
fn underlay_vlan(ctx: &Ctx, subnet: &str, vlan: &str) -> Result<Option<Arc<Vlan>>, String> {
    let Some(v) = ctx.stores.vlans.get(&ObjectRef::new(vlan)) else {
        return Err(format!(
            "failed to validate vlan for subnet {subnet}, failed to get vlan {vlan}: not found"
        ));
    };
    if v.status.as_ref().is_some_and(|s| s.conflict) {
        return Err(format!(
            "failed to validate vlan for subnet {subnet}, subnet {subnet} has invalid conflict vlan {vlan}"
        ));
    }
    let ready = !v.spec.provider.is_empty()
        && ctx
            .stores
            .provider_networks
            .get(&ObjectRef::new(&v.spec.provider))
            .and_then(|pn| pn.status.clone())
            .is_some_and(|st| st.vlans.iter().any(|x| x == vlan));
    Ok(ready.then_some(v))
}

/// Adds the subnet to its Vlan's `status.subnets` (upstream's reconcileVlan).
async fn list_in_vlan(ctx: &Ctx, vlan: &Vlan, subnet: &str) -> Result<(), Error> {
    let mut subnets = vlan
        .status
        .as_ref()
        .map(|s| s.subnets.clone())
        .unwrap_or_default();
    if subnets.iter().any(|s| s == subnet) {
        return Ok(());
    }
    subnets.push(subnet.to_string());
    let api: Api<Vlan> = Api::all(ctx.client.clone());
    api.patch_status(
        &vlan.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"subnets": subnets}})),
    )
    .await?;
    Ok(())
}

/// Removes a deleted subnet from every Vlan's `status.subnets`.
async fn unlist_from_vlans(ctx: &Ctx, subnet: &str) -> Result<(), Error> {
    let api: Api<Vlan> = Api::all(ctx.client.clone());
    for v in ctx.stores.vlans.state() {
        let Some(st) = &v.status else { continue };
        if st.subnets.iter().any(|s| s == subnet) {
            let keep: Vec<&String> = st.subnets.iter().filter(|s| *s != subnet).collect();
            api.patch_status(
                &v.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"subnets": keep}})),
            )
            .await?;
        }
    }
    Ok(())
}

/// A subnet on a Vlan whose gateway is the physical one (`logicalGateway` off): it has no
/// gateway policies or per-node port groups, and router ports only with u2o ([`crate::u2o`]).
pub fn is_underlay(spec: &kube_ovn_common::crd::subnet::SubnetSpec) -> bool {
    !spec.vlan.is_empty() && !spec.logical_gateway
}

fn requeue_nodes(ctx: &Ctx) {
    for n in ctx.stores.nodes.state() {
        ctx.queues.add(crate::node_ctl::KIND, n.name_any());
    }
}

/// Refreshes the address counters of the Subnet `name` from IPAM (pods allocating and
/// releasing addresses queue this; many changes coalesce into one patch).
pub async fn reconcile_status(ctx: Arc<Ctx>, name: String) -> Result<Outcome, Error> {
    let Some(subnet) = ctx.stores.subnets.get(&ObjectRef::new(&name)) else {
        return Ok(Outcome::Done);
    };
    if subnet.metadata.deletion_timestamp.is_some() || ctx.ipam().subnet(&name).is_none() {
        return Ok(Outcome::Done);
    }
    let activate = subnet
        .status
        .as_ref()
        .map(|s| s.activate_gateway.clone())
        .unwrap_or_default();
    let api: Api<Subnet> = Api::all(ctx.client.clone());
    update_counters(&api, &ctx, &subnet, &activate).await?;
    Ok(Outcome::Done)
}

async fn write_nb(
    ctx: &Ctx,
    name: &str,
    spec: &kube_ovn_common::crd::subnet::SubnetSpec,
    vlan: Option<&Vlan>,
    u2o: Option<&crate::u2o::Address>,
) -> Result<(&'static str, String), Error> {
    let router = ctx.config.cluster_router.clone();
    let is_join = name == ctx.config.node_switch;
    let cidrs: Vec<String> = net::entries(&spec.cidr_block).map(str::to_string).collect();
    let gateways: Vec<String> = net::entries(&spec.gateway).map(str::to_string).collect();
    let lbs = default_lbs(ctx);
    let enable_lb =
        !is_join && spec.enable_lb.unwrap_or(ctx.config.enable_lb) && ctx.config.enable_lb;
    let families: Vec<&'static str> = net::families(&spec.cidr_block)
        .into_iter()
        .map(Family::match_prefix)
        .collect();
    let nodes: Vec<NodeJoin> = ctx
        .stores
        .nodes
        .state()
        .iter()
        .filter_map(|n| {
            let ips = node_join_ips(n);
            (!ips.is_empty()).then(|| NodeJoin {
                node: n.name_any(),
                join_ips: ips,
            })
        })
        .collect();
    let gw_names = subnet_rules::gateway_nodes(spec);
    let not_ready = |node: &str| {
        ctx.stores
            .nodes
            .get(&ObjectRef::new(node))
            .and_then(|n| n.status.clone()?.conditions)
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "False"))
    };
    // In gatewayNode order; ECMP uses every usable gateway, active/backup the first one.
    let mut gw_nodes: Vec<NodeJoin> = gw_names
        .iter()
        .filter_map(|g| nodes.iter().find(|n| &n.node == g).cloned())
        .filter(|n| !not_ready(&n.node))
        .collect();
    if !spec.enable_ecmp {
        gw_nodes.truncate(1);
    }
    let underlay = is_underlay(spec);
    let centralized = spec.gateway_type == "centralized" && !underlay;
    if centralized && gw_nodes.is_empty() {
        return Err(Error::Other(format!(
            "subnet {name}: no gateway node of {gw_names:?} has a join address yet"
        )));
    }
    let join_cidrs: Vec<String> = ctx
        .stores
        .subnets
        .get(&ObjectRef::new(&ctx.config.node_switch))
        .map(|j| {
            net::entries(&j.spec.cidr_block)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| {
            net::entries(&ctx.config.node_switch_cidr)
                .map(str::to_string)
                .collect()
        });
    let user: Vec<(String, i64, String, String)> = spec
        .acls
        .iter()
        .map(|a| {
            (
                a.direction.clone(),
                a.priority,
                a.match_.clone(),
                a.action.clone(),
            )
        })
        .collect();
    let acls = objects::subnet_acls(
        name,
        &cidrs,
        &join_cidrs,
        spec.private,
        &spec.allow_subnets,
        &user,
        spec.allow_ew_traffic,
    );
    let vpc_cidrs: Vec<String> = ctx
        .stores
        .subnets
        .state()
        .iter()
        .filter(|s| {
            let vpc = if s.spec.vpc.is_empty() {
                ctx.config.cluster_router.as_str()
            } else {
                s.spec.vpc.as_str()
            };
            vpc == router
                && s.spec.vlan.is_empty()
                && subnet_rules::is_ovn_provider(&s.spec.provider)
        })
        .flat_map(|s| {
            net::entries(&s.spec.cidr_block)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty())
        .collect();
    let route_table = spec.route_table.clone();
    let join_gateways: Vec<IpAddr> = if is_join {
        gateways.iter().filter_map(|g| g.parse().ok()).collect()
    } else {
        Vec::new()
    };
    let localnet = vlan.map(|v| Localnet {
        provider: &v.spec.provider,
        vlan_id: v.spec.id,
    });
    let learn_from_arp = u2o.is_some() || other_u2o_subnets(ctx, name);
    let no_lb =
        (u2o.is_some() && crate::u2o::without_lb(&ctx.config, spec)).then(|| objects::NoLb {
            nodes: nodes
                .iter()
                .map(|n| objects::NoLbNode {
                    node: n.node.clone(),
                    join_ips: n.join_ips.clone(),
                    ports: pod_ports_on(ctx, name, &n.node),
                })
                .collect(),
            service_cidrs: net::entries(&ctx.config.service_cluster_ip_range)
                .map(str::to_string)
                .collect(),
        });
    let u2o = u2o.map(|a| objects::U2o {
        vpc: &router,
        ips: a.ips.clone(),
        mac: &a.mac,
        node_ips: node_internal_ips(ctx),
        overlay_only: spec.u2o_features.overlay_only_routing,
        no_lb: no_lb.clone(),
        default_vpc: true,
    });
    // The external switch keeps the default VPC's gateway port while the gateway is on.
    let gateway_port =
        name == ctx.config.external_gateway_switch && crate::external_gw::enabled(ctx);
    ctx.apply(&format!("subnet {name}"), |plan| {
        let ls = OverlaySubnet {
            name,
            router: &router,
            cidrs: cidrs.clone(),
            gateways: gateways.clone(),
            load_balancers: enable_lb.then_some(&lbs),
            detach_load_balancers: (!enable_lb && !is_join).then_some(&lbs),
            route_table: &route_table,
        };
        match &localnet {
            Some(ln) if underlay => match &u2o {
                Some(u) => objects::u2o_subnet(plan, &ls, ln, u)?,
                None => objects::underlay_subnet(plan, &ls, ln, gateway_port)?,
            },
            Some(ln) => {
                objects::overlay_subnet(plan, &ls)?;
                objects::localnet_port(plan, name, &cidrs, ln)?;
            }
            None => objects::overlay_subnet(plan, &ls)?,
        }
        objects::switch_acls(plan, name, &acls)?;
        if is_join {
            objects::default_routes(plan, &router, &join_gateways)?;
        } else if !underlay {
            // (An underlay subnet is routed by its physical gateway: no gateway policies.)
            if centralized {
                objects::centralized_gateway(plan, &router, name, &cidrs, &gw_nodes)?;
            } else {
                objects::distributed_gateway(plan, &router, name, &families, &nodes)?;
            }
        }
        objects::u2o_overlay_cidrs(plan, &router, &vpc_cidrs)?;
        objects::router_arp_learning(plan, &router, learn_from_arp)?;
        Ok(())
    })
    .await?;
    let reason = if spec.private {
        "SetPrivateLogicalSwitchSuccess"
    } else if centralized {
        "ReconcileCentralizedGatewaySuccess"
    } else {
        "ResetLogicalSwitchAclSuccess"
    };
    let activate = if centralized && !spec.enable_ecmp {
        gw_nodes.first().map(|g| g.node.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((reason, activate))
}

/// A custom-VPC subnet's rows, as upstream's subnet worker writes them there: the switch and
/// its patch ports to the VPC's router, the 31000 allow policy of each CIDR, the VPC's load
/// balancers and the switch ACLs — no node or join wiring (that is the default VPC's). The
/// VPC's U2O overlay address sets are the Vpc reconciler's.
async fn write_custom_vpc_nb(
    ctx: &Ctx,
    name: &str,
    spec: &kube_ovn_common::crd::subnet::SubnetSpec,
    vlan: Option<&Vlan>,
    u2o: Option<&crate::u2o::Address>,
) -> Result<&'static str, Error> {
    let router = spec.vpc.clone();
    let cidrs: Vec<String> = net::entries(&spec.cidr_block).map(str::to_string).collect();
    let gateways: Vec<String> = net::entries(&spec.gateway).map(str::to_string).collect();
    let lbs = VpcLoadBalancers::for_custom_vpc(&router);
    let enable_lb = ctx.config.enable_lb && spec.enable_lb == Some(true);
    let user: Vec<(String, i64, String, String)> = spec
        .acls
        .iter()
        .map(|a| {
            (
                a.direction.clone(),
                a.priority,
                a.match_.clone(),
                a.action.clone(),
            )
        })
        .collect();
    let join_cidrs: Vec<String> = net::entries(&ctx.config.node_switch_cidr)
        .map(str::to_string)
        .collect();
    let acls = objects::subnet_acls(
        name,
        &cidrs,
        &join_cidrs,
        spec.private,
        &spec.allow_subnets,
        &user,
        spec.allow_ew_traffic,
    );
    let route_table = spec.route_table.clone();
    let localnet = vlan.map(|v| Localnet {
        provider: &v.spec.provider,
        vlan_id: v.spec.id,
    });
    let u2o = u2o.map(|a| objects::U2o {
        vpc: &router,
        ips: a.ips.clone(),
        mac: &a.mac,
        node_ips: node_internal_ips(ctx),
        overlay_only: spec.u2o_features.overlay_only_routing,
        no_lb: None,
        default_vpc: false,
    });
    let underlay = is_underlay(spec);
    ctx.apply(&format!("subnet {name}"), |plan| {
        let ls = OverlaySubnet {
            name,
            router: &router,
            cidrs: cidrs.clone(),
            gateways: gateways.clone(),
            load_balancers: (enable_lb && ctx.config.enable_lb).then_some(&lbs),
            detach_load_balancers: (!enable_lb && ctx.config.enable_lb).then_some(&lbs),
            route_table: &route_table,
        };
        // As in the default VPC: an underlay subnet has router ports only with u2o.
        match (&localnet, &u2o) {
            (Some(ln), Some(u)) if underlay => objects::u2o_subnet(plan, &ls, ln, u)?,
            (Some(ln), None) if underlay => objects::underlay_subnet(plan, &ls, ln, false)?,
            (Some(ln), _) => {
                objects::overlay_subnet(plan, &ls)?;
                objects::localnet_port(plan, name, &cidrs, ln)?;
            }
            (None, _) => objects::overlay_subnet(plan, &ls)?,
        }
        objects::switch_acls(plan, name, &acls)?;
        Ok(())
    })
    .await?;
    Ok(if spec.private {
        "SetPrivateLogicalSwitchSuccess"
    } else {
        "ResetLogicalSwitchAclSuccess"
    })
}

/// The default-provider ports of the subnet's allocated pods on `node` (a u2o subnet's Service
/// port group there).
fn pod_ports_on(ctx: &Ctx, subnet: &str, node: &str) -> Vec<String> {
    ctx.stores
        .pods
        .state()
        .iter()
        .filter(|p| {
            let a = p.annotations();
            p.spec.node_name.as_deref() == Some(node)
                && a.get(annotations::LOGICAL_SWITCH).map(String::as_str) == Some(subnet)
                && a.get(annotations::ALLOCATED).map(String::as_str) == Some("true")
        })
        .map(|p| {
            kube_ovn_common::names::pod_lsp(
                &p.name_any(),
                &p.namespace().unwrap_or_default(),
                kube_ovn_common::names::DEFAULT_PROVIDER,
            )
        })
        .collect()
}

/// Every node's InternalIP (a u2o subnet's exclude sets).
fn node_internal_ips(ctx: &Ctx) -> Vec<IpAddr> {
    ctx.stores
        .nodes
        .state()
        .iter()
        .flat_map(|n| kube_ovn_common::node::internal_ips(n))
        .collect()
}

/// Whether a default-VPC subnet other than `name` interconnects (the router then learns from
/// ARP requests, as upstream's `learnFromARPRequest`).
fn other_u2o_subnets(ctx: &Ctx, name: &str) -> bool {
    let router = ctx.config.cluster_router.as_str();
    ctx.stores.subnets.state().iter().any(|s| {
        s.name_any() != name
            && s.metadata.deletion_timestamp.is_none()
            && (s.spec.vpc.is_empty() || s.spec.vpc == router)
            && crate::u2o::active(&s.spec)
    })
}

/// Removes a subnet's NB rows and its IPAM book.
async fn release(ctx: &Ctx, name: &str, vpc: Option<&str>) -> Result<(), Error> {
    let router = vpc
        .filter(|v| !v.is_empty())
        .unwrap_or(&ctx.config.cluster_router)
        .to_string();
    let learn_from_arp = other_u2o_subnets(ctx, name);
    let default_vpc = router == ctx.config.cluster_router;
    ctx.apply(&format!("delete subnet {name}"), |plan| {
        objects::delete_overlay_subnet(plan, name, &router)?;
        if default_vpc && plan.lookup(LogicalRouter::TABLE, &router).is_some() {
            objects::router_arp_learning(plan, &router, learn_from_arp)?;
        }
        Ok(())
    })
    .await?;
    crate::ipcr::delete(ctx, &kube_ovn_common::names::u2o_ip_cr(&router, name)).await?;
    ctx.ipam().delete_subnet(name);
    unlist_from_vlans(ctx, name).await?;
    Ok(())
}

/// Records the reconcile's outcome in the Ready/Validated/Error conditions (written only
/// when they change).
async fn set_conditions(
    api: &Api<Subnet>,
    s: &Subnet,
    ok: bool,
    reason: &str,
    message: &str,
) -> Result<(), Error> {
    let current = s
        .status
        .as_ref()
        .map(|st| st.conditions.clone())
        .unwrap_or_default();
    let mut conds = current.clone();
    conditions::set_outcome(
        &mut conds,
        ok,
        reason,
        message,
        s.metadata.generation.unwrap_or_default(),
        jiff::Timestamp::now(),
    );
    conditions::write(api, &s.name_any(), &current, &conds).await?;
    Ok(())
}

async fn update_counters(
    api: &Api<Subnet>,
    ctx: &Ctx,
    s: &Subnet,
    activate: &str,
) -> Result<(), Error> {
    let name = s.name_any();
    let (v4, v6) = {
        let ipam = ctx.ipam();
        let sub = ipam.subnet(&name);
        (
            sub.and_then(|x| x.usage(Family::V4)).unwrap_or_default(),
            sub.and_then(|x| x.usage(Family::V6)).unwrap_or_default(),
        )
    };
    let current = s.status.clone().unwrap_or_default();
    let num = count;
    let counters = json!({
        "v4availableIPs": num(v4.available), "v4usingIPs": num(v4.using),
        "v4availableIPrange": v4.available_range, "v4usingIPrange": v4.using_range,
        "v6availableIPs": num(v6.available), "v6usingIPs": num(v6.using),
        "v6availableIPrange": v6.available_range, "v6usingIPrange": v6.using_range,
        "activateGateway": activate,
    });
    let current_json = serde_json::to_value(&current).unwrap_or_default();
    let counters_same = counters
        .as_object()
        .is_some_and(|m| m.iter().all(|(k, v)| current_json.get(k) == Some(v)));
    if !counters_same {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": counters})),
        )
        .await?;
    }
    Ok(())
}

/// Counters are bare JSON integers (upstream's big.Int); beyond u64 (IPv6 subnets wider than
/// /64) they can only be carried as floats without arbitrary-precision JSON.
fn count(n: u128) -> serde_json::Value {
    match u64::try_from(n) {
        Ok(v) => json!(v),
        Err(_) => json!(n as f64),
    }
}
