//! Upstream Kube-OVN's NB rows, written with ovn-nbctl from upstream's naming rules (its
//! `pkg/controller` and `pkg/ovs`), so adoption tests can hand our controller an NB laid out
//! exactly as a running upstream controller left it. Every row carries the columns upstream
//! sets and nothing else; OVN 23.03 has no ACL `tier` and rejects `ipv6_src` in
//! `selection_fields`, so those two are left out.

use std::net::IpAddr;

use super::World;

/// Runs one ovn-nbctl transaction from owned arguments.
fn nbctl(w: &World, args: &[String]) -> String {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    w.nbctl(&args)
}

/// `external_ids:<k>="<v>"` for each pair (quoted: values hold `/`).
fn ids(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, v)| format!("external_ids:{k}=\"{v}\""))
        .collect()
}

/// The `_uuid` of the row of `table` named `name`.
pub fn uuid_of(w: &World, table: &str, name: &str) -> String {
    let out = w.nbctl(&[
        "--bare",
        "--columns=_uuid",
        "find",
        table,
        &format!("name=\"{name}\""),
    ]);
    let u = out.trim().to_string();
    assert!(!u.is_empty(), "no {table} named {name}");
    u
}

/// NB_Global as upstream's start-up leaves it (default flags): its option keys, the layout
/// version marker and `ipsec=false`.
pub fn nb_global(w: &World, version: &str) {
    w.nbctl(&[
        "set",
        "NB_Global",
        ".",
        "options:ls_dnat_mod_dl_dst=true",
        "options:use_ct_inv_match=false",
        "options:ls_ct_skip_dst_lport_ips=true",
        &format!("external_ids:kube-ovn-version=\"{version}\""),
        "ipsec=false",
    ]);
}

/// The default VPC's router (`initClusterRouter` then the VPC worker's options).
pub fn cluster_router(w: &World, router: &str) {
    w.nbctl(&[
        "create",
        "logical_router",
        &format!("name={router}"),
        "external_ids:vendor=kube-ovn",
        "options:mac_binding_age_threshold=300",
        "options:dynamic_neigh_routers=true",
        "options:always_learn_from_arp_request=false",
    ]);
}

/// The six cluster load balancers of `initLB` (`prefer_local_backend=false`; session ones with
/// `ip_src` and the 10800 s affinity timeout; `ct_flush` on the plain UDP one only).
pub fn cluster_load_balancers(w: &World) {
    load_balancers(w, |proto, session| {
        if session {
            format!("cluster-{proto}-session-loadbalancer")
        } else {
            format!("cluster-{proto}-loadbalancer")
        }
    });
}

/// The six load balancers of a custom VPC (`GenVpcLoadBalancer`: `vpc-<vpc>-<proto>-load`,
/// `vpc-<vpc>-<proto>-sess-load`), as `initLB` creates them.
pub fn vpc_load_balancers(w: &World, vpc: &str) {
    load_balancers(w, |proto, session| {
        if session {
            format!("vpc-{vpc}-{proto}-sess-load")
        } else {
            format!("vpc-{vpc}-{proto}-load")
        }
    });
}

fn load_balancers(w: &World, name_of: impl Fn(&str, bool) -> String) {
    for proto in ["tcp", "udp", "sctp"] {
        for session in [false, true] {
            let name = name_of(proto, session);
            let mut args = vec![
                "create".to_string(),
                "load_balancer".into(),
                format!("name={name}"),
                format!("protocol={proto}"),
                "external_ids:vendor=kube-ovn".into(),
                "options:prefer_local_backend=false".into(),
            ];
            if session {
                args.push("selection_fields=ip_src".into());
                args.push("options:affinity_timeout=10800".into());
            } else if proto == "udp" {
                args.push("options:ct_flush=true".into());
            }
            nbctl(w, &args);
        }
    }
}

