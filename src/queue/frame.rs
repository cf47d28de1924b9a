//! One record batch on disk: a frame.
//!
//! ```text
//! len     u32 LE   bytes after this field
//! crc     u32 LE   CRC32C of the bytes after this field
//! flags   u8       bit 0: payload is zstd-compressed
//! count   u32 LE   events in the frame
//! time_ms u64 LE   when it was written (for the oldest-record age)
//! payload          events, each: format u8 (0 JSON, 1 text), len u32 LE, bytes
//! ```
//!
//! The count and time sit outside the (optionally compressed) payload so
//! recovery and `queue inspect` can count events without decompressing. The
//! CRC covers everything after itself, so any damage to the header or the
//! payload is detected.

use bytes::{Bytes, BytesMut};

use crate::event::{Event, Format};

/// Bytes before the payload: len, crc, flags, count, time.
pub const HEADER: usize = 4 + 4 + 1 + 4 + 8;
/// Refuse to believe a frame longer than this (a damaged length field).
pub const MAX_FRAME: usize = 512 << 20;

const ZSTD: u8 = 1;
/// Flags this version understands; a frame with others is not ours.
pub const KNOWN_FLAGS: u8 = ZSTD;

/// Append one frame holding `events` to `out`. Returns the frame's length.
/// The payload is written straight into `out`; only compression needs a
/// second buffer.
pub fn encode<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    compress: bool,
    time_ms: u64,
    out: &mut Vec<u8>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    let mut count = 0u32;
    for e in events {
        out.push(match e.format {
            Format::Json => 0,
            Format::Text => 1,
        });
        out.extend_from_slice(&(e.raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.raw);
        count += 1;
    }
    let mut flags = 0u8;
    if compress
        && let Ok(z) = zstd::bulk::compress(&out[start + HEADER..], 1)
        && z.len() < out.len() - start - HEADER
    {
        out.truncate(start + HEADER);
        out.extend_from_slice(&z);
        flags |= ZSTD;
    }
    let body_len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 8] = flags;
    out[start + 9..start + 13].copy_from_slice(&count.to_le_bytes());
    out[start + 13..start + 21].copy_from_slice(&time_ms.to_le_bytes());
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// What the fixed header says, before the payload is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total frame length, header included.
    pub frame_len: usize,
    pub crc: u32,
    pub flags: u8,
    pub count: u32,
    pub time_ms: u64,
}

/// Parse a header from at least `HEADER` bytes. `None` if the length field
/// is impossible (shorter than the header fields or absurdly long).
pub fn header(b: &[u8]) -> Option<Header> {
    let b: &[u8; HEADER] = b.get(..HEADER)?.try_into().ok()?;
    let body_len = u32::from_le_bytes(b[0..4].try_into().ok()?) as usize;
    if !(13..=MAX_FRAME).contains(&body_len) {
        return None;
    }
    Some(Header {
        frame_len: 4 + body_len,
        crc: u32::from_le_bytes(b[4..8].try_into().ok()?),
        flags: b[8],
        count: u32::from_le_bytes(b[9..13].try_into().ok()?),
        time_ms: u64::from_le_bytes(b[13..21].try_into().ok()?),
    })
}

/// Whether a whole frame (header included) matches its CRC.
pub fn crc_ok(frame: &[u8], h: &Header) -> bool {
    frame.len() == h.frame_len && crc32c::crc32c(&frame[8..]) == h.crc
}

/// Decode a whole, CRC-checked frame into events (sharing one buffer).
/// `None` if the payload does not parse (which a good CRC makes unlikely).
pub fn decode(frame: Bytes, h: &Header) -> Option<Vec<Event>> {
    let payload = frame.slice(HEADER..);
    let payload = if h.flags & ZSTD != 0 {
        let raw = zstd::bulk::decompress(&payload, MAX_FRAME).ok()?;
        Bytes::from(raw)
    } else {
        payload
    };
    let mut events = Vec::with_capacity(h.count as usize);
    let mut p = 0usize;
    while p < payload.len() {
        let format = match *payload.get(p)? {
            0 => Format::Json,
            1 => Format::Text,
            _ => return None,
        };
        let len = u32::from_le_bytes(payload.get(p + 1..p + 5)?.try_into().ok()?) as usize;
        let raw = payload.get(p + 5..p + 5 + len)?;
        let raw = payload.slice_ref(raw);
        events.push(Event { raw, format });
        p += 5 + len;
    }
    (events.len() == h.count as usize).then_some(events)
}

/// Reusable buffer for reading frames.
pub fn read_buffer(len: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(len);
    b.resize(len, 0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        vec![
            Event::json(Bytes::from_static(br#"{"a":1}"#)),
            Event::text(Bytes::from_static(b"plain")),
            Event::json(Bytes::from(vec![b'x'; 3000])),
        ]
    }

    #[test]
    fn round_trips_with_and_without_compression() {
        for compress in [false, true] {
            let mut out = Vec::new();
            let n = encode(&events(), compress, 42, &mut out);
            assert_eq!(n, out.len());
            let h = header(&out).unwrap();
            assert_eq!((h.frame_len, h.count, h.time_ms), (out.len(), 3, 42));
            assert_eq!(h.flags & ZSTD != 0, compress);
            assert!(crc_ok(&out, &h));
            let back = decode(Bytes::from(out), &h).unwrap();
            assert_eq!(back.len(), 3);
            assert_eq!(back[1].format, Format::Text);
            assert_eq!(back[2].raw.len(), 3000);
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let mut out = Vec::new();
        encode(&events()[..2], false, 7, &mut out);
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x40;
            let ok = header(&bad).is_some_and(|h| crc_ok(&bad, &h));
            assert!(!ok, "flipping byte {i} went unnoticed");
        }
    }
}
