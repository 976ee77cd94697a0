//! The CNI operations. The shim holds no state: ADD and DEL are forwarded to the daemon, the
//! rest are answered from the configuration and the environment.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::client::{DaemonClient, RpcError};
use crate::env::{Command, Invocation};
use crate::error::{CniError, ErrorCode};
use crate::netconf::{declared_version, Mode, NetConf};
use crate::netns;
use crate::protocol::{CheckRequest, CniRequest, Route};
use crate::render::render;
use crate::result::AddResult;
use crate::version::CniVersion;

/// Deadline of an ADD call. The daemon itself may legitimately take minutes (it waits up to
/// 20 s for the controller's address, 30 s for ovn-controller to install flows, then probes
/// the gateway up to 200 times), so this only bounds a daemon that stopped answering; the
/// runtime's own deadline normally comes first.
pub const ADD_TIMEOUT: Duration = Duration::from_secs(300);
/// Deadline of a DEL call: removing a port is quick, and a runtime retries a failed DEL.
pub const DEL_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of a CHECK call: the daemon only reads the pod's links and its OVS replica.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of STATUS's connect, as the daemon's own liveness probe uses.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Upstream's `about` line plus the supported versions: what a person running the binary
/// without `CNI_COMMAND`, or with `--version`, gets to see.
pub fn about() -> String {
    format!(
        "CNI kube-ovn plugin v{}\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        CniVersion::all_strings().join(", ")
    )
}

/// Runs one invocation. `Ok(Some(_))` is printed as the result, `Ok(None)` means success
/// without output, and an error is printed as the spec's error object.
pub async fn run(inv: &Invocation, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    match inv.command {
        Command::Version => Ok(Some(version_info(stdin))),
        Command::Add => add(inv, &NetConf::parse(stdin)?).await.map(Some),
        Command::Del => del(inv, &NetConf::parse(stdin)?).await.map(|()| None),
        Command::Check => {
            let conf = at_least(stdin, CniVersion::V0_4_0, "CHECK")?;
            check(inv, &conf)?;
            check_with_daemon(inv, &conf).await.map(|()| None)
        }
        Command::Status => status(&at_least(stdin, CniVersion::V1_1_0, "STATUS")?)
            .await
            .map(|()| None),
        // Nothing to collect here: the daemon removes OVS ports whose pod is gone on its
        // own, and the controller releases addresses when pods are deleted.
        Command::Gc => at_least(stdin, CniVersion::V1_1_0, "GC").map(|_| None),
    }
}

/// The VERSION answer: the version the caller declared (when we speak it) and our list.
fn version_info(stdin: &[u8]) -> Value {
    json!({
        "cniVersion": declared_version(stdin).as_str(),
        "supportedVersions": CniVersion::all_strings(),
    })
}

fn at_least(stdin: &[u8], min: CniVersion, command: &str) -> Result<NetConf, CniError> {
    let conf = NetConf::parse(stdin)?;
    if conf.version < min {
        return Err(CniError::new(
            ErrorCode::IncompatibleVersion,
            format!("config version does not allow {command}"),
            format!(
                "{command} needs cniVersion {min} or newer, config is {}",
                conf.version
            ),
        ));
    }
    Ok(conf)
}

async fn add(inv: &Invocation, conf: &NetConf) -> Result<Value, CniError> {
    let req = daemon_request(inv, conf)?;
    let netns = Path::new(&inv.netns);
    if !inv.netns_override {
        netns::ensure_foreign(netns)?;
    }
    netns::enable_ipv6(netns)?;
    let resp = DaemonClient::new(&conf.server_socket, ADD_TIMEOUT)
        .add(&req)
        .await
        .map_err(rpc_failed)?;
    let result = AddResult::from_response(&resp, conf.mode, &inv.ifname, &inv.netns)?;
    // A delegated IPAM plugin answers only for itself; its caller does the merging.
    let prev = match conf.mode {
        Mode::Plugin => conf.prev_result.as_ref(),
        Mode::Ipam => None,
    };
    render(&result, conf.version, prev)
}

async fn del(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let req = daemon_request(inv, conf)?;
    let client = DaemonClient::new(&conf.server_socket, DEL_TIMEOUT);
    match client.del(&req).await {
        Ok(()) => Ok(()),
        // No socket means no daemon on this node (kube-ovn removed, or mid-restart after a
        // clean shutdown). DEL is best effort: refusing would leave the pod stuck
        // terminating, while what is left (an OVS port whose veth vanished with the netns)
        // is collected by the daemon's interface GC when it runs again.
        Err(RpcError::SocketAbsent(_)) => {
            eprintln!(
                "kube-ovn: DEL of {} {}: {} absent, nothing to tell kube-ovn-daemon",
                inv.container_id,
                inv.ifname,
                client.socket().display()
            );
            Ok(())
        }
        Err(e) => Err(rpc_failed(e)),
    }
}

