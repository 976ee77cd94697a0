//! What every kube-ovn-rs binary shares, so the controller, the daemon, the CNI and the tools
//! agree on one definition: the `kubeovn.io/v1` API types and the `ovn.kubernetes.io/*`
//! annotation keys with their parsers.

#![warn(missing_docs)]

pub mod annotations;
pub mod crd;
