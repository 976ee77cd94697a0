//! kube-ovn-controller, rewritten: for now the `kubeovn.io/v1` API types and
//! the CRDs generated from them; the reconcilers arrive with later issues.

#![warn(missing_docs)]

pub mod crd;
