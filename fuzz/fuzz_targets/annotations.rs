//! The `ovn.kubernetes.io/*` pod annotations both readers parse: the controller's requested
//! `ip_address`/`ip_pool` lists, and the daemon's whole network (addresses, CIDRs, gateways, MAC,
//! the `routes` JSON) with the veth names it derives from the request.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use kube_ovn_common::annotations::{format_ips, parse_ips};
use kube_ovn_daemon::network::{annotation_key, from_annotations, parse_mac, veth_names};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    provider: String,
    ip_address: String,
    ip_pool: String,
    mac_address: String,
    cidr: String,
    gateway: String,
    logical_switch: String,
    routes: Option<String>,
    routed: bool,
    container_id: String,
    if_name: String,
}

fuzz_target!(|input: Input| {
    for list in [&input.ip_address, &input.ip_pool] {
        if let Ok(ips) = parse_ips(list) {
            let again = parse_ips(&format_ips(&ips)).expect("formatted addresses parse");
            assert_eq!(again.len(), ips.len());
        }
    }
    let _ = parse_mac(&input.mac_address);
    let _ = veth_names(&input.container_id, &input.if_name);

    let provider = if input.provider.is_empty() {
        "ovn"
    } else {
        input.provider.as_str()
    };
    let mut annotations = BTreeMap::new();
    let mut put = |suffix: &str, value: &str| {
        annotations.insert(annotation_key(provider, suffix), value.to_string());
    };
    put("ip_address", &input.ip_address);
    put("mac_address", &input.mac_address);
    put("cidr", &input.cidr);
    put("gateway", &input.gateway);
    put("logical_switch", &input.logical_switch);
    if let Some(routes) = &input.routes {
        put("routes", routes);
    }
    if input.routed {
        put("routed", "true");
    }
    if let Ok(net) = from_annotations(&annotations, provider, &[]) {
        let _ = net.configured_routes();
        let _ = net.response(1400, "eth0");
        let _ = net.gateway(true);
    }
});
