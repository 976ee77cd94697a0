//! `kube-ovn-ic-controller clean-az {az|node} <name>`: upstream's `clean-ic-az-db.sh`, which
//! removes an availability zone's residue (Gateway, Route and Port_Binding rows and the zone)
//! from OVN_IC_Southbound, found by zone name or by the hostname of one of its gateways.

use std::time::Duration;

use ovsdb::plan::Plan;
use ovsdb::{Remote, Replica, ReplicaConfig};

use crate::icdb;

/// The IC SB ovsdb-server's socket in the ovn-ic-db container, where the script runs.
pub const DEFAULT_IC_SB: &str = "unix:/var/run/ovn/ovn_ic_sb_db.sock";

/// What to clean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanArgs {
    /// IC SB remote list.
    pub ic_sb: String,
    /// `true`: `value` is a node (gateway hostname); `false`: an AZ name.
    pub by_node: bool,
    /// The AZ or node name.
    pub value: String,
}

/// Parses `[--ic-sb-db=<remote>] {az|node} <name>` (the arguments after `clean-az`).
pub fn parse(args: &[String]) -> Result<CleanArgs, String> {
    let usage =
        "usage: kube-ovn-ic-controller clean-az [--ic-sb-db=<remote>] {az|node} {azName|nodeName}";
    let mut ic_sb = DEFAULT_IC_SB.to_string();
    let mut rest = Vec::new();
    for a in args {
        match a.strip_prefix("--ic-sb-db=") {
            Some(v) => ic_sb = v.to_string(),
            None => rest.push(a.as_str()),
        }
    }
    match rest.as_slice() {
        ["az", v] => Ok(CleanArgs {
            ic_sb,
            by_node: false,
            value: v.to_string(),
        }),
        ["node", v] => Ok(CleanArgs {
            ic_sb,
            by_node: true,
            value: v.to_string(),
        }),
        [kind, _] => Err(format!(
            "filter type should be az or node, not {kind:?}\n{usage}"
        )),
        _ => Err(usage.to_string()),
    }
}

/// Removes the zone's rows; returns how many were deleted.
pub async fn run(args: &CleanArgs) -> Result<usize, String> {
    let remotes = Remote::parse_list(&crate::controller::normalize_remotes(&args.ic_sb))
        .map_err(|e| format!("{}: {e}", args.ic_sb))?;
    let mut rc = ReplicaConfig::new(remotes, "OVN_IC_Southbound");
    rc.tables = icdb::SB_TABLES.iter().map(|t| t.to_string()).collect();
    let r = Replica::start(rc, Duration::from_secs(30))
        .await
        .map_err(|e| format!("OVN_IC_Southbound at {}: {e}", args.ic_sb))?;
    let txn = {
        let cache = r.cache();
        let az = if args.by_node {
            icdb::az_of_node(&cache, &args.value)
        } else {
            icdb::az_by_name(&cache, &args.value)
        };
        let az = az.ok_or_else(|| format!("Availability zone of {} not found.", args.value))?;
        let mut plan = Plan::new(&cache, "OVN_IC_Southbound");
        let n = icdb::remove_az(&mut plan, az).map_err(|e| e.to_string())?;
        (plan.into_transaction(), n)
    };
    r.transact(&txn.0).await.map_err(|e| e.to_string())?;
    Ok(txn.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse(&s(&["az", "az1"])).unwrap(),
            CleanArgs {
                ic_sb: DEFAULT_IC_SB.into(),
                by_node: false,
                value: "az1".into()
            }
        );
        let n = parse(&s(&["--ic-sb-db=tcp:[10.0.0.1]:6646", "node", "w1"])).unwrap();
        assert!(n.by_node && n.ic_sb == "tcp:[10.0.0.1]:6646");
        assert!(parse(&s(&["zone", "x"]))
            .unwrap_err()
            .contains("az or node"));
        assert!(parse(&s(&["az"])).is_err());
    }
}
