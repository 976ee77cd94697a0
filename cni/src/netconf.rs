//! The network configuration on stdin, in both forms upstream accepts:
//!
//! * plugin form — `"type": "kube-ovn"` with `server_socket`, `provider`, `routes` at the top;
//! * IPAM form — another plugin's configuration (`macvlan`, `sriov`, …) whose
//!   `"ipam": {"type": "kube-ovn", "server_socket", "provider", "routes"}` delegates address
//!   management to us; those three then come from `ipam` only.
//!
//! Validation order and messages follow libcni's skeleton and upstream's `loadNetConf`, so a
//! broken configuration fails the same way under either binary.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{CniError, ErrorCode};
use crate::protocol::{go_null, Dns, Route, DEFAULT_SERVER_SOCKET};
use crate::version::CniVersion;

/// The plugin's `type`, i.e. its binary name.
pub const PLUGIN_TYPE: &str = "kube-ovn";
/// The provider of the default (OVN-managed primary) network.
pub const DEFAULT_PROVIDER: &str = "ovn";

/// Whether we are the main plugin or another plugin's IPAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// We create the pod's NIC (through the daemon) and report it.
    Plugin,
    /// We only hand out addresses; the delegating plugin owns the interface.
    Ipam,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// The spec version the runtime speaks for this call.
    pub version: CniVersion,
    /// Network name.
    pub name: String,
    /// The `type`: ours, or the delegating plugin's in IPAM mode (sent to the daemon as
    /// `cni_type`, which decides whether it creates a NIC).
    pub plugin_type: String,
    /// Plugin or IPAM.
    pub mode: Mode,
    /// The daemon's unix socket.
    pub server_socket: PathBuf,
    /// Subnet provider, `ovn` unless configured.
    pub provider: String,
    /// Extra routes for the daemon to install.
    pub routes: Vec<Route>,
    /// DNS settings passed to the daemon.
    pub dns: Dns,
    /// SR-IOV VF PCI address (set by Multus for device plugins).
    pub device_id: String,
    /// Driver to bind the VF to.
    pub vf_driver: String,
    /// DPDK vhost-user volume.
    pub vhost_user_socket_volume_name: String,
    /// DPDK vhost-user socket name.
    pub vhost_user_socket_name: String,
    /// DPDK vhost-user consumer.
    pub vhost_user_socket_consumption: String,
    /// The previous plugin's result in a chain (ADD, CHECK, DEL).
    pub prev_result: Option<Map<String, Value>>,
}

/// The members we read, with Go's leniency for `null`. Anything else (`capabilities`,
/// `runtimeConfig`, `args`, other plugins' keys) is accepted and ignored, as upstream does:
/// kube-ovn declares no capabilities, so `runtimeConfig` carries nothing for it.
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type", default, deserialize_with = "go_null")]
    plugin_type: String,
    #[serde(default, deserialize_with = "go_null")]
    server_socket: String,
    #[serde(default, deserialize_with = "go_null")]
    provider: String,
    #[serde(default, deserialize_with = "go_null")]
    routes: Vec<Route>,
    #[serde(default)]
    ipam: Option<RawIpam>,
    #[serde(default, deserialize_with = "go_null")]
    dns: Dns,
    #[serde(rename = "deviceID", default, deserialize_with = "go_null")]
    device_id: String,
    #[serde(default, deserialize_with = "go_null")]
    vf_driver: String,
    #[serde(default, deserialize_with = "go_null")]
    vhost_user_socket_volume_name: String,
    #[serde(default, deserialize_with = "go_null")]
    vhost_user_socket_name: String,
    #[serde(default, deserialize_with = "go_null")]
    vhost_user_socket_consumption: String,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawIpam {
    #[serde(default, deserialize_with = "go_null")]
    server_socket: String,
    #[serde(default, deserialize_with = "go_null")]
    provider: String,
    #[serde(default, deserialize_with = "go_null")]
    routes: Vec<Route>,
}

