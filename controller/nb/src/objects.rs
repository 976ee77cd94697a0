//! The NB rows upstream kube-ovn-controller owns, with its names, columns and `external_ids`,
//! so a cluster it built is adopted without a single changed row. Each function states the
//! desired rows of one Kubernetes-level object into a [`Plan`]; the plan writes only what
//! differs.
//!
//! Deliberate differences from upstream, all for stock OVN (≥ 23.03) and for zero churn:
//! * ACLs carry no `tier` (the 23.03 schema has no such column; upstream's value 2 is kept on
//!   adopted rows because we never write the column).
//! * Session load balancers are created with `selection_fields = ["ip_src"]`: 23.03 rejects
//!   upstream's `ipv6_src`. Existing load balancers keep theirs (upstream writes it only at
//!   insert too).
//! * Policies whose action or next hops differ are updated in place instead of deleted and
//!   re-created; ACLs are converged instead of deleted and re-created on every reconcile.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ovsdb::{Atom, Datum, Row};

use crate::plan::{Parent, Plan, PlanError, RowRef};

/// `external_ids:vendor` of every row kube-ovn owns.
pub const VENDOR: &str = "kube-ovn";
/// The upstream release whose NB layout this controller writes (`NB_Global
/// external_ids:kube-ovn-version`; upstream re-runs its pre-1.15 migrations below that).
pub const COMPAT_VERSION: &str = "v1.17.0";
/// Priority of the per-subnet "allow" policy.
pub const SUBNET_POLICY_PRIORITY: i64 = 31000;
/// Priority of the per-node "reroute to the node" policy.
pub const NODE_POLICY_PRIORITY: i64 = 30000;
/// Priority of the gateway policies (distributed per node, centralized per subnet).
pub const GATEWAY_POLICY_PRIORITY: i64 = 29000;

const LS: &str = "Logical_Switch";
const LSP: &str = "Logical_Switch_Port";
const LR: &str = "Logical_Router";
const LRP: &str = "Logical_Router_Port";
const POLICY: &str = "Logical_Router_Policy";
const ROUTE: &str = "Logical_Router_Static_Route";
const LB: &str = "Load_Balancer";
const PG: &str = "Port_Group";
const AS: &str = "Address_Set";
const ACL: &str = "ACL";

/// A string map column.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Datum {
    Datum::map(
        pairs
            .into_iter()
            .map(|(k, v)| (Atom::from(k), Atom::from(v))),
    )
}

fn owned_map(pairs: &BTreeMap<String, String>) -> Datum {
    Datum::map(
        pairs
            .iter()
            .map(|(k, v)| (Atom::from(k.as_str()), Atom::from(v.as_str()))),
    )
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Datum {
    Datum::set(items.into_iter().map(|s| Atom::from(s.into())))
}

fn row(pairs: Vec<(ovsdb::Column, Datum)>) -> Row {
    pairs.into_iter().collect()
}

/// The string map in `column` of a cached row.
pub fn string_map(r: &Row, column: &str) -> BTreeMap<String, String> {
    r.get(column)
        .and_then(Datum::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn ext<'r>(r: &'r Row, key: &str) -> Option<&'r str> {
    // A scan of the (small) map, copying nothing: planning calls this for every row of busy
    // tables (a router's policies, the port groups).
    let (_, v) = r
        .get("external_ids")?
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))?;
    v.as_str()
}

/// Port group names cannot contain `-` in OVN match expressions: upstream replaces every `-`
/// with `.` (`node-a` → `node.a`).
pub fn pg_name(raw: &str) -> String {
    raw.replace('-', ".")
}

/// The node port group `node.<node>`.
pub fn node_pg(node: &str) -> String {
    pg_name(&format!("node-{node}"))
}

/// The per-subnet-per-node port group of distributed gateways.
pub fn subnet_node_pg(subnet: &str, node: &str) -> String {
    pg_name(&format!("{subnet}.{node}"))
}

/// The logical switch port of a node on the join switch.
pub fn node_lsp(node: &str) -> String {
    format!("node-{node}")
}

/// The logical switch port of a pod's NIC (`<pod>.<ns>`, or `<pod>.<ns>.<provider>`).
pub fn pod_lsp(pod: &str, namespace: &str, provider: &str) -> String {
    if provider == "ovn" || provider.is_empty() {
        format!("{pod}.{namespace}")
    } else {
        format!("{pod}.{namespace}.{provider}")
    }
}

fn family_prefix(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "ip4"
    } else {
        "ip6"
    }
}

fn cidr_prefix(cidr: &str) -> &'static str {
    if cidr.contains(':') {
        "ip6"
    } else {
        "ip4"
    }
}

/// Cluster-wide NB_Global settings (flags of the same names).
#[derive(Debug, Clone, Default)]
pub struct GlobalSettings {
    /// `--ls-dnat-mod-dl-dst`.
    pub ls_dnat_mod_dl_dst: bool,
    /// `--ls-ct-skip-dst-lport-ips`.
    pub ls_ct_skip_dst_lport_ips: bool,
    /// `--node-local-dns-ip`, comma-separated (empty: key removed).
    pub node_local_dns_ip: String,
    /// `--skip-conntrack-dst-cidrs` (empty: key removed).
    pub skip_conntrack_dst_cidrs: String,
    /// `--enable-ovn-ipsec`.
    pub ipsec: bool,
}

