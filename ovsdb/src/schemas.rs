//! The schemas this crate is built against: those of the Debian bookworm packages (OVS 3.1,
//! OVN 23.03). The typed models are generated from these files at build time.

/// A schema document shipped with the crate.
pub struct ShippedSchema {
    pub name: &'static str,
    pub json: &'static str,
}

pub const OVN_NORTHBOUND: ShippedSchema = ShippedSchema {
    name: "OVN_Northbound",
    json: include_str!("../schemas/ovn-nb.ovsschema"),
};
pub const OVN_SOUTHBOUND: ShippedSchema = ShippedSchema {
    name: "OVN_Southbound",
    json: include_str!("../schemas/ovn-sb.ovsschema"),
};
pub const OVN_IC_NORTHBOUND: ShippedSchema = ShippedSchema {
    name: "OVN_IC_Northbound",
    json: include_str!("../schemas/ovn-ic-nb.ovsschema"),
};
pub const OVN_IC_SOUTHBOUND: ShippedSchema = ShippedSchema {
    name: "OVN_IC_Southbound",
    json: include_str!("../schemas/ovn-ic-sb.ovsschema"),
};
pub const OPEN_VSWITCH: ShippedSchema = ShippedSchema {
    name: "Open_vSwitch",
    json: include_str!("../schemas/vswitch.ovsschema"),
};

/// Every shipped schema, for tools that pick one by database name.
pub const ALL: [ShippedSchema; 5] = [
    OVN_NORTHBOUND,
    OVN_SOUTHBOUND,
    OVN_IC_NORTHBOUND,
    OVN_IC_SOUTHBOUND,
    OPEN_VSWITCH,
];

/// Finds the shipped schema of a database by name.
pub fn by_name(name: &str) -> Option<&'static ShippedSchema> {
    ALL.iter().find(|s| s.name == name)
}
