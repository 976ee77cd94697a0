//! The provider bridge's rows in the node's Open_vSwitch database, as upstream's
//! `configExternalBridge`, `configProviderNic`, `removeProviderNic` and `ovsCleanProviderNetwork`
//! leave them with `ovs-vsctl`: the bridge `br-<pn>` (`external_ids:vendor=kube-ovn`,
//! `exchange-link-name`, `other_config:mac-learning-fallback` and `hwaddr`), the provider NIC as
//! its port with the Vlans' ids as `trunks`, and the `ovn-bridge-mappings` and
//! `ovn-chassis-mac-mappings` entries of the `Open_vSwitch` row.
//!
//! Every function here is a pure plan over a snapshot of the replica.

use std::collections::BTreeMap;

use ovsdb::cache::CacheData;
use ovsdb::{Atom, Condition, Datum, Mutation, Row, Transaction, Uuid};

const DB: &str = "Open_vSwitch";
/// `external_ids:vendor` of what kube-ovn creates.
pub const VENDOR: &str = "kube-ovn";
/// The mapping of provider networks to bridges ovn-controller reads.
pub const BRIDGE_MAPPINGS: &str = "ovn-bridge-mappings";
/// The per-provider chassis MACs ovn-controller reads.
pub const CHASSIS_MAC_MAPPINGS: &str = "ovn-chassis-mac-mappings";

fn str_col<'a>(row: &'a Row, col: &str) -> Option<&'a str> {
    row.get(col)?.as_atom()?.as_str()
}

fn map_value<'a>(row: &'a Row, col: &str, key: &str) -> Option<&'a str> {
    row.get(col)?.map_get(key)?.as_str()
}

