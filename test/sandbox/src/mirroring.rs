//! kube-controller-manager's EndpointSlice mirroring controller, which cannot run here: a
//! Service without a selector whose endpoints are written as a legacy `Endpoints` object (as
//! Kube-OVN's SwitchLBRule does for static endpoints) gets EndpointSlices mirroring it — one per
//! subset and address family, named `<name>-<random>`, labelled with the Service's name and
//! `endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io`, ready
//! addresses as ready endpoints and not-ready ones as not ready. Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` are skipped, and mirrored slices go when
//! the Endpoints or the Service go or the Service gains a selector.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tracing::warn;

/// The `managed-by` value of mirrored slices.
pub const MANAGER: &str = "endpointslicemirroring-controller.k8s.io";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";

/// One mirrored slice's content: address type, endpoints, ports (what is compared).
type Content = (String, Value, Value);

/// The slices an Endpoints object mirrors to (empty when it is not mirrored).
pub fn mirrored(eps: &Endpoints, svc: Option<&Service>) -> BTreeSet<String> {
    content(eps, svc)
        .into_iter()
        .map(|c| serde_json::to_string(&c).unwrap_or_default())
        .collect()
}

fn content(eps: &Endpoints, svc: Option<&Service>) -> Vec<Content> {
    let Some(svc) = svc else { return Vec::new() };
    let has_selector = svc
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|s| !s.is_empty());
    if has_selector || eps.labels().get(SKIP_MIRROR).map(String::as_str) == Some("true") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for subset in eps.subsets.iter().flatten() {
        let ports: Vec<Value> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| json!({"name": p.name.clone().unwrap_or_default(), "port": p.port, "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())}))
            .collect();
        let mut by_family: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let all = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        for (a, ready) in all {
            let family = if a.ip.contains(':') { "IPv6" } else { "IPv4" };
            let mut ep = json!({"addresses": [a.ip], "conditions": {"ready": ready}});
            if let Some(n) = &a.node_name {
                ep["nodeName"] = json!(n);
            }
            if let Some(h) = &a.hostname {
                ep["hostname"] = json!(h);
            }
            if let Some(t) = &a.target_ref {
                ep["targetRef"] = serde_json::to_value(t).unwrap_or(Value::Null);
            }
            by_family.entry(family).or_default().push(ep);
        }
        for (family, endpoints) in by_family {
            out.push((
                family.to_string(),
                typed::<Vec<Endpoint>>(Value::Array(endpoints)),
                typed::<Vec<EndpointPort>>(Value::Array(ports.clone())),
            ));
        }
    }
    out
}

/// `v` as the API types serialise it (field order and omitted fields as on a stored slice).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: Value) -> Value {
    serde_json::from_value::<T>(v)
        .and_then(|t| serde_json::to_value(t))
        .unwrap_or(Value::Null)
}

fn slice_content(s: &EndpointSlice) -> String {
    let c: Content = (
        s.address_type.clone(),
        serde_json::to_value(&s.endpoints).unwrap_or(Value::Null),
        serde_json::to_value(s.ports.clone().unwrap_or_default()).unwrap_or(Value::Null),
    );
    serde_json::to_string(&c).unwrap_or_default()
}

/// Runs the mirroring controller until the task is aborted.
pub async fn run(client: kube::Client) {
    let (eps_store, eps_writer) = reflector::store::<Endpoints>();
    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (slice_store, slice_writer) = reflector::store::<EndpointSlice>();
    let changed = Arc::new(Notify::new());
    let w1 = watcher(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(eps_writer)
    .for_each(notify(changed.clone()));
    let w2 = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(svc_writer)
    .for_each(notify(changed.clone()));
    let label = format!("{MANAGED_BY}={MANAGER}");
    let w3 = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&label),
    )
    .default_backoff()
    .reflect(slice_writer)
    .for_each(notify(changed.clone()));
    let sync = async move {
        loop {
            changed.notified().await;
            if let Err(e) = sync_once(&client, &eps_store, &svc_store, &slice_store).await {
                warn!("endpointslice mirroring: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                changed.notify_one();
            }
        }
    };
    tokio::join!(w1, w2, w3, sync);
}

/// A stream consumer that wakes the sync loop on every item.
fn notify<T>(n: Arc<Notify>) -> impl FnMut(T) -> std::future::Ready<()> {
    move |_| {
        n.notify_one();
        std::future::ready(())
    }
}

async fn sync_once(
    client: &kube::Client,
    eps: &reflector::Store<Endpoints>,
    svcs: &reflector::Store<Service>,
    slices: &reflector::Store<EndpointSlice>,
) -> Result<(), kube::Error> {
    // What each (namespace, service) should have and has.
    let mut want: BTreeMap<(String, String), Vec<Content>> = BTreeMap::new();
    for e in eps.state() {
        let ns = e.namespace().unwrap_or_default();
        let svc = svcs.get(&reflector::ObjectRef::new(&e.name_any()).within(&ns));
        let c = content(&e, svc.as_deref());
        if !c.is_empty() {
            want.insert((ns, e.name_any()), c);
        }
    }
    let mut have: BTreeMap<(String, String), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for s in slices.state() {
        if let Some(svc) = s.labels().get(SERVICE_NAME) {
            have.entry((s.namespace().unwrap_or_default(), svc.clone()))
                .or_default()
                .push(s.clone());
        }
    }
    for (key, slices_now) in &have {
        let wanted: BTreeSet<String> = want
            .get(key)
            .map(|cs| {
                cs.iter()
                    .map(|c| serde_json::to_string(c).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
        for s in slices_now {
            if !wanted.contains(&slice_content(s)) {
                match api.delete(&s.name_any(), &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    for (key, contents) in want {
        let existing: BTreeSet<String> = have
            .get(&key)
            .map(|v| v.iter().map(|s| slice_content(s)).collect())
            .unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
        for (family, endpoints, ports) in contents {
            let c = serde_json::to_string(&(family.clone(), endpoints.clone(), ports.clone()))
                .unwrap_or_default();
            if existing.contains(&c) {
                continue;
            }
            let slice: EndpointSlice = match serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"generateName": format!("{}-", key.1), "namespace": key.0,
                             "labels": {SERVICE_NAME: key.1, MANAGED_BY: MANAGER}},
                "addressType": family, "endpoints": endpoints, "ports": ports,
            })) {
                Ok(s) => s,
                Err(e) => {
                    warn!("mirroring {}/{}: {e}", key.0, key.1);
                    continue;
                }
            };
            api.create(&PostParams::default(), &slice).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectorless_services_are_mirrored_per_family() {
        let eps: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "slr-r1", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.16.0.10"}, {"ip": "fd00::10"}],
                         "notReadyAddresses": [{"ip": "10.16.0.11"}],
                         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}],
        }))
        .unwrap();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "slr-r1", "namespace": "default"}, "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        let c = content(&eps, Some(&svc));
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, "IPv4");
        assert_eq!(
            c[0].1[1],
            json!({"addresses": ["10.16.0.11"], "conditions": {"ready": false}})
        );
        assert_eq!(c[1].0, "IPv6");
        let mut selected = svc.clone();
        selected.spec.as_mut().unwrap().selector =
            Some([("a".to_string(), "b".to_string())].into());
        assert!(content(&eps, Some(&selected)).is_empty());
        assert!(content(&eps, None).is_empty());
    }
}
