//! The `DNSNameResolver` objects of admin policies' domain-name peers (see
//! [`crate::dns_names`]): after each reconcile of an AdminNetworkPolicy or
//! ClusterNetworkPolicy the resolvers labelled with its NB name are made to be exactly those its
//! domains (and those of the other kind's policy of the same NB name) want. The controller never
//! writes their status: a resolver does, and its change re-queues the policies naming the domain.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{AdminNetworkPolicy, ClusterNetworkPolicy, DnsNameResolver};

use crate::context::{Ctx, Error};
use crate::dns_names::{self, POLICY_LABEL};
use crate::{anp, cnp};

fn live<K: kube::Resource>(o: &K) -> bool {
    o.meta().deletion_timestamp.is_none()
}

/// The resolvers the policies named `policy` in NB want: name → domain.
fn wanted(ctx: &Ctx, policy: &str) -> BTreeMap<String, String> {
    let anps = ctx.stores.admin_network_policies.state();
    let cnps = ctx.stores.cluster_network_policies.state();
    let domains = anps
        .iter()
        .filter(|a| live(a.as_ref()) && anp::policy_name(&a.name_any()) == policy)
        .flat_map(|a| dns_names::anp_domains(a))
        .chain(
            cnps.iter()
                .filter(|c| live(c.as_ref()) && cnp::policy_name(&c.name_any()) == policy)
                .flat_map(|c| dns_names::cnp_domains(c)),
        );
    dns_names::wanted(policy, domains)
}

/// Makes the resolvers labelled `anp: <policy>` those the policies named `policy` want:
/// missing ones created, others deleted.
pub async fn sync(ctx: &Ctx, policy: &str) -> Result<(), Error> {
    let want = wanted(ctx, policy);
    let have: Vec<Arc<DnsNameResolver>> = ctx
        .stores
        .dns_name_resolvers
        .state()
        .into_iter()
        .filter(|r| r.labels().get(POLICY_LABEL).map(String::as_str) == Some(policy))
        .collect();
    let api: Api<DnsNameResolver> = Api::all(ctx.client.clone());
    for r in have.iter().filter(|r| !want.contains_key(&r.name_any())) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "failed to delete DNSNameResolver {} for domain {}: {e}",
                    r.name_any(),
                    r.spec.name
                )))
            }
        }
    }
    for (name, domain) in &want {
        if have.iter().any(|r| r.name_any() == *name) {
            continue;
        }
        let obj: DnsNameResolver = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubeovn.io/v1", "kind": "DNSNameResolver",
            "metadata": {"name": name, "labels": {POLICY_LABEL: policy}},
            "spec": {"name": domain},
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(Error::Other(format!(
                    "failed to create DNSNameResolver {name} for domain {domain}: {e}"
                )))
            }
        }
    }
    Ok(())
}

/// The AdminNetworkPolicies a resolver's change concerns: those naming its domain, and the
/// one its label names.
pub fn anps_of(anps: &[Arc<AdminNetworkPolicy>], r: &DnsNameResolver) -> Vec<String> {
    let label = r.labels().get(POLICY_LABEL);
    anps.iter()
        .filter(|a| {
            dns_names::anp_domains(a).contains(&r.spec.name)
                || Some(&anp::policy_name(&a.name_any())) == label
        })
        .map(|a| a.name_any())
        .collect()
}

/// The ClusterNetworkPolicies a resolver's change concerns: those naming its domain, and the
/// one its label names.
pub fn cnps_of(cnps: &[Arc<ClusterNetworkPolicy>], r: &DnsNameResolver) -> Vec<String> {
    let label = r.labels().get(POLICY_LABEL);
    cnps.iter()
        .filter(|c| {
            dns_names::cnp_domains(c).contains(&r.spec.name)
                || Some(&cnp::policy_name(&c.name_any())) == label
        })
        .map(|c| c.name_any())
        .collect()
}

/// Removes resolvers no policy wants: with both flags on, those labelled for a policy that no
/// longer names their domain (deleted while the controller was down); with either off, every
/// labelled one, as upstream's GC. Unlabelled resolvers are never touched.
pub async fn gc(ctx: &Ctx) -> Result<usize, Error> {
    let on = ctx.config.enable_anp && ctx.config.enable_dns_name_resolver;
    if on {
        let labels: std::collections::BTreeSet<String> = ctx
            .stores
            .dns_name_resolvers
            .state()
            .iter()
            .filter_map(|r| r.labels().get(POLICY_LABEL).cloned())
            .collect();
        for policy in &labels {
            sync(ctx, policy).await?;
        }
        return Ok(labels.len());
    }
    let api: Api<DnsNameResolver> = Api::all(ctx.client.clone());
    let listed = match api.list(&ListParams::default().labels(POLICY_LABEL)).await {
        Ok(l) => l,
        // Without the CRD there is nothing to remove.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut removed = 0;
    for r in listed {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => removed += 1,
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}
