//! AdminNetworkPolicies and the BaselineAdminNetworkPolicy against the real NB (real binary
//! with `--enable-anp=true`, API fixture): upstream's port groups, address sets and ACLs,
//! membership following pod labels by mutates of the changed members only, a contested
//! priority held by the older policy, a restart that writes nothing, deletion leaving nothing
//! behind, and an upstream-written layout (with a domain-name rule and its DNSNameResolver)
//! adopted without a write.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube_ovn_common::crd::{AdminNetworkPolicy, BaselineAdminNetworkPolicy, DnsNameResolver};
use kube_ovn_controller::dns_names;
use kube_ovn_nb::objects::string_map;
use ovsdb::{Atom, Datum};
use serde_json::{json, Value};
use support::nb::{named, pg_acl_rows, port_uuid, priority, rows, set_of, text};
use support::{eventually, World};

const LONG: Duration = Duration::from_secs(60);

/// An ACL as compared here: direction, priority, match, action, name, log, apply-after-lb.
type AclView = (String, i64, String, String, String, bool, bool);

/// The ACLs hanging from port group `pg`.
fn pg_acls(w: &World, pg: &str) -> BTreeSet<AclView> {
    pg_acl_rows(w, pg)
        .iter()
        .map(|r| {
            let log = r
                .get("log")
                .and_then(Datum::as_atom)
                .and_then(Atom::as_bool)
                .unwrap_or_default();
            let ids = string_map(r, "external_ids");
            assert_eq!(ids.get("parent").map(String::as_str), Some(pg));
            assert_eq!(ids.get("vendor").map(String::as_str), Some("kube-ovn"));
            let after_lb =
                string_map(r, "options").get("apply-after-lb") == Some(&"true".to_string());
            (
                text(r, "direction"),
                priority(r),
                text(r, "match"),
                text(r, "action"),
                text(r, "name"),
                log,
                after_lb,
            )
        })
        .collect()
}

fn acl(dir: &str, prio: i64, m: &str, action: &str, name: &str) -> AclView {
    (
        dir.into(),
        prio,
        m.into(),
        action.into(),
        name.into(),
        false,
        true,
    )
}

fn pg_ports(w: &World, pg: &str) -> Option<BTreeSet<Atom>> {
    named(w, "Port_Group", pg)?
        .get("ports")
        .and_then(Datum::as_set)
        .map(|s| s.iter().cloned().collect())
}

/// Rows marked as any admin policy's.
fn admin_rows(w: &World) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["Port_Group", "Address_Set"] {
        for r in rows(w, table) {
            let ids = string_map(&r, "external_ids");
            if ids.contains_key("anp") || ids.contains_key("banp") {
                out.push(format!("{table} {}", text(&r, "name")));
            }
        }
    }
    out
}

async fn create_pod(w: &World, ns: &str, name: &str, labels: Value) -> String {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    let api: Api<Pod> = Api::namespaced(w.client.clone(), ns);
    api.create(&PostParams::default(), &p).await.unwrap();
    eventually(&format!("{name} allocated"), LONG, || async {
        let p = api.get(name).await.ok()?;
        let a = p.metadata.annotations?;
        (a.get("ovn.kubernetes.io/allocated").map(String::as_str) == Some("true"))
            .then(|| a["ovn.kubernetes.io/ip_address"].clone())
    })
    .await
}

async fn relabel(w: &World, name: &str, labels: Value) {
    Api::<Pod>::namespaced(w.client.clone(), "default")
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": labels}})),
        )
        .await
        .unwrap();
}

fn anp(name: &str, priority: i32, spec: Value) -> AdminNetworkPolicy {
    let mut spec = spec;
    spec["priority"] = json!(priority);
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn banp(spec: Value) -> BaselineAdminNetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"}, "spec": spec,
    }))
    .unwrap()
}

async fn transactions(w: &World) -> f64 {
    w.counter("kube_ovn_controller_nb_transactions_total", "")
        .await
        .unwrap_or(0.0)
}