/// NB_Global: our option keys merged into whatever northd and the DB scripts keep there.
pub fn nb_global(plan: &mut Plan<'_>, s: &GlobalSettings) {
    let Some((uuid, current)) = plan
        .cache()
        .table("NB_Global")
        .and_then(|t| t.iter().next().map(|(u, r)| (*u, (**r).clone())))
    else {
        return; // northd creates the row; the next start-up pass fills it
    };
    let mut options = string_map(&current, "options");
    options.insert(
        "ls_dnat_mod_dl_dst".into(),
        s.ls_dnat_mod_dl_dst.to_string(),
    );
    options.insert("use_ct_inv_match".into(), "false".into());
    options.insert(
        "ls_ct_skip_dst_lport_ips".into(),
        s.ls_ct_skip_dst_lport_ips.to_string(),
    );
    for (key, value) in [
        ("node_local_dns_ip", &s.node_local_dns_ip),
        ("skip_conntrack_dst_cidrs", &s.skip_conntrack_dst_cidrs),
    ] {
        if value.is_empty() {
            options.remove(key);
        } else {
            options.insert(key.into(), value.clone());
        }
    }
    let mut ids = string_map(&current, "external_ids");
    ids.insert("kube-ovn-version".into(), COMPAT_VERSION.into());
    plan.update_row(
        "NB_Global",
        &RowRef::Existing(uuid),
        row(vec![
            ("options", owned_map(&options)),
            ("external_ids", owned_map(&ids)),
            ("ipsec", Datum::from(s.ipsec)),
        ]),
    );
}

/// The default VPC's router (`ovn-cluster`), options exactly as upstream's VPC worker sets them.
pub fn vpc_router(plan: &mut Plan<'_>, router: &str) {
    let mut desired = row(vec![(
        "options",
        map([
            ("mac_binding_age_threshold", "300"),
            ("dynamic_neigh_routers", "true"),
            ("always_learn_from_arp_request", "false"),
        ]),
    )]);
    if plan.lookup(LR, router).is_none() {
        desired.insert("external_ids", map([("vendor", VENDOR)]));
    }
    plan.ensure_root(LR, router, desired);
}

/// The six load balancers of a VPC.
#[derive(Debug, Clone)]
pub struct VpcLoadBalancers {
    /// TCP.
    pub tcp: String,
    /// TCP with ClientIP affinity.
    pub tcp_session: String,
    /// UDP.
    pub udp: String,
    /// UDP with ClientIP affinity.
    pub udp_session: String,
    /// SCTP.
    pub sctp: String,
    /// SCTP with ClientIP affinity.
    pub sctp_session: String,
}

impl VpcLoadBalancers {
    /// Upstream's names for a non-default VPC.
    pub fn for_custom_vpc(vpc: &str) -> VpcLoadBalancers {
        VpcLoadBalancers {
            tcp: format!("vpc-{vpc}-tcp-load"),
            tcp_session: format!("vpc-{vpc}-tcp-sess-load"),
            udp: format!("vpc-{vpc}-udp-load"),
            udp_session: format!("vpc-{vpc}-udp-sess-load"),
            sctp: format!("vpc-{vpc}-sctp-load"),
            sctp_session: format!("vpc-{vpc}-sctp-sess-load"),
        }
    }

    /// (name, protocol, session) of each.
    pub fn all(&self) -> [(&str, &'static str, bool); 6] {
        [
            (&self.tcp, "tcp", false),
            (&self.tcp_session, "tcp", true),
            (&self.udp, "udp", false),
            (&self.udp_session, "udp", true),
            (&self.sctp, "sctp", false),
            (&self.sctp_session, "sctp", true),
        ]
    }
}

/// Creates a VPC's load balancers if absent and keeps the option keys upstream manages.
pub fn vpc_load_balancers(plan: &mut Plan<'_>, lbs: &VpcLoadBalancers, prefer_local: bool) {
    for (name, protocol, session) in lbs.all() {
        let current = match plan.lookup(LB, name) {
            Some(RowRef::Existing(u)) => plan
                .cache()
                .table(LB)
                .and_then(|t| t.get(&u))
                .map(|r| (**r).clone()),
            _ => None,
        };
        let mut options = current
            .as_ref()
            .map(|r| string_map(r, "options"))
            .unwrap_or_default();
        options.insert("prefer_local_backend".into(), prefer_local.to_string());
        if session {
            options.insert("affinity_timeout".into(), "10800".into());
        } else if protocol == "udp" {
            options.insert("ct_flush".into(), "true".into());
        }
        let mut desired = row(vec![("options", owned_map(&options))]);
        if current.is_none() {
            desired.insert("protocol", Datum::from(protocol));
            desired.insert("external_ids", map([("vendor", VENDOR)]));
            if session {
                desired.insert("selection_fields", strings(["ip_src"]));
            }
        }
        plan.ensure_root(LB, name, desired);
    }
}

/// The VPC's default route(s) via the join gateway: `0.0.0.0/0` (and `::/0`), `dst-ip`, main
/// route table. Other vendor default routes are removed; foreign and user routes stay.
pub fn default_routes(
    plan: &mut Plan<'_>,
    router: &str,
    join_gateways: &[IpAddr],
) -> Result<(), PlanError> {
    let desired: Vec<Row> = join_gateways
        .iter()
        .map(|gw| {
            row(vec![
                (
                    "ip_prefix",
                    Datum::from(if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" }),
                ),
                ("nexthop", Datum::from(gw.to_string())),
                ("policy", Datum::from("dst-ip")),
                ("route_table", Datum::from("")),
                ("external_ids", map([("vendor", VENDOR)])),
            ])
        })
        .collect();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: router,
            column: "static_routes",
        },
        ROUTE,
        &["ip_prefix", "nexthop", "route_table"],
        desired,
        None,
        |r| {
            ext(r, "vendor") == Some(VENDOR)
                && matches!(
                    r.get("ip_prefix")
                        .and_then(Datum::as_atom)
                        .and_then(Atom::as_str),
                    Some("0.0.0.0/0" | "::/0")
                )
                && r.get("route_table")
                    .and_then(Datum::as_atom)
                    .and_then(Atom::as_str)
                    .unwrap_or("")
                    .is_empty()
        },
    )
}

/// An overlay subnet of a VPC as the NB sees it.
#[derive(Debug, Clone)]
pub struct OverlaySubnet<'a> {
    /// Subnet (and logical switch) name.
    pub name: &'a str,
    /// The VPC's router.
    pub router: &'a str,
    /// CIDRs, v4 first.
    pub cidrs: Vec<String>,
    /// Gateways, paired with `cidrs`.
    pub gateways: Vec<String>,
    /// Attach the VPC's load balancers (never for join).
    pub load_balancers: Option<&'a VpcLoadBalancers>,
    /// The LB names that must not stay attached (when `enableLb` is off).
    pub detach_load_balancers: Option<&'a VpcLoadBalancers>,
    /// `spec.routeTable` (LRP `options:route_table`).
    pub route_table: &'a str,
}

