//! kube-ovn's CNI plugin: the `kube-ovn` binary a container runtime executes, which hands
//! ADD and DEL to kube-ovn-daemon over its unix socket and answers the rest of the CNI
//! protocol itself — a drop-in for upstream's Go shim (same configuration fields, same
//! daemon protocol, same error codes), speaking every released CNI spec version.
//!
//! [`protocol`] is the daemon API both ends share; the other modules are the shim.

#![warn(missing_docs)]

pub mod client;
pub mod env;
pub mod error;
pub mod netconf;
pub mod netns;
pub mod plugin;
pub mod protocol;
pub mod render;
pub mod result;
pub mod version;
