//! The `external_ids` kube-ovn marks its rows with, and the small helpers every object module
//! uses to build desired rows and read cached ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use ovsdb::{Atom, CacheData, Datum, Row, Uuid};

/// `external_ids:vendor` of every row kube-ovn owns.
pub const VENDOR: &str = "kube-ovn";

/// The `external_ids` keys kube-ovn writes, as upstream spells them.
pub mod key {
    /// `kube-ovn` on every row kube-ovn owns.
    pub const VENDOR: &str = "vendor";
    /// A port's logical switch.
    pub const LS: &str = "ls";
    /// A router port's logical router.
    pub const LR: &str = "lr";
    /// A pod port's `<namespace>/<pod>`.
    pub const POD: &str = "pod";
    /// The subnet a policy, port group or ACL belongs to.
    pub const SUBNET: &str = "subnet";
    /// The node a policy or port group belongs to.
    pub const NODE: &str = "node";
    /// A routing port group's `<subnet or "node">/<node>`.
    pub const NP: &str = "np";
    /// An AdminNetworkPolicy's port group (`<name>`) and address sets (`<name>/<direction>`).
    pub const ANP: &str = "anp";
    /// A BaselineAdminNetworkPolicy's port group and address sets, as [`ANP`].
    pub const BANP: &str = "banp";
    /// A ClusterNetworkPolicy's port group (`<port group name>`) and address sets
    /// (`<name>/<direction>`).
    pub const CNP: &str = "cnp";
    /// The logical switch an ACL hangs from.
    pub const PARENT: &str = "parent";
    /// The VPC of an address set.
    pub const VPC: &str = "vpc";
    /// `4` or `6` on a node's reroute policies.
    pub const ADDRESS_FAMILY: &str = "address-family";
    /// Marks the node-local DNS cache policies (not the node reconciler's).
    pub const IS_LOCAL_DNS_CACHE: &str = "isLocalDnsCache";
    /// Marks a u2o subnet's policies and exclude address sets.
    pub const IS_U2O_ROUTE_POLICY: &str = "isU2ORoutePolicy";
    /// Marks the policies of a u2o subnet with `overlayOnlyRouting`.
    pub const IS_U2O_OVERLAY_ONLY: &str = "isU2OOverlayOnlyRoutePolicy";
    /// Marks upstream's Service reroutes of a u2o subnet without load balancers.
    pub const IS_U2O_NO_LB: &str = "isU2ONoLBRoutePolicy";
    /// Marks the per-node port groups of a u2o subnet without load balancers.
    pub const U2O: &str = "u2o";
    /// The Service CIDR of a u2o Service reroute.
    pub const SVC_CIDR: &str = "svcCidr";
    /// Marks the U2O overlay CIDR address sets.
    pub const IS_U2O_OVERLAY_CIDRS: &str = "isU2OOverlayCIDRs";
    /// NB_Global: the release whose NB layout is written.
    pub const KUBE_OVN_VERSION: &str = "kube-ovn-version";
}

/// A partial row of a generated model (`row!(LogicalSwitchPort { TYPE: d, ... })`): each
/// column is named by the model's column constant, so a column the table lacks does not compile.
macro_rules! row {
    ($model:ty { $($column:ident: $value:expr),* $(,)? }) => {{
        let mut r = ::ovsdb::Row::new();
        $( r.insert(<$model>::$column, $value); )*
        r
    }};
}
pub(crate) use row;

/// A string map column.
pub fn map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Datum {
    Datum::map(
        pairs
            .into_iter()
            .map(|(k, v)| (Atom::from(k), Atom::from(v))),
    )
}

/// A string map column from an owned map.
pub(crate) fn owned_map(pairs: &BTreeMap<String, String>) -> Datum {
    Datum::map(
        pairs
            .iter()
            .map(|(k, v)| (Atom::from(k.as_str()), Atom::from(v.as_str()))),
    )
}

/// A string set column.
pub(crate) fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Datum {
    Datum::set(items.into_iter().map(|s| Atom::from(s.into())))
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

/// `external_ids:<key>` of a cached row.
pub(crate) fn ext<'r>(r: &'r Row, key: &str) -> Option<&'r str> {
    // A scan of the (small) map, copying nothing: planning calls this for every row of busy
    // tables (a router's policies, the port groups).
    let (_, v) = r
        .get("external_ids")?
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))?;
    v.as_str()
}

/// Whether kube-ovn owns a cached row (`external_ids:vendor=kube-ovn`).
pub(crate) fn ours(r: &Row) -> bool {
    ext(r, key::VENDOR) == Some(VENDOR)
}

/// The string value of a scalar column of a cached row.
pub(crate) fn text<'r>(r: &'r Row, column: &str) -> Option<&'r str> {
    r.get(column)?.as_atom()?.as_str()
}

/// The integer value of a scalar column of a cached row.
pub(crate) fn integer(r: &Row, column: &str) -> Option<i64> {
    r.get(column)?.as_atom()?.as_i64()
}

/// The rows of `table` with `external_ids:key=value`: through the replica's index when it has
/// one for `key` (a plan then reads a subnet's or node's hundred port groups, not the ten
/// thousand of the cluster), else by a scan.
pub(crate) fn tagged<'c>(
    cache: &'c CacheData,
    table: &str,
    key: &str,
    value: &str,
) -> Vec<(Uuid, &'c Arc<Row>)> {
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
