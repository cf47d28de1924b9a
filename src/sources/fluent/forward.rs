//! One forward-protocol message into events: Message
//! (`[tag, time, record, option?]`), Forward (`[tag, [[time, record], …],
//! option?]`), PackedForward (`[tag, bin, option?]`: the entries
//! concatenated) and CompressedPackedForward (the same, gzip, option
//! `compressed: "gzip"`). A record keeps its keys and gains `tag` and
//! `timestamp` (RFC 3339, nanoseconds kept) unless it has them.

use std::io::Read;

use bytes::BufMut;

use super::msgpack::{Bad, Item, Reader, Scanner};
use crate::event::Event;
use crate::sources::writer::EventWriter;

/// What a message asked for beside its events.
#[derive(Debug, Default, PartialEq)]
pub struct Options {
    /// Answer `{"ack": chunk}` once its events are delivered.
    pub chunk: Option<Vec<u8>>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed(&'static str),
    /// More events (or decompressed bytes) than allowed.
    TooLarge,
}

impl From<Bad> for Refusal {
    fn from(b: Bad) -> Self {
        Refusal::Malformed(b.0)
    }
}

pub struct Limits {
    pub max_events: usize,
    /// Most bytes a CompressedPackedForward message may decompress to.
    pub max_bytes: usize,
    pub max_depth: usize,
}

/// The events of one complete message (`msg`, already scanned), added to
/// `out`; a refused message adds none.
pub fn events(
    msg: &[u8],
    limits: &Limits,
    out: &mut Vec<Event>,
    w: &mut EventWriter,
) -> Result<Options, Refusal> {
    let before = out.len();
    let r = message(msg, limits, out, w);
    if r.is_err() {
        out.truncate(before);
        w.abandon();
    }
    r
}

fn message(
    msg: &[u8],
    limits: &Limits,
    out: &mut Vec<Event>,
    w: &mut EventWriter,
) -> Result<Options, Refusal> {
    let mut r = Reader::new(msg);
    let n = match r.next()? {
        Item::Array(n) if (2..=4).contains(&n) => n,
        _ => {
            return Err(Refusal::Malformed(
                "a message is an array of 2 to 4 elements",
            ));
        }
    };
    let tag = match r.next()? {
        Item::Str(t) => t,
        _ => return Err(Refusal::Malformed("the tag is not a string")),
    };
    let taken = out.len();
    let mut options = Options::default();
    match r.peek()? {
        Item::Array(m) => {
            r.next()?;
            if m as usize > limits.max_events {
                return Err(Refusal::TooLarge);
            }
            for _ in 0..m {
                entry(&mut r, tag, out, w)?;
            }
            if n >= 3 {
                options = option(&mut r)?;
            }
        }
        Item::Str(packed) | Item::Bin(packed) => {
            r.next()?;
            if n >= 3 {
                options = option(&mut r)?;
            }
            let compressed = option_compressed(msg)?;
            let inflated;
            let entries = if compressed {
                inflated = gunzip(packed, limits.max_bytes)?;
                &inflated[..]
            } else {
                packed
            };
            let mut at = 0;
            while at < entries.len() {
                if out.len() - taken >= limits.max_events {
                    return Err(Refusal::TooLarge);
                }
                let Some(len) = Scanner::default().scan(&entries[at..], limits.max_depth)? else {
                    return Err(Refusal::Malformed("a packed entry ends early"));
                };
                let mut er = Reader::new(&entries[at..at + len]);
                entry(&mut er, tag, out, w)?;
                at += len;
            }
        }
        _ => {
            // Message mode: time, record.
            let time = r.next()?;
            record(&mut r, tag, time, out, w)?;
            if n >= 4 {
                options = option(&mut r)?;
            }
        }
    }
    Ok(options)
}

/// `[time, record]`.
fn entry(
    r: &mut Reader<'_>,
    tag: &[u8],
    out: &mut Vec<Event>,
    w: &mut EventWriter,
) -> Result<(), Refusal> {
    match r.next()? {
        Item::Array(2) => {}
        _ => return Err(Refusal::Malformed("an entry is [time, record]")),
    }
    let time = r.next()?;
    record(r, tag, time, out, w)
}

fn record(
    r: &mut Reader<'_>,
    tag: &[u8],
    time: Item<'_>,
    out: &mut Vec<Event>,
    w: &mut EventWriter,
) -> Result<(), Refusal> {
    let n = match r.next()? {
        Item::Map(n) => n,
        _ => return Err(Refusal::Malformed("a record is a map")),
    };
    let stamp = timestamp(time)?;
    w.begin(64);
    let (mut has_tag, mut has_time) = (false, false);
    for _ in 0..n {
        let buf = w.field();
        let key = r.key(buf)?;
        has_tag |= key == Some(b"tag");
        has_time |= key == Some(b"timestamp");
        buf.put_u8(b':');
        r.write_json(buf)?;
    }
    if !has_tag {
        w.bytes("tag", tag);
    }
    if !has_time {
        match stamp {
            Some((secs, nanos)) => match chrono::DateTime::from_timestamp(secs, nanos) {
                Some(t) => w.display("timestamp", t.format("%Y-%m-%dT%H:%M:%S%.fZ")),
                None => return Err(Refusal::Malformed("a time out of range")),
            },
            None => return Err(Refusal::Malformed("a time that is not a time")),
        }
    }
    out.push(w.finish());
    Ok(())
}

/// Seconds and nanoseconds: an integer, a float, or EventTime (extension
/// 0: seconds and nanoseconds, 32 bits each).
fn timestamp(time: Item<'_>) -> Result<Option<(i64, u32)>, Refusal> {
    Ok(match time {
        Item::UInt(s) => i64::try_from(s).ok().map(|s| (s, 0)),
        Item::Int(s) => Some((s, 0)),
        Item::Float(f) if f.is_finite() && f.abs() < 1e15 => {
            let s = f.floor();
            Some((s as i64, ((f - s) * 1e9) as u32))
        }
        Item::Ext(0, b) if b.len() == 8 => {
            let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let nanos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            Some((i64::from(secs), nanos.min(999_999_999)))
        }
        _ => None,
    })
}

/// The option map (a `nil` option is none).
fn option(r: &mut Reader<'_>) -> Result<Options, Refusal> {
    let n = match r.next()? {
        Item::Map(n) => n,
        Item::Nil => return Ok(Options::default()),
        _ => return Err(Refusal::Malformed("the option is not a map")),
    };
    let mut o = Options::default();
    for _ in 0..n {
        match (r.next()?, r.peek()?) {
            (Item::Str(b"chunk"), Item::Str(c) | Item::Bin(c)) => {
                r.next()?;
                o.chunk = Some(c.to_vec());
            }
            _ => r.skip()?,
        }
    }
    Ok(o)
}

/// Whether the message's option says `compressed: "gzip"` (read apart: in
/// PackedForward the option follows the entries it describes).
fn option_compressed(msg: &[u8]) -> Result<bool, Refusal> {
    let mut r = Reader::new(msg);
    let n = match r.next()? {
        Item::Array(n) => n,
        _ => return Ok(false),
    };
    if n < 3 {
        return Ok(false);
    }
    r.skip()?;
    r.skip()?;
    let Item::Map(m) = r.next()? else {
        return Ok(false);
    };
    for _ in 0..m {
        match (r.next()?, r.peek()?) {
            (Item::Str(b"compressed"), Item::Str(v)) => {
                return match v {
                    b"gzip" => Ok(true),
                    b"text" => Ok(false),
                    _ => Err(Refusal::Malformed("an unknown compression")),
                };
            }
            _ => r.skip()?,
        }
    }
    Ok(false)
}

/// Concatenated gzip members (Fluent Bit appends one per flush), at most
/// `max` bytes once inflated.
fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let mut d = flate2::read::MultiGzDecoder::new(data).take(max as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|_| Refusal::Malformed("the entries are not gzip"))?;
    if out.len() > max {
        return Err(Refusal::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    fn pack(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode");
        out
    }

    fn limits() -> Limits {
        Limits {
            max_events: 10,
            max_bytes: 1 << 20,
            max_depth: 32,
        }
    }

    fn run(v: &Value) -> (Vec<serde_json::Value>, Result<Options, Refusal>) {
        let mut out = Vec::new();
        let r = events(&pack(v), &limits(), &mut out, &mut EventWriter::new());
        let json = out
            .iter()
            .map(|e| serde_json::from_slice(&e.raw).expect("valid JSON"))
            .collect();
        (json, r)
    }

    fn rec(k: &str, v: i64) -> Value {
        Value::Map(vec![(k.into(), v.into())])
    }

    fn event_time(secs: u32, nanos: u32) -> Value {
        let mut b = secs.to_be_bytes().to_vec();
        b.extend(nanos.to_be_bytes());
        Value::Ext(0, b)
    }

    #[test]
    fn every_mode() {
        // Message, with EventTime and an ack chunk.
        let opt = Value::Map(vec![("chunk".into(), "abc".into())]);
        let (got, o) = run(&Value::Array(vec![
            "app".into(),
            event_time(1_700_000_000, 5),
            rec("n", 1),
            opt,
        ]));
        assert_eq!(
            o,
            Ok(Options {
                chunk: Some(b"abc".to_vec())
            })
        );
        assert_eq!(
            got[0],
            serde_json::json!({"n": 1, "tag": "app", "timestamp": "2023-11-14T22:13:20.000000005Z"})
        );
        // Forward.
        let entries = Value::Array(vec![
            Value::Array(vec![1.into(), rec("n", 1)]),
            Value::Array(vec![
                2.into(),
                Value::Map(vec![("tag".into(), "own".into())]),
            ]),
        ]);
        let (got, _) = run(&Value::Array(vec!["fwd".into(), entries]));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["tag"], "own", "a record's own tag wins");
        assert_eq!(got[0]["timestamp"], "1970-01-01T00:00:01Z");
        // PackedForward and CompressedPackedForward.
        let mut stream = Vec::new();
        for i in 0..3 {
            stream.extend(pack(&Value::Array(vec![i.into(), rec("i", i)])));
        }
        let (got, _) = run(&Value::Array(vec![
            "p".into(),
            Value::Binary(stream.clone()),
        ]));
        assert_eq!(
            got.iter()
                .map(|e| e["i"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        let mut gz = Vec::new();
        for half in [&stream[..stream.len() / 2], &stream[stream.len() / 2..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, half).expect("gzip");
            gz.extend(e.finish().expect("gzip"));
        }
        let opt = Value::Map(vec![
            ("compressed".into(), "gzip".into()),
            ("size".into(), 3.into()),
        ]);
        let (got, _) = run(&Value::Array(vec!["c".into(), Value::Binary(gz), opt]));
        assert_eq!(got.len(), 3, "two gzip members");
    }

    #[test]
    fn refusals() {
        let too_many = Value::Array(
            (0..11)
                .map(|i| Value::Array(vec![i.into(), rec("i", i)]))
                .collect(),
        );
        assert_eq!(
            run(&Value::Array(vec!["t".into(), too_many])).1,
            Err(Refusal::TooLarge)
        );
        assert!(matches!(
            run(&Value::Array(vec![1.into(), 2.into()])).1,
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            run(&Value::Array(vec!["t".into(), 1.into(), 2.into()])).1,
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            run(&Value::Array(vec!["t".into(), "x".into(), rec("a", 1)])).1,
            Err(Refusal::Malformed(_))
        ));
        let bomb = vec![0u8; 2 << 20];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &bomb).expect("gzip");
        let opt = Value::Map(vec![("compressed".into(), "gzip".into())]);
        let (_, r) = run(&Value::Array(vec![
            "c".into(),
            Value::Binary(e.finish().expect("gzip")),
            opt,
        ]));
        assert_eq!(r, Err(Refusal::TooLarge), "a gzip bomb stops at max_bytes");
    }
}
