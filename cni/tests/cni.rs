//! The `kube-ovn` binary end to end: executed as a container runtime executes a CNI plugin,
//! talking to a test double of kube-ovn-daemon's API (see `support/daemon_double.rs`).

mod support;

use serde_json::{json, Value};
use support::daemon_double::{DaemonDouble, Reply};
use support::netns::TestNetns;
use support::{attachment_env, cni, cni_args, CONTAINER_ID};

/// Upstream's daemon answering ADD for a dual-stack primary NIC (Go-encoded).
const DUAL_STACK: &str = r#"{"ips":[{"protocol":"IPv4","ip":"10.16.0.5","cidr":"10.16.0.0/16","gateway":"10.16.0.1"},{"protocol":"IPv6","ip":"fd00:10:16::5","cidr":"fd00:10:16::/64","gateway":"fd00:10:16::1"}],"mac_address":"00:00:00:5e:11:ab","routes":null,"mtu":1400,"nicname":"eth0","dns":{},"error":""}"#;

/// Upstream's daemon answering ADD for kube-ovn as another plugin's IPAM (no NIC).
const IPAM_ONLY: &str = r#"{"ips":[{"protocol":"IPv4","ip":"172.18.0.7","cidr":"172.18.0.0/16"}],"mac_address":"","routes":[{"dst":"192.168.0.0/24","gw":"172.18.0.254"}],"mtu":0,"nicname":"","dns":{},"error":""}"#;

fn go_error(message: &str) -> String {
    format!(
        r#"{{"ips":null,"mac_address":"","routes":null,"mtu":0,"nicname":"","dns":{{}},"error":"{message}"}}"#
    )
}

fn conf(version: &str, socket: &std::path::Path) -> String {
    json!({
        "cniVersion": version,
        "name": "kube-ovn",
        "type": "kube-ovn",
        "server_socket": socket,
    })
    .to_string()
}

fn daemon() -> DaemonDouble {
    DaemonDouble::start(Reply::json(200, DUAL_STACK), Reply::no_content())
}

#[test]
fn add_reports_the_daemons_nic_and_sends_upstreams_request() {
    let d = daemon();
    let ns = TestNetns::new();
    let out = cni(
        &attachment_env("ADD", ns.path()),
        &conf("1.1.0", &d.socket()),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json(),
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "mac": "00:00:00:5e:11:ab", "mtu": 1400, "sandbox": ns.path()}],
            "ips": [
                {"address": "10.16.0.5/16", "gateway": "10.16.0.1", "interface": 0},
                {"address": "fd00:10:16::5/64", "gateway": "fd00:10:16::1", "interface": 0}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.16.0.1"},
                {"dst": "::/0", "gw": "fd00:10:16::1"}
            ]
        })
    );
    let reqs = d.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v1/add")
    );
    assert_eq!(
        (r.host.as_str(), r.content_type.as_str()),
        ("dummy", "application/json")
    );
    assert_eq!(
        r.body,
        json!({
            "cni_type": "kube-ovn", "pod_name": "web-0", "pod_namespace": "default",
            "container_id": CONTAINER_ID, "net_ns": ns.path(), "if_name": "eth0",
            "provider": "ovn", "routes": null, "dns": {}, "vf_driver": "", "deviceID": "",
            "vhost_user_socket_volume_name": "", "vhost_user_socket_name": "",
            "vhost_user_socket_consumption": ""
        })
    );
    // What upstream's shim does in the pod itself: IPv6 on, router advertisements off.
    for conf in ["all", "default"] {
        for key in ["disable_ipv6", "accept_ra"] {
            let path = format!("/proc/sys/net/ipv6/conf/{conf}/{key}");
            assert_eq!(ns.sysctl(&path), "0", "{path}");
        }
    }
}

