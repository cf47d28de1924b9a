//! HEC bodies into events. `/event`: concatenated JSON envelopes
//! (`{"time","host","source","sourcetype","index","event","fields"}`,
//! whitespace or nothing between them); `/raw`: lines. An `event` object
//! keeps its fields; any other `event` becomes `message`. Indexed `fields`
//! are added beside them, then the envelope's metadata under Vector's
//! names (`host`, `splunk_source`, `splunk_sourcetype`, `splunk_index`,
//! `splunk_channel`) and `timestamp` (RFC 3339, from `time`, else the
//! arrival). A field the event already has is never overwritten.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::event::Event;

/// Why a body was refused, as Splunk answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Code 5.
    NoData,
    /// Code 6, at the envelope's index.
    Format(usize),
    /// Code 12.
    EventRequired(usize),
    /// Code 13.
    EventBlank(usize),
    /// More than `max_events`.
    TooMany,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    time: Option<Value>,
    #[serde(default)]
    host: Option<Value>,
    #[serde(default)]
    source: Option<Value>,
    #[serde(default)]
    sourcetype: Option<Value>,
    #[serde(default)]
    index: Option<Value>,
    #[serde(default)]
    event: Option<Value>,
    #[serde(default)]
    fields: Option<Map<String, Value>>,
}

/// The request's metadata that is not in the body: the channel, and for
/// `/raw` the query's `host`, `source`, `sourcetype`, `index`, `time`.
#[derive(Debug, Default, Clone)]
pub struct Defaults {
    pub channel: Option<String>,
    pub host: Option<String>,
    pub source: Option<String>,
    pub sourcetype: Option<String>,
    pub index: Option<String>,
    pub time: Option<f64>,
}

/// `/services/collector/event`: every envelope, or why the body is refused
/// (whole: nothing of a refused body is taken, so resending it duplicates
/// nothing).
pub fn events(
    body: &[u8],
    d: &Defaults,
    now: &str,
    max_events: usize,
) -> Result<Vec<Event>, Invalid> {
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_slice(body).into_iter::<Envelope>();
    for (i, envelope) in stream.enumerate() {
        if out.len() >= max_events {
            return Err(Invalid::TooMany);
        }
        let e = envelope.map_err(|_| Invalid::Format(i))?;
        let mut map = match e.event {
            None | Some(Value::Null) => return Err(Invalid::EventRequired(i)),
            Some(Value::String(s)) if s.trim().is_empty() => return Err(Invalid::EventBlank(i)),
            Some(Value::Object(m)) if m.is_empty() => return Err(Invalid::EventBlank(i)),
            Some(Value::Object(m)) => m,
            Some(other) => {
                let mut m = Map::new();
                m.insert("message".into(), other);
                m
            }
        };
        for (k, v) in e.fields.into_iter().flatten() {
            map.entry(k).or_insert(v);
        }
        let text = |v: Option<Value>, default: &Option<String>| match v {
            Some(Value::String(s)) => Some(Value::String(s)),
            Some(Value::Null) | None => default.clone().map(Value::String),
            Some(other) => Some(Value::String(other.to_string())),
        };
        let time = e.time.as_ref().and_then(seconds).or(d.time);
        metadata(
            &mut map,
            [
                ("host", text(e.host, &d.host)),
                ("splunk_source", text(e.source, &d.source)),
                ("splunk_sourcetype", text(e.sourcetype, &d.sourcetype)),
                ("splunk_index", text(e.index, &d.index)),
                ("splunk_channel", d.channel.clone().map(Value::String)),
            ],
            time,
            now,
        );
        out.push(to_event(&map));
    }
    if out.is_empty() {
        return Err(Invalid::NoData);
    }
    Ok(out)
}

