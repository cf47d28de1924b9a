//! `encoding: capnp` — a batch as one Cap'n Proto message
//! (`proto/sluice/v1/events.capnp`), for receivers that read fields without
//! parsing JSON: sluice parses each JSON event once into a tree of values,
//! members in the order written; a text event is carried as its bytes.
//!
//! Integers keep their exact value (`int`, or `uint` above Int64); other
//! numbers are `float`. An event nested deeper than `MAX_DEPTH` is counted
//! as unencodable rather than risking the stack; an event marked JSON that
//! does not parse is carried as text, so nothing is lost.

use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait};

use crate::event::{Event, Format};

/// The code `capnpc` generates from the schema (see `build.rs`).
#[allow(clippy::all, clippy::pedantic, unused, unsafe_code)]
pub mod events_capnp {
    include!(concat!(env!("OUT_DIR"), "/sluice/v1/events_capnp.rs"));
}

use events_capnp::{batch, value};

pub const CONTENT_TYPE: &str = "application/x-capnp";
const MAX_DEPTH: usize = 128;

enum Parsed {
    Json(sonic_rs::Value),
    Text,
}

/// Append the batch message to `out`; the indices of events left out.
pub fn encode(events: &[Event], out: &mut Vec<u8>) -> Vec<usize> {
    let mut skipped = Vec::new();
    let mut parsed = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let p = match e.format {
            // Checked before parsing: the parser recurses once per level.
            Format::Json if super::nesting::exceeds(&e.raw, MAX_DEPTH) => {
                skipped.push(i);
                continue;
            }
            Format::Json => match sonic_rs::from_slice::<sonic_rs::Value>(&e.raw) {
                Ok(v) => Parsed::Json(v),
                Err(_) => Parsed::Text,
            },
            Format::Text => Parsed::Text,
        };
        parsed.push((i, p));
    }
    let mut message = capnp::message::Builder::new_default();
    let root = message.init_root::<batch::Builder>();
    let mut list = root.init_events(parsed.len() as u32);
    for (slot, (i, p)) in parsed.iter().enumerate() {
        let e = list.reborrow().get(slot as u32);
        match p {
            Parsed::Json(v) => fill(e.init_json(), v),
            Parsed::Text => e
                .init_text(events[*i].raw.len() as u32)
                .copy_from_slice(&events[*i].raw),
        }
    }
    // Writing into a Vec cannot fail.
    let _ = capnp::serialize::write_message(out, &message);
    skipped
}

fn fill(mut b: value::Builder<'_>, v: &sonic_rs::Value) {
    match v.get_type() {
        JsonType::Null => b.set_null(()),
        JsonType::Boolean => b.set_bool(v.as_bool().unwrap_or(false)),
        JsonType::Number => {
            if let Some(i) = v.as_i64() {
                b.set_int(i);
            } else if let Some(u) = v.as_u64() {
                b.set_uint(u);
            } else {
                b.set_float(v.as_f64().unwrap_or(f64::NAN));
            }
        }
        JsonType::String => b.set_text(v.as_str().unwrap_or("")),
        JsonType::Array => {
            let Some(a) = v.as_array() else {
                return b.set_null(());
            };
            let mut list = b.init_list(a.len() as u32);
            for (i, x) in a.iter().enumerate() {
                fill(list.reborrow().get(i as u32), x);
            }
        }
        JsonType::Object => {
            let Some(o) = v.as_object() else {
                return b.set_null(());
            };
            let mut list = b.init_object(o.len() as u32);
            for (i, (name, x)) in o.iter().enumerate() {
                let mut m = list.reborrow().get(i as u32);
                m.set_name(name);
                fill(m.init_value(), x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::events_capnp::{batch, event, value};
    use super::*;
    use bytes::Bytes;

    /// A value read back as JSON text, with the reader a receiver uses.
    fn json(v: value::Reader<'_>) -> String {
        match v.which().unwrap() {
            value::Null(()) => "null".into(),
            value::Bool(b) => b.to_string(),
            value::Int(i) => i.to_string(),
            value::Uint(u) => u.to_string(),
            value::Float(f) => f.to_string(),
            value::Text(t) => format!("{:?}", t.unwrap().to_str().unwrap()),
            value::List(l) => {
                let items: Vec<String> = l.unwrap().iter().map(json).collect();
                format!("[{}]", items.join(","))
            }
            value::Object(o) => {
                let members: Vec<String> = o
                    .unwrap()
                    .iter()
                    .map(|m| {
                        format!(
                            "{:?}:{}",
                            m.get_name().unwrap().to_str().unwrap(),
                            json(m.get_value().unwrap())
                        )
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
        }
    }

    #[test]
    fn a_batch_reads_back_with_the_capnp_reader() {
        let events = vec![
            Event::json(Bytes::from_static(
                br#"{"z":1,"a":[true,null,-5,18446744073709551615,1.5],"s":"h\u00e9"}"#,
            )),
            Event::text(Bytes::from_static(b"<13>plain syslog")),
            Event::json(Bytes::from(format!(
                "{}1{}",
                "[".repeat(200),
                "]".repeat(200)
            ))),
        ];
        let mut out = Vec::new();
        assert_eq!(encode(&events, &mut out), vec![2], "too deep: counted");
        let msg =
            capnp::serialize::read_message(&mut &out[..], capnp::message::ReaderOptions::new())
                .unwrap();
        let b = msg.get_root::<batch::Reader>().unwrap();
        let list = b.get_events().unwrap();
        assert_eq!(list.len(), 2);
        match list.get(0).which().unwrap() {
            event::Json(v) => assert_eq!(
                json(v.unwrap()),
                r#"{"z":1,"a":[true,null,-5,18446744073709551615,1.5],"s":"hé"}"#
            ),
            event::Text(_) => panic!("JSON read as text"),
        }
        match list.get(1).which().unwrap() {
            event::Text(t) => assert_eq!(t.unwrap(), b"<13>plain syslog"),
            event::Json(_) => panic!("text read as JSON"),
        }
    }

    #[test]
    fn the_committed_generated_code_matches_the_schema() {
        // build.rs compiled the schema with `capnp` when it had it (CI
        // does); the committed copy is what machines without it use.
        let generated = include_str!(concat!(env!("OUT_DIR"), "/sluice/v1/events_capnp.rs"));
        let committed = include_str!("../../proto/sluice/v1/events_capnp.rs");
        if env!("SLUICE_CAPNP_COMPILED") == "1" {
            assert!(
                generated == committed,
                "proto/sluice/v1/events_capnp.rs is stale: copy the build's out/sluice/v1/events_capnp.rs over it"
            );
        }
    }
}
