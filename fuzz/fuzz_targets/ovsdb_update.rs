//! `update2`/`update3` notifications as a replica applies them: decoded against the Northbound
//! schema and applied to a cache twice (an insert then the same rows again as a modify).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ovsdb::cache::DecodedUpdates;
use ovsdb::schema::DatabaseSchema;
use ovsdb::CacheData;

fn nb() -> &'static DatabaseSchema {
    static NB: OnceLock<DatabaseSchema> = OnceLock::new();
    NB.get_or_init(|| {
        DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).expect("shipped schema")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let tables: Vec<String> = nb().tables.keys().cloned().collect();
    let mut cache = CacheData::new(&tables, &["pod".to_string(), "ls".to_string()]);
    for _ in 0..2 {
        if let Ok(decoded) = DecodedUpdates::decode(nb(), &value) {
            let _ = cache.apply_decoded(decoded);
        }
    }
    for t in &tables {
        if let Some(table) = cache.table(t) {
            for (_, row) in table.iter() {
                let _ = row.len();
            }
        }
    }
});
