//! The CNI binary's inputs: the runtime's environment and stdin netconf, then the daemon's ADD
//! answer turned into a result and rendered (chained onto `prevResult`) for the declared version.
#![no_main]

use arbitrary::Arbitrary;
use kube_ovn_cni::env::Invocation;
use kube_ovn_cni::netconf::{declared_version, NetConf};
use kube_ovn_cni::protocol::CniResponse;
use kube_ovn_cni::render::render;
use kube_ovn_cni::result::AddResult;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
    answer: String,
}

fuzz_target!(|input: Input| {
    let _ = declared_version(&input.stdin);
    let inv = Invocation::from_env(|name| {
        input
            .env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    });
    let ifname = match &inv {
        Ok(inv) => {
            let _ = inv.k8s_arg("K8S_POD_NAME");
            inv.ifname.clone()
        }
        Err(_) => "eth0".to_string(),
    };
    let Ok(conf) = NetConf::parse(&input.stdin) else {
        return;
    };
    let Ok(answer) = serde_json::from_str::<CniResponse>(&input.answer) else {
        return;
    };
    if let Ok(result) = AddResult::from_response(&answer, conf.mode, &ifname, "/var/run/netns/x") {
        let _ = render(&result, conf.version, conf.prev_result.as_ref());
    }
});
