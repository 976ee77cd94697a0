//! kube-ovn-rs's OVSDB client (RFC 7047), written for ovsdb-server as OVN deploys it.
pub mod datum;
pub mod error;
pub mod schema;
pub mod schemas;

pub use datum::{Atom, Datum};
pub use error::{Error, Result, TxnError, TxnErrorKind};
pub use schema::DatabaseSchema;
pub use uuid::Uuid;
