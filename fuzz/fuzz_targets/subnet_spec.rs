//! Subnet specs as the controller formats and validates them (`subnet_rules::normalize`), from
//! both a JSON object as the API server stores it and fields built directly. A normalised spec
//! must normalise to itself, or the controller would rewrite the Subnet forever.
#![no_main]

use arbitrary::Arbitrary;
use kube_ovn_common::crd::subnet::SubnetSpec;
use kube_ovn_common::net::Protocol;
use kube_ovn_controller::subnet_rules::{gateway_nodes, normalize, Defaults};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    name: String,
    json: Option<String>,
    cidr_block: String,
    gateway: String,
    exclude_ips: Vec<String>,
    provider: String,
    vpc: String,
    gateway_type: String,
    gateway_node: String,
    enable_lb: Option<bool>,
}

const DEFAULTS: Defaults<'static> = Defaults {
    default_vpc: "ovn-cluster",
    join: "join",
    enable_lb: true,
};

fn check(spec: &SubnetSpec, name: &str) {
    let _ = Protocol::of_list(&spec.cidr_block);
    let _ = gateway_nodes(spec);
    if let Ok(once) = normalize(spec, name, &DEFAULTS) {
        let twice = normalize(&once, name, &DEFAULTS).expect("a normalised spec stays valid");
        assert_eq!(twice, once, "normalising twice changes the spec");
    }
}

fuzz_target!(|input: Input| {
    if let Some(json) = &input.json {
        if let Ok(spec) = serde_json::from_str::<SubnetSpec>(json) {
            check(&spec, &input.name);
        }
    }
    let spec = SubnetSpec {
        cidr_block: input.cidr_block,
        gateway: input.gateway,
        exclude_ips: input.exclude_ips,
        provider: input.provider,
        vpc: input.vpc,
        gateway_type: input.gateway_type,
        gateway_node: input.gateway_node,
        enable_lb: input.enable_lb,
        ..SubnetSpec::default()
    };
    check(&spec, &input.name);
});
