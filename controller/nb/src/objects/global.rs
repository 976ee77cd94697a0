//! NB_Global: the cluster-wide options kube-ovn sets and the NB layout version it writes.

use ovsdb::model::Model;
use ovsdb::models::nb::NbGlobal;
use ovsdb::Datum;

use super::rows::{key, owned_map, row, string_map};
use crate::plan::{Plan, PlanError, RowRef};

/// The upstream release whose NB layout this controller writes (`NB_Global
/// external_ids:kube-ovn-version`; upstream re-runs its pre-1.15 migrations below that).
pub const COMPAT_VERSION: &str = "v1.17.0";

/// Cluster-wide NB_Global settings (flags of the same names).
#[derive(Debug, Clone, Default)]
pub struct GlobalSettings {
    /// `--ls-dnat-mod-dl-dst`.
    pub ls_dnat_mod_dl_dst: bool,
    /// `--ls-ct-skip-dst-lport-ips`.
    pub ls_ct_skip_dst_lport_ips: bool,
    /// `--node-local-dns-ip`, comma-separated (empty: key removed).
    pub node_local_dns_ip: String,
    /// `--skip-conntrack-dst-cidrs` (empty: key removed).
    pub skip_conntrack_dst_cidrs: String,
    /// `--enable-ovn-ipsec`.
    pub ipsec: bool,
}

/// NB_Global: our option keys merged into whatever northd and the DB scripts keep there.
pub fn nb_global(plan: &mut Plan<'_>, s: &GlobalSettings) -> Result<(), PlanError> {
    let Some((uuid, current)) = plan
        .monitored(NbGlobal::TABLE)?
        .iter()
        .next()
        .map(|(u, r)| (*u, (**r).clone()))
    else {
        return Ok(()); // northd creates the row; the next start-up pass fills it
    };
    let mut options = string_map(&current, NbGlobal::OPTIONS);
    options.insert(
        "ls_dnat_mod_dl_dst".into(),
        s.ls_dnat_mod_dl_dst.to_string(),
    );
    options.insert("use_ct_inv_match".into(), "false".into());
    options.insert(
        "ls_ct_skip_dst_lport_ips".into(),
        s.ls_ct_skip_dst_lport_ips.to_string(),
    );
    for (key, value) in [
        ("node_local_dns_ip", &s.node_local_dns_ip),
        ("skip_conntrack_dst_cidrs", &s.skip_conntrack_dst_cidrs),
    ] {
        if value.is_empty() {
            options.remove(key);
        } else {
            options.insert(key.into(), value.clone());
        }
    }
    let mut ids = string_map(&current, NbGlobal::EXTERNAL_IDS);
    ids.insert(key::KUBE_OVN_VERSION.into(), COMPAT_VERSION.into());
    plan.update_row(
        NbGlobal::TABLE,
        &RowRef::Existing(uuid),
        row!(NbGlobal {
            OPTIONS: owned_map(&options),
            EXTERNAL_IDS: owned_map(&ids),
            IPSEC: Datum::from(s.ipsec),
        }),
    )
}
