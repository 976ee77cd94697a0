//! kube-ovn-controller, rewritten: the `kubeovn.io/v1` API types, the CRDs generated from them,
//! and the controller that turns Kubernetes objects into OVN Northbound state.

#![warn(missing_docs)]

pub mod anp;
pub mod anp_ctl;
pub mod attach;
pub mod cnp;
pub mod cnp_ctl;
pub mod config;
pub mod context;
pub mod dnr_ctl;
pub mod dns_names;
pub mod drift;
pub mod external_gw;
pub mod gc;
pub mod ipcr;
pub mod ippool_ctl;
pub mod iptables_ctl;
pub mod lb_svc;
pub mod leader;
pub mod metrics;
pub mod natgw_ctl;
pub mod netpol;
pub mod node_ctl;
pub mod np_ctl;
pub mod np_state;
pub mod ovn_eip_ctl;
pub mod ovn_nat_ctl;
pub mod pod_ctl;
pub mod pod_index;
pub mod pod_info;
pub mod restore;
pub mod run;
pub mod service_ctl;
pub mod service_lb;
pub mod sg;
pub mod sg_ctl;
pub mod slice_index;
pub mod slr_ctl;
pub mod startup;
pub mod subnet_ctl;
pub mod subnet_rules;
pub mod u2o;
pub mod underlay_ctl;
pub mod vip_ctl;
pub mod vpc_ctl;
pub mod vpc_dns_ctl;
pub mod vpc_external;