/// A custom VPC's static route (`AddLogicalRouterStaticRoute` from the VPC worker):
/// `policy` always written, `external_ids:vendor=kube-ovn`.
pub fn vpc_static_route(
    w: &World,
    router: &str,
    policy: &str,
    prefix: &str,
    nexthop: &str,
    table: &str,
) {
    w.nbctl(&[
        "--",
        "--id=@r",
        "create",
        "logical_router_static_route",
        &format!("ip_prefix=\"{prefix}\""),
        &format!("nexthop=\"{nexthop}\""),
        &format!("policy={policy}"),
        &format!("route_table=\"{table}\""),
        "external_ids:vendor=kube-ovn",
        "--",
        "add",
        "logical_router",
        router,
        "static_routes",
        "@r",
    ]);
}

/// A custom VPC's `policyRoutes` entry with `drop` (`addPolicyRouteToVpc`,
/// `external_ids:vendor=kube-ovn`).
pub fn vpc_drop_policy(w: &World, router: &str, priority: i64, m: &str) {
    w.nbctl(&[
        "--",
        "--id=@p",
        "create",
        "logical_router_policy",
        &format!("priority={priority}"),
        &format!("match=\"{m}\""),
        "action=drop",
        "external_ids:vendor=kube-ovn",
        "--",
        "add",
        "logical_router",
        router,
        "policies",
        "@p",
    ]);
}

/// An overlay subnet's switch (`CreateBareLogicalSwitch`) and its router patch ports
/// (`CreateRouterPortOp`: `<ls>-<lr>` / `<lr>-<ls>`), with the VPC's load balancers attached
/// when `lbs` is set, plus its 31000 allow policy (`addCommonRoutesForSubnet`).
pub fn overlay_subnet(
    w: &World,
    router: &str,
    ls: &str,
    cidr: &str,
    gateway: &str,
    mac: &str,
    lbs: bool,
) {
    let lsp = format!("{ls}-{router}");
    let lrp = format!("{router}-{ls}");
    let prefix = cidr.rsplit('/').next().unwrap();
    let mut args = vec![
        "--".to_string(),
        "--id=@lsp".into(),
        "create".into(),
        "logical_switch_port".into(),
        format!("name={lsp}"),
        "type=router".into(),
        "addresses=router".into(),
        format!("options:router-port={lrp}"),
    ];
    args.extend(ids(&[("ls", ls), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "create".into(),
        "logical_switch".into(),
        format!("name={ls}"),
        "external_ids:vendor=kube-ovn".into(),
        "ports=@lsp".into(),
    ]);
    if lbs {
        let uuids: Vec<String> = ["tcp", "udp", "sctp"]
            .iter()
            .flat_map(|p| {
                [
                    format!("cluster-{p}-loadbalancer"),
                    format!("cluster-{p}-session-loadbalancer"),
                ]
            })
            .map(|n| uuid_of(w, "load_balancer", &n))
            .collect();
        args.push(format!("load_balancer=[{}]", uuids.join(",")));
    }
    args.extend([
        "--".into(),
        "--id=@lrp".into(),
        "create".into(),
        "logical_router_port".into(),
        format!("name={lrp}"),
        format!("mac=\"{mac}\""),
        format!("networks=\"{gateway}/{prefix}\""),
    ]);
    args.extend(ids(&[("lr", router), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router".into(),
        router.into(),
        "ports".into(),
        "@lrp".into(),
    ]);
    nbctl(w, &args);
    policy(
        w,
        router,
        31000,
        &format!("ip4.dst == {cidr}"),
        None,
        &[("subnet", ls), ("vendor", "kube-ovn")],
    );
}

/// A router policy (`AddLogicalRouterPolicy`): `allow` without a next hop, else `reroute`.
pub fn policy(
    w: &World,
    router: &str,
    priority: i64,
    m: &str,
    nexthop: Option<&str>,
    ext: &[(&str, &str)],
) {
    let mut args = vec![
        "--".to_string(),
        "--id=@p".into(),
        "create".into(),
        "logical_router_policy".into(),
        format!("priority={priority}"),
        format!("match=\"{m}\""),
    ];
    match nexthop {
        Some(hop) => {
            args.push("action=reroute".into());
            args.push(format!("nexthops=\"{hop}\""));
        }
        None => args.push("action=allow".into()),
    }
    args.extend(ids(ext));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router".into(),
        router.into(),
        "policies".into(),
        "@p".into(),
    ]);
    nbctl(w, &args);
}

