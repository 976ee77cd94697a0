//! Framing of ovsdb-server's stream: JSON values sent back to back with no delimiter. The splitter
//! finds value boundaries by tracking nesting and strings, so a message split across reads, or many
//! messages in one read, are both handled without re-parsing.
//!
//! A large message is handed over in the very buffer it was read into (never copied), and the
//! splitter starts afresh after it, so the memory a large reply took is given back with the frame.

use crate::error::{Error, Result};

/// Default largest message accepted: a bigger one is a protocol error rather than unbounded
/// memory. Far above a large OVN database's initial monitor reply.
pub const DEFAULT_MAX_FRAME: usize = 256 * 1024 * 1024;

/// Frames at least this long are handed over in the read buffer itself instead of copied out.
const HAND_OVER: usize = 64 * 1024;

/// Capacity the read buffer keeps between frames; anything above is given back.
const KEEP: usize = 256 * 1024;

/// Incremental splitter of a byte stream into complete top-level JSON values.
#[derive(Debug)]
pub struct FrameSplitter {
    buf: Vec<u8>,
    /// Largest frame accepted.
    max: usize,
    /// Bytes of `buf` already scanned (all part of the current, incomplete value).
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
}

impl Default for FrameSplitter {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_FRAME)
    }
}

impl FrameSplitter {
    /// A splitter accepting frames up to [`DEFAULT_MAX_FRAME`] bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A splitter accepting frames up to `max` bytes.
    pub fn with_limit(max: usize) -> Self {
        FrameSplitter {
            buf: Vec::new(),
            max,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
            started: false,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Returns the next complete value's bytes, `Ok(None)` when more input is needed, or an error
    /// for a stream that cannot be JSON-RPC (the connection must then be dropped).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        while self.scanned < self.buf.len() {
            let b = self.buf[self.scanned];
            self.scanned += 1;
            if !self.started {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b'{' | b'[' => {
                        self.started = true;
                        self.depth = 1;
                        continue;
                    }
                    _ => {
                        return Err(Error::Protocol(format!(
                            "unexpected byte 0x{b:02x} between JSON-RPC messages"
                        )))
                    }
                }
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.check_size(self.scanned)?;
                        return Ok(Some(self.take_frame()));
                    }
                }
                _ => {}
            }
        }
        self.check_size(self.buf.len())?;
        Ok(None)
    }

    fn check_size(&self, len: usize) -> Result<()> {
        if len > self.max {
            return Err(Error::Protocol(format!(
                "message larger than {} bytes (the client's max_message limit)",
                self.max
            )));
        }
        Ok(())
    }

    /// Removes the first `scanned` bytes, the complete frame, from the buffer.
    fn take_frame(&mut self) -> Vec<u8> {
        let len = std::mem::take(&mut self.scanned);
        self.started = false;
        if len < HAND_OVER {
            let frame = self.buf.drain(..len).collect();
            if self.buf.capacity() > KEEP && self.buf.len() < KEEP {
                self.buf.shrink_to(KEEP);
            }
            return frame;
        }
        // The rest is at most one read's worth: the start of the next message.
        let rest = self.buf[len..].to_vec();
        let mut frame = std::mem::replace(&mut self.buf, rest);
        frame.truncate(len);
        // The buffer grew by doubling; its unused half goes back now, not with the frame.
        frame.shrink_to_fit();
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = FrameSplitter::new();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(f) = s.next_frame().unwrap() {
                out.push(String::from_utf8(f).unwrap().trim().to_string());
            }
        }
        out
    }

    #[test]
    fn splits_back_to_back_values_and_partial_reads() {
        let out = split_all(&[br#"{"a":"}{\"x"} [1,[2]]{"b"#, br#"":{}}"#]);
        assert_eq!(out, vec![r#"{"a":"}{\"x"}"#, "[1,[2]]", r#"{"b":{}}"#]);
    }

    #[test]
    fn large_frames_are_handed_over_and_the_buffer_shrinks() {
        let mut s = FrameSplitter::new();
        let big = format!("[\"{}\"]", "x".repeat(4 * KEEP));
        s.push(big.as_bytes());
        s.push(b"{\"next\":");
        let frame = s.next_frame().unwrap().unwrap();
        assert_eq!(frame, big.as_bytes());
        assert!(s.buf.capacity() <= KEEP, "kept {} bytes", s.buf.capacity());
        s.push(b"1}");
        assert_eq!(s.next_frame().unwrap().unwrap(), br#"{"next":1}"#);
    }

    #[test]
    fn frames_over_the_limit_are_refused() {
        let mut s = FrameSplitter::with_limit(8);
        s.push(b"[1,2,3,4,5]");
        let e = s.next_frame().unwrap_err().to_string();
        assert!(e.contains("larger than 8 bytes"), "{e}");
        let mut s = FrameSplitter::with_limit(8);
        s.push(b"[1,2,3,4,");
        assert!(
            s.next_frame().is_err(),
            "an incomplete frame past the limit"
        );
    }

    #[test]
    fn rejects_garbage_between_messages() {
        let mut s = FrameSplitter::new();
        s.push(b"{} x");
        assert!(s.next_frame().unwrap().is_some());
        assert!(s.next_frame().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut s = FrameSplitter::new();
            for c in &chunks {
                s.push(c);
                while let Ok(Some(f)) = s.next_frame() {
                    let _ = serde_json::from_slice::<serde_json::Value>(&f);
                }
            }
        }

        #[test]
        fn any_json_sequence_splits_exactly(values in proptest::collection::vec(arb_json(), 1..6), cut in 0usize..200) {
            let text: String = values.iter().map(|v| v.to_string()).collect();
            let cut = cut.min(text.len());
            let mut s = FrameSplitter::new();
            s.push(&text.as_bytes()[..cut]);
            let mut got = Vec::new();
            while let Some(f) = s.next_frame().unwrap() { got.push(serde_json::from_slice::<serde_json::Value>(&f).unwrap()); }
            s.push(&text.as_bytes()[cut..]);
            while let Some(f) = s.next_frame().unwrap() { got.push(serde_json::from_slice::<serde_json::Value>(&f).unwrap()); }
            prop_assert_eq!(got, values);
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            "[\\PC\"\\\\{}\\[\\]]{0,8}".prop_map(serde_json::Value::from),
        ];
        let inner = leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z\"{]{0,4}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        });
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("[a-z]{0,4}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    }
}