#[test]
fn add_with_the_shipped_conflist_answers_in_0_3_1() {
    let d = daemon();
    let ns = TestNetns::new();
    // The kube-ovn entry of upstream's 01-kube-ovn.conflist as the runtime passes it, plus
    // the netconf routes and dns the daemon must receive.
    let stdin = json!({
        "cniVersion": "0.3.1", "name": "kube-ovn", "type": "kube-ovn",
        "server_socket": d.socket(),
        "routes": [{"dst": "10.20.0.0/16", "gw": "10.16.0.254"}],
        "dns": {"nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"]}
    });
    let out = cni(&attachment_env("ADD", ns.path()), &stdin.to_string());
    assert_eq!(out.code, 0, "{out:?}");
    let result = out.json();
    assert_eq!(result["cniVersion"], "0.3.1");
    assert_eq!(
        result["ips"],
        json!([
            {"version": "4", "address": "10.16.0.5/16", "gateway": "10.16.0.1", "interface": 0},
            {"version": "6", "address": "fd00:10:16::5/64", "gateway": "fd00:10:16::1", "interface": 0}
        ])
    );
    assert_eq!(
        result["interfaces"],
        json!([{"name": "eth0", "mac": "00:00:00:5e:11:ab", "sandbox": ns.path()}]),
        "0.3.1 interfaces have no mtu"
    );
    let body = &d.requests()[0].body;
    assert_eq!(
        body["routes"],
        json!([{"dst": "10.20.0.0/16", "gw": "10.16.0.254"}])
    );
    assert_eq!(body["dns"], stdin["dns"]);
}

#[test]
fn add_as_another_plugins_ipam_returns_an_ipam_result() {
    let d = DaemonDouble::start(Reply::json(200, IPAM_ONLY), Reply::no_content());
    let ns = TestNetns::new();
    let stdin = json!({
        "cniVersion": "1.0.0", "name": "macvlan-net", "type": "macvlan", "master": "eth1",
        "ipam": {
            "type": "kube-ovn", "server_socket": d.socket(),
            "provider": "macvlan-net.default", "routes": [{"gw": "172.18.0.254"}]
        }
    });
    let mut env = attachment_env("ADD", ns.path());
    env.retain(|(k, _)| *k != "CNI_IFNAME");
    env.push(("CNI_IFNAME", "net1"));
    let out = cni(&env, &stdin.to_string());
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json(),
        json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "172.18.0.7/16"}],
            "routes": [{"dst": "192.168.0.0/24", "gw": "172.18.0.254"}]
        })
    );
    let body = &d.requests()[0].body;
    assert_eq!(body["cni_type"], "macvlan");
    assert_eq!(body["provider"], "macvlan-net.default");
    assert_eq!(body["if_name"], "net1");
    assert_eq!(body["routes"], json!([{"gw": "172.18.0.254"}]));
}

#[test]
fn del_twice_succeeds_and_reaches_the_daemon_both_times() {
    let d = daemon();
    let ns = TestNetns::new();
    let env = attachment_env("DEL", ns.path());
    let stdin = conf("1.0.0", &d.socket());
    for _ in 0..2 {
        let out = cni(&env, &stdin);
        assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    }
    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/api/v1/del");
        assert_eq!(r.body["container_id"], CONTAINER_ID);
        assert_eq!(r.body["pod_name"], "web-0");
        assert_eq!(r.body["provider"], "ovn");
    }
}

#[test]
fn del_without_netns_is_forwarded_with_an_empty_netns() {
    let d = daemon();
    let mut env = attachment_env("DEL", "");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    let out = cni(&env, &conf("1.0.0", &d.socket()));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(d.requests()[0].body["net_ns"], "");
}