/// The VPC's default route via the join gateway (`handleAddOrUpdateVpc`: dst-ip, main table).
pub fn default_route(w: &World, router: &str, join_gateway: &str) {
    w.nbctl(&[
        "--",
        "--id=@r",
        "create",
        "logical_router_static_route",
        "ip_prefix=\"0.0.0.0/0\"",
        &format!("nexthop=\"{join_gateway}\""),
        "policy=dst-ip",
        "external_ids:vendor=kube-ovn",
        "--",
        "add",
        "logical_router",
        router,
        "static_routes",
        "@r",
    ]);
}

/// The VPC's U2O overlay-CIDR address sets (`syncU2OOverlayCIDRsAddressSet`): every
/// non-vlan subnet CIDR of the VPC, join included.
pub fn u2o_overlay_sets(w: &World, vpc: &str, v4_cidrs: &[&str]) {
    let base = vpc.replace('-', ".");
    for (fam, addrs) in [("ip4", v4_cidrs), ("ip6", &[][..])] {
        let mut args = vec![
            "create".to_string(),
            "address_set".into(),
            format!("name={base}.u2o_overlay_cidrs.{fam}"),
        ];
        args.extend(ids(&[
            ("isU2OOverlayCIDRs", "true"),
            ("vpc", vpc),
            ("vendor", "kube-ovn"),
        ]));
        if !addrs.is_empty() {
            let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
            args.push(format!("addresses=[{}]", quoted.join(",")));
        }
        nbctl(w, &args);
    }
}

