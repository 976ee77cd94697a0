//! The `DNSNameResolver` objects of admin policies' domain-name peers (see
//! [`crate::dns_names`]): after each reconcile of an AdminNetworkPolicy or
//! ClusterNetworkPolicy the resolvers labelled with its NB name are made to be exactly those its
//! domains (and those of the other kind's policy of the same NB name) want. The controller never
//! writes their status: a resolver does, and its change re-queues the policies naming the domain.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use kube_ovn_common::crd::{AdminNetworkPolicy, ClusterNetworkPolicy, DnsNameResolver};

use kube_ovn_runtime::events::EventType;

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

/// After a reconcile of the policy `obj` (NB name `policy`): [`sync`], with a Warning on `obj`
/// naming the domains no resolver can take (`InvalidDomainName`; only a spec change fixes
/// them, so they are not retried) or why the resolvers could not be made
/// (`DNSNameResolverFailed`, retried).
pub async fn sync_for(ctx: &Ctx, policy: &str, obj: Option<ObjectReference>) -> Result<(), Error> {
    let r = sync(ctx, policy).await;
    let Some(obj) = obj else {
        return r.map(|_| ());
    };
    match r {
        Ok(refused) if refused.is_empty() => Ok(()),
        Ok(refused) => {
            let msg = format!(
                "domain names a DNSNameResolver cannot track (lower case, fully qualified with the trailing dot): {}",
                refused.join(", ")
            );
            ctx.event(&obj, EventType::Warning, "InvalidDomainName", &msg)
                .await;
            Ok(())
        }
        Err(e) => {
            ctx.event(
                &obj,
                EventType::Warning,
                "DNSNameResolverFailed",
                &e.to_string(),
            )
            .await;
            Err(e)
        }
    }
}

/// Makes the resolvers labelled `anp: <policy>` those the policies named `policy` want:
/// missing ones created, others deleted. Returns the domains left out as invalid (see
/// [`dns_names::valid`]).
pub async fn sync(ctx: &Ctx, policy: &str) -> Result<Vec<String>, Error> {
    let (want, refused): (BTreeMap<String, String>, BTreeMap<String, String>) = wanted(ctx, policy)
        .into_iter()
        .partition(|(_, d)| dns_names::valid(d));
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
    Ok(refused.into_values().collect())
}

/// The policies (by name) a resolver's change concerns: those naming its domain
/// (`domains_of`), and the one its label names (`nb_name`: a policy's name in NB).
fn policies_of<K: kube::Resource>(
    policies: &[Arc<K>],
    r: &DnsNameResolver,
    domains_of: impl Fn(&K) -> std::collections::BTreeSet<String>,
    nb_name: impl Fn(&str) -> String,
) -> Vec<String> {
    let label = r.labels().get(POLICY_LABEL);
    policies
        .iter()
        .filter(|p| domains_of(p).contains(&r.spec.name) || Some(&nb_name(&p.name_any())) == label)
        .map(|p| p.name_any())
        .collect()
}

/// The AdminNetworkPolicies a resolver's change concerns.
pub fn anps_of(anps: &[Arc<AdminNetworkPolicy>], r: &DnsNameResolver) -> Vec<String> {
    policies_of(anps, r, dns_names::anp_domains, anp::policy_name)
}

/// The ClusterNetworkPolicies a resolver's change concerns.
pub fn cnps_of(cnps: &[Arc<ClusterNetworkPolicy>], r: &DnsNameResolver) -> Vec<String> {
    policies_of(cnps, r, dns_names::cnp_domains, cnp::policy_name)
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