impl NetConf {
    /// Parses and validates stdin.
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                ErrorCode::Decode,
                format!("error unmarshall network config: {e}"),
                "",
            )
        })?;
        let Some(obj) = value.as_object() else {
            return Err(CniError::new(
                ErrorCode::Decode,
                "error unmarshall network config: not a JSON object",
                "",
            ));
        };
        let name = network_name(obj)?;
        let version = config_version(obj)?;
        let raw: Raw = serde_json::from_value(value.clone()).map_err(|e| {
            CniError::new(ErrorCode::Decode, "failed to load netconf", e.to_string())
        })?;

        let (mode, server_socket, provider, routes) = match raw.ipam {
            Some(ipam) if raw.plugin_type != PLUGIN_TYPE => {
                (Mode::Ipam, ipam.server_socket, ipam.provider, ipam.routes)
            }
            _ => (Mode::Plugin, raw.server_socket, raw.provider, raw.routes),
        };
        if server_socket.is_empty() {
            let field = match mode {
                Mode::Plugin => "server_socket",
                Mode::Ipam => "ipam.server_socket",
            };
            return Err(CniError::new(
                ErrorCode::InvalidConfig,
                "Invalid Configuration",
                format!(
                    "{field} is required in cni.conf (kube-ovn installs its daemon at {DEFAULT_SERVER_SOCKET})"
                ),
            ));
        }
        let provider = if provider.is_empty() {
            DEFAULT_PROVIDER.to_string()
        } else {
            provider
        };
        Ok(NetConf {
            version,
            name,
            plugin_type: raw.plugin_type,
            mode,
            server_socket: PathBuf::from(server_socket),
            provider,
            routes,
            dns: raw.dns,
            device_id: raw.device_id,
            vf_driver: raw.vf_driver,
            vhost_user_socket_volume_name: raw.vhost_user_socket_volume_name,
            vhost_user_socket_name: raw.vhost_user_socket_name,
            vhost_user_socket_consumption: raw.vhost_user_socket_consumption,
            prev_result: raw.prev_result,
        })
    }
}

/// The version stdin declares when it may be anything (garbage, a bare `{"cniVersion"}` for
/// VERSION): the configuration's own when we speak it, else the newest. Labels errors and the
/// VERSION answer.
pub fn declared_version(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|obj| config_version(obj).ok())
        .unwrap_or(CniVersion::LATEST)
}

fn network_name(obj: &Map<String, Value>) -> Result<String, CniError> {
    let name = match obj.get("name") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(CniError::new(
                ErrorCode::Decode,
                format!("error unmarshall network config: name is not a string: {other}"),
                "",
            ))
        }
    };
    if name.is_empty() {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "missing network name",
            "",
        ));
    }
    if !crate::env::valid_name(name) {
        return Err(CniError::new(
            ErrorCode::InvalidConfig,
            "invalid characters found in network name",
            name,
        ));
    }
    Ok(name.to_string())
}

