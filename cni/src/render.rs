//! The ADD result as JSON in the layout of the runtime's spec version, merged into the
//! previous plugin's result when we run chained (the spec requires passing `prevResult`
//! through; upstream kube-ovn drops it, which only goes unnoticed because it is normally
//! first in its chain).

use serde_json::{json, Map, Value};

use crate::error::{CniError, ErrorCode};
use crate::result::{AddResult, Address, Interface, RouteEntry};
use crate::version::{CniVersion, ResultShape};

/// Renders `result` for `version`, appended to `prev` when given (ignored for 0.1.0/0.2.0,
/// which have no chaining).
pub fn render(
    result: &AddResult,
    version: CniVersion,
    prev: Option<&Map<String, Value>>,
) -> Result<Value, CniError> {
    match version.result_shape() {
        ResultShape::Legacy => legacy(result, version),
        shape => Ok(Value::Object(current(result, version, shape, prev)?)),
    }
}

fn current(
    result: &AddResult,
    version: CniVersion,
    shape: ResultShape,
    prev: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, CniError> {
    let mut out = prev.cloned().unwrap_or_default();
    let mut interfaces = prev_list(&out, "interfaces")?;
    let mut ips = prev_list(&out, "ips")?;
    let mut routes = prev_list(&out, "routes")?;

    let index = result.interface.as_ref().map(|iface| {
        interfaces.push(interface_json(iface, version));
        interfaces.len() - 1
    });
    ips.extend(result.ips.iter().map(|a| ip_json(a, index, shape)));
    routes.extend(result.routes.iter().map(route_json));

    out.insert("cniVersion".into(), json!(version.as_str()));
    for (key, list) in [("interfaces", interfaces), ("ips", ips), ("routes", routes)] {
        if !list.is_empty() {
            out.insert(key.into(), Value::Array(list));
        }
    }
    let prev_dns_empty = out
        .get("dns")
        .is_none_or(|d| d.as_object().is_none_or(Map::is_empty));
    if !result.dns.is_empty() && prev_dns_empty {
        out.insert("dns".into(), json!(result.dns));
    }
    Ok(out)
}

fn prev_list(prev: &Map<String, Value>, key: &str) -> Result<Vec<Value>, CniError> {
    match prev.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => Ok(list.clone()),
        Some(_) => Err(CniError::new(
            ErrorCode::Decode,
            "failed to parse prevResult",
            format!("prevResult.{key} is not a list"),
        )),
    }
}

fn interface_json(iface: &Interface, version: CniVersion) -> Value {
    let mut o = Map::new();
    o.insert("name".into(), json!(iface.name));
    if !iface.mac.is_empty() {
        o.insert("mac".into(), json!(iface.mac));
    }
    // `mtu` on interfaces exists from spec 1.1.0 on.
    if let (Some(mtu), true) = (iface.mtu, version >= CniVersion::V1_1_0) {
        o.insert("mtu".into(), json!(mtu));
    }
    if !iface.sandbox.is_empty() {
        o.insert("sandbox".into(), json!(iface.sandbox));
    }
    Value::Object(o)
}

fn ip_json(a: &Address, interface: Option<usize>, shape: ResultShape) -> Value {
    let mut o = Map::new();
    if shape == ResultShape::V0_3 {
        let family = if a.address.addr().is_ipv4() { "4" } else { "6" };
        o.insert("version".into(), json!(family));
    }
    o.insert("address".into(), json!(a.address.to_string()));
    if let Some(gw) = a.gateway {
        o.insert("gateway".into(), json!(gw.to_string()));
    }
    if let Some(i) = interface {
        o.insert("interface".into(), json!(i));
    }
    Value::Object(o)
}

fn route_json(r: &RouteEntry) -> Value {
    let mut o = Map::new();
    o.insert("dst".into(), json!(r.dst.to_string()));
    if let Some(gw) = r.gw {
        o.insert("gw".into(), json!(gw.to_string()));
    }
    Value::Object(o)
}