fn web_policy() -> AdminNetworkPolicy {
    anp(
        "guard-web",
        5,
        json!({
            "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
            "ingress": [
                {"name": "allow-cli", "action": "Allow",
                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}],
                 "ports": [{"portNumber": {"protocol": "TCP", "port": 8080}}]},
                {"name": "deny-rest", "action": "Deny", "from": [{"namespaces": {}}]}
            ],
            "egress": [
                {"name": "pass-cli", "action": "Pass",
                 "to": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}]},
                {"name": "nodes", "action": "Deny", "to": [{"nodes": {}}, {"networks": ["192.0.2.0/24"]}]}
            ]
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_policies_become_upstreams_rows_and_follow_pods() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec!["--enable-anp=true".into()];
    w.start_controller();
    let web_ip = create_pod(&w, "default", "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "default", "cli", json!({"role": "client"})).await;
    let node_ip = w.sandbox.state().nodes[0].ip.to_string();
    let anps: Api<AdminNetworkPolicy> = Api::all(w.client.clone());
    anps.create(&PostParams::default(), &web_policy())
        .await
        .unwrap();

    let pg = "guard.web";
    let allow = "guard.web.ingress.0.allow.cli.IPv4";
    let rest = "guard.web.ingress.1.deny.rest.IPv4";
    let pass = "guard.web.egress.0.pass.cli.IPv4";
    let nodes = "guard.web.egress.1.nodes.IPv4";
    let want: BTreeSet<AclView> = [
        acl(
            "to-lport",
            29500,
            &format!("outport == @{pg} && ip && ip4.src == ${allow} && tcp.dst == 8080"),
            "allow-related",
            "anp/guard-web/ingress/IPv4/0",
        ),
        acl(
            "to-lport",
            29499,
            &format!("outport == @{pg} && ip && ip4.src == ${rest}"),
            "drop",
            "anp/guard-web/ingress/IPv4/1",
        ),
        // The Pass rule has no ACL on 23.03: the later rule leaves its traffic alone.
        acl(
            "from-lport",
            29499,
            &format!("inport == @{pg} && ip && ip4.dst == ${nodes} && !(ip4.dst == ${pass})"),
            "drop",
            "anp/guard-web/egress/IPv4/1",
        ),
    ]
    .into();
    eventually("the policy's ACLs", LONG, || async {
        (pg_acls(&w, pg) == want).then_some(())
    })
    .await;
    let p = named(&w, "Port_Group", pg).unwrap();
    let ids = string_map(&p, "external_ids");
    assert_eq!(ids.get("anp").map(String::as_str), Some("guard-web"));
    assert_eq!(ids.get("vendor").map(String::as_str), Some("kube-ovn"));
    assert_eq!(
        pg_ports(&w, pg),
        Some([port_uuid(&w, "web.default").unwrap()].into())
    );
    let expect_sets = [
        (allow, "guard-web/ingress", vec![cli_ip.clone()]),
        (
            rest,
            "guard-web/ingress",
            vec![cli_ip.clone(), web_ip.clone()],
        ),
        (pass, "guard-web/egress", vec![cli_ip.clone()]),
        (
            nodes,
            "guard-web/egress",
            vec!["192.0.2.0/24".to_string(), node_ip.clone()],
        ),
    ];
    for (name, mark, addrs) in &expect_sets {
        let s = eventually(&format!("set {name}"), LONG, || async {
            named(&w, "Address_Set", name)
        })
        .await;
        assert_eq!(
            string_map(&s, "external_ids").get("anp"),
            Some(&mark.to_string())
        );
        let want: BTreeSet<String> = addrs.iter().cloned().collect();
        assert_eq!(set_of(&s, "addresses"), want, "{name}");
        // The IPv6 twin exists too (empty on this IPv4 cluster).
        assert!(named(&w, "Address_Set", &name.replace("IPv4", "IPv6")).is_some());
    }

    // A new client joins the sets by mutates alone; the ACLs stay as they are.
    let before = transactions(&w).await;
    let cli2_ip = create_pod(&w, "default", "cli2", json!({"role": "client"})).await;
    eventually("cli2 in the allow and pass sets", LONG, || async {
        let a = set_of(&named(&w, "Address_Set", allow)?, "addresses");
        let p = set_of(&named(&w, "Address_Set", pass)?, "addresses");
        (a.contains(&cli2_ip) && p.contains(&cli2_ip)).then_some(())
    })
    .await;
    let after = transactions(&w).await;
    assert!(
        after - before <= 4.0,
        "a new peer took {} transactions",
        after - before
    );
    assert_eq!(pg_acls(&w, pg), want, "a peer change rewrote ACLs");

    // Relabelling the subject takes its port out of the group, and back.
    relabel(&w, "web", json!({"app": "other"})).await;
    eventually("web out of the port group", LONG, || async {
        pg_ports(&w, pg).filter(BTreeSet::is_empty)
    })
    .await;
    relabel(&w, "web", json!({"app": "web"})).await;
    eventually("web back in the port group", LONG, || async {
        pg_ports(&w, pg).filter(|p| p.len() == 1)
    })
    .await;
    assert_eq!(pg_acls(&w, pg), want, "a subject change rewrote ACLs");

    // The baseline policy sits below NetworkPolicies (1800 - index).
    let banps: Api<BaselineAdminNetworkPolicy> = Api::all(w.client.clone());
    banps
        .create(
            &PostParams::default(),
            &banp(json!({
                "subject": {"namespaces": {}},
                "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}]
            })),
        )
        .await
        .unwrap();
    let banp_want: BTreeSet<AclView> = [acl(
        "to-lport",
        1800,
        "outport == @default && ip && ip4.src == $default.ingress.0.deny.all.IPv4",
        "drop",
        "banp/default/ingress/IPv4/0",
    )]
    .into();
    eventually("the baseline ACL", LONG, || async {
        (pg_acls(&w, "default") == banp_want).then_some(())
    })
    .await;
    let bpg = named(&w, "Port_Group", "default").unwrap();
    assert_eq!(
        string_map(&bpg, "external_ids")
            .get("banp")
            .map(String::as_str),
        Some("default")
    );
    assert_eq!(pg_ports(&w, "default").map(|p| p.len()), Some(3));

    // A second policy with the same priority is refused while the first holds it.
    anps.create(
        &PostParams::default(),
        &anp(
            "late",
            5,
            json!({"subject": {"namespaces": {}},
                   "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}),
        ),
    )
    .await
    .unwrap();
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    eventually("the PriorityConflict event", LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("PriorityConflict")
                    && e.involved_object.name.as_deref() == Some("late")
            })
            .then_some(())
    })
    .await;
    assert!(named(&w, "Port_Group", "late").is_none());

    // A restart on the converged NB writes nothing.
    w.controller_settled().await;
    w.kill_controller();
    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually(
        "the policies reconciled after the restart",
        LONG,
        || async {
            let a = w
                .counter(
                    "kube_ovn_controller_reconciles_total",
                    "kind=\"admin-network-policy\"",
                )
                .await?;
            let b = w
                .counter(
                    "kube_ovn_controller_reconciles_total",
                    "kind=\"baseline-admin-network-policy\"",
                )
                .await?;
            let pods = w
                .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
                .await?;
            (a >= 2.0 && b >= 1.0 && pods >= 3.0).then_some(())
        },
    )
    .await;
    w.assert_wrote_nothing(&mut changes, "the restart").await;

    // Deleting the holder hands the priority to the other policy.
    anps.delete("guard-web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("guard-web's rows gone, late's in place", LONG, || async {
        let gone = named(&w, "Port_Group", pg).is_none()
            && !rows(&w, "Address_Set")
                .iter()
                .any(|r| text(r, "name").starts_with("guard.web."))
            && !rows(&w, "ACL").iter().any(|r| {
                string_map(r, "external_ids")
                    .get("parent")
                    .map(String::as_str)
                    == Some(pg)
            });
        (gone && pg_acls(&w, "late").len() == 1).then_some(())
    })
    .await;

    // Deleting the rest leaves nothing behind.
    anps.delete("late", &DeleteParams::default()).await.unwrap();
    banps
        .delete("default", &DeleteParams::default())
        .await
        .unwrap();
    eventually("no admin policy rows left", LONG, || async {
        let acls_left = rows(&w, "ACL").iter().any(|r| {
            let n = text(r, "name");
            n.starts_with("anp/") || n.starts_with("banp/")
        });
        (admin_rows(&w).is_empty() && !acls_left).then_some(())
    })
    .await;
    println!("admin policy lifecycle: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_written_admin_policy_layout_is_adopted_without_writes() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec![
        "--enable-anp=true".into(),
        "--enable-dns-name-resolver=true".into(),
    ];
    w.start_controller();
    let _web_ip = create_pod(&w, "default", "web", json!({"app": "web"})).await;
    let cli_ip = create_pod(&w, "default", "cli", json!({"role": "client"})).await;
    eventually("the node reconciled", LONG, || async {
        w.counter("kube_ovn_controller_reconciles_total", "kind=\"node\"")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    w.controller_settled().await;
    w.kill_controller();

    // What upstream writes for these policies, built with ovn-nbctl from its naming rules
    // (no `tier`, which 23.03 lacks).
    let uuid_of = |name: &str| {
        w.nbctl(&[
            "--bare",
            "--columns=_uuid",
            "find",
            "logical_switch_port",
            &format!("name={name}"),
        ])
        .trim()
        .to_string()
    };
    let (web, cli) = (uuid_of("web.default"), uuid_of("cli.default"));
    let port_group = |pg: &str, key: &str, name: &str, ports: &str| {
        w.nbctl(&[
            "create",
            "port_group",
            &format!("name={pg}"),
            &format!("external_ids:{key}={name}"),
            "external_ids:vendor=kube-ovn",
            &format!("ports=[{ports}]"),
        ]);
    };
    let address_set = |name: &str, key: &str, mark: &str, addrs: &str| {
        let mut args = vec![
            "create".to_string(),
            "address_set".into(),
            format!("name={name}"),
            format!("external_ids:{key}=\"{mark}\""),
            "external_ids:vendor=kube-ovn".into(),
        ];
        if !addrs.is_empty() {
            args.push(format!("addresses=\"{addrs}\""));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        w.nbctl(&args);
    };
    let acl = |pg: &str, dir: &str, prio: &str, m: &str, action: &str, name: &str| {
        w.nbctl(&[
            "--",
            "--id=@a",
            "create",
            "acl",
            &format!("direction={dir}"),
            &format!("priority={prio}"),
            &format!("match=\"{m}\""),
            &format!("action={action}"),
            &format!("name=\"{name}\""),
            "options:apply-after-lb=true",
            &format!("external_ids:parent={pg}"),
            "external_ids:vendor=kube-ovn",
            "--",
            "add",
            "port_group",
            pg,
            "acls",
            "@a",
        ]);
    };
    // ANP "web-guard", priority 3: ingress 0 allows clients to 8080/TCP; egress 0 denies
    // 10.0.0.0/8.
    port_group("web.guard", "anp", "web-guard", &web);
    address_set(
        "web.guard.ingress.0.clients.IPv4",
        "anp",
        "web-guard/ingress",
        &cli_ip,
    );
    address_set(
        "web.guard.ingress.0.clients.IPv6",
        "anp",
        "web-guard/ingress",
        "",
    );
    address_set(
        "web.guard.egress.0.ten.IPv4",
        "anp",
        "web-guard/egress",
        "10.0.0.0/8",
    );
    address_set("web.guard.egress.0.ten.IPv6", "anp", "web-guard/egress", "");
    // Egress 1 denies the addresses `*.example.com.` resolved to, through upstream's resolver
    // (made by the policy's controller, its status by the resolver): both families' ACLs.
    address_set(
        "web.guard.egress.1.sites.IPv4",
        "anp",
        "web-guard/egress",
        "198.51.100.7",
    );
    address_set(
        "web.guard.egress.1.sites.IPv6",
        "anp",
        "web-guard/egress",
        "",
    );
    acl(
        "web.guard",
        "to-lport",
        "29700",
        "outport == @web.guard && ip && ip4.src == $web.guard.ingress.0.clients.IPv4 && tcp.dst == 8080",
        "allow-related",
        "anp/web-guard/ingress/IPv4/0",
    );
    acl(
        "web.guard",
        "from-lport",
        "29700",
        "inport == @web.guard && ip && ip4.dst == $web.guard.egress.0.ten.IPv4",
        "drop",
        "anp/web-guard/egress/IPv4/0",
    );
    for f in ["IPv4", "IPv6"] {
        let ip = if f == "IPv4" { "ip4" } else { "ip6" };
        acl(
            "web.guard",
            "from-lport",
            "29699",
            &format!("inport == @web.guard && ip && {ip}.dst == $web.guard.egress.1.sites.{f}"),
            "drop",
            &format!("anp/web-guard/egress/{f}/1"),
        );
    }
    let resolvers: Api<DnsNameResolver> = Api::all(w.client.clone());
    let resolver = dns_names::resolver_name("web-guard", "*.example.com.");
    resolvers
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "kubeovn.io/v1", "kind": "DNSNameResolver",
                "metadata": {"name": resolver, "labels": {"anp": "web-guard"}},
                "spec": {"name": "*.example.com."},
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    resolvers
        .patch_status(
            &resolver,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"resolvedNames": [{"dnsName": "www.example.com.",
                "resolvedAddresses": [{"ip": "198.51.100.7", "ttlSeconds": 30,
                                       "lastLookupTime": "2026-12-07T00:00:00Z"}]}]}}),
            ),
        )
        .await
        .unwrap();
    // BANP "default": ingress 0 denies everything from any namespace.
    port_group("default", "banp", "default", &format!("{web} {cli}"));
    let mut all = [cli_ip.clone(), _web_ip.clone()];
    all.sort();
    address_set(
        "default.ingress.0.all.IPv4",
        "banp",
        "default/ingress",
        &all.join("\",\""),
    );
    address_set("default.ingress.0.all.IPv6", "banp", "default/ingress", "");
    acl(
        "default",
        "to-lport",
        "1800",
        "outport == @default && ip && ip4.src == $default.ingress.0.all.IPv4",
        "drop",
        "banp/default/ingress/IPv4/0",
    );

    Api::<AdminNetworkPolicy>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &anp(
                "web-guard",
                3,
                json!({
                    "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
                    "ingress": [{"name": "clients", "action": "Allow",
                                 "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}],
                                 "ports": [{"portNumber": {"protocol": "TCP", "port": 8080}}]}],
                    "egress": [{"name": "ten", "action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]},
                               {"name": "sites", "action": "Deny", "to": [{"domainNames": ["*.example.com."]}]}]
                }),
            ),
        )
        .await
        .unwrap();
    Api::<BaselineAdminNetworkPolicy>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &banp(json!({
                "subject": {"namespaces": {}},
                "ingress": [{"name": "all", "action": "Deny", "from": [{"namespaces": {}}]}]
            })),
        )
        .await
        .unwrap();
    eventually("the replica has the upstream rows", LONG, || async {
        (pg_acls(&w, "web.guard").len() == 4 && pg_acls(&w, "default").len() == 1).then_some(())
    })
    .await;

    let mut changes = w.nb.subscribe();
    w.start_controller();
    eventually("everything reconciled", LONG, || async {
        let a = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"admin-network-policy\"",
            )
            .await?;
        let b = w
            .counter(
                "kube_ovn_controller_reconciles_total",
                "kind=\"baseline-admin-network-policy\"",
            )
            .await?;
        let pods = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"pod\"")
            .await?;
        let s = w
            .counter("kube_ovn_controller_reconciles_total", "kind=\"subnet\"")
            .await?;
        (a >= 1.0 && b >= 1.0 && pods >= 2.0 && s >= 2.0).then_some(())
    })
    .await;
    w.assert_wrote_nothing(&mut changes, "adopting upstream's admin policies")
        .await;

    // Bad input: a domain the policy API takes but no resolver can (no trailing dot, upper
    // case) is named in a Warning and gets no resolver; the valid one beside it does.
    Api::<AdminNetworkPolicy>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &anp(
                "sloppy",
                7,
                json!({"subject": {"namespaces": {}},
                       "egress": [{"name": "names", "action": "Deny",
                                   "to": [{"domainNames": ["Example.com", "fine.example.org."]}]}]}),
            ),
        )
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(w.client.clone(), "default");
    eventually("the InvalidDomainName event", LONG, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidDomainName")
                    && e.involved_object.name.as_deref() == Some("sloppy")
                    && e.message
                        .as_deref()
                        .is_some_and(|m| m.contains("Example.com"))
            })
            .then_some(())
    })
    .await;
    let sloppy: Vec<String> = eventually("the valid domain's resolver", LONG, || async {
        let list = resolvers
            .list(&ListParams::default().labels("anp=sloppy"))
            .await
            .ok()?;
        let names: Vec<String> = list.items.iter().map(|r| r.spec.name.clone()).collect();
        (!names.is_empty()).then_some(names)
    })
    .await;
    assert_eq!(sloppy, ["fine.example.org."]);

    // With --enable-anp off, upstream's GC removes every admin policy row; so does ours.
    w.kill_controller();
    w.controller_args.clear();
    w.start_controller();
    eventually("the admin policy rows removed", LONG, || async {
        admin_rows(&w).is_empty().then_some(())
    })
    .await;
    assert!(pg_acls(&w, "web.guard").is_empty());
    // ... and the resolvers its policies had.
    eventually("the policy's resolver removed", LONG, || async {
        resolvers
            .get_opt(&resolver)
            .await
            .ok()
            .and_then(|r| r.is_none().then_some(()))
    })
    .await;
    println!("upstream layout adoption: {:?}", started.elapsed());
}

