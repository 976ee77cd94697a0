//! kube-ovn-daemon (upstream's `kube-ovn-cni` DaemonSet, `cniserver`): the node agent the CNI
//! shim calls to wire a pod into OVS, with upstream's socket protocol, flags, port naming and
//! `external_ids`, so it replaces the Go daemon under an unchanged shim and controller.
pub mod agent;
pub mod cni_conf;
pub mod config;
pub mod gateway;
pub mod handler;
pub mod keyed_lock;
pub mod lbsvc;
pub mod leader_checker;
pub mod metrics;
pub mod natgw;
pub mod netdev;
pub mod network;
pub mod nft;
pub mod nic_check;
pub mod node;
pub mod ovs;
pub mod pinger;
pub mod pods;
pub mod protocol;
pub mod providers;
pub mod server;
pub mod tproxy;
pub mod underlay;
pub mod unixctl;