/// The switch, its router patch ports and the 31000 allow policy of an overlay subnet.
pub fn overlay_subnet(plan: &mut Plan<'_>, s: &OverlaySubnet<'_>) -> Result<(), PlanError> {
    let mut ls = Row::new();
    if plan.lookup(LS, s.name).is_none() {
        ls.insert("external_ids", map([("vendor", VENDOR)]));
    }
    plan.ensure_root(LS, s.name, ls);

    let lsp = format!("{}-{}", s.name, s.router);
    let lrp = format!("{}-{}", s.router, s.name);
    plan.ensure_named_child(
        Parent {
            table: LS,
            name: s.name,
            column: "ports",
        },
        LSP,
        &lsp,
        row(vec![
            ("type", Datum::from("router")),
            ("addresses", strings(["router"])),
            ("options", map([("router-port", lrp.as_str())])),
            ("external_ids", map([("ls", s.name), ("vendor", VENDOR)])),
        ]),
    )?;
    let networks: Vec<String> = s
        .gateways
        .iter()
        .zip(&s.cidrs)
        .map(|(gw, cidr)| format!("{gw}/{}", cidr.rsplit('/').next().unwrap_or("")))
        .collect();
    let mut lrp_row = row(vec![
        ("networks", strings(networks)),
        ("external_ids", map([("lr", s.router), ("vendor", VENDOR)])),
    ]);
    if plan.lookup(LRP, &lrp).is_none() {
        lrp_row.insert("mac", Datum::from(random_mac()));
    }
    if !s.route_table.is_empty() {
        lrp_row.insert("options", map([("route_table", s.route_table)]));
    }
    plan.ensure_named_child(
        Parent {
            table: LR,
            name: s.router,
            column: "ports",
        },
        LRP,
        &lrp,
        lrp_row,
    )?;

    let policies: Vec<Row> = s
        .cidrs
        .iter()
        .map(|cidr| {
            row(vec![
                ("priority", Datum::from(SUBNET_POLICY_PRIORITY)),
                (
                    "match",
                    Datum::from(format!("{}.dst == {cidr}", cidr_prefix(cidr))),
                ),
                ("action", Datum::from("allow")),
                (
                    "external_ids",
                    map([("subnet", s.name), ("vendor", VENDOR)]),
                ),
            ])
        })
        .collect();
    let name = s.name.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: s.router,
            column: "policies",
        },
        POLICY,
        &["priority", "match"],
        policies,
        Some(("subnet", s.name)),
        move |r| {
            priority(r) == Some(SUBNET_POLICY_PRIORITY)
                && ext(r, "vendor") == Some(VENDOR)
                && ext(r, "subnet") == Some(name.as_str())
        },
    )?;

    let uuids = |lbs: &VpcLoadBalancers, plan: &Plan<'_>| -> Vec<Atom> {
        lbs.all()
            .iter()
            .filter_map(|(n, _, _)| plan.lookup(LB, n))
            .map(|r| r.atom())
            .collect()
    };
    if let Some(lbs) = s.load_balancers {
        let present = uuids(lbs, plan);
        plan.set_members(LS, s.name, "load_balancer", &present, &[])?;
    }
    if let Some(lbs) = s.detach_load_balancers {
        let absent = uuids(lbs, plan);
        plan.set_members(LS, s.name, "load_balancer", &[], &absent)?;
    }
    Ok(())
}

fn priority(r: &Row) -> Option<i64> {
    r.get("priority")
        .and_then(Datum::as_atom)
        .and_then(Atom::as_i64)
}

/// Removes an overlay subnet: its policies (31000 and 29000), per-node port groups, ACLs, the
/// switch and the router port.
pub fn delete_overlay_subnet(plan: &mut Plan<'_>, subnet: &str, router: &str) {
    let parent = Parent {
        table: LR,
        name: router,
        column: "policies",
    };
    for u in plan.children(&parent) {
        let owned = plan
            .cache()
            .table(POLICY)
            .and_then(|t| t.get(&u))
            .is_some_and(|r| ext(r, "vendor") == Some(VENDOR) && ext(r, "subnet") == Some(subnet));
        if owned {
            plan.remove_child(LR, "policies", u);
        }
    }
    let pgs: Vec<ovsdb::Uuid> = plan
        .cache()
        .table(PG)
        .into_iter()
        .flat_map(|t| t.iter())
        .filter(|(_, r)| ext(r, "vendor") == Some(VENDOR) && ext(r, "subnet") == Some(subnet))
        .map(|(u, _)| *u)
        .collect();
    for u in pgs {
        plan.delete_root_uuid(PG, u);
    }
    if let Some(RowRef::Existing(u)) = plan.lookup(LRP, &format!("{router}-{subnet}")) {
        plan.remove_child(LR, "ports", u);
    }
    plan.delete_root(LS, subnet);
}

/// Per-node data the gateway policies need.
#[derive(Debug, Clone)]
pub struct NodeJoin {
    /// Node name.
    pub node: String,
    /// The node's join addresses.
    pub join_ips: Vec<IpAddr>,
}

/// A distributed subnet as the per-node gateway rows need it.
#[derive(Debug, Clone)]
pub struct DistributedSubnet {
    /// Subnet name.
    pub name: String,
    /// Its address families (`ip4`, `ip6`).
    pub families: Vec<&'static str>,
}

