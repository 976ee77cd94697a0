//! `kube-ovn-ic-controller ts-sync`: the IC DB side of upstream's leader checker in IC mode
//! (`updateTS`, run by the ovn-ic-db pods): OVN_IC_Northbound holds `TS_NUM` kube-ovn transit
//! switches `ts`, `ts1`, `ts2`… with `external_ids:subnet` 169.254.(100+i).0/24 (the IPv6 or
//! dual-stack form by the pod's addresses) and `external_ids:vendor=kube-ovn`; missing ones are
//! added and those beyond the count removed.

use std::time::Duration;

use ovsdb::model::Model;
use ovsdb::models::ic_nb::TransitSwitch;
use ovsdb::plan::Plan;
use ovsdb::{Remote, Replica, ReplicaConfig, Row};

/// The IC NB ovsdb-server's socket in the ovn-ic-db container.
pub const DEFAULT_IC_NB: &str = "unix:/var/run/ovn/ovn_ic_nb_db.sock";

/// Address families of the transit switch subnets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `169.254.(100+i).0/24`.
    Ipv4,
    /// `fe80:a9fe:<100+i hex>::/112`.
    Ipv6,
    /// Both.
    Dual,
}

impl Protocol {
    /// Upstream's choice from `POD_IPS`: two addresses mean dual stack, one IPv6 address IPv6.
    pub fn from_pod_ips(pod_ips: &str) -> Protocol {
        let ips: Vec<&str> = pod_ips.split(',').filter(|s| !s.is_empty()).collect();
        match ips.as_slice() {
            [_, _] => Protocol::Dual,
            [one] if one.contains(':') => Protocol::Ipv6,
            _ => Protocol::Ipv4,
        }
    }
}

/// The name of the `index`-th transit switch.
pub fn ts_name(index: usize) -> String {
    if index == 0 {
        crate::nb::TS_PREFIX.to_string()
    } else {
        format!("{}{index}", crate::nb::TS_PREFIX)
    }
}

/// The subnet of the `index`-th transit switch.
pub fn ts_cidr(index: usize, proto: Protocol) -> String {
    let n = 100 + index;
    match proto {
        Protocol::Ipv4 => format!("169.254.{n}.0/24"),
        Protocol::Ipv6 => format!("fe80:a9fe:{n:02x}::/112"),
        Protocol::Dual => format!("169.254.{n}.0/24,fe80:a9fe:{n:02x}::/112"),
    }
}

/// Plans `count` transit switches: the missing ones of `ts`…`ts<count-1>` created, the
/// numbered ones beyond removed; returns (created, removed).
pub fn plan(plan: &mut Plan<'_>, count: usize, proto: Protocol) -> Result<(usize, usize), String> {
    let existing: Vec<String> = plan
        .cache()
        .list::<TransitSwitch>()
        .into_iter()
        .flatten()
        .map(|t| t.name)
        .collect();
    let (mut created, mut removed) = (0, 0);
    for i in 0..count {
        let name = ts_name(i);
        if existing.contains(&name) {
            continue;
        }
        let mut row = Row::new();
        row.insert(
            TransitSwitch::EXTERNAL_IDS,
            crate::nb::map([
                ("subnet", ts_cidr(i, proto).as_str()),
                ("vendor", crate::nb::VENDOR),
            ]),
        );
        plan.ensure_root(TransitSwitch::TABLE, &name, row)
            .map_err(|e| e.to_string())?;
        created += 1;
    }
    for name in &existing {
        let index = match name.strip_prefix(crate::nb::TS_PREFIX) {
            Some("") => 0,
            Some(n) => match n.parse::<usize>() {
                Ok(i) => i,
                Err(_) => continue,
            },
            None => continue,
        };
        if index >= count {
            plan.delete_root(TransitSwitch::TABLE, name)
                .map_err(|e| e.to_string())?;
            removed += 1;
        }
    }
    Ok((created, removed))
}

