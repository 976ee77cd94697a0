//! IPAM errors, named after upstream's (`AddressConflict`, `AddressOutOfRange`,
//! `NoAvailableAddress`…) so logs, events and conditions read the same to operators.

/// Why an IPAM request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The subnet is not known (yet).
    #[error("NoSubnet: subnet {0} not found")]
    NoSubnet(String),
    /// A CIDR block does not parse or has too many/few families.
    #[error("CIDRInvalid: {0}")]
    InvalidCidr(String),
    /// An `excludeIps`/IPPool entry is malformed.
    #[error("invalid address {entry:?}: {reason}")]
    InvalidAddressList { entry: String, reason: String },
    /// A requested address is outside the subnet (or its usable range).
    #[error("AddressOutOfRange: {ip} is not in subnet {subnet}")]
    OutOfRange { ip: String, subnet: String },
    /// A requested address or MAC belongs to someone else (or is the gateway).
    #[error("AddressConflict: {what} is already used by {owner}")]
    Conflict { what: String, owner: String },
    /// Nothing left to hand out.
    #[error("NoAvailableAddress: no free {family} address in {subnet}{pool}")]
    NoAvailable {
        subnet: String,
        family: String,
        pool: String,
    },
    /// The request asks for a family the subnet does not have.
    #[error("InvalidIPFamily: {0}")]
    InvalidFamily(String),
    /// An IP pool is malformed or overlaps another pool.
    #[error("invalid ippool {pool}: {reason}")]
    InvalidPool { pool: String, reason: String },
    /// A MAC address does not parse.
    #[error("invalid mac address {0:?}")]
    InvalidMac(String),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