/// The port group `<subnet>.<node>` and the 29000 policies rerouting the subnet's pods on that
/// node to the node's join address.
fn gateway_rows(plan: &mut Plan<'_>, subnet: &str, families: &[&str], n: &NodeJoin) -> Vec<Row> {
    let pg = subnet_node_pg(subnet, &n.node);
    let np = format!("{subnet}/{}", n.node);
    plan.ensure_root(
        PG,
        &pg,
        row(vec![(
            "external_ids",
            map([
                ("subnet", subnet),
                ("node", n.node.as_str()),
                ("np", np.as_str()),
                ("vendor", VENDOR),
            ]),
        )]),
    );
    let mut desired = Vec::new();
    for ip in &n.join_ips {
        let fam = family_prefix(ip);
        if !families.contains(&fam) {
            continue;
        }
        let suffix = if ip.is_ipv4() { "ip4" } else { "ip6" };
        desired.push(row(vec![
            ("priority", Datum::from(GATEWAY_POLICY_PRIORITY)),
            ("match", Datum::from(format!("{fam}.src == ${pg}_{suffix}"))),
            ("action", Datum::from("reroute")),
            ("nexthops", strings([ip.to_string()])),
            (
                "external_ids",
                map([
                    ("node", n.node.as_str()),
                    ("subnet", subnet),
                    ("vendor", VENDOR),
                ]),
            ),
        ]));
    }
    desired
}

/// Distributed gateway: per node, the port group `<subnet>.<node>` and a 29000 policy rerouting
/// the subnet's pods on that node to the node's join address. Stale ones (nodes gone, or the
/// subnet now centralized) are removed.
pub fn distributed_gateway(
    plan: &mut Plan<'_>,
    router: &str,
    subnet: &str,
    families: &[&'static str],
    nodes: &[NodeJoin],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for n in nodes {
        desired.extend(gateway_rows(plan, subnet, families, n));
    }
    let keep: Vec<String> = nodes
        .iter()
        .map(|n| subnet_node_pg(subnet, &n.node))
        .collect();
    delete_subnet_node_pgs(plan, ("subnet", subnet), &keep);
    let subnet_owned = subnet.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: router,
            column: "policies",
        },
        POLICY,
        &["priority", "match"],
        desired,
        Some(("subnet", subnet)),
        move |r| {
            priority(r) == Some(GATEWAY_POLICY_PRIORITY)
                && ext(r, "vendor") == Some(VENDOR)
                && ext(r, "subnet") == Some(subnet_owned.as_str())
        },
    )
}

/// One node's side of every distributed subnet's gateway (what a node joining or changing its
/// join address needs), in one plan instead of one re-plan of every subnet: its port groups
/// `<subnet>.<node>` and 29000 policies; the node's ones of subnets not listed go.
pub fn node_gateways(
    plan: &mut Plan<'_>,
    router: &str,
    node: &NodeJoin,
    subnets: &[DistributedSubnet],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for s in subnets {
        desired.extend(gateway_rows(plan, &s.name, &s.families, node));
    }
    let keep: Vec<String> = subnets
        .iter()
        .map(|s| subnet_node_pg(&s.name, &node.node))
        .collect();
    delete_subnet_node_pgs(plan, ("node", &node.node), &keep);
    let owner = node.node.clone();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: router,
            column: "policies",
        },
        POLICY,
        &["priority", "match"],
        desired,
        Some(("node", node.node.as_str())),
        move |r| {
            priority(r) == Some(GATEWAY_POLICY_PRIORITY)
                && ext(r, "vendor") == Some(VENDOR)
                && ext(r, "node") == Some(owner.as_str())
                && ext(r, "subnet").is_some()
        },
    )
}

/// The rows of `table` with `external_ids:key=value`: through the replica's index when it has
/// one for `key` (a plan then reads a subnet's or node's hundred port groups, not the ten
/// thousand of the cluster), else by a scan.
fn tagged<'c>(
    cache: &'c ovsdb::CacheData,
    table: &str,
    key: &str,
    value: &str,
) -> Vec<(ovsdb::Uuid, &'c Arc<Row>)> {
    let Some(t) = cache.table(table) else {
        return Vec::new();
    };
    if t.indexes_external_id(key) {
        t.by_external_id(key, value).map(|(u, r)| (*u, r)).collect()
    } else {
        t.iter()
            .filter(|(_, r)| ext(r, key) == Some(value))
            .map(|(u, r)| (*u, r))
            .collect()
    }
}

/// Deletes the per-subnet-node port groups (`<subnet>.<node>`) tagged `external_ids:key=value`
/// — one subnet's or one node's — except those named in `keep`.
fn delete_subnet_node_pgs(plan: &mut Plan<'_>, (key, value): (&str, &str), keep: &[String]) {
    let stale: Vec<ovsdb::Uuid> = tagged(plan.cache(), PG, key, value)
        .into_iter()
        .filter(|(_, r)| {
            ext(r, "vendor") == Some(VENDOR)
                && ext(r, "subnet").is_some()
                && ext(r, "node").is_some()
                && !r
                    .get("name")
                    .and_then(Datum::as_atom)
                    .and_then(Atom::as_str)
                    .is_some_and(|n| keep.iter().any(|k| k == n))
        })
        .map(|(u, _)| u)
        .collect();
    for u in stale {
        plan.delete_root_uuid(PG, u);
    }
}

/// Centralized gateway: one 29000 policy per CIDR rerouting the subnet to the gateway node(s)'
/// join addresses, with upstream's `<node>: <ip>` external_ids. Distributed leftovers go.
pub fn centralized_gateway(
    plan: &mut Plan<'_>,
    router: &str,
    subnet: &str,
    cidrs: &[String],
    gateways: &[NodeJoin],
) -> Result<(), PlanError> {
    let mut desired = Vec::new();
    for cidr in cidrs {
        let fam = cidr_prefix(cidr);
        let hops: Vec<(String, String)> = gateways
            .iter()
            .flat_map(|g| {
                g.join_ips
                    .iter()
                    .filter(|ip| family_prefix(ip) == fam)
                    .map(|ip| (g.node.clone(), ip.to_string()))
            })
            .collect();
        if hops.is_empty() {
            continue;
        }
        let mut ids: BTreeMap<String, String> = hops.iter().cloned().collect();
        ids.insert("subnet".into(), subnet.into());
        ids.insert("vendor".into(), VENDOR.into());
        desired.push(row(vec![
            ("priority", Datum::from(GATEWAY_POLICY_PRIORITY)),
            ("match", Datum::from(format!("{fam}.src == {cidr}"))),
            ("action", Datum::from("reroute")),
            ("nexthops", strings(hops.into_iter().map(|(_, ip)| ip))),
            ("external_ids", owned_map(&ids)),
        ]));
    }
    // The per-node groups go; the policy sync below replaces the distributed policies (same
    // priority and subnet) with the centralized ones.
    delete_subnet_node_pgs(plan, ("subnet", subnet), &[]);
    let subnet_owned = subnet.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: router,
            column: "policies",
        },
        POLICY,
        &["priority", "match"],
        desired,
        Some(("subnet", subnet)),
        move |r| {
            priority(r) == Some(GATEWAY_POLICY_PRIORITY)
                && ext(r, "vendor") == Some(VENDOR)
                && ext(r, "subnet") == Some(subnet_owned.as_str())
        },
    )
}

