//! Whether a CNI request's provider names anything in the cluster. A provider other than the
//! default `ovn` is either a Subnet's `spec.provider` or an attachment network
//! (`<nad>.<namespace>[.ovn]`, upstream's naming); when neither exists the controller will never
//! annotate the pod for it, so an ADD can fail at once instead of waiting for annotations.
//!
//! Read without types (`kubeovn.io/v1` Subnets and `k8s.cni.cncf.io/v1`
//! NetworkAttachmentDefinitions as dynamic objects): only one field of each is needed, and a
//! cluster without the NAD CRD simply has none.

use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client};

use crate::network::DEFAULT_PROVIDER;

fn subnets() -> ApiResource {
    ApiResource {
        group: "kubeovn.io".into(),
        version: "v1".into(),
        api_version: "kubeovn.io/v1".into(),
        kind: "Subnet".into(),
        plural: "subnets".into(),
    }
}

fn attachment_definitions() -> ApiResource {
    ApiResource {
        group: "k8s.cni.cncf.io".into(),
        version: "v1".into(),
        api_version: "k8s.cni.cncf.io/v1".into(),
        kind: "NetworkAttachmentDefinition".into(),
        plural: "network-attachment-definitions".into(),
    }
}

/// The NetworkAttachmentDefinition (namespace, name) a provider refers to: `<name>.<ns>.ovn` for
/// a kube-ovn attachment, `<name>.<ns>` for another plugin using kube-ovn as IPAM. A namespace
/// has no dots, so the last segment is the namespace and the rest the name.
pub fn attachment_of(provider: &str) -> Option<(&str, &str)> {
    let rest = provider.strip_suffix(".ovn").unwrap_or(provider);
    let (name, namespace) = rest.rsplit_once('.')?;
    (!name.is_empty() && !namespace.is_empty()).then_some((namespace, name))
}

/// Whether `provider` is the default one, a Subnet's provider, or an existing attachment.
/// Errors are the API server's (other than "not found"), when the answer is unknown.
pub async fn is_known(client: &Client, provider: &str) -> Result<bool, kube::Error> {
    if provider == DEFAULT_PROVIDER {
        return Ok(true);
    }
    if let Some((namespace, name)) = attachment_of(provider) {
        let nads: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &attachment_definitions());
        if nads.get_opt(name).await?.is_some() {
            return Ok(true);
        }
    }
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &subnets());
    match all.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .any(|s| s.data["spec"]["provider"].as_str() == Some(provider))),
        // No Subnet CRD: no subnet names the provider.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachment_providers_name_their_definition() {
        assert_eq!(attachment_of("net1.ns1.ovn"), Some(("ns1", "net1")));
        assert_eq!(
            attachment_of("macvlan.default"),
            Some(("default", "macvlan"))
        );
        assert_eq!(attachment_of("a.b.c.ns.ovn"), Some(("ns", "a.b.c")));
        assert_eq!(attachment_of("ovn"), None);
        assert_eq!(attachment_of("nodots"), None);
        assert_eq!(attachment_of(".ns.ovn"), None);
    }
}