/// A node's rows (`handleAddNode`): its join port `node-<node>`, its port group
/// `node.<node>` and the 30000 reroute of its InternalIP to its join address.
pub fn node(w: &World, router: &str, node: &str, join_ip: &str, mac: &str, node_ip: IpAddr) {
    let lsp = format!("node-{node}");
    let mut args = vec![
        "--".to_string(),
        "--id=@p".into(),
        "create".into(),
        "logical_switch_port".into(),
        format!("name={lsp}"),
        format!("addresses=\"{mac} {join_ip}\""),
    ];
    args.extend(ids(&[("ls", "join"), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_switch".into(),
        "join".into(),
        "ports".into(),
        "@p".into(),
    ]);
    nbctl(w, &args);
    port_group(
        w,
        &lsp.replace('-', "."),
        &[
            ("node", node),
            ("np", &format!("node/{node}")),
            ("vendor", "kube-ovn"),
        ],
        &[],
    );
    policy(
        w,
        router,
        30000,
        &format!("ip4.dst == {node_ip}"),
        Some(join_ip),
        &[
            ("address-family", "4"),
            ("node", node),
            ("vendor", "kube-ovn"),
        ],
    );
}

/// A distributed subnet's rows for one node (`createPortGroupForDistributedSubnet`,
/// `addPolicyRouteForDistributedSubnet`): the port group `<subnet>.<node>` holding `ports` and
/// the 29000 reroute of its address set to the node's join address.
pub fn distributed_gateway(
    w: &World,
    router: &str,
    subnet: &str,
    node: &str,
    join_ip: &str,
    ports: &[String],
) {
    let pg = format!("{subnet}.{node}").replace('-', ".");
    port_group(
        w,
        &pg,
        &[
            ("node", node),
            ("np", &format!("{subnet}/{node}")),
            ("subnet", subnet),
            ("vendor", "kube-ovn"),
        ],
        ports,
    );
    policy(
        w,
        router,
        29000,
        &format!("ip4.src == ${pg}_ip4"),
        Some(join_ip),
        &[("node", node), ("subnet", subnet), ("vendor", "kube-ovn")],
    );
}

/// A port group with `ext` and the ports of UUIDs `ports`.
pub fn port_group(w: &World, name: &str, ext: &[(&str, &str)], ports: &[String]) {
    let mut args = vec![
        "create".to_string(),
        "port_group".into(),
        format!("name={name}"),
    ];
    args.extend(ids(ext));
    if !ports.is_empty() {
        args.push(format!("ports=[{}]", ports.join(",")));
    }
    nbctl(w, &args);
}

/// Adds the ports of UUIDs `ports` to port group `pg`.
pub fn add_to_port_group(w: &World, pg: &str, ports: &[String]) {
    for p in ports {
        w.nbctl(&["add", "port_group", pg, "ports", p]);
    }
}

/// A pod's port `<pod>.<ns>` on `ls` (`buildLogicalSwitchPort`): `"<mac> <ip>"`, port
/// security the same only when asked, `{ls, pod, vendor}`. Returns its UUID.
pub fn pod_port(
    w: &World,
    ls: &str,
    ns: &str,
    pod: &str,
    mac: &str,
    ip: &str,
    port_security: bool,
) -> String {
    let name = format!("{pod}.{ns}");
    let mut args = vec![
        "--".to_string(),
        "--id=@p".into(),
        "create".into(),
        "logical_switch_port".into(),
        format!("name={name}"),
        format!("addresses=\"{mac} {ip}\""),
    ];
    if port_security {
        args.push(format!("port_security=\"{mac} {ip}\""));
    }
    args.extend(ids(&[
        ("ls", ls),
        ("pod", &format!("{ns}/{pod}")),
        ("vendor", "kube-ovn"),
    ]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_switch".into(),
        ls.into(),
        "ports".into(),
        "@p".into(),
    ]);
    nbctl(w, &args);
    uuid_of(w, "logical_switch_port", &name)
}

/// An ACL on port group `pg` (`newACL`: `{parent, vendor}`), with an optional `name`, and
/// `options:apply-after-lb=true` when `after_lb`.
pub struct PgAcl<'a> {
    /// `to-lport` / `from-lport`.
    pub direction: &'a str,
    /// Priority.
    pub priority: i64,
    /// Match.
    pub r#match: String,
    /// Action.
    pub action: &'a str,
    /// The `name` column, if set.
    pub name: Option<String>,
    /// `options:apply-after-lb=true`.
    pub after_lb: bool,
}

