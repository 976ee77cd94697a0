//! What every kube-ovn-rs binary shares, so the controller, the daemon, the CNI and the tools
//! agree on one definition: the `kubeovn.io/v1` API types, the `ovn.kubernetes.io/*`
//! annotation keys with their parsers, the names derived from objects, address/CIDR parsing,
//! the Node's addresses, klog's flags, the health/metrics endpoint and the metrics every binary
//! exports under upstream's names.

#![warn(missing_docs)]

pub mod annotations;
#[cfg(feature = "api")]
pub mod attachment;
#[cfg(feature = "api")]
pub mod crd;
#[cfg(feature = "cli")]
pub mod goflags;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "cli")]
pub mod klog;
#[cfg(feature = "api")]
pub mod manifests;
#[cfg(all(feature = "server", feature = "cli"))]
pub mod metrics;
pub mod names;
pub mod natgw;
pub mod net;
#[cfg(feature = "api")]
pub mod node;
/// OVN-native external access: OvnEip, its NAT rules, the external gateway.
pub mod ovn_nat;
#[cfg(feature = "api")]
pub mod underlay;
