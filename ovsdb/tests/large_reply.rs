//! Memory a large reply costs the client, counted by a global allocator: a reply must be held
//! about once besides what it is parsed into, and the read buffer must be given back after it.
//! One test only, so no other test's allocations mix into the counts.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ovsdb::DatabaseSchema;
use serde_json::{json, Value};
use support::Server;

/// Counts live heap bytes (capacity, as the allocator hands it out) and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::SeqCst) + n;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

fn shrank(n: usize) {
    LIVE.fetch_sub(n, Ordering::SeqCst);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        System.dealloc(p, layout);
        shrank(layout.size());
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = System.realloc(p, layout, new_size);
        if !q.is_null() {
            if new_size > layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Starts a measurement: returns the live bytes now, and makes them the peak.
fn baseline() -> usize {
    let now = LIVE.load(Ordering::SeqCst);
    PEAK.store(now, Ordering::SeqCst);
    now
}

const NB: &str = "OVN_Northbound";
/// What the large reply carries: `SIZE / BLOB` rows of one `BLOB`-byte value each (the reply
/// is a little more). Many rows, as a database is: the monitor decoder holds one row's JSON
/// at a time besides the rows it made, which for one huge row would be counted twice.
const SIZE: usize = 16 * 1024 * 1024;
const BLOB: usize = 64 * 1024;
const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test]
async fn a_large_reply_is_held_about_once_and_its_buffer_given_back() {
    let s = Server::start("ovn-nb.ovsschema");
    let (c, _notes) = s.client().await;
    let conn = c.connection();
    let mut insert = vec![json!(NB)];
    for i in 0..SIZE / BLOB {
        insert.push(json!({"op": "insert", "table": "Logical_Switch",
            "row": {"name": format!("ls{i}"), "external_ids": ["map", [["blob", "x".repeat(BLOB)]]]}}));
    }
    conn.request("transact", Value::Array(insert))
        .await
        .unwrap();

    // Parsed: the reply frame and the JSON tree built from it.
    let base = baseline();
    let select = json!([NB, {"op": "select", "table": "Logical_Switch", "where": [],
        "columns": ["name", "external_ids"]}]);
    let reply = conn.request("transact", select).await.unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - base;
    let rows = reply[0]["rows"].as_array().map_or(&[][..], Vec::as_slice);
    let carried: usize = rows
        .iter()
        .filter_map(|r| r["external_ids"][1][0][1].as_str())
        .map(str::len)
        .sum();
    assert_eq!(carried, SIZE);
    drop(reply);
    let kept = LIVE.load(Ordering::SeqCst).saturating_sub(base);
    eprintln!(
        "parsed {} MiB reply: peak {:.1} MiB ({:.2}x), kept after {:.1} MiB",
        SIZE >> 20,
        peak as f64 / MIB,
        peak as f64 / SIZE as f64,
        kept as f64 / MIB
    );
    assert!(peak < SIZE * 5 / 2, "parsed reply peaked at {peak} bytes");
    assert!(kept < SIZE / 16, "{kept} bytes kept after the parsed reply");

    // Raw: an initial monitor's frame handed to the decoder, decoded into cache rows.
    let schema = DatabaseSchema::parse_str(ovsdb::schemas::OVN_NORTHBOUND.json).unwrap();
    let base = baseline();
    let since = c
        .monitor_cond_since_decoded(
            NB,
            &json!("m"),
            json!({"Logical_Switch": [{"columns": ["name", "external_ids"]}]}),
            None,
            &schema,
        )
        .await
        .unwrap();
    let peak = PEAK.load(Ordering::SeqCst) - base;
    assert_eq!(since.len(), SIZE / BLOB);
    drop(since);
    // The monitor itself stays registered server-side; our side keeps no buffer.
    let kept = LIVE.load(Ordering::SeqCst).saturating_sub(base);
    eprintln!(
        "raw {} MiB reply: peak {:.1} MiB ({:.2}x), kept after {:.1} MiB",
        SIZE >> 20,
        peak as f64 / MIB,
        peak as f64 / SIZE as f64,
        kept as f64 / MIB
    );
    assert!(peak < SIZE * 5 / 2, "raw reply peaked at {peak} bytes");
    assert!(kept < SIZE / 16, "{kept} bytes kept after the raw reply");
}
