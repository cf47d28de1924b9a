//! sluice's forwarding protocol (`proto/sluice/v1/forward.proto`), shared
//! by the `sluice` destination (edge) and source (aggregator): the
//! generated gRPC code, and a batch of events to and from a `SendRequest`.
//!
//! A batch travels as one buffer of every event's bytes plus their lengths,
//! not as a message per event: the sender copies each event once, the
//! receiver slices events out of the buffer without copying, and the whole
//! buffer is compressed once per batch (not once per attempt).

use bytes::Bytes;

use crate::codec::buffer_pool::ENCODED;
use crate::codec::{Compression, Inflate};
use crate::event::{Event, Format};

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("sluice.v1");
}

pub use pb::{SendRequest, SendResponse};

/// The protocol version this build speaks. A receiver takes every version
/// from `MIN_VERSION` to its own; fields are only ever added.
pub const VERSION: u32 = 1;
pub const MIN_VERSION: u32 = 1;

/// `events` as a request, `data` compressed with `compression` (gzip or
/// zstd; anything else sends it as it is).
pub fn request(events: &[Event], compression: Compression, origin: &str) -> SendRequest {
    let size: usize = events.iter().map(Event::len).sum();
    let mut data = ENCODED.take(size);
    let mut lengths = Vec::with_capacity(events.len());
    let mut text = Vec::new();
    for (i, e) in events.iter().enumerate() {
        data.extend_from_slice(&e.raw);
        lengths.push(e.len() as u32);
        if e.format == Format::Text {
            text.push(i as u32);
        }
    }
    let compression = match compression {
        Compression::Gzip | Compression::Zstd => compression,
        _ => Compression::None,
    };
    let (data, compression) = match compression.pack(data, &ENCODED) {
        Ok(packed) => (packed, compression),
        // Compressing into memory fails only without memory; the batch
        // still goes, uncompressed. `pack` took the data, so it is
        // gathered again (rare).
        Err(_) => (Bytes::from(concat(events)), Compression::None),
    };
    SendRequest {
        version: VERSION,
        data,
        lengths,
        text,
        origin: origin.to_string(),
        compression: wire(compression) as i32,
    }
}

fn concat(events: &[Event]) -> Vec<u8> {
    events.iter().flat_map(|e| e.raw.iter().copied()).collect()
}

fn wire(c: Compression) -> pb::Compression {
    match c {
        Compression::Zstd => pb::Compression::Zstd,
        Compression::Gzip => pb::Compression::Gzip,
        _ => pb::Compression::None,
    }
}

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error(
        "protocol version {0} is not spoken here (this sluice speaks {MIN_VERSION} to {VERSION})"
    )]
    Version(u32),
    #[error("the events' lengths add up to {lengths} bytes but the data has {data}")]
    Lengths { lengths: u64, data: usize },
    #[error("the batch is larger than max_batch_bytes ({0} bytes) once decompressed")]
    TooLarge(usize),
    #[error("the data does not decompress: {0}")]
    Compression(String),
    #[error("text index {0} is not an event of the batch")]
    Text(u32),
    #[error("the batch has {0} events, more than max_batch_events ({1})")]
    TooMany(usize, usize),
}

/// The events of a request, each a slice of its (decompressed) data; at
/// most `max_bytes` of them once decompressed, and at most `max_events`
/// events (checked first: a few kilobytes of zero lengths must not become
/// millions of events).
pub fn events(
    req: SendRequest,
    max_bytes: usize,
    max_events: usize,
) -> Result<Vec<Event>, Malformed> {
    if !(MIN_VERSION..=VERSION).contains(&req.version) {
        return Err(Malformed::Version(req.version));
    }
    if req.lengths.len() > max_events {
        return Err(Malformed::TooMany(req.lengths.len(), max_events));
    }
    let data = match pb::Compression::try_from(req.compression) {
        Ok(pb::Compression::None) => {
            if req.data.len() > max_bytes {
                return Err(Malformed::TooLarge(max_bytes));
            }
            req.data
        }
        Ok(c) => {
            let c = match c {
                pb::Compression::Gzip => Compression::Gzip,
                _ => Compression::Zstd,
            };
            match c.decompress(&req.data, max_bytes) {
                Ok(d) => d,
                Err(Inflate::TooLarge) => return Err(Malformed::TooLarge(max_bytes)),
                Err(Inflate::Invalid(e)) => return Err(Malformed::Compression(e.to_string())),
            }
        }
        Err(_) => {
            return Err(Malformed::Compression(format!(
                "unknown compression {}",
                req.compression
            )));
        }
    };
    let total: u64 = req.lengths.iter().map(|&n| u64::from(n)).sum();
    if total != data.len() as u64 {
        return Err(Malformed::Lengths {
            lengths: total,
            data: data.len(),
        });
    }
    let mut events = Vec::with_capacity(req.lengths.len());
    let mut at = 0;
    for &n in &req.lengths {
        let raw = data.slice(at..at + n as usize);
        at += n as usize;
        events.push(Event::json(raw));
    }
    for &i in &req.text {
        let e = events.get_mut(i as usize).ok_or(Malformed::Text(i))?;
        e.format = Format::Text;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Vec<Event> {
        vec![
            Event::json(Bytes::from_static(br#"{"a":1}"#)),
            Event::text(Bytes::from_static(b"plain text line")),
            Event::json(Bytes::from_static(b"")),
            Event::json(Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)))),
        ]
    }

    #[test]
    fn a_batch_round_trips_with_every_compression() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let req = request(&batch(), c, "edge");
            assert_eq!(req.version, VERSION);
            assert_eq!(req.origin, "edge");
            let back = events(req, 1 << 20, 1 << 20).unwrap();
            assert_eq!(back.len(), 4);
            for (a, b) in back.iter().zip(batch()) {
                assert_eq!(a.raw, b.raw);
                assert_eq!(a.format, b.format);
            }
        }
        let packed = request(&batch(), Compression::Zstd, "edge");
        assert!(packed.data.len() < 1000, "{}", packed.data.len());
    }

    #[test]
    fn malformed_requests_are_refused_with_their_reason() {
        let mut r = request(&batch(), Compression::None, "edge");
        r.version = VERSION + 1;
        assert_eq!(
            events(r, 1 << 20, 1 << 20).err(),
            Some(Malformed::Version(VERSION + 1))
        );
        let mut r = request(&batch(), Compression::None, "edge");
        r.lengths[0] += 1;
        assert!(matches!(
            events(r, 1 << 20, 1 << 20),
            Err(Malformed::Lengths { .. })
        ));
        let mut r = request(&batch(), Compression::None, "edge");
        r.text = vec![9];
        assert_eq!(events(r, 1 << 20, 1 << 20).err(), Some(Malformed::Text(9)));
        let r = request(&batch(), Compression::Zstd, "edge");
        assert_eq!(
            events(r, 100, 1 << 20).err(),
            Some(Malformed::TooLarge(100))
        );
        let r = request(&batch(), Compression::None, "edge");
        assert_eq!(
            events(r, 100, 1 << 20).err(),
            Some(Malformed::TooLarge(100))
        );
        let mut r = request(&batch(), Compression::Gzip, "edge");
        r.data = Bytes::from_static(b"not gzip");
        assert!(matches!(
            events(r, 1 << 20, 1 << 20),
            Err(Malformed::Compression(_))
        ));
        let mut r = request(&batch(), Compression::None, "edge");
        r.compression = 42;
        assert!(matches!(
            events(r, 1 << 20, 1 << 20),
            Err(Malformed::Compression(_))
        ));
    }
}
