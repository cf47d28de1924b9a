//! Building JSON events field by field, for the sources whose protocols are
//! not JSON lines (syslog, statsd, fluent, HEC). Every event is written into
//! one shared buffer and split off it, so a batch costs one allocation per
//! 64 KiB, not one per event; keys and strings are escaped here, once.

use bytes::{BufMut, BytesMut};

use crate::event::Event;

/// Room reserved at a time.
const CHUNK: usize = 64 * 1024;

#[derive(Default)]
pub struct EventWriter {
    buf: BytesMut,
    /// No field written yet in the innermost open object.
    first: bool,
}

impl EventWriter {
    pub fn new() -> Self {
        EventWriter::default()
    }

    /// Start an event; `hint`: about how many bytes it will take.
    pub fn begin(&mut self, hint: usize) {
        if self.buf.capacity() - self.buf.len() < hint + 64 {
            self.buf.reserve(CHUNK.max(hint + 64));
        }
        self.buf.put_u8(b'{');
        self.first = true;
    }

    /// End the event and take it.
    pub fn finish(&mut self) -> Event {
        self.buf.put_u8(b'}');
        self.first = false;
        Event::json(self.buf.split().freeze())
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.buf.put_u8(b',');
        }
        self.first = false;
        json_string(&mut self.buf, key.as_bytes());
        self.buf.put_u8(b':');
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        json_string(&mut self.buf, value.as_bytes());
    }

    /// Bytes that should be text; invalid UTF-8 is replaced.
    pub fn bytes(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        json_string(&mut self.buf, value);
    }

    pub fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.buf
            .put_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// A number; one that is not finite becomes `null` (JSON has no NaN).
    pub fn float(&mut self, key: &str, value: f64) {
        self.key(key);
        if value.is_finite() {
            self.buf
                .put_slice(ryu::Buffer::new().format_finite(value).as_bytes());
        } else {
            self.buf.put_slice(b"null");
        }
    }

    /// A value that already is JSON.
    pub fn json(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.buf.put_slice(value);
    }

    /// Anything `Display` writes, as a string (a time, an address).
    pub fn display(&mut self, key: &str, value: impl std::fmt::Display) {
        use std::io::Write;
        self.key(key);
        self.buf.put_u8(b'"');
        let mut w = (&mut self.buf).writer();
        // Writing into memory cannot fail; a Display that escapes nothing
        // (times, addresses) needs no JSON escaping.
        let _ = write!(w, "{value}");
        self.buf.put_u8(b'"');
    }

    /// Room for one field the caller writes whole (`"key":value`).
    pub fn field(&mut self) -> &mut BytesMut {
        if !self.first {
            self.buf.put_u8(b',');
        }
        self.first = false;
        &mut self.buf
    }

    /// Forget the event being written (its input turned out broken).
    pub fn abandon(&mut self) {
        // Finished events were split off: only the unfinished one is left.
        self.buf.clear();
        self.first = false;
    }

    /// Open a nested object under `key`; `close` ends it.
    pub fn open(&mut self, key: &str) {
        self.key(key);
        self.buf.put_u8(b'{');
        self.first = true;
    }

    pub fn close(&mut self) {
        self.buf.put_u8(b'}');
        self.first = false;
    }
}

/// A JSON string of `bytes` (invalid UTF-8 replaced).
pub fn json_string(out: &mut BytesMut, bytes: &[u8]) {
    let plain = bytes
        .iter()
        .all(|&c| (0x20..0x80).contains(&c) && c != b'"' && c != b'\\');
    if plain {
        out.put_u8(b'"');
        out.put_slice(bytes);
        out.put_u8(b'"');
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(out.writer(), text.as_ref());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_json_whatever_the_strings() {
        let mut w = EventWriter::new();
        w.begin(10);
        w.str("message", "a \"quoted\"\n\u{1} line é");
        w.bytes("raw", b"\xff\xfe ok");
        w.int("n", -3);
        w.float("x", 0.5);
        w.float("nan", f64::NAN);
        w.open("tags");
        w.str("k", "v");
        w.close();
        w.display("at", "2024-01-01T00:00:00Z");
        let e = w.finish();
        let v: serde_json::Value = serde_json::from_slice(&e.raw).expect("json");
        assert_eq!(v["message"], "a \"quoted\"\n\u{1} line é");
        assert_eq!(v["raw"], "\u{fffd}\u{fffd} ok");
        assert_eq!(v["n"], -3);
        assert_eq!(v["x"], 0.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["tags"]["k"], "v");
        w.begin(0);
        let empty = w.finish();
        assert_eq!(&empty.raw[..], b"{}");
    }
}
