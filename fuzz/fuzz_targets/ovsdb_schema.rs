//! Schemas as a server sends them (`get_schema`), and the compatibility check against the
//! shipped Northbound schema a client runs on connect.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ovsdb::schema::DatabaseSchema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(server) = DatabaseSchema::parse_str(text) else {
        return;
    };
    let ours = DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).expect("shipped");
    let _ = ours.incompatibilities(&server);
    let _ = server.version_tuple();
    for t in server.tables.values() {
        for c in t.columns.values() {
            let _ = c.ty.default_datum();
        }
    }
});
