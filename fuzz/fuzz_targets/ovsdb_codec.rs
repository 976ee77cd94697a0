//! The OVSDB stream framing as a connection sees it: arbitrary bytes in arbitrary chunks, every
//! complete frame parsed as a JSON-RPC message and, as a replica does with a
//! `monitor_cond_since` reply, decoded row by row against the Northbound schema.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ovsdb::cache::DecodedSinceReply;
use ovsdb::codec::FrameSplitter;
use ovsdb::schema::DatabaseSchema;

fn nb() -> &'static DatabaseSchema {
    static NB: OnceLock<DatabaseSchema> = OnceLock::new();
    NB.get_or_init(|| {
        DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).expect("shipped schema")
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, so one input also covers frames split across reads.
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut splitter = FrameSplitter::new();
    for part in stream.chunks(chunk) {
        splitter.push(part);
        loop {
            match splitter.next_frame() {
                Ok(Some(frame)) => {
                    let _ = serde_json::from_slice::<serde_json::Value>(&frame);
                    if let Ok(reply) = DecodedSinceReply::decode(nb(), &frame) {
                        let mut cache = ovsdb::CacheData::new(&[], &[]);
                        let _ = cache.apply_since_reply(reply);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