/// `/services/collector/raw`: one event per non-empty line.
pub fn raw(body: &[u8], d: &Defaults, now: &str, max_events: usize) -> Result<Vec<Event>, Invalid> {
    let mut out = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() >= max_events {
            return Err(Invalid::TooMany);
        }
        let mut map = Map::new();
        map.insert(
            "message".into(),
            Value::String(String::from_utf8_lossy(line).into_owned()),
        );
        metadata(
            &mut map,
            [
                ("host", d.host.clone().map(Value::String)),
                ("splunk_source", d.source.clone().map(Value::String)),
                ("splunk_sourcetype", d.sourcetype.clone().map(Value::String)),
                ("splunk_index", d.index.clone().map(Value::String)),
                ("splunk_channel", d.channel.clone().map(Value::String)),
            ],
            d.time,
            now,
        );
        out.push(to_event(&map));
    }
    if out.is_empty() {
        return Err(Invalid::NoData);
    }
    Ok(out)
}

fn metadata(
    map: &mut Map<String, Value>,
    fields: [(&str, Option<Value>); 5],
    time: Option<f64>,
    now: &str,
) {
    for (k, v) in fields {
        if let Some(v) = v {
            map.entry(k).or_insert(v);
        }
    }
    let stamp = time
        .and_then(|t| jiff::Timestamp::from_millisecond((t * 1000.0).round() as i64).ok())
        .map_or_else(|| now.to_string(), |t| format!("{t:.3}"));
    map.entry("timestamp").or_insert(Value::String(stamp));
}

/// HEC's `time`: epoch seconds, a number or a string holding one.
fn seconds(v: &Value) -> Option<f64> {
    let t = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    // Within what a timestamp can say (years 1 to 9999).
    (t.is_finite() && (-62_135_596_800.0..253_402_300_800.0).contains(&t)).then_some(t)
}

fn to_event(map: &Map<String, Value>) -> Event {
    // A map of JSON values always serialises.
    let raw = serde_json::to_vec(map).unwrap_or_default();
    Event::json(bytes::Bytes::from(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: &Event) -> Value {
        serde_json::from_slice(&e.raw).expect("json")
    }

    #[test]
    fn envelopes_become_events() {
        let d = Defaults {
            channel: Some("C".into()),
            ..Defaults::default()
        };
        let body = br#"{"time":1700000000.5,"host":"web-1","source":"app","sourcetype":"_json","index":"main","event":{"level":"error","host":"inner"},"fields":{"region":"eu"}}
{"event":"a line"}{"event":42,"time":"1700000001"}"#;
        let got = events(body, &d, "NOW", 10).expect("events");
        assert_eq!(got.len(), 3);
        let a = json(&got[0]);
        assert_eq!(a["level"], "error");
        assert_eq!(a["host"], "inner", "the event's own field wins");
        assert_eq!(
            (&a["region"], &a["splunk_index"], &a["splunk_sourcetype"]),
            (&"eu".into(), &"main".into(), &"_json".into())
        );
        assert_eq!(a["timestamp"], "2023-11-14T22:13:20.500Z");
        assert_eq!(a["splunk_channel"], "C");
        let b = json(&got[1]);
        assert_eq!(
            (&b["message"], &b["timestamp"]),
            (&"a line".into(), &"NOW".into())
        );
        assert_eq!(json(&got[2])["message"], 42);
        assert_eq!(json(&got[2])["timestamp"], "2023-11-14T22:13:21.000Z");
    }

    #[test]
    fn refusals_are_splunks() {
        let d = Defaults::default();
        assert_eq!(events(b"", &d, "", 10).err(), Some(Invalid::NoData));
        assert_eq!(events(b"  \n", &d, "", 10).err(), Some(Invalid::NoData));
        assert_eq!(
            events(br#"{"event":"x"}{"bad"#, &d, "", 10).err(),
            Some(Invalid::Format(1))
        );
        assert_eq!(
            events(br#"{"host":"x"}"#, &d, "", 10).err(),
            Some(Invalid::EventRequired(0))
        );
        assert_eq!(
            events(br#"{"event":" "}"#, &d, "", 10).err(),
            Some(Invalid::EventBlank(0))
        );
        assert_eq!(
            events(br#"{"event":1}{"event":2}"#, &d, "", 1).err(),
            Some(Invalid::TooMany)
        );
        assert_eq!(raw(b"a\r\n\nb\n", &d, "", 1).err(), Some(Invalid::TooMany));
        let r = raw(b"a\r\n\nb", &d, "T", 10).expect("raw");
        assert_eq!(r.len(), 2);
        assert_eq!(json(&r[1])["message"], "b");
    }
}
