//! The NB rows upstream kube-ovn-controller owns, with its names, columns and `external_ids`,
//! so a cluster it built is adopted without a single changed row. Each function states the
//! desired rows of one Kubernetes-level object into a [`Plan`](crate::Plan); the plan writes
//! only what differs. Rows are built with the column constants of the generated models
//! (`ovsdb::models::nb`), so a column a table lacks does not compile.
//!
//! Deliberate differences from upstream, all for stock OVN (≥ 23.03) and for zero churn:
//! * ACLs carry no `tier` (the 23.03 schema has no such column; upstream's value 2 is kept on
//!   adopted rows because we never write the column).
//! * Security groups: no `tier` either, so upstream's per-tier copies of the deny-all drops
//!   and base allows (equal but for the tier) are one ACL each.
//! * Session load balancers are created with `selection_fields = ["ip_src"]`: 23.03 rejects
//!   upstream's `ipv6_src`. Existing load balancers keep theirs (upstream writes it only at
//!   insert too).
//! * Policies whose action or next hops differ are updated in place instead of deleted and
//!   re-created; ACLs are converged instead of deleted and re-created on every reconcile.

mod acl;
mod anp;
mod cnp;
mod gateway;
mod global;
mod lb;
pub(crate) mod names;
mod netpol;
mod node;
mod ovn_nat;
mod pod;
pub(crate) mod rows;
mod sg;
mod subnet;
mod u2o;
mod vip;
mod vpc;

pub use acl::{subnet_acls, switch_acls, SwitchAcl};
pub use anp::{
    admin_address_set, admin_policies, admin_port_group, delete_admin_policy, delete_marked,
    prune_admin_address_sets, AdminAddressSet, AdminKind,
};
pub use cnp::{cnp_address_set, cnp_port_group, cnp_rows, delete_cnp, prune_cnp_address_sets};
pub use gateway::{
    centralized_gateway, distributed_gateway, node_gateways, DistributedSubnet, NodeJoin,
    GATEWAY_POLICY_PRIORITY,
};
pub use global::{nb_global, GlobalSettings, COMPAT_VERSION};
pub use lb::{
    ensure_health_check, has_ip_port_mappings, lb_vips, remove_health_check,
    remove_ip_port_mappings, remove_vips, set_ip_port_mappings, set_vips, vip_backends, vip_host,
    vips_of_host, HEALTH_CHECK_OPTIONS, LOCAL_EXTERNAL_VIP_PREFIX,
};
pub use names::{node_lsp, node_of_lsp, node_pg, pg_name, pod_lsp, subnet_node_pg};
pub use netpol::{
    acl_meter, acl_name, delete_np, np_address_set, np_address_set_members, np_port_group,
    np_port_group_members, np_port_groups, pg_acls, prune_np_address_sets, NpAddressSet, PgAcl,
};
pub use node::{delete_node, node, NodeObjects, NODE_POLICY_PRIORITY};
pub use ovn_nat::{
    bare_port, delete_dnat_lb, delete_nat_rule, dnat_lb, external_gateway_port, external_switch,
    gateway_chassis_name, nat_rule, nat_source_routes, remove_external_gateway_port, remove_port,
    remove_router_port, DnatLb, ExternalPort, NatRule, GATEWAY_CHASSIS_MAX_PRIORITY, NAT_FIP,
    NAT_SNAT,
};
pub use pod::{delete_port, is_routing_pg, pod_port, port_memberships, PodPort};
pub use rows::{key, map, string_map, VENDOR};
pub use sg::{
    delete_sg, deny_all_acls, deny_all_group, deny_all_members, ensure_sg_address_sets,
    port_security_groups, sg_acls, sg_address_set, sg_address_sets, sg_groups_present, sg_members,
    sg_pg, sg_port_group, sg_port_groups, SgMembers, ASSOCIATED_PREFIX, DEFAULT_SG, DENY_ALL_SG,
    SGS_KEY, SG_DROP_PRIORITY, SG_KEY,
};
pub use subnet::{
    delete_overlay_subnet, localnet_port, localnet_port_name, overlay_subnet, random_mac,
    underlay_subnet, Localnet, OverlaySubnet, SUBNET_POLICY_PRIORITY,
};
pub use u2o::{
    remove_u2o_rows, u2o_exclude_set, u2o_subnet, NoLb, NoLbNode, U2o,
    U2O_PHYSICAL_GATEWAY_POLICY_PRIORITY, U2O_SAME_SUBNET_POLICY_PRIORITY,
    U2O_SUBNET_POLICY_PRIORITY,
};
pub use vip::{router_port_mac, vip_port, virtual_port, VipPort};
pub use vpc::{
    custom_vpc_router, default_routes, delete_vpc_peer_port, delete_vpc_router, ensure_u2o_sets,
    router_arp_learning, u2o_overlay_cidrs, vpc_load_balancers, vpc_peer_port, vpc_policy_routes,
    vpc_router, vpc_static_routes, VpcLoadBalancers, VpcPolicyRoute, VpcStaticRoute,
};

/// Helpers of the object modules' unit tests: plans against an empty NB, read as JSON.
#[cfg(test)]
pub(crate) mod testing {
    use ovsdb::CacheData;
    use serde_json::Value;

    use crate::Plan;

    /// An empty replica of every table kube-ovn monitors.
    pub fn empty_nb() -> CacheData {
        let tables: Vec<String> = crate::MONITORED_TABLES
            .iter()
            .map(|t| t.to_string())
            .collect();
        let keys: Vec<String> = crate::INDEXED_EXTERNAL_IDS
            .iter()
            .map(|k| k.to_string())
            .collect();
        CacheData::new(&tables, &keys)
    }

    /// The plan's operations as sent.
    pub fn ops(plan: Plan<'_>) -> Vec<Value> {
        plan.into_transaction().to_params().as_array().unwrap()[1..].to_vec()
    }

    /// The insert of row `name` into `table`.
    pub fn inserted<'a>(ops: &'a [Value], table: &str, name: &str) -> &'a Value {
        ops.iter()
            .find(|o| o["op"] == "insert" && o["table"] == table && o["row"]["name"] == name)
            .unwrap_or_else(|| panic!("no insert of {table} {name} in {ops:#?}"))
    }
}
