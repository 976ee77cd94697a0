//! The shim ↔ daemon wire format is the CNI crate's: one definition, byte-compatible with
//! upstream's Go encoding (empty lists as `null`, accepted on input), shared by both ends.

pub use kube_ovn_cni::protocol::{CheckRequest, CniRequest, CniResponse, Dns, IpConfig, Route};
