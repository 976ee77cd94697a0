//! The reconciler runtime every kube-ovn-controller kind runs on, so each reconciler is one
//! file and one registration: keyed work queues with back-off ([`queue`]), watch events turned
//! into keys by change predicates ([`trigger`]), a registry with start-up gates that owns every
//! task ([`registry`]), finalizers patched safely ([`finalizer`]), aggregated Events
//! ([`events`]), status conditions ([`conditions`]) and the queues' metrics under upstream's
//! `workqueue_*` names ([`metrics`]).

#![warn(missing_docs)]

pub mod conditions;
pub mod events;
pub mod finalizer;
pub mod metrics;
pub mod queue;
pub mod registry;
pub mod trigger;

pub use metrics::WorkqueueMetrics;
pub use queue::{Backoff, Outcome, Queue};
pub use registry::{Kind, Observer, Queues, Runtime};
pub use trigger::{Seen, Trigger};