/// Creates `acl` and adds it to port group `pg`.
pub fn pg_acl(w: &World, pg: &str, acl: &PgAcl<'_>) {
    let mut args = vec![
        "--".to_string(),
        "--id=@a".into(),
        "create".into(),
        "acl".into(),
        format!("direction={}", acl.direction),
        format!("priority={}", acl.priority),
        format!("match=\"{}\"", acl.r#match),
        format!("action={}", acl.action),
    ];
    if let Some(n) = &acl.name {
        args.push(format!("name=\"{n}\""));
    }
    if acl.after_lb {
        args.push("options:apply-after-lb=true".into());
    }
    args.extend(ids(&[("parent", pg), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "port_group".into(),
        pg.into(),
        "acls".into(),
        "@a".into(),
    ]);
    nbctl(w, &args);
}

/// An address set with `ext` holding `addrs`.
pub fn address_set(w: &World, name: &str, ext: &[(&str, &str)], addrs: &[String]) {
    let mut args = vec![
        "create".to_string(),
        "address_set".into(),
        format!("name={name}"),
    ];
    args.extend(ids(ext));
    if !addrs.is_empty() {
        let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
        args.push(format!("addresses=[{}]", quoted.join(",")));
    }
    nbctl(w, &args);
}

/// The security group upstream creates at every start (`initDenyAllSecurityGroup`): port
/// group `ovn.sg.kubeovn_deny_all` and its two 2003 drops (one pair: no tiers on 23.03).
pub fn deny_all_security_group(w: &World) {
    let pg = "ovn.sg.kubeovn_deny_all";
    port_group(
        w,
        pg,
        &[
            ("sg", "kubeovn_deny_all"),
            ("type", "security_group"),
            ("vendor", "kube-ovn"),
        ],
        &[],
    );
    for (direction, port) in [("to-lport", "outport"), ("from-lport", "inport")] {
        pg_acl(
            w,
            pg,
            &PgAcl {
                direction,
                priority: 2003,
                r#match: format!("{port} == @{pg} && ip"),
                action: "drop",
                name: None,
                after_lb: false,
            },
        );
    }
}

/// An ingress NetworkPolicy `<ns>/<name>` allowing `peers` (the IPv4 addresses of the pods its
/// one `from` selector picks) to TCP `port` of `members` (port UUIDs), as `handleUpdateNp`
/// writes it: port group `<name>.<ns>`, the rule's allow/except address sets, the 2000 drop
/// and the 2001 allow.
pub fn ingress_policy(
    w: &World,
    ns: &str,
    name: &str,
    members: &[String],
    peers: &[String],
    port: u16,
) {
    let pg = format!("{name}.{ns}").replace('-', ".");
    let allow = format!("{pg}.ingress.allow.IPv4.0");
    let except = format!("{pg}.ingress.except.IPv4.0");
    port_group(
        w,
        &pg,
        &[("np", &format!("{ns}/{name}")), ("vendor", "kube-ovn")],
        members,
    );
    let np_dir = format!("{ns}/{name}/ingress");
    address_set(w, &allow, &[("np", &np_dir), ("vendor", "kube-ovn")], peers);
    address_set(w, &except, &[("np", &np_dir), ("vendor", "kube-ovn")], &[]);
    pg_acl(
        w,
        &pg,
        &PgAcl {
            direction: "to-lport",
            priority: 2000,
            r#match: format!("outport == @{pg} && ip"),
            action: "drop",
            name: Some(format!("{ns}/{name}")),
            after_lb: false,
        },
    );
    pg_acl(
        w,
        &pg,
        &PgAcl {
            direction: "to-lport",
            priority: 2001,
            r#match: format!(
                "outport == @{pg} && ip && ip4.src == ${allow} && ip4.src != ${except} && tcp.dst == {port}"
            ),
            action: "allow-related",
            name: Some(format!("np/{name}.{ns}/ingress/IPv4/0")),
            after_lb: false,
        },
    );
}

/// The node allows upstream keeps on `node.<node>` while any NetworkPolicy exists: the node's
/// own address may reach its pods and be reached by them (3000, allow-related).
pub fn node_policy_allows(w: &World, node: &str, node_ip: IpAddr) {
    let pg = format!("node.{node}").replace('-', ".");
    pg_acl(
        w,
        &pg,
        &PgAcl {
            direction: "to-lport",
            priority: 3000,
            r#match: format!("ip4.src == {node_ip} && ip4.dst == ${pg}_ip4"),
            action: "allow-related",
            name: None,
            after_lb: false,
        },
    );
    pg_acl(
        w,
        &pg,
        &PgAcl {
            direction: "from-lport",
            priority: 3000,
            r#match: format!("ip4.dst == {node_ip} && ip4.src == ${pg}_ip4"),
            action: "allow-related",
            name: None,
            after_lb: true,
        },
    );
}

/// Sets `vips["<vip>"] = "<backends>"` on load balancer `lb` (`LoadBalancerAddVip`).
pub fn vip(w: &World, lb: &str, vip: &str, backends: &str) {
    w.nbctl(&[
        "set",
        "load_balancer",
        lb,
        &format!("vips:\"{vip}\"=\"{backends}\""),
    ]);
}

/// A u2o underlay subnet's router patch pair (`CreateLogicalSwitch` with `needRouter`): the
/// `<ls>-<lr>` router port on the existing switch and `<lr>-<ls>` on the interconnection
/// address `network` (`<ip>/<prefix>`) with the address's IPAM MAC.
pub fn u2o_router_ports(w: &World, router: &str, ls: &str, network: &str, mac: &str) {
    let lsp = format!("{ls}-{router}");
    let lrp = format!("{router}-{ls}");
    let mut args = vec![
        "--".to_string(),
        "--id=@lsp".into(),
        "create".into(),
        "logical_switch_port".into(),
        format!("name={lsp}"),
        "type=router".into(),
        "addresses=router".into(),
        format!("options:router-port={lrp}"),
    ];
    args.extend(ids(&[("ls", ls), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_switch".into(),
        ls.into(),
        "ports".into(),
        "@lsp".into(),
        "--".into(),
        "--id=@lrp".into(),
        "create".into(),
        "logical_router_port".into(),
        format!("name={lrp}"),
        format!("mac=\"{mac}\""),
        format!("networks=\"{network}\""),
    ]);
    args.extend(ids(&[("lr", router), ("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router".into(),
        router.into(),
        "ports".into(),
        "@lrp".into(),
    ]);
    nbctl(w, &args);
}

/// A `Gateway_Chassis` of a gateway port as upstream's `CreateGatewayChassises` writes it:
/// `<lrp>-<chassis>`, its priority, `external_ids:lrp`.
pub fn gateway_chassis(w: &World, lrp: &str, chassis: &str, priority: i64) {
    let mut args = vec![
        "--".to_string(),
        "--id=@gc".into(),
        "create".into(),
        "gateway_chassis".into(),
        format!("name={lrp}-{chassis}"),
        format!("chassis_name={chassis}"),
        format!("priority={priority}"),
    ];
    args.extend(ids(&[("lrp", lrp)]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router_port".into(),
        lrp.into(),
        "gateway_chassis".into(),
        "@gc".into(),
    ]);
    nbctl(w, &args);
}

/// A NAT row of an OvnFip (`dnat_and_snat`, `options:stateless`, port and MAC when given)
/// or OvnSnatRule (`snat`) as upstream's `AddNat` writes it: no `external_ids`.
pub fn nat(
    w: &World,
    router: &str,
    kind: &str,
    external_ip: &str,
    logical_ip: &str,
    stateless: Option<bool>,
) {
    let mut args = vec![
        "--".to_string(),
        "--id=@nat".into(),
        "create".into(),
        "nat".into(),
        format!("type={kind}"),
        format!("external_ip=\"{external_ip}\""),
        format!("logical_ip=\"{logical_ip}\""),
    ];
    if let Some(s) = stateless {
        args.push(format!("options:stateless={s}"));
    }
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router".into(),
        router.into(),
        "nat".into(),
        "@nat".into(),
    ]);
    nbctl(w, &args);
}

/// An OvnDnatRule's load balancer as upstream's `AddDnatRule` leaves it: named after the
/// rule, its protocol, `external_ids:vendor`, the one VIP, attached to the router.
pub fn dnat_lb(w: &World, router: &str, name: &str, protocol: &str, vip: &str, backend: &str) {
    let mut args = vec![
        "--".to_string(),
        "--id=@lb".into(),
        "create".into(),
        "load_balancer".into(),
        format!("name={name}"),
        format!("protocol={protocol}"),
        format!("vips:\"{vip}\"=\"{backend}\""),
    ];
    args.extend(ids(&[("vendor", "kube-ovn")]));
    args.extend([
        "--".into(),
        "add".into(),
        "logical_router".into(),
        router.into(),
        "load_balancer".into(),
        "@lb".into(),
    ]);
    nbctl(w, &args);
}