/// A pod's port, MAC and IPv4 address once it is allocated.
async fn endpoint(w: &World, name: &str, labels: Value) -> (String, String, String) {
    let ip = create_pod(w, "default", name, labels).await;
    let p = Api::<Pod>::namespaced(w.client.clone(), "default")
        .get(name)
        .await
        .unwrap();
    let mac = p.metadata.annotations.unwrap()["ovn.kubernetes.io/mac_address"].clone();
    (format!("{name}.default"), mac, ip)
}

/// Whether OVN's logical pipeline (ovn-trace on the SB northd wrote, the same expression
/// parser ovn-controller uses) delivers a new TCP connection from `from` to `to` on `port`.
fn delivered(
    w: &World,
    from: &(String, String, String),
    to: &(String, String, String),
    port: u16,
) -> bool {
    let flow = format!(
        "inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == {} && ip4.dst == {} && ip.ttl == 64 && tcp.src == 40000 && tcp.dst == {port}",
        from.0, from.1, to.1, from.2, to.2
    );
    let out = std::process::Command::new("ovn-trace")
        .arg(format!("--db={}", w.sandbox.state().central.sb))
        .args(["--ct=new", "--ct=new", "--minimal", "ovn-default", &flow])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ovn-trace: {stderr}");
    assert!(
        !stderr.contains("parsing expression failed"),
        "a logical flow does not parse: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout).contains(&format!("output(\"{}\")", to.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anp_then_network_policy_then_banp_in_ovns_pipeline() {
    let started = Instant::now();
    let mut w = World::new(1, false).await;
    w.controller_args = vec!["--enable-anp=true".into()];
    w.start_controller();
    let web = endpoint(&w, "web", json!({"app": "web"})).await;
    let cli = endpoint(&w, "cli", json!({"role": "client"})).await;
    let other = endpoint(&w, "other", json!({})).await;

    // ANP: clients are passed on, everyone else is denied.
    Api::<AdminNetworkPolicy>::all(w.client.clone())
        .create(
            &PostParams::default(),
            &anp(
                "pass-clients",
                1,
                json!({
                    "subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
                    "ingress": [
                        {"name": "clients", "action": "Pass",
                         "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}}]},
                        {"name": "rest", "action": "Deny", "from": [{"namespaces": {}}]}
                    ]
                }),
            ),
        )
        .await
        .unwrap();
    // NetworkPolicy: every pod of the namespace may reach 8080 (others default-dropped).
    let nps: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(w.client.clone(), "default");
    nps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web-8080", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    // BANP: allow everything.
    let banps: Api<BaselineAdminNetworkPolicy> = Api::all(w.client.clone());
    let baseline = |action: &str| {
        banp(json!({"subject": {"namespaces": {}},
                    "ingress": [{"name": "all", "action": action, "from": [{"namespaces": {}}]}]}))
    };
    banps
        .create(&PostParams::default(), &baseline("Allow"))
        .await
        .unwrap();
    eventually("the three layers in the NB", LONG, || async {
        let anp_ok = pg_acls(&w, "pass.clients").len() == 1
            && named(&w, "Address_Set", "pass.clients.ingress.0.clients.IPv4")
                .is_some_and(|s| set_of(&s, "addresses") == [cli.2.clone()].into());
        let np_ok = pg_acls(&w, "web.8080.default").len() == 2;
        let banp_ok = pg_acls(&w, "default")
            .iter()
            .any(|a| a.3 == "allow-related");
        (anp_ok && np_ok && banp_ok).then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    // A client is passed to the NetworkPolicy: 8080 allowed there, 9090 default-dropped there
    // (the BANP's allow is never reached).
    assert!(
        delivered(&w, &cli, &web, 8080),
        "pass → NetworkPolicy allow"
    );
    assert!(
        !delivered(&w, &cli, &web, 9090),
        "pass → NetworkPolicy drop"
    );
    // The ANP's Deny wins over the NetworkPolicy's allow.
    assert!(!delivered(&w, &other, &web, 8080), "ANP deny over NP allow");

    // Without the NetworkPolicy, passed traffic reaches the BANP.
    nps.delete("web-8080", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the NetworkPolicy gone", LONG, || async {
        named(&w, "Port_Group", "web.8080.default")
            .is_none()
            .then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    assert!(delivered(&w, &cli, &web, 9090), "pass → BANP allow");
    assert!(
        !delivered(&w, &other, &web, 8080),
        "ANP deny over BANP allow"
    );
    banps
        .replace("default", &PostParams::default(), &{
            let mut b = baseline("Deny");
            b.metadata.resource_version = banps
                .get("default")
                .await
                .unwrap()
                .metadata
                .resource_version;
            b
        })
        .await
        .unwrap();
    eventually("the BANP denies", LONG, || async {
        pg_acls(&w, "default")
            .iter()
            .any(|a| a.3 == "drop")
            .then_some(())
    })
    .await;
    w.nbctl(&["--wait=sb", "sync"]);
    assert!(!delivered(&w, &cli, &web, 9090), "pass → BANP deny");
    println!(
        "three-layer precedence in OVN's pipeline: {:?}",
        started.elapsed()
    );
}
