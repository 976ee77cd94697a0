//! The Multus selection annotations (`k8s.v1.cni.cncf.io/networks`, comma or JSON form) and a
//! NetworkAttachmentDefinition's `spec.config`, as the controller reads them: whatever the text,
//! parsing ends in a value or an error, and every parsed selection names a provider.
#![no_main]

use arbitrary::Arbitrary;
use kube_ovn_common::attachment::{nad_kind, ovn_provider, parse_networks, NadKind};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    networks: String,
    namespace: String,
    config: String,
}

fuzz_target!(|input: Input| {
    if let Ok(selections) = parse_networks(&input.networks, &input.namespace) {
        for s in &selections {
            let iface = (!s.interface.is_empty()).then_some(s.interface.as_str());
            let provider = ovn_provider(&s.name, &s.namespace, iface);
            assert!(provider.ends_with(".ovn") || iface.is_some());
        }
    }
    if let Ok(kind) = nad_kind(&input.config) {
        assert!(matches!(kind, NadKind::Ovn | NadKind::Ipam | NadKind::Other));
    }
});