/// libcni's rule: no (or an empty) `cniVersion` means 0.1.0.
fn config_version(obj: &Map<String, Value>) -> Result<CniVersion, CniError> {
    let v = match obj.get("cniVersion") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(CniError::new(
                ErrorCode::Decode,
                format!(
                    "decoding version from network config: cniVersion is not a string: {other}"
                ),
                "",
            ))
        }
    };
    if v.is_empty() {
        return Ok(CniVersion::V0_1_0);
    }
    CniVersion::parse(v).ok_or_else(|| {
        CniError::new(
            ErrorCode::IncompatibleVersion,
            "incompatible CNI versions",
            format!(
                "config is {v:?}, plugin supports {:?}",
                CniVersion::all_strings()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<NetConf, CniError> {
        NetConf::parse(s.as_bytes())
    }

    /// The kube-ovn entry of upstream's dist/images/01-kube-ovn.conflist as a runtime hands
    /// it to the plugin (name and cniVersion copied in from the list).
    const SHIPPED: &str = r#"{"name":"kube-ovn","cniVersion":"0.3.1","type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock"}"#;

    #[test]
    fn shipped_conflist_entry() {
        let c = parse(SHIPPED).unwrap();
        assert_eq!(c.version, CniVersion::V0_3_1);
        assert_eq!(c.name, "kube-ovn");
        assert_eq!(c.mode, Mode::Plugin);
        assert_eq!(c.plugin_type, "kube-ovn");
        assert_eq!(c.server_socket, PathBuf::from(DEFAULT_SERVER_SOCKET));
        assert_eq!(c.provider, "ovn", "an unset provider is upstream's default");
        assert!(c.routes.is_empty() && c.dns.is_empty() && c.prev_result.is_none());
    }

    #[test]
    fn plugin_form_with_every_field() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"attach","type":"kube-ovn",
                "server_socket":"/run/x.sock","provider":"attach.ns1.ovn",
                "routes":[{"dst":"10.0.0.0/8","gw":"10.16.0.1"}],
                "dns":{"nameservers":["1.1.1.1"],"search":["a.b"]},
                "deviceID":"0000:03:00.1","vf_driver":"vfio-pci",
                "vhost_user_socket_volume_name":"vol","vhost_user_socket_name":"s",
                "vhost_user_socket_consumption":"kubevirt",
                "capabilities":{"portMappings":true},
                "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},
                "args":{"cni":{"x":1}},
                "ipam":{"type":"host-local","server_socket":"/ignored","provider":"ignored"},
                "prevResult":{"cniVersion":"1.0.0","ips":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.version, CniVersion::V1_0_0);
        assert_eq!(
            c.mode,
            Mode::Plugin,
            "type kube-ovn ignores any ipam section"
        );
        assert_eq!(c.server_socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.provider, "attach.ns1.ovn");
        assert_eq!(c.routes[0].dst, "10.0.0.0/8");
        assert_eq!(c.dns.nameservers, ["1.1.1.1"]);
        assert_eq!(c.device_id, "0000:03:00.1");
        assert_eq!(c.vf_driver, "vfio-pci");
        assert_eq!(c.vhost_user_socket_volume_name, "vol");
        assert_eq!(c.vhost_user_socket_name, "s");
        assert_eq!(c.vhost_user_socket_consumption, "kubevirt");
        assert_eq!(c.prev_result.unwrap()["cniVersion"], "1.0.0");
    }

    #[test]
    fn ipam_form_takes_socket_provider_and_routes_from_ipam() {
        let c = parse(
            r#"{"cniVersion":"0.3.1","name":"macvlan-net","type":"macvlan","master":"eth1",
                "server_socket":"/top-level-ignored","provider":"ignored",
                "routes":[{"dst":"1.0.0.0/8"}],
                "dns":{"domain":"cluster.local"},
                "ipam":{"type":"kube-ovn","server_socket":"/run/openvswitch/kube-ovn-daemon.sock",
                        "provider":"macvlan-net.default","routes":[{"gw":"172.18.0.254"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Ipam);
        assert_eq!(c.plugin_type, "macvlan");
        assert_eq!(c.server_socket, PathBuf::from(DEFAULT_SERVER_SOCKET));
        assert_eq!(c.provider, "macvlan-net.default");
        assert_eq!(
            c.routes,
            [Route {
                dst: String::new(),
                gw: "172.18.0.254".into()
            }]
        );
        assert_eq!(
            c.dns.domain, "cluster.local",
            "dns stays top-level in IPAM form"
        );
    }

    #[test]
    fn ipam_form_defaults_and_requirements() {
        // Unset ipam.provider falls back to ovn, even though the top level names one.
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"bridge","provider":"x",
                "ipam":{"type":"kube-ovn","server_socket":"/s"}}"#,
        )
        .unwrap();
        assert_eq!(c.provider, "ovn");
        // The top-level socket does not count in IPAM form.
        let e = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"bridge","server_socket":"/s","ipam":{"type":"kube-ovn"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(
            e.details.starts_with("ipam.server_socket is required"),
            "{}",
            e.details
        );
        // "ipam": null is no ipam section.
        let c = parse(
            r#"{"cniVersion":"1.1.0","name":"n","type":"bridge","server_socket":"/s","ipam":null}"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::Plugin);
    }

    #[test]
    fn server_socket_is_required() {
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","type":"kube-ovn"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert_eq!(e.msg, "Invalid Configuration");
        assert!(e
            .details
            .starts_with("server_socket is required in cni.conf"));
    }

    #[test]
    fn go_nulls_are_empty() {
        let c = parse(
            r#"{"cniVersion":"1.0.0","name":"n","type":"kube-ovn","server_socket":"/s",
                "provider":null,"routes":null,"dns":null,"deviceID":null,"prevResult":null}"#,
        )
        .unwrap();
        assert_eq!(c.provider, "ovn");
        assert!(c.routes.is_empty() && c.prev_result.is_none());
    }

    #[test]
    fn garbage_and_wrong_types_are_decode_errors() {
        for bad in ["", "not json", "[1,2]", "{\"name\":", r#"{"name":7}"#] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::Decode, "{bad:?}: {e}");
        }
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","server_socket":"/s","routes":"x"}"#)
            .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ErrorCode::Decode, "failed to load netconf")
        );
        let e = parse(r#"{"cniVersion":"1.0.0","name":"n","server_socket":"/s","prevResult":[1]}"#)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
        let e = parse(r#"{"cniVersion":1,"name":"n"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
    }

    #[test]
    fn network_name_rules() {
        let e = parse(r#"{"cniVersion":"1.0.0","server_socket":"/s"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (ErrorCode::InvalidConfig, "missing network name")
        );
        let e =
            parse(r#"{"cniVersion":"1.0.0","name":"bad name","server_socket":"/s"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert_eq!(e.details, "bad name");
    }

    #[test]
    fn versions() {
        let c = parse(r#"{"name":"n","type":"kube-ovn","server_socket":"/s"}"#).unwrap();
        assert_eq!(c.version, CniVersion::V0_1_0, "no cniVersion means 0.1.0");
        let e = parse(r#"{"cniVersion":"2.0.0","name":"n","server_socket":"/s"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
        assert_eq!(
            e.details,
            r#"config is "2.0.0", plugin supports ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]"#
        );
    }

    #[test]
    fn declared_version_is_lenient() {
        assert_eq!(declared_version(b"garbage"), CniVersion::LATEST);
        assert_eq!(
            declared_version(br#"{"cniVersion":"0.3.1"}"#),
            CniVersion::V0_3_1
        );
        assert_eq!(
            declared_version(br#"{"cniVersion":"9.9.9"}"#),
            CniVersion::LATEST
        );
        assert_eq!(declared_version(br#"{"name":"x"}"#), CniVersion::V0_1_0);
    }
}
