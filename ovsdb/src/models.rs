//! Typed models generated at build time (by `build.rs`) from the shipped schemas in
//! `ovsdb/schemas/`, one module per database. See [`crate::model`] for how column types map to
//! Rust types and how rows are decoded.
//!
//! Every module has `DATABASE` (the database name), `schema()` (the shipped schema, parsed once)
//! and, per table:
//!
//! * a struct named in CamelCase after the table: the name is split at `_` and each part
//!   capitalised; a part with at least as many capitals as lowercase letters is an acronym and is
//!   lowercased after its first letter (`Logical_Switch_Port` → `LogicalSwitchPort`,
//!   `ACL` → `Acl`, `NB_Global` → `NbGlobal`, `QoS` → `Qos`, `DHCPv6_Options` →
//!   `Dhcpv6Options`), other parts keep their inner capitals (`Open_vSwitch` → `OpenVSwitch`,
//!   `sFlow` → `SFlow`). Its fields are `uuid` plus one per column, named as the column
//!   (Rust keywords as raw identifiers: `r#type`, `r#match`);
//! * one associated `&str` constant per column, the column name in upper case
//!   (`LogicalSwitch::NAME == "name"`), and the [`crate::model::Model`] implementation;
//! * for each scalar or optional string column with an enumeration, an enum named
//!   `<Struct><Column>` (e.g. `nb::AclAction`, `vswitch::BridgeFailMode`), with variants in
//!   CamelCase (`allow-related` → `AllowRelated`), `as_str()`, `FromStr`, `Display`, `ALL`, and
//!   as default the first value in sorted order (the value OVSDB gives a new row). Free-form
//!   string columns such as `Logical_Switch_Port.type` stay `String`, as do enum-constrained
//!   sets and map keys or values.

/// `OVN_Northbound`: the logical network configuration ovn-northd reads.
pub mod nb {
    include!(concat!(env!("OUT_DIR"), "/models_nb.rs"));
}

/// `OVN_Southbound`: the logical flows and chassis state ovn-northd and ovn-controller share.
pub mod sb {
    include!(concat!(env!("OUT_DIR"), "/models_sb.rs"));
}

/// `OVN_IC_Northbound`: interconnection configuration (transit switches) across availability
/// zones.
pub mod ic_nb {
    include!(concat!(env!("OUT_DIR"), "/models_ic_nb.rs"));
}

/// `OVN_IC_Southbound`: interconnection state (gateways, port bindings, routes) shared by the
/// availability zones.
pub mod ic_sb {
    include!(concat!(env!("OUT_DIR"), "/models_ic_sb.rs"));
}

/// `Open_vSwitch`: the local switch configuration of ovs-vswitchd.
pub mod vswitch {
    include!(concat!(env!("OUT_DIR"), "/models_vswitch.rs"));
}
