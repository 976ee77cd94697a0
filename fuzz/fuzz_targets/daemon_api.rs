//! The daemon's unix-socket API bodies (`POST /api/v1/add|del`) as the server decodes them, and
//! the names it derives from a request; a decoded request must survive the shim's re-encoding.
#![no_main]

use kube_ovn_common::names::pod_lsp as iface_id;
use kube_ovn_daemon::network::{provider, veth_names};
use kube_ovn_daemon::protocol::{CniRequest, CniResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CniRequest>(data) {
        let wire = serde_json::to_vec(&req).expect("requests encode");
        let again: CniRequest = serde_json::from_slice(&wire).expect("encoded requests decode");
        assert_eq!(again, req);
        let p = provider(&req.provider);
        let _ = iface_id(&req.pod_name, &req.pod_namespace, p);
        let _ = veth_names(&req.container_id, &req.if_name);
    }
    if let Ok(resp) = serde_json::from_slice::<CniResponse>(data) {
        let wire = serde_json::to_vec(&resp).expect("answers encode");
        let again: CniResponse = serde_json::from_slice(&wire).expect("encoded answers decode");
        assert_eq!(again, resp);
    }
});