/// An ACL on a logical switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchAcl {
    /// `from-lport` or `to-lport`.
    pub direction: String,
    /// Priority.
    pub priority: i64,
    /// Match expression.
    pub r#match: String,
    /// allow, allow-related, drop, reject…
    pub action: String,
    /// Extra external_ids (e.g. `subnet`).
    pub extra_ids: Vec<(String, String)>,
    /// Name, logged drops.
    pub log_name: Option<String>,
}

/// The ACLs upstream derives from a subnet's `private`, `allowSubnets`, `acls` and
/// `allowEWTraffic` fields.
pub fn subnet_acls(
    subnet: &str,
    cidrs: &[String],
    join_cidrs: &[String],
    private: bool,
    allow_subnets: &[String],
    user: &[(String, i64, String, String)],
    allow_ew: bool,
) -> Vec<SwitchAcl> {
    let acl = |direction: &str, priority: i64, m: String, action: &str| SwitchAcl {
        direction: direction.into(),
        priority,
        r#match: m,
        action: action.into(),
        extra_ids: Vec::new(),
        log_name: None,
    };
    let mut out = Vec::new();
    if private {
        let mut drop = acl("to-lport", 1000, "ip".into(), "drop");
        drop.log_name = Some(if subnet.len() > 63 {
            format!("{}...", &subnet[..60])
        } else {
            subnet.to_string()
        });
        out.push(drop);
        for cidr in cidrs {
            let f = cidr_prefix(cidr);
            out.push(acl(
                "to-lport",
                1001,
                format!("{f}.src == {cidr} && {f}.dst == {cidr}"),
                "allow-related",
            ));
            for j in join_cidrs.iter().filter(|j| cidr_prefix(j) == f) {
                out.push(acl(
                    "to-lport",
                    3000,
                    format!("{f}.src == {j}"),
                    "allow-related",
                ));
            }
            for a in allow_subnets
                .iter()
                .map(|a| a.trim())
                .filter(|a| cidr_prefix(a) == f && !a.is_empty())
            {
                out.push(acl(
                    "to-lport",
                    1001,
                    format!("({f}.src == {cidr} && {f}.dst == {a}) || ({f}.src == {a} && {f}.dst == {cidr})"),
                    "allow-related",
                ));
            }
        }
    }
    if !user.is_empty() {
        let tag = |mut a: SwitchAcl| {
            a.extra_ids.push(("subnet".into(), subnet.into()));
            a
        };
        if allow_ew {
            for cidr in cidrs {
                let f = cidr_prefix(cidr);
                for dir in ["to-lport", "from-lport"] {
                    out.push(tag(acl(
                        dir,
                        1900,
                        format!("{f}.src == {cidr} && {f}.dst == {cidr}"),
                        "allow",
                    )));
                }
            }
        }
        for (direction, priority, m, action) in user {
            out.push(tag(acl(direction, *priority, m.clone(), action)));
        }
    }
    out
}

/// Converges the ACLs kube-ovn owns on a logical switch (`external_ids:parent=<ls>`).
pub fn switch_acls(plan: &mut Plan<'_>, ls: &str, acls: &[SwitchAcl]) -> Result<(), PlanError> {
    let desired: Vec<Row> = acls
        .iter()
        .map(|a| {
            let mut ids: BTreeMap<String, String> = [
                ("parent".to_string(), ls.to_string()),
                ("vendor".to_string(), VENDOR.to_string()),
            ]
            .into();
            ids.extend(a.extra_ids.iter().cloned());
            let mut r = row(vec![
                ("direction", Datum::from(a.direction.as_str())),
                ("priority", Datum::from(a.priority)),
                ("match", Datum::from(a.r#match.as_str())),
                ("action", Datum::from(a.action.as_str())),
                ("external_ids", owned_map(&ids)),
            ]);
            if let Some(name) = &a.log_name {
                r.insert("name", Datum::from(name.as_str()));
                r.insert("log", Datum::from(true));
                r.insert("severity", Datum::from("warning"));
            }
            r
        })
        .collect();
    let owner = ls.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LS,
            name: ls,
            column: "acls",
        },
        ACL,
        &["direction", "priority", "match", "action"],
        desired,
        None,
        move |r| ext(r, "vendor") == Some(VENDOR) && ext(r, "parent") == Some(owner.as_str()),
    )
}

/// The VPC-wide address sets of overlay CIDRs upstream keeps for U2O
/// (`<vpc>.u2o_overlay_cidrs.ip4|ip6`, dots for dashes).
pub fn u2o_overlay_cidrs(plan: &mut Plan<'_>, vpc: &str, cidrs: &[String]) {
    for fam in ["ip4", "ip6"] {
        let name = format!("{}.u2o_overlay_cidrs.{fam}", pg_name(vpc));
        let addrs: Vec<String> = cidrs
            .iter()
            .filter(|c| cidr_prefix(c) == fam)
            .cloned()
            .collect();
        u2o_overlay_cidrs_one(plan, vpc, &name, addrs);
    }
}

