//! The datum parser: any JSON value read untyped, and against every column type of the
//! Northbound schema as a value, as an update2 difference applied to the column's default, and
//! back to JSON (a typed datum must read back as itself).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ovsdb::schema::{ColumnType, DatabaseSchema};
use ovsdb::Datum;

fn column_types() -> &'static [ColumnType] {
    static TYPES: OnceLock<Vec<ColumnType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let nb =
            DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).expect("shipped schema");
        nb.tables
            .values()
            .flat_map(|t| t.columns.values().map(|c| c.ty.clone()))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let _ = Datum::from_json(&value);
    let types = column_types();
    let ty = &types[usize::from(pick) % types.len()];
    if let Ok(d) = Datum::from_json_typed(&value, ty) {
        let again = Datum::from_json_typed(&d.to_json(), ty);
        assert_eq!(
            again.ok().as_ref(),
            Some(&d),
            "typed datum does not read back as itself"
        );
        let _ = d.to_string();
    }
    if let Ok(diff) = Datum::from_json_diff(&value, ty) {
        let mut current = ty.default_datum();
        current.apply_diff(&diff);
        let _ = current.check(ty);
    }
});