/// CHECK's first half, without the daemon: the namespace must still exist and the chain's
/// result must still show what our ADD reported.
fn check(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    if let Err(e) = std::fs::metadata(&inv.netns) {
        let code = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorCode::UnknownContainer,
            _ => ErrorCode::Internal,
        };
        return Err(CniError::new(
            code,
            "container netns is not accessible",
            format!("{}: {e}", inv.netns),
        ));
    }
    let Some(prev) = conf.prev_result.as_ref() else {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "Invalid Configuration",
            "CHECK requires prevResult",
        ));
    };
    let failed = |details: String| CniError::new(ErrorCode::Internal, "CHECK failed", details);
    let ips = list(prev, "ips");
    match conf.mode {
        Mode::Ipam if ips.is_empty() => Err(failed("prevResult has no IP address".into())),
        Mode::Ipam => Ok(()),
        Mode::Plugin => {
            let index = our_interface(inv, prev).ok_or_else(|| {
                failed(format!(
                    "prevResult has no interface {} in {}",
                    inv.ifname, inv.netns
                ))
            })?;
            if ips
                .iter()
                .any(|ip| ip["interface"].as_u64() == Some(index as u64))
            {
                Ok(())
            } else {
                Err(failed(format!(
                    "prevResult has no IP address on {}",
                    inv.ifname
                )))
            }
        }
    }
}

/// CHECK's second half: the daemon compares the pod's interface (MAC, addresses, routes) and
/// its OVS port with the result. As IPAM the interface is the delegating plugin's, which checks
/// it itself. Upstream's daemon has no CHECK endpoint (404): then only the first half applies.
async fn check_with_daemon(inv: &Invocation, conf: &NetConf) -> Result<(), CniError> {
    let (Mode::Plugin, Some(prev)) = (conf.mode, conf.prev_result.as_ref()) else {
        return Ok(());
    };
    let req = expected_nic(inv, prev, daemon_request(inv, conf)?);
    let client = DaemonClient::new(&conf.server_socket, CHECK_TIMEOUT);
    match client.check(&req).await {
        Ok(()) => Ok(()),
        Err(RpcError::Status { status: 404, .. }) => {
            eprintln!(
                "kube-ovn: CHECK of {} {}: kube-ovn-daemon has no CHECK endpoint, only the result was checked",
                inv.container_id, inv.ifname
            );
            Ok(())
        }
        Err(RpcError::Status { message, .. }) => {
            Err(CniError::new(ErrorCode::Internal, "CHECK failed", message))
        }
        Err(e) => Err(rpc_failed(e)),
    }
}

/// The index in `prevResult.interfaces` of the interface our ADD created.
fn our_interface(inv: &Invocation, prev: &Map<String, Value>) -> Option<usize> {
    list(prev, "interfaces").iter().position(|i| {
        i["name"].as_str() == Some(inv.ifname.as_str())
            && i["sandbox"].as_str() == Some(inv.netns.as_str())
    })
}

/// What `prevResult` says our interface has: its MAC, the addresses on it, and every route
/// (a route does not name its interface, and a later plugin may have changed them, so the
/// result's list is what must be in the pod).
fn expected_nic(inv: &Invocation, prev: &Map<String, Value>, request: CniRequest) -> CheckRequest {
    let index = our_interface(inv, prev);
    let interfaces = list(prev, "interfaces");
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    CheckRequest {
        request,
        mac: index.map_or(String::new(), |i| text(&interfaces[i], "mac")),
        addresses: list(prev, "ips")
            .iter()
            .filter(|ip| index.is_some() && ip["interface"].as_u64() == index.map(|i| i as u64))
            .map(|ip| text(ip, "address"))
            .collect(),
        routes: list(prev, "routes")
            .iter()
            .map(|r| Route {
                dst: text(r, "dst"),
                gw: text(r, "gw"),
            })
            .collect(),
    }
}

