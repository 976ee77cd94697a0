//! kube-ovn-ic-controller: Kube-OVN's cluster interconnection over ovn-ic. It reads the
//! `kube-system/ovn-ic-config` ConfigMap and, as upstream's `pkg/ovn_ic_controller`, names the
//! availability zone, runs `ovn-ic`, attaches the default VPC's router to every kube-ovn
//! transit switch through the configured gateway nodes, turns route advertisement and learning
//! on with upstream's blacklist, mirrors learned routes as 29500 allow policies, and tears it
//! all down again, all through our OVSDB client (no `ovn-*ctl`).

pub mod clean;
pub mod config;
pub mod controller;
pub mod icdb;
pub mod logic;
pub mod nb;
pub mod ovnic;
pub mod tsdb;