/// 0.1.0/0.2.0: the first address of each family with the routes of that family.
fn legacy(result: &AddResult, version: CniVersion) -> Result<Value, CniError> {
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(version.as_str()));
    for (key, v4) in [("ip4", true), ("ip6", false)] {
        let Some(a) = result.ips.iter().find(|a| a.address.addr().is_ipv4() == v4) else {
            continue;
        };
        let mut o = Map::new();
        o.insert("ip".into(), json!(a.address.to_string()));
        if let Some(gw) = a.gateway {
            o.insert("gateway".into(), json!(gw.to_string()));
        }
        let routes: Vec<Value> = result
            .routes
            .iter()
            .filter(|r| r.dst.addr().is_ipv4() == v4)
            .map(route_json)
            .collect();
        if !routes.is_empty() {
            o.insert("routes".into(), Value::Array(routes));
        }
        out.insert(key.into(), Value::Object(o));
    }
    if !out.contains_key("ip4") && !out.contains_key("ip6") {
        return Err(CniError::new(
            ErrorCode::Internal,
            format!("cannot convert result to version {version}"),
            "a 0.1.0/0.2.0 result needs an IP address and the daemon assigned none",
        ));
    }
    if !result.dns.is_empty() {
        out.insert("dns".into(), json!(result.dns));
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Dns;

    /// The spec appendix's `bridge` example result (interface eth0 of /var/run/netns/blue),
    /// expressed as our result.
    fn spec_example() -> AddResult {
        AddResult {
            interface: Some(Interface {
                name: "eth0".into(),
                mac: "99:88:77:66:55:44".into(),
                mtu: None,
                sandbox: "/var/run/netns/blue".into(),
            }),
            ips: vec![Address {
                address: "10.1.0.5/16".parse().unwrap(),
                gateway: Some("10.1.0.1".parse().unwrap()),
            }],
            routes: vec![RouteEntry {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
            }],
            dns: Dns {
                nameservers: vec!["10.1.0.1".into()],
                ..Default::default()
            },
        }
    }

    #[test]
    fn v1_matches_the_spec_example() {
        // SPEC.md appendix, "Add example": the bridge plugin's result with its two host-side
        // interfaces as prevResult-style entries before ours.
        let prev = json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cni0", "mac": "00:11:22:33:44:55"},
                {"name": "veth3243", "mac": "55:44:33:22:11:11"}
            ]
        });
        let got = render(&spec_example(), CniVersion::V1_1_0, prev.as_object()).unwrap();
        assert_eq!(
            got,
            json!({
                "cniVersion": "1.1.0",
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "interfaces": [
                    {"name": "cni0", "mac": "00:11:22:33:44:55"},
                    {"name": "veth3243", "mac": "55:44:33:22:11:11"},
                    {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
                ],
                "dns": {"nameservers": ["10.1.0.1"]}
            })
        );
    }

    #[test]
    fn v1_1_has_interface_mtu_and_v1_0_does_not() {
        let mut r = spec_example();
        r.interface.as_mut().unwrap().mtu = Some(1400);
        let v11 = render(&r, CniVersion::V1_1_0, None).unwrap();
        assert_eq!(v11["interfaces"][0]["mtu"], 1400);
        assert_eq!(v11["ips"][0]["interface"], 0);
        let v10 = render(&r, CniVersion::V1_0_0, None).unwrap();
        assert_eq!(v10["cniVersion"], "1.0.0");
        assert!(v10["interfaces"][0].get("mtu").is_none());
        assert!(v10["ips"][0].get("version").is_none());
    }

    #[test]
    fn v0_3_and_v0_4_carry_ip_versions() {
        // The 0.3.x/0.4.0 shape: each ip has "version"; interfaces have no mtu.
        let mut r = spec_example();
        r.ips.push(Address {
            address: "fd00::5/64".parse().unwrap(),
            gateway: None,
        });
        r.interface.as_mut().unwrap().mtu = Some(1400);
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            assert_eq!(
                render(&r, v, None).unwrap(),
                json!({
                    "cniVersion": v.as_str(),
                    "interfaces": [{"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}],
                    "ips": [
                        {"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 0},
                        {"version": "6", "address": "fd00::5/64", "interface": 0}
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dns": {"nameservers": ["10.1.0.1"]}
                }),
                "{v}"
            );
        }
    }

    #[test]
    fn ipam_result_is_abbreviated() {
        // SPEC.md appendix: host-local's IPAM result has no interfaces and no interface index.
        let mut r = spec_example();
        r.interface = None;
        assert_eq!(
            render(&r, CniVersion::V1_0_0, None).unwrap(),
            json!({
                "cniVersion": "1.0.0",
                "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {"nameservers": ["10.1.0.1"]}
            })
        );
    }

    #[test]
    fn empty_parts_are_omitted() {
        let r = AddResult {
            interface: None,
            ips: vec![],
            routes: vec![],
            dns: Dns::default(),
        };
        assert_eq!(
            render(&r, CniVersion::V1_0_0, None).unwrap(),
            json!({"cniVersion": "1.0.0"})
        );
    }

    #[test]
    fn prev_result_is_kept_and_its_dns_wins() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "ips": [{"address": "192.0.2.9/24", "interface": 0}],
            "interfaces": [{"name": "lo0", "sandbox": "/x"}],
            "routes": [{"dst": "192.0.2.0/24", "mtu": 1300}],
            "dns": {"domain": "prev.example"},
            "extra": {"kept": true}
        });
        let got = render(&spec_example(), CniVersion::V1_0_0, prev.as_object()).unwrap();
        assert_eq!(got["ips"][0], prev["ips"][0]);
        assert_eq!(got["ips"][1]["interface"], 1);
        assert_eq!(
            got["routes"][0]["mtu"], 1300,
            "unknown members pass through"
        );
        assert_eq!(got["routes"][1]["dst"], "0.0.0.0/0");
        assert_eq!(got["dns"], json!({"domain": "prev.example"}));
        assert_eq!(got["extra"], json!({"kept": true}));
        let bad = json!({"ips": {"address": "x"}});
        let e = render(&spec_example(), CniVersion::V1_0_0, bad.as_object()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Decode);
    }

    #[test]
    fn legacy_shape_of_0_2_0() {
        let mut r = spec_example();
        r.ips.push(Address {
            address: "fd00::5/64".parse().unwrap(),
            gateway: Some("fd00::1".parse().unwrap()),
        });
        r.routes.push(RouteEntry {
            dst: "::/0".parse().unwrap(),
            gw: Some("fd00::1".parse().unwrap()),
        });
        // The 0.2.0 spec's result: one ip4 and one ip6 object, routes split by family.
        assert_eq!(
            render(&r, CniVersion::V0_2_0, None).unwrap(),
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]},
                "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                "dns": {"nameservers": ["10.1.0.1"]}
            })
        );
        r.ips.clear();
        let e = render(&r, CniVersion::V0_1_0, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::Internal);
    }
}