/// Creates the U2O address sets empty when absent (at start-up, so concurrent subnet
/// reconciles only ever update them and never race to insert).
pub fn ensure_u2o_sets(plan: &mut Plan<'_>, vpc: &str) {
    for fam in ["ip4", "ip6"] {
        let name = format!("{}.u2o_overlay_cidrs.{fam}", pg_name(vpc));
        if plan.lookup(AS, &name).is_none() {
            u2o_overlay_cidrs_one(plan, vpc, &name, Vec::new());
        }
    }
}

fn u2o_overlay_cidrs_one(plan: &mut Plan<'_>, vpc: &str, name: &str, addrs: Vec<String>) {
    let mut r = row(vec![("addresses", strings(addrs))]);
    if plan.lookup(AS, name).is_none() {
        r.insert(
            "external_ids",
            map([
                ("isU2OOverlayCIDRs", "true"),
                ("vpc", vpc),
                ("vendor", VENDOR),
            ]),
        );
    }
    plan.ensure_root(AS, name, r);
}

/// What the NB holds for a node: its join port, its port group and its 30000 reroute policies.
#[derive(Debug, Clone)]
pub struct NodeObjects<'a> {
    /// Node name.
    pub node: &'a str,
    /// Join switch.
    pub join_switch: &'a str,
    /// VPC router.
    pub router: &'a str,
    /// Join port MAC.
    pub mac: &'a str,
    /// Join addresses (v4 first).
    pub join_ips: Vec<IpAddr>,
    /// The node's InternalIPs.
    pub node_ips: Vec<IpAddr>,
}

/// States a node's NB rows.
pub fn node(plan: &mut Plan<'_>, n: &NodeObjects<'_>) -> Result<(), PlanError> {
    let addresses = std::iter::once(n.mac.to_string())
        .chain(n.join_ips.iter().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    plan.ensure_named_child(
        Parent {
            table: LS,
            name: n.join_switch,
            column: "ports",
        },
        LSP,
        &node_lsp(n.node),
        row(vec![
            ("addresses", strings([addresses])),
            (
                "external_ids",
                map([("ls", n.join_switch), ("vendor", VENDOR)]),
            ),
        ]),
    )?;
    let np = format!("node/{}", n.node);
    plan.ensure_root(
        PG,
        &node_pg(n.node),
        row(vec![(
            "external_ids",
            map([("node", n.node), ("np", np.as_str()), ("vendor", VENDOR)]),
        )]),
    );
    let mut desired = Vec::new();
    for join in &n.join_ips {
        for node_ip in n
            .node_ips
            .iter()
            .filter(|ip| ip.is_ipv4() == join.is_ipv4())
        {
            let (fam, af) = if join.is_ipv4() {
                ("ip4", "4")
            } else {
                ("ip6", "6")
            };
            desired.push(row(vec![
                ("priority", Datum::from(NODE_POLICY_PRIORITY)),
                ("match", Datum::from(format!("{fam}.dst == {node_ip}"))),
                ("action", Datum::from("reroute")),
                ("nexthops", strings([join.to_string()])),
                (
                    "external_ids",
                    map([("address-family", af), ("node", n.node), ("vendor", VENDOR)]),
                ),
            ]));
        }
    }
    let owner = n.node.to_string();
    plan.sync_keyed_children(
        Parent {
            table: LR,
            name: n.router,
            column: "policies",
        },
        POLICY,
        &["priority", "match"],
        desired,
        Some(("node", n.node)),
        move |r| {
            priority(r) == Some(NODE_POLICY_PRIORITY)
                && ext(r, "vendor") == Some(VENDOR)
                && ext(r, "node") == Some(owner.as_str())
                && ext(r, "isLocalDnsCache").is_none()
        },
    )
}

/// Removes a node's NB rows: join port, node port group, its policies (30000 and distributed
/// 29000) and its per-subnet port groups.
pub fn delete_node(plan: &mut Plan<'_>, node: &str, router: &str) {
    if let Some(RowRef::Existing(u)) = plan.lookup(LSP, &node_lsp(node)) {
        plan.remove_child(LS, "ports", u);
    }
    plan.delete_root(PG, &node_pg(node));
    delete_subnet_node_pgs(plan, ("node", node), &[]);
    let parent = Parent {
        table: LR,
        name: router,
        column: "policies",
    };
    for u in plan.children(&parent) {
        let owned = plan
            .cache()
            .table(POLICY)
            .and_then(|t| t.get(&u))
            .is_some_and(|r| ext(r, "vendor") == Some(VENDOR) && ext(r, "node") == Some(node));
        if owned {
            plan.remove_child(LR, "policies", u);
        }
    }
}

/// A pod NIC's logical switch port.
#[derive(Debug, Clone)]
pub struct PodPort<'a> {
    /// Port name (`<pod>.<ns>`).
    pub name: &'a str,
    /// Logical switch (subnet).
    pub switch: &'a str,
    /// `<ns>/<pod>`.
    pub pod_key: &'a str,
    /// MAC.
    pub mac: &'a str,
    /// Addresses, v4 first.
    pub ips: Vec<IpAddr>,
    /// `ovn.kubernetes.io/port_security == "true"`.
    pub port_security: bool,
}