async fn status(conf: &NetConf) -> Result<(), CniError> {
    DaemonClient::new(&conf.server_socket, STATUS_TIMEOUT)
        .probe()
        .await
        .map_err(|e| {
            CniError::new(
                ErrorCode::PluginNotAvailable,
                "kube-ovn-daemon is not available",
                e.to_string(),
            )
        })
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn daemon_request(inv: &Invocation, conf: &NetConf) -> Result<CniRequest, CniError> {
    Ok(CniRequest {
        cni_type: conf.plugin_type.clone(),
        pod_name: inv.k8s_arg("K8S_POD_NAME")?,
        pod_namespace: inv.k8s_arg("K8S_POD_NAMESPACE")?,
        container_id: inv.container_id.clone(),
        net_ns: inv.netns.clone(),
        if_name: inv.ifname.clone(),
        provider: conf.provider.clone(),
        routes: conf.routes.clone(),
        dns: conf.dns.clone(),
        vf_driver: conf.vf_driver.clone(),
        device_id: conf.device_id.clone(),
        vhost_user_socket_volume_name: conf.vhost_user_socket_volume_name.clone(),
        vhost_user_socket_name: conf.vhost_user_socket_name.clone(),
        vhost_user_socket_consumption: conf.vhost_user_socket_consumption.clone(),
    })
}

/// Upstream's mapping: any failure to get an answer, or a failure answer, is "try again".
fn rpc_failed(e: RpcError) -> CniError {
    CniError::new(ErrorCode::TryAgainLater, "RPC failed", e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(command: Command) -> Invocation {
        Invocation {
            command,
            container_id: "c1".into(),
            netns: "/proc/self/ns/net".into(),
            ifname: "eth0".into(),
            args: "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p".into(),
            netns_override: false,
        }
    }

    fn conf(version: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"cniVersion":"{version}","name":"kube-ovn","type":"kube-ovn","server_socket":"/nonexistent/kube-ovn.sock"{extra}}}"#
        )
        .into_bytes()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn version_echoes_known_versions() {
        let v = version_info(br#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(
            v["supportedVersions"],
            json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
        assert_eq!(version_info(b"")["cniVersion"], "1.1.0");
        assert!(about().contains("0.3.1, 0.4.0"));
    }

    #[test]
    fn request_fields_come_from_env_and_conf() {
        let c = NetConf::parse(&conf("1.0.0", r#","provider":"x.y.ovn","vf_driver":"d""#)).unwrap();
        let r = daemon_request(&inv(Command::Add), &c).unwrap();
        assert_eq!(
            (
                r.cni_type.as_str(),
                r.pod_name.as_str(),
                r.pod_namespace.as_str()
            ),
            ("kube-ovn", "p", "ns")
        );
        assert_eq!(
            (r.container_id.as_str(), r.if_name.as_str()),
            ("c1", "eth0")
        );
        assert_eq!(
            (r.provider.as_str(), r.vf_driver.as_str()),
            ("x.y.ovn", "d")
        );
    }

    #[test]
    fn command_version_floors() {
        for (cmd, version) in [
            (Command::Check, "0.3.1"),
            (Command::Status, "1.0.0"),
            (Command::Gc, "1.0.0"),
        ] {
            let e = block_on(run(&inv(cmd), &conf(version, ""))).unwrap_err();
            assert_eq!(e.code, ErrorCode::IncompatibleVersion, "{cmd:?}");
        }
        assert_eq!(
            block_on(run(&inv(Command::Gc), &conf("1.1.0", ""))),
            Ok(None)
        );
    }

    #[test]
    fn check_compares_prev_result() {
        let mut i = inv(Command::Check);
        let ok = r#","prevResult":{"interfaces":[{"name":"lo"},{"name":"eth0","sandbox":"/proc/self/ns/net"}],
                    "ips":[{"address":"10.0.0.2/24","interface":1}]}"#;
        assert_eq!(
            check(&i, &NetConf::parse(&conf("1.0.0", ok)).unwrap()),
            Ok(())
        );
        let e = check(&i, &NetConf::parse(&conf("1.0.0", "")).unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        let wrong_ip = r#","prevResult":{"interfaces":[{"name":"eth0","sandbox":"/proc/self/ns/net"}],
                    "ips":[{"address":"10.0.0.2/24","interface":1}]}"#;
        let e = check(&i, &NetConf::parse(&conf("1.0.0", wrong_ip)).unwrap()).unwrap_err();
        assert_eq!(e.details, "prevResult has no IP address on eth0");
        i.ifname = "net1".into();
        let e = check(&i, &NetConf::parse(&conf("1.0.0", ok)).unwrap()).unwrap_err();
        assert_eq!(
            e.details,
            "prevResult has no interface net1 in /proc/self/ns/net"
        );
        i.netns = "/nonexistent/ns".into();
        let e = check(&i, &NetConf::parse(&conf("1.0.0", ok)).unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownContainer);
    }

    #[test]
    fn add_refuses_the_plugins_own_netns_before_calling_the_daemon() {
        // The socket does not exist: reaching the daemon would be code 11, not 8.
        let e = block_on(run(&inv(Command::Add), &conf("1.0.0", ""))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidNetns);
    }

    #[test]
    fn del_without_a_daemon_socket_succeeds_but_status_fails() {
        assert_eq!(
            block_on(run(&inv(Command::Del), &conf("1.0.0", ""))),
            Ok(None)
        );
        let e = block_on(run(&inv(Command::Status), &conf("1.1.0", ""))).unwrap_err();
        assert_eq!(e.code, ErrorCode::PluginNotAvailable);
    }
}