/// What `ts-sync` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncArgs {
    /// IC NB remote list.
    pub ic_nb: String,
    /// Transit switch count.
    pub count: usize,
    /// Subnet families.
    pub proto: Protocol,
}

/// Parses `[--ic-nb-db=<remote>] [--ts-num=N]` with upstream's environment (`TS_NUM`,
/// `POD_IPS`) as defaults.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<SyncArgs, String> {
    let mut ic_nb = DEFAULT_IC_NB.to_string();
    let mut count = env("TS_NUM");
    for a in args {
        if let Some(v) = a.strip_prefix("--ic-nb-db=") {
            ic_nb = v.to_string();
        } else if let Some(v) = a.strip_prefix("--ts-num=") {
            count = Some(v.to_string());
        } else {
            return Err(format!(
                "unknown argument {a:?}; usage: kube-ovn-ic-controller ts-sync [--ic-nb-db=<remote>] [--ts-num=N]"
            ));
        }
    }
    let count = count.ok_or("the transit switch count is neither --ts-num nor TS_NUM")?;
    let count: usize = count
        .trim()
        .parse()
        .map_err(|e| format!("transit switch count {count:?}: {e}"))?;
    let proto = Protocol::from_pod_ips(&env("POD_IPS").unwrap_or_default());
    Ok(SyncArgs {
        ic_nb,
        count,
        proto,
    })
}

/// Converges OVN_IC_Northbound on the count; returns (created, removed).
pub async fn run(args: &SyncArgs) -> Result<(usize, usize), String> {
    let remotes = Remote::parse_list(&crate::controller::normalize_remotes(&args.ic_nb))
        .map_err(|e| format!("{}: {e}", args.ic_nb))?;
    let mut rc = ReplicaConfig::new(remotes, "OVN_IC_Northbound");
    rc.tables = vec![TransitSwitch::TABLE.to_string()];
    let r = Replica::start(rc, Duration::from_secs(30))
        .await
        .map_err(|e| format!("OVN_IC_Northbound at {}: {e}", args.ic_nb))?;
    let (txn, counts) = {
        let cache = r.cache();
        let mut p = Plan::new(&cache, "OVN_IC_Northbound");
        let counts = plan(&mut p, args.count, args.proto)?;
        (p.into_transaction(), counts)
    };
    if counts != (0, 0) {
        r.transact(&txn).await.map_err(|e| e.to_string())?;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_subnets_follow_upstream() {
        assert_eq!(ts_name(0), "ts");
        assert_eq!(ts_name(2), "ts2");
        assert_eq!(ts_cidr(1, Protocol::Ipv4), "169.254.101.0/24");
        assert_eq!(ts_cidr(0, Protocol::Ipv6), "fe80:a9fe:64::/112");
        assert_eq!(
            ts_cidr(2, Protocol::Dual),
            "169.254.102.0/24,fe80:a9fe:66::/112"
        );
        assert_eq!(Protocol::from_pod_ips("10.0.0.1"), Protocol::Ipv4);
        assert_eq!(Protocol::from_pod_ips("fd00::1"), Protocol::Ipv6);
        assert_eq!(Protocol::from_pod_ips("10.0.0.1,fd00::1"), Protocol::Dual);
    }

    #[test]
    fn arguments_and_environment() {
        let env = |k: &str| (k == "TS_NUM").then(|| "3".to_string());
        let a = parse(&[], env).unwrap();
        assert_eq!(
            (a.count, a.proto, a.ic_nb.as_str()),
            (3, Protocol::Ipv4, DEFAULT_IC_NB)
        );
        let a = parse(
            &["--ts-num=1".into(), "--ic-nb-db=tcp:[1.2.3.4]:6645".into()],
            env,
        )
        .unwrap();
        assert_eq!(a.count, 1);
        assert!(parse(&[], |_| None).unwrap_err().contains("TS_NUM"));
        assert!(parse(&["--ts-num=x".into()], env).is_err());
        assert!(parse(&["bogus".into()], env).is_err());
    }
}