/// States a pod NIC's port (moved from another switch in the same transaction if needed).
pub fn pod_port(plan: &mut Plan<'_>, p: &PodPort<'_>) -> Result<RowRef, PlanError> {
    let addresses = std::iter::once(p.mac.to_string())
        .chain(p.ips.iter().map(|ip| ip.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let port_security = if p.port_security {
        strings([addresses.clone()])
    } else {
        Datum::empty_set()
    };
    plan.ensure_named_child(
        Parent {
            table: LS,
            name: p.switch,
            column: "ports",
        },
        LSP,
        p.name,
        row(vec![
            ("addresses", strings([addresses])),
            ("port_security", port_security),
            (
                "external_ids",
                map([("ls", p.switch), ("pod", p.pod_key), ("vendor", VENDOR)]),
            ),
        ]),
    )
}

/// Removes a logical switch port by name from whichever switch holds it.
pub fn delete_port(plan: &mut Plan<'_>, name: &str) {
    if let Some(RowRef::Existing(u)) = plan.lookup(LSP, name) {
        plan.remove_child(LS, "ports", u);
    }
}

/// Puts a port (going on the switch `switch`) into exactly `pgs` among the routing port groups
/// (node and per-subnet-node groups), adding and removing memberships as needed. Those groups carry
/// `external_ids:node`, so with the port's `node` known only that node's groups (found through
/// the replica's `node` index: one per subnet) are searched for it, not every group of the
/// cluster; without it every routing group is.
pub fn port_memberships(
    plan: &mut Plan<'_>,
    port: &RowRef,
    pgs: &[String],
    node: Option<&str>,
    switch: &str,
) -> Result<(), PlanError> {
    let atom = port.atom();
    if settled(plan, port, pgs, switch) {
        return Ok(());
    }
    // Only groups that hold the port can lose it; a port this plan inserts is in none yet.
    let others: Vec<String> = match (port, plan.cache().table(PG)) {
        (RowRef::Existing(_), Some(t)) => {
            let scope: Box<dyn Iterator<Item = (&ovsdb::Uuid, &Arc<Row>)>> = match node {
                Some(n) => Box::new(t.by_external_id("node", n)),
                None => Box::new(t.iter()),
            };
            // Membership first: a binary search, where the routing test compares strings.
            scope
                .filter(|(_, r)| {
                    r.get("ports")
                        .and_then(Datum::as_set)
                        .is_some_and(|s| s.contains(&atom))
                })
                .filter(|(_, r)| is_routing_pg(r))
                .filter_map(|(_, r)| {
                    r.get("name")
                        .and_then(Datum::as_atom)
                        .and_then(Atom::as_str)
                        .map(str::to_string)
                })
                .filter(|n| !pgs.contains(n))
                .collect()
        }
        _ => Vec::new(),
    };
    for pg in pgs {
        if plan.lookup(PG, pg).is_some() {
            plan.set_members(PG, pg, "ports", std::slice::from_ref(&atom), &[])?;
        }
    }
    for pg in others {
        plan.set_members(PG, &pg, "ports", &[], std::slice::from_ref(&atom))?;
    }
    Ok(())
}

/// Whether an existing port already is in every group of `pgs` and can be in no other routing
/// group: it was on `switch` already (its cached `external_ids:ls`), so it never joined another
/// subnet's groups, and its node does not change. A restart re-plans every pod, and this spares
/// each of them the search through its node's groups. Never for an empty `pgs` (leaving every
/// group must search).
fn settled(plan: &Plan<'_>, port: &RowRef, pgs: &[String], switch: &str) -> bool {
    let RowRef::Existing(u) = port else {
        return false;
    };
    let cache = plan.cache();
    let (Some(ports), Some(groups)) = (cache.table(LSP), cache.table(PG)) else {
        return false;
    };
    if pgs.is_empty() || ports.get(u).and_then(|r| ext(r, "ls")) != Some(switch) {
        return false;
    }
    let atom = port.atom();
    pgs.iter().all(|pg| {
        groups.by_name(pg).any(|(_, g)| {
            g.get("ports")
                .and_then(Datum::as_set)
                .is_some_and(|s| s.contains(&atom))
        })
    })
}

/// Whether a port group is one of kube-ovn's node or per-subnet-node groups (the ones pod
/// routing manages).
pub fn is_routing_pg(r: &Row) -> bool {
    ext(r, "vendor") == Some(VENDOR) && ext(r, "node").is_some() && ext(r, "np").is_some()
}

fn random_mac() -> String {
    let mut b = [0u8; 6];
    let seed = ovsdb::Uuid::new_v4();
    b.copy_from_slice(&seed.as_bytes()[..6]);
    b[0] = (b[0] | 0x02) & 0xfe;
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovsdb::CacheData;
    use serde_json::{json, Value};

    fn ops(plan: Plan<'_>) -> Vec<Value> {
        plan.into_transaction().to_params().as_array().unwrap()[1..].to_vec()
    }

    fn inserted<'a>(ops: &'a [Value], table: &str, name: &str) -> &'a Value {
        ops.iter()
            .find(|o| o["op"] == "insert" && o["table"] == table && o["row"]["name"] == name)
            .unwrap_or_else(|| panic!("no insert of {table} {name} in {ops:#?}"))
    }

    #[test]
    fn default_topology_rows_match_upstream() {
        let cache = CacheData::default();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, "ovn-cluster");
        overlay_subnet(
            &mut plan,
            &OverlaySubnet {
                name: "ovn-default",
                router: "ovn-cluster",
                cidrs: vec!["10.16.0.0/16".into(), "fd00:10:16::/112".into()],
                gateways: vec!["10.16.0.1".into(), "fd00:10:16::1".into()],
                load_balancers: None,
                detach_load_balancers: None,
                route_table: "",
            },
        )
        .unwrap();
        let ops = ops(plan);
        let lr = inserted(&ops, "Logical_Router", "ovn-cluster");
        assert_eq!(
            lr["row"]["external_ids"],
            json!(["map", [["vendor", "kube-ovn"]]])
        );
        let lsp = inserted(&ops, "Logical_Switch_Port", "ovn-default-ovn-cluster");
        assert_eq!(lsp["row"]["type"], "router");
        assert_eq!(lsp["row"]["addresses"], "router");
        assert_eq!(
            lsp["row"]["options"],
            json!(["map", [["router-port", "ovn-cluster-ovn-default"]]])
        );
        assert_eq!(
            lsp["row"]["external_ids"],
            json!(["map", [["ls", "ovn-default"], ["vendor", "kube-ovn"]]])
        );
        let lrp = inserted(&ops, "Logical_Router_Port", "ovn-cluster-ovn-default");
        assert_eq!(
            lrp["row"]["networks"],
            json!(["set", ["10.16.0.1/16", "fd00:10:16::1/112"]])
        );
        assert_eq!(
            lrp["row"]["external_ids"],
            json!(["map", [["lr", "ovn-cluster"], ["vendor", "kube-ovn"]]])
        );
        let mac = lrp["row"]["mac"].as_str().unwrap();
        assert_eq!(
            u8::from_str_radix(&mac[..2], 16).unwrap() & 3,
            2,
            "local unicast {mac}"
        );
        let policies: Vec<&Value> = ops
            .iter()
            .filter(|o| o["op"] == "insert" && o["table"] == "Logical_Router_Policy")
            .collect();
        let matches: Vec<&str> = policies
            .iter()
            .map(|p| p["row"]["match"].as_str().unwrap())
            .collect();
        assert_eq!(
            matches,
            vec!["ip4.dst == 10.16.0.0/16", "ip6.dst == fd00:10:16::/112"]
        );
        assert!(policies
            .iter()
            .all(|p| p["row"]["priority"] == 31000 && p["row"]["action"] == "allow"));
    }

    #[test]
    fn node_rows_and_distributed_gateway_match_upstream() {
        let cache = CacheData::default();
        let mut plan = Plan::new(&cache, "OVN_Northbound");
        vpc_router(&mut plan, "ovn-cluster");
        plan.ensure_root(LS, "join", Row::new());
        let join: IpAddr = "100.64.0.2".parse().unwrap();
        node(
            &mut plan,
            &NodeObjects {
                node: "kube-ovn-worker",
                join_switch: "join",
                router: "ovn-cluster",
                mac: "0a:00:00:00:00:02",
                join_ips: vec![join],
                node_ips: vec!["172.18.0.3".parse().unwrap()],
            },
        )
        .unwrap();
        distributed_gateway(
            &mut plan,
            "ovn-cluster",
            "ovn-default",
            &["ip4"],
            &[NodeJoin {
                node: "kube-ovn-worker".into(),
                join_ips: vec![join],
            }],
        )
        .unwrap();
        let ops = ops(plan);
        let lsp = inserted(&ops, "Logical_Switch_Port", "node-kube-ovn-worker");
        assert_eq!(lsp["row"]["addresses"], "0a:00:00:00:00:02 100.64.0.2");
        let pg = inserted(&ops, "Port_Group", "node.kube.ovn.worker");
        assert_eq!(
            pg["row"]["external_ids"],
            json!([
                "map",
                [
                    ["node", "kube-ovn-worker"],
                    ["np", "node/kube-ovn-worker"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        inserted(&ops, "Port_Group", "ovn.default.kube.ovn.worker");
        let policy = |m: &str| {
            ops.iter()
                .find(|o| o["table"] == "Logical_Router_Policy" && o["row"]["match"] == m)
                .unwrap_or_else(|| panic!("no policy {m}"))
                .clone()
        };
        let p = policy("ip4.dst == 172.18.0.3");
        assert_eq!(
            (p["row"]["priority"].clone(), p["row"]["action"].clone()),
            (json!(30000), json!("reroute"))
        );
        assert_eq!(p["row"]["nexthops"], "100.64.0.2");
        assert_eq!(
            p["row"]["external_ids"],
            json!([
                "map",
                [
                    ["address-family", "4"],
                    ["node", "kube-ovn-worker"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
        let g = policy("ip4.src == $ovn.default.kube.ovn.worker_ip4");
        assert_eq!(g["row"]["priority"], 29000);
        assert_eq!(
            g["row"]["external_ids"],
            json!([
                "map",
                [
                    ["node", "kube-ovn-worker"],
                    ["subnet", "ovn-default"],
                    ["vendor", "kube-ovn"]
                ]
            ])
        );
    }

    #[test]
    fn private_subnet_and_user_acls() {
        let acls = subnet_acls(
            "s",
            &["10.1.0.0/24".into()],
            &["100.64.0.0/16".into()],
            true,
            &["10.2.0.0/24".into()],
            &[(
                "from-lport".into(),
                1500,
                "ip4.dst == 8.8.8.8".into(),
                "drop".into(),
            )],
            true,
        );
        let rows: Vec<(String, i64, String, String)> = acls
            .iter()
            .map(|a| {
                (
                    a.direction.clone(),
                    a.priority,
                    a.r#match.clone(),
                    a.action.clone(),
                )
            })
            .collect();
        let want = [
            ("to-lport", 1000, "ip", "drop"),
            ("to-lport", 1001, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow-related"),
            ("to-lport", 3000, "ip4.src == 100.64.0.0/16", "allow-related"),
            (
                "to-lport",
                1001,
                "(ip4.src == 10.1.0.0/24 && ip4.dst == 10.2.0.0/24) || (ip4.src == 10.2.0.0/24 && ip4.dst == 10.1.0.0/24)",
                "allow-related",
            ),
            ("to-lport", 1900, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow"),
            ("from-lport", 1900, "ip4.src == 10.1.0.0/24 && ip4.dst == 10.1.0.0/24", "allow"),
            ("from-lport", 1500, "ip4.dst == 8.8.8.8", "drop"),
        ];
        let want: Vec<(String, i64, String, String)> = want
            .iter()
            .map(|(d, p, m, a)| (d.to_string(), *p, m.to_string(), a.to_string()))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(acls[0].log_name.as_deref(), Some("s"));
        assert!(acls[4]
            .extra_ids
            .contains(&("subnet".to_string(), "s".to_string())));
        // allowEWTraffic alone (no user ACLs) writes nothing, as upstream.
        assert!(subnet_acls("s", &["10.1.0.0/24".into()], &[], false, &[], &[], true).is_empty());
    }

    #[test]
    fn names_replace_dashes_like_upstream() {
        assert_eq!(
            node_pg("kube-ovn-control-plane"),
            "node.kube.ovn.control.plane"
        );
        assert_eq!(subnet_node_pg("ovn-default", "n-1"), "ovn.default.n.1");
        assert_eq!(pod_lsp("web", "default", "ovn"), "web.default");
        assert_eq!(
            pod_lsp("web", "default", "net1.default.ovn"),
            "web.default.net1.default.ovn"
        );
    }
}