#[test]
fn del_succeeds_when_no_daemon_socket_exists() {
    let d = daemon();
    let out = cni(
        &attachment_env("DEL", "/nonexistent/netns"),
        &conf("1.0.0", &d.absent_socket()),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    assert!(out.stderr.contains("absent.sock absent"), "{out:?}");
}

#[test]
fn del_failure_is_try_again_with_the_daemons_message() {
    let d = DaemonDouble::start(
        Reply::json(200, DUAL_STACK),
        Reply::json(500, &go_error("del nic failed failed to delete port")),
    );
    let out = cni(
        &attachment_env("DEL", "/var/run/netns/x"),
        &conf("0.4.0", &d.socket()),
    );
    let e = out.error(11);
    assert_eq!(e["cniVersion"], "0.4.0");
    assert_eq!(e["msg"], "RPC failed");
    assert_eq!(
        e["details"],
        "delete ip return 500 del nic failed failed to delete port"
    );
}

#[test]
fn daemon_error_on_add_is_try_again_with_the_daemons_message() {
    for (status, message) in [
        (500, "no address allocated to pod default/web-0 provider ovn, please see kube-ovn-controller logs to find errors"),
        (400, "provider nad.default.ovn is not bound to any subnet"),
    ] {
        let d = DaemonDouble::start(Reply::json(status, &go_error(message)), Reply::no_content());
        let ns = TestNetns::new();
        let out = cni(&attachment_env("ADD", ns.path()), &conf("1.0.0", &d.socket()));
        let e = out.error(11);
        assert_eq!(e["msg"], "RPC failed");
        assert_eq!(e["details"], format!("request ip return {status} {message}"));
    }
}

#[test]
fn daemon_down_on_add_is_try_again_later() {
    let d = daemon();
    let ns = TestNetns::new();
    // No socket at all.
    let out = cni(
        &attachment_env("ADD", ns.path()),
        &conf("1.0.0", &d.absent_socket()),
    );
    let e = out.error(11);
    assert!(
        e["details"].as_str().unwrap().contains("does not exist"),
        "{e}"
    );
    // A socket file a crashed daemon left behind: connection refused.
    let stale = d.absent_socket().with_file_name("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let out = cni(&attachment_env("ADD", ns.path()), &conf("1.0.0", &stale));
    let e = out.error(11);
    assert!(e["details"].as_str().unwrap().contains("refused"), "{e}");
    assert!(d.requests().is_empty());
}

#[test]
fn check_accepts_the_add_result_and_rejects_a_different_one() {
    let d = daemon();
    let ns = TestNetns::new();
    let add = cni(
        &attachment_env("ADD", ns.path()),
        &conf("1.0.0", &d.socket()),
    );
    assert_eq!(add.code, 0, "{add:?}");
    let mut stdin: Value = serde_json::from_str(&conf("1.0.0", &d.socket())).unwrap();
    stdin["prevResult"] = add.json();
    let out = cni(&attachment_env("CHECK", ns.path()), &stdin.to_string());
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    // The double is upstream's daemon, which has no CHECK endpoint (404): the result alone is
    // checked.
    let reqs = d.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/api/v1/check");

    stdin["prevResult"]["interfaces"][0]["sandbox"] = json!("/var/run/netns/other");
    let e = cni(&attachment_env("CHECK", ns.path()), &stdin.to_string()).error(999);
    assert_eq!(e["msg"], "CHECK failed");

    // CHECK exists from 0.4.0 on.
    stdin["cniVersion"] = json!("0.3.1");
    cni(&attachment_env("CHECK", ns.path()), &stdin.to_string()).error(1);
}

#[test]
fn check_asks_the_daemon_about_the_results_nic_and_fails_with_it() {
    let ns = TestNetns::new();
    let prev_result = |socket: &std::path::Path| {
        let add = cni(&attachment_env("ADD", ns.path()), &conf("1.1.0", socket));
        assert_eq!(add.code, 0, "{add:?}");
        let mut stdin: Value = serde_json::from_str(&conf("1.1.0", socket)).unwrap();
        stdin["prevResult"] = add.json();
        stdin.to_string()
    };
    let ok = DaemonDouble::start_with_check(
        Reply::json(200, DUAL_STACK),
        Reply::no_content(),
        Reply::no_content(),
    );
    let out = cni(
        &attachment_env("CHECK", ns.path()),
        &prev_result(&ok.socket()),
    );
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    let reqs = ok.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        (reqs[1].method.as_str(), reqs[1].path.as_str()),
        ("POST", "/api/v1/check")
    );
    let body = &reqs[1].body;
    assert_eq!(
        body["request"], reqs[0].body,
        "CHECK names the NIC as ADD did"
    );
    assert_eq!(body["mac"], "00:00:00:5e:11:ab");
    assert_eq!(
        body["addresses"],
        json!(["10.16.0.5/16", "fd00:10:16::5/64"])
    );
    assert_eq!(
        body["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.16.0.1"}, {"dst": "::/0", "gw": "fd00:10:16::1"}])
    );

    // What is gone (after a DEL, say) fails CHECK with the daemon's explanation.
    let gone = DaemonDouble::start_with_check(
        Reply::json(200, DUAL_STACK),
        Reply::no_content(),
        Reply::json(
            500,
            &go_error("eth0 in /var/run/netns/x: no such interface"),
        ),
    );
    let e = cni(
        &attachment_env("CHECK", ns.path()),
        &prev_result(&gone.socket()),
    )
    .error(999);
    assert_eq!(e["msg"], "CHECK failed");
    assert_eq!(e["details"], "eth0 in /var/run/netns/x: no such interface");

    // No daemon to ask: the NIC cannot be vouched for.
    let mut stdin: Value = serde_json::from_str(&prev_result(&ok.socket())).unwrap();
    stdin["server_socket"] = json!(ok.absent_socket());
    cni(&attachment_env("CHECK", ns.path()), &stdin.to_string()).error(11);
}

