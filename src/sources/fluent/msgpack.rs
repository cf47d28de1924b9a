//! Just enough MessagePack for the forward protocol, without building a
//! value tree: `head` reads one element's header; `Scanner` finds where a
//! complete object ends in a growing buffer, resuming where it stopped (so
//! a large message read in many pieces is scanned once), refusing nesting
//! past a depth; `write_json` writes a complete element as JSON.
//!
//! An object is only decoded once the scanner has seen all of it, so a
//! header announcing four billion elements costs nothing until four
//! billion bytes have arrived — and the caller's size limit stops that.

use bytes::{BufMut, BytesMut};

use crate::sources::writer::json_string;

/// One element: a scalar with its bytes, or an array's or map's length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext(i8, &'a [u8]),
    Array(u32),
    /// Pairs: twice as many elements follow.
    Map(u32),
}

/// Not MessagePack (the one byte no element starts with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad(pub &'static str);

fn be(buf: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = buf.get(at..at + n)?;
    Some(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

/// The element at the start of `buf` and the bytes it takes (an array's or
/// a map's header only). `Ok(None)`: `buf` ends inside it.
pub fn head(buf: &[u8]) -> Result<Option<(Item<'_>, usize)>, Bad> {
    let Some(&m) = buf.first() else {
        return Ok(None);
    };
    // (header length, payload length) for the sized kinds.
    let sized = |h: usize, len: Option<u64>| -> Option<(usize, usize)> {
        let len = usize::try_from(len?).ok()?;
        (buf.len() >= h.checked_add(len)?).then_some((h, len))
    };
    let item = match m {
        0x00..=0x7f => (Item::UInt(u64::from(m)), 1),
        0xe0..=0xff => (Item::Int(i64::from(m as i8)), 1),
        0x80..=0x8f => (Item::Map(u32::from(m & 0x0f)), 1),
        0x90..=0x9f => (Item::Array(u32::from(m & 0x0f)), 1),
        0xa0..=0xbf => {
            let Some((h, n)) = sized(1, Some(u64::from(m & 0x1f))) else {
                return Ok(None);
            };
            (Item::Str(&buf[h..h + n]), h + n)
        }
        0xc0 => (Item::Nil, 1),
        0xc1 => return Err(Bad("0xc1 is never used in MessagePack")),
        0xc2 => (Item::Bool(false), 1),
        0xc3 => (Item::Bool(true), 1),
        0xc4..=0xc6 | 0xd9..=0xdb => {
            let w = match m {
                0xc4 | 0xd9 => 1,
                0xc5 | 0xda => 2,
                _ => 4,
            };
            let Some((h, n)) = sized(1 + w, be(buf, 1, w)) else {
                return Ok(None);
            };
            let bytes = &buf[h..h + n];
            let item = if m <= 0xc6 {
                Item::Bin(bytes)
            } else {
                Item::Str(bytes)
            };
            (item, h + n)
        }
        0xc7..=0xc9 => {
            let w = usize::from(m - 0xc6).min(3);
            let w = [1, 2, 4][w - 1];
            let Some((h, n)) = sized(2 + w, be(buf, 1, w)) else {
                return Ok(None);
            };
            (Item::Ext(buf[1 + w] as i8, &buf[h..h + n]), h + n)
        }
        0xd4..=0xd8 => {
            let n = 1usize << (m - 0xd4);
            let Some((h, n)) = sized(2, Some(n as u64)) else {
                return Ok(None);
            };
            (Item::Ext(buf[1] as i8, &buf[h..h + n]), h + n)
        }
        0xca => match be(buf, 1, 4) {
            Some(v) => (Item::Float(f64::from(f32::from_bits(v as u32))), 5),
            None => return Ok(None),
        },
        0xcb => match be(buf, 1, 8) {
            Some(v) => (Item::Float(f64::from_bits(v)), 9),
            None => return Ok(None),
        },
        0xcc..=0xcf => {
            let w = 1usize << (m - 0xcc);
            match be(buf, 1, w) {
                Some(v) => (Item::UInt(v), 1 + w),
                None => return Ok(None),
            }
        }
        0xd0..=0xd3 => {
            let w = 1usize << (m - 0xd0);
            match be(buf, 1, w) {
                // Sign-extend from the width written.
                Some(v) => {
                    let shift = 64 - 8 * w as u32;
                    (Item::Int(((v << shift) as i64) >> shift), 1 + w)
                }
                None => return Ok(None),
            }
        }
        0xdc..=0xdf => {
            let w = if m == 0xdc || m == 0xde { 2 } else { 4 };
            let Some(n) = be(buf, 1, w) else {
                return Ok(None);
            };
            let n = n as u32;
            let item = if m <= 0xdd {
                Item::Array(n)
            } else {
                Item::Map(n)
            };
            (item, 1 + w)
        }
    };
    Ok(Some(item))
}

/// Where one complete object ends in a buffer that grows between calls.
#[derive(Debug, Default)]
pub struct Scanner {
    pos: usize,
    /// Elements still to come at each open level.
    open: Vec<u64>,
}

impl Scanner {
    /// Continue scanning `buf` (the same buffer as before, with more at its
    /// end). `Ok(Some(n))`: the first `n` bytes are one object; the
    /// scanner is ready for the next (after the caller removes them).
    pub fn scan(&mut self, buf: &[u8], max_depth: usize) -> Result<Option<usize>, Bad> {
        loop {
            let Some((item, len)) = head(&buf[self.pos..])? else {
                return Ok(None);
            };
            self.pos += len;
            if let Some(top) = self.open.last_mut() {
                *top -= 1;
            }
            let children = match item {
                Item::Array(n) => u64::from(n),
                Item::Map(n) => 2 * u64::from(n),
                _ => 0,
            };
            if children > 0 {
                if self.open.len() >= max_depth {
                    return Err(Bad("nested deeper than allowed"));
                }
                self.open.push(children);
            }
            while self.open.last() == Some(&0) {
                self.open.pop();
            }
            if self.open.is_empty() {
                let n = self.pos;
                self.pos = 0;
                return Ok(Some(n));
            }
        }
    }

    /// Bytes of the object in progress seen so far.
    pub fn seen(&self) -> usize {
        self.pos
    }
}

/// A reader over a complete, scanned object.
pub struct Reader<'a> {
    buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn next(&mut self) -> Result<Item<'a>, Bad> {
        match head(&self.buf[self.pos..])? {
            Some((item, len)) => {
                self.pos += len;
                Ok(item)
            }
            None => Err(Bad("the object ends early")),
        }
    }

    pub fn peek(&self) -> Result<Item<'a>, Bad> {
        match head(&self.buf[self.pos..])? {
            Some((item, _)) => Ok(item),
            None => Err(Bad("the object ends early")),
        }
    }

    /// Skip one element and everything inside it.
    pub fn skip(&mut self) -> Result<(), Bad> {
        let mut left = 1u64;
        while left > 0 {
            left -= 1;
            match self.next()? {
                Item::Array(n) => left += u64::from(n),
                Item::Map(n) => left += 2 * u64::from(n),
                _ => {}
            }
        }
        Ok(())
    }

    /// Write the next element as JSON: strings and binaries as text
    /// (invalid UTF-8 replaced), extensions as `null`, floats that are not
    /// finite as `null`, map keys that are not text as their JSON text.
    pub fn write_json(&mut self, out: &mut BytesMut) -> Result<(), Bad> {
        match self.next()? {
            Item::Nil | Item::Ext(..) => out.put_slice(b"null"),
            Item::Bool(b) => out.put_slice(if b { b"true" } else { b"false" }),
            Item::Int(i) => out.put_slice(itoa::Buffer::new().format(i).as_bytes()),
            Item::UInt(u) => out.put_slice(itoa::Buffer::new().format(u).as_bytes()),
            Item::Float(f) if f.is_finite() => {
                out.put_slice(ryu::Buffer::new().format_finite(f).as_bytes())
            }
            Item::Float(_) => out.put_slice(b"null"),
            Item::Str(s) | Item::Bin(s) => json_string(out, s),
            Item::Array(n) => {
                out.put_u8(b'[');
                for i in 0..n {
                    if i > 0 {
                        out.put_u8(b',');
                    }
                    self.write_json(out)?;
                }
                out.put_u8(b']');
            }
            Item::Map(n) => {
                out.put_u8(b'{');
                for i in 0..n {
                    if i > 0 {
                        out.put_u8(b',');
                    }
                    self.key(out)?;
                    out.put_u8(b':');
                    self.write_json(out)?;
                }
                out.put_u8(b'}');
            }
        }
        Ok(())
    }

    /// A map key as a JSON string; returns its text bytes when it is text.
    pub fn key(&mut self, out: &mut BytesMut) -> Result<Option<&'a [u8]>, Bad> {
        match self.peek()? {
            Item::Str(s) | Item::Bin(s) => {
                self.next()?;
                json_string(out, s);
                Ok(Some(s))
            }
            _ => {
                let mut text = BytesMut::new();
                self.write_json(&mut text)?;
                json_string(out, &text);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(v: &rmpv::Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode");
        out
    }

    #[test]
    fn scans_across_pieces_and_refuses_garbage_and_depth() {
        let v = rmpv::Value::Array(vec![
            "tag".into(),
            rmpv::Value::Array(vec![rmpv::Value::Array(vec![
                1.into(),
                rmpv::Value::Map(vec![("k".into(), "v".into())]),
            ])]),
        ]);
        let bytes = pack(&v);
        for step in 1..bytes.len() {
            let mut s = Scanner::default();
            let mut found = None;
            for end in (step..=bytes.len()).step_by(step).chain([bytes.len()]) {
                if let Some(n) = s.scan(&bytes[..end], 8).expect("valid") {
                    found = Some(n);
                    break;
                }
            }
            assert_eq!(found, Some(bytes.len()), "pieces of {step}");
        }
        assert!(Scanner::default().scan(&[0xc1], 8).is_err());
        let deep = [0x91u8; 10];
        assert!(Scanner::default().scan(&deep, 4).is_err());
        // A header announcing four billion elements: not complete, no cost.
        assert_eq!(
            Scanner::default().scan(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0], 8),
            Ok(None)
        );
    }

    #[test]
    fn json_of_every_kind() {
        let v = rmpv::Value::Map(vec![
            ("s".into(), "é\"".into()),
            ("i".into(), (-300).into()),
            ("u".into(), u64::MAX.into()),
            ("f".into(), 1.5.into()),
            ("nan".into(), f64::NAN.into()),
            ("b".into(), rmpv::Value::Binary(b"\xffok".to_vec())),
            (
                "a".into(),
                rmpv::Value::Array(vec![rmpv::Value::Nil, true.into()]),
            ),
            (rmpv::Value::from(7), rmpv::Value::Ext(1, vec![1, 2])),
        ]);
        let bytes = pack(&v);
        let mut out = BytesMut::new();
        Reader::new(&bytes).write_json(&mut out).expect("json");
        let j: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(
            j,
            serde_json::json!({"s": "é\"", "i": -300, "u": u64::MAX, "f": 1.5, "nan": null,
                "b": "\u{fffd}ok", "a": [null, true], "7": null})
        );
    }

    proptest::proptest! {
        /// Any bytes: the scanner and the JSON writer never panic, and what
        /// the scanner calls one object is valid JSON once written.
        #[test]
        fn any_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(Some(n)) = Scanner::default().scan(&data, 16) {
                let mut out = BytesMut::new();
                Reader::new(&data[..n]).write_json(&mut out).expect("a scanned object converts");
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
                proptest::prop_assert!(parsed.is_ok(), "{:?}", String::from_utf8_lossy(&out));
            }
        }
    }
}