/// Parses `a:b,c:d` (upstream's `decodeOvnMappings`): entries without a colon are skipped.
pub fn decode_mappings(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// Formats mappings as `a:b,c:d` (sorted by provider; ovn-controller does not care).
pub fn encode_mappings(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The mappings `name` of the `Open_vSwitch` row.
pub fn mappings(cache: &CacheData, name: &str) -> BTreeMap<String, String> {
    crate::ovs::root_external_id(cache, name)
        .map(|t| decode_mappings(&t))
        .unwrap_or_default()
}

/// Plans writing the mappings `name` as `m` (the key removed when `m` is empty); `None` when
/// they are already so.
pub fn plan_mappings(
    cache: &CacheData,
    name: &str,
    m: &BTreeMap<String, String>,
) -> Option<Transaction> {
    let current = crate::ovs::root_external_id(cache, name);
    let wanted = (!m.is_empty()).then(|| encode_mappings(m));
    if current.as_deref().map(decode_mappings) == wanted.as_deref().map(decode_mappings) {
        return None;
    }
    let mut txn = Transaction::new(DB);
    let mut mutations = vec![Mutation::delete("external_ids", Datum::set([name]))];
    if let Some(w) = &wanted {
        mutations.push(Mutation::insert(
            "external_ids",
            Datum::map([(name, w.as_str())]),
        ));
    }
    txn.mutate("Open_vSwitch", vec![], mutations);
    txn.comment(format!("kube-ovn-daemon: set {name}"));
    Some(txn)
}

/// A bridge as the database has it.
#[derive(Debug, Clone)]
pub struct BridgeView {
    /// Its row.
    pub uuid: Uuid,
    /// Its `external_ids`.
    pub external_ids: BTreeMap<String, String>,
    /// Its ports: (port uuid, port name, port `external_ids`).
    pub ports: Vec<(Uuid, String, BTreeMap<String, String>)>,
}

fn string_map(row: &Row, col: &str) -> BTreeMap<String, String> {
    row.get(col)
        .and_then(Datum::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The bridge called `name`, if any.
pub fn bridge(cache: &CacheData, name: &str) -> Option<BridgeView> {
    let (uuid, row) = cache.table("Bridge")?.by_name(name).next()?;
    let ports_table = cache.table("Port");
    let ports = row
        .get("ports")
        .and_then(Datum::as_set)
        .map(|s| {
            s.iter()
                .filter_map(Atom::as_uuid)
                .filter_map(|u| {
                    let p = ports_table.as_ref()?.get(&u)?;
                    Some((
                        u,
                        str_col(p, "name")?.to_string(),
                        string_map(p, "external_ids"),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(BridgeView {
        uuid: *uuid,
        external_ids: string_map(row, "external_ids"),
        ports,
    })
}

/// The `datapath_type` of `bridge` (empty: the kernel's).
pub fn datapath_type(cache: &CacheData, bridge: &str) -> String {
    cache
        .table("Bridge")
        .and_then(|t| {
            t.by_name(bridge)
                .next()
                .and_then(|(_, r)| str_col(r, "datapath_type").map(str::to_string))
        })
        .unwrap_or_default()
}

/// What the provider bridge is to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Bridge name (`br-<pn>`).
    pub name: String,
    /// `datapath_type`: the integration bridge's, so ovn-controller's patch ports between
    /// the two work (patch ports do not cross datapath types).
    pub datapath_type: String,
    /// `other_config:hwaddr`: the provider NIC's MAC, so the addresses moved to the bridge
    /// keep their MAC on the wire.
    pub hwaddr: String,
    /// `external_ids:exchange-link-name`.
    pub exchange_link_name: bool,
    /// `other_config:mac-learning-fallback`.
    pub mac_learning_fallback: bool,
}

impl BridgeSpec {
    fn external_ids(&self) -> [(&'static str, String); 2] {
        [
            ("vendor", VENDOR.to_string()),
            ("exchange-link-name", self.exchange_link_name.to_string()),
        ]
    }

    fn other_config(&self) -> [(&'static str, String); 2] {
        [
            (
                "mac-learning-fallback",
                self.mac_learning_fallback.to_string(),
            ),
            ("hwaddr", self.hwaddr.clone()),
        ]
    }
}

/// Plans creating the bridge (with its internal port of the same name, as `add-br` does) or
/// bringing an existing one's keys to `spec`; `None` when it already is so.
pub fn plan_bridge(cache: &CacheData, spec: &BridgeSpec) -> Option<Transaction> {
    let mut txn = Transaction::new(DB);
    let existing = cache
        .table("Bridge")
        .and_then(|t| t.by_name(&spec.name).next().map(|(u, r)| (*u, r.clone())));
    match existing {
        Some((uuid, row)) => {
            let stale = |col: &str, pairs: [(&'static str, String); 2]| {
                pairs
                    .into_iter()
                    .filter(|(k, v)| map_value(&row, col, k) != Some(v.as_str()))
                    .collect::<Vec<_>>()
            };
            let ids = stale("external_ids", spec.external_ids());
            let other = stale("other_config", spec.other_config());
            if ids.is_empty() && other.is_empty() {
                return None;
            }
            for (col, pairs) in [("external_ids", ids), ("other_config", other)] {
                if pairs.is_empty() {
                    continue;
                }
                txn.mutate(
                    "Bridge",
                    vec![Condition::uuid(uuid)],
                    vec![
                        Mutation::delete(col, Datum::set(pairs.iter().map(|(k, _)| *k))),
                        Mutation::insert(
                            col,
                            Datum::map(pairs.iter().map(|(k, v)| (*k, v.as_str()))),
                        ),
                    ],
                );
            }
            txn.comment(format!("kube-ovn-daemon: configure bridge {}", spec.name));
        }
        None => {
            let iface = txn.insert(
                "Interface",
                Row::from([
                    ("name", Datum::scalar(spec.name.as_str())),
                    ("type", Datum::scalar("internal")),
                ]),
            );
            let port = txn.insert(
                "Port",
                Row::from([
                    ("name", Datum::scalar(spec.name.as_str())),
                    ("interfaces", Datum::set([Atom::NamedUuid(iface)])),
                ]),
            );
            let ids = spec.external_ids();
            let other = spec.other_config();
            let br = txn.insert(
                "Bridge",
                Row::from([
                    ("name", Datum::scalar(spec.name.as_str())),
                    ("ports", Datum::set([Atom::NamedUuid(port)])),
                    ("datapath_type", Datum::scalar(spec.datapath_type.as_str())),
                    (
                        "external_ids",
                        Datum::map(ids.iter().map(|(k, v)| (*k, v.as_str()))),
                    ),
                    (
                        "other_config",
                        Datum::map(other.iter().map(|(k, v)| (*k, v.as_str()))),
                    ),
                ]),
            );
            txn.mutate(
                "Open_vSwitch",
                vec![],
                vec![Mutation::insert(
                    "bridges",
                    Datum::set([Atom::NamedUuid(br)]),
                )],
            );
            txn.comment(format!("kube-ovn-daemon: add-br {}", spec.name));
        }
    }
    Some(txn)
}

/// Plans the provider NIC as a port of `bridge` with `trunks` and `external_ids:vendor`
/// (`ovs-vsctl --may-exist add-port <br> <nic> -- set port <nic> trunks=… external_ids:vendor=…`);
/// `None` when it already is so. A port of that name on another bridge is moved.
pub fn plan_nic_port(
    cache: &CacheData,
    bridge: &str,
    nic: &str,
    trunks: &[i64],
) -> Option<Transaction> {
    let view = self::bridge(cache, bridge)?;
    let trunk_datum = Datum::set(trunks.iter().copied());
    let mut txn = Transaction::new(DB);
    if let Some((uuid, _, ids)) = view.ports.iter().find(|(_, n, _)| n == nic) {
        let port_row = cache.table("Port").and_then(|t| t.get(uuid).cloned());
        let same_trunks = port_row
            .as_ref()
            .and_then(|r| r.get("trunks"))
            .is_some_and(|d| *d == trunk_datum);
        if same_trunks && ids.get("vendor").map(String::as_str) == Some(VENDOR) {
            return None;
        }
        txn.update(
            "Port",
            vec![Condition::uuid(*uuid)],
            Row::from([("trunks", trunk_datum)]),
        );
        txn.mutate(
            "Port",
            vec![Condition::uuid(*uuid)],
            vec![
                Mutation::delete("external_ids", Datum::set(["vendor"])),
                Mutation::insert("external_ids", Datum::map([("vendor", VENDOR)])),
            ],
        );
        txn.comment(format!("kube-ovn-daemon: set port {nic} trunks"));
        return Some(txn);
    }
    // Elsewhere: removed from that bridge first.
    if let Some(ports) = cache.table("Port") {
        for (u, _) in ports.by_name(nic) {
            let set = Datum::set([Atom::Uuid(*u)]);
            txn.mutate(
                "Bridge",
                vec![Condition::includes("ports", set.clone())],
                vec![Mutation::delete("ports", set)],
            );
        }
    }
    let iface = txn.insert("Interface", Row::from([("name", Datum::scalar(nic))]));
    let port = txn.insert(
        "Port",
        Row::from([
            ("name", Datum::scalar(nic)),
            ("interfaces", Datum::set([Atom::NamedUuid(iface)])),
            ("trunks", trunk_datum),
            ("external_ids", Datum::map([("vendor", VENDOR)])),
        ]),
    );
    txn.mutate(
        "Bridge",
        vec![Condition::uuid(view.uuid)],
        vec![Mutation::insert(
            "ports",
            Datum::set([Atom::NamedUuid(port)]),
        )],
    );
    txn.comment(format!("kube-ovn-daemon: add-port {bridge} {nic}"));
    Some(txn)
}

/// Plans removing port `port` from `bridge` (`--if-exists del-port`); `None` when absent.
pub fn plan_del_port(cache: &CacheData, bridge: &str, port: &str) -> Option<Transaction> {
    let view = self::bridge(cache, bridge)?;
    let (uuid, _, _) = view.ports.iter().find(|(_, n, _)| n == port)?;
    let mut txn = Transaction::new(DB);
    txn.mutate(
        "Bridge",
        vec![Condition::uuid(view.uuid)],
        vec![Mutation::delete("ports", Datum::set([Atom::Uuid(*uuid)]))],
    );
    txn.comment(format!("kube-ovn-daemon: del-port {bridge} {port}"));
    Some(txn)
}

/// Plans removing the bridge (`--if-exists del-br`); `None` when absent.
pub fn plan_del_bridge(cache: &CacheData, bridge: &str) -> Option<Transaction> {
    let view = self::bridge(cache, bridge)?;
    let mut txn = Transaction::new(DB);
    txn.mutate(
        "Open_vSwitch",
        vec![],
        vec![Mutation::delete(
            "bridges",
            Datum::set([Atom::Uuid(view.uuid)]),
        )],
    );
    txn.comment(format!("kube-ovn-daemon: del-br {bridge}"));
    Some(txn)
}

/// Whether a port of a provider bridge is the provider NIC kube-ovn put there (what cleanup
/// moves back): not the bridge's own internal port, not ovn-controller's localnet patch port,
/// and marked `vendor=kube-ovn`.
pub fn is_provider_nic(bridge: &str, name: &str, ids: &BTreeMap<String, String>) -> bool {
    name != bridge
        && !ids.contains_key("ovn-localnet-port")
        && ids.get("vendor").map(String::as_str) == Some(VENDOR)
}

/// A random locally administered unicast MAC (upstream's `GenerateMac`), from the kernel's
/// random source.
pub fn random_mac() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[0] = (b[0] | 0x02) & 0xfe;
    Ok(crate::network::format_mac(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_round_trip_as_upstream_writes_them() {
        let m = decode_mappings("net1:br-net1, net2:br-net2,bogus,:x");
        assert_eq!(
            m,
            BTreeMap::from([
                ("net1".to_string(), "br-net1".to_string()),
                ("net2".to_string(), "br-net2".to_string()),
            ])
        );
        assert_eq!(encode_mappings(&m), "net1:br-net1,net2:br-net2");
        assert!(decode_mappings("").is_empty());
    }

    #[test]
    fn only_the_vendor_nic_is_a_provider_nic() {
        let vendor = BTreeMap::from([("vendor".to_string(), VENDOR.to_string())]);
        let patch = BTreeMap::from([
            ("vendor".to_string(), VENDOR.to_string()),
            ("ovn-localnet-port".to_string(), "localnet.x".to_string()),
        ]);
        assert!(is_provider_nic("br-net1", "eth1", &vendor));
        assert!(!is_provider_nic("br-net1", "br-net1", &vendor));
        assert!(!is_provider_nic("br-net1", "patch-x", &patch));
        assert!(!is_provider_nic("br-net1", "eth2", &BTreeMap::new()));
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let mac = crate::network::parse_mac(&random_mac().unwrap()).unwrap();
        assert_eq!(mac[0] & 0x03, 0x02);
    }
}