#[test]
fn version_reports_every_supported_version() {
    let out = cni(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.0.0"}"#);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.json(),
        json!({
            "cniVersion": "1.0.0",
            "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        })
    );
    let flag = cni_args(&["--version"], &[], "");
    assert_eq!(flag.code, 0);
    assert!(flag.stdout.starts_with("CNI kube-ovn plugin v"), "{flag:?}");
    assert!(flag.stdout.contains("1.1.0"), "{flag:?}");
    // No CNI_COMMAND: a person is looking; libcni plugins print the same on stderr.
    let bare = cni(&[], "");
    assert_eq!((bare.code, bare.stdout.as_str()), (0, ""));
    assert!(bare.stderr.starts_with("CNI kube-ovn plugin v"), "{bare:?}");
}

#[test]
fn garbage_stdin_is_a_decode_error() {
    let d = daemon();
    let e = cni(
        &attachment_env("ADD", "/var/run/netns/x"),
        "this is not a netconf",
    )
    .error(6);
    assert_eq!(e["cniVersion"], "1.1.0");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .starts_with("error unmarshall network config"),
        "{e}"
    );
    assert!(d.requests().is_empty());
}

#[test]
fn missing_netns_on_add_is_an_environment_error() {
    let d = daemon();
    let mut env = attachment_env("ADD", "");
    env.retain(|(k, _)| *k != "CNI_NETNS");
    let e = cni(&env, &conf("0.3.1", &d.socket())).error(4);
    assert_eq!(e["msg"], "required env variables [CNI_NETNS] missing");
    assert_eq!(
        e["cniVersion"], "0.3.1",
        "labelled with the configuration's version"
    );
    assert!(d.requests().is_empty());
}

#[test]
fn missing_pod_name_is_an_invalid_configuration() {
    let d = daemon();
    let mut env = attachment_env("DEL", "/var/run/netns/x");
    env.retain(|(k, _)| *k != "CNI_ARGS");
    env.push(("CNI_ARGS", "K8S_POD_NAMESPACE=default"));
    let e = cni(&env, &conf("1.0.0", &d.socket())).error(7);
    assert_eq!(e["details"], "K8S_POD_NAME is required in CNI_ARGS");
    assert!(d.requests().is_empty());
}

#[test]
fn unsupported_version_is_incompatible() {
    let d = daemon();
    let e = cni(
        &attachment_env("DEL", "/var/run/netns/x"),
        &conf("2.0.0", &d.socket()),
    )
    .error(1);
    assert_eq!(e["msg"], "incompatible CNI versions");
    assert!(d.requests().is_empty());
}

#[test]
fn status_follows_daemon_reachability() {
    let d = daemon();
    let env = [("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/opt/cni/bin")];
    let up = cni(&env, &conf("1.1.0", &d.socket()));
    assert_eq!((up.code, up.stdout.as_str()), (0, ""), "{up:?}");
    let e = cni(&env, &conf("1.1.0", &d.absent_socket())).error(50);
    assert!(
        e["details"].as_str().unwrap().contains("absent.sock"),
        "{e}"
    );
    assert!(d.requests().is_empty(), "STATUS sends no request");
}

#[test]
fn gc_succeeds_quietly_from_1_1_0() {
    let d = daemon();
    let env = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/opt/cni/bin")];
    let mut stdin: Value = serde_json::from_str(&conf("1.1.0", &d.socket())).unwrap();
    stdin["cni.dev/valid-attachments"] = json!([{"containerID": CONTAINER_ID, "ifname": "eth0"}]);
    let out = cni(&env, &stdin.to_string());
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{out:?}");
    stdin["cniVersion"] = json!("1.0.0");
    cni(&env, &stdin.to_string()).error(1);
    assert!(d.requests().is_empty());
}
