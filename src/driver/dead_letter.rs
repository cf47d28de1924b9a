//! Dead letters: events a peer refused for good (or that ran out of
//! attempts) handed to another destination instead of being dropped, each
//! wrapped with why:
//!
//! ```json
//! {"dead_letter":{"destination":"api","reason":"rejected","status":400,
//!   "response":"field x is required","time_ms":1763805600123},
//!  "event":{...the original event...}}
//! ```
//!
//! `response` is the first bytes of the peer's answer (at most
//! `RESPONSE_EXCERPT` bytes). Text events appear as a JSON string. The
//! dead-letter destination receives them like any routed events (they count
//! in its `events_total`); the origin counts them as dropped with reason
//! `dead_letter`, so each destination's accounting stays balanced.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use crate::event::{Batch, Event, Format};
use crate::lane::Producer;
use crate::metrics::DropReason;

/// Longest response excerpt kept with a dead letter.
pub const RESPONSE_EXCERPT: usize = 1024;

/// Why a peer refused a request or a record, for logs and dead letters.
/// Not HTTP-shaped only: `status` is an HTTP status where there is one,
/// `code` a gRPC status name (`INVALID_ARGUMENT`) or a named protocol error
/// (`MessageTooLarge`, `ProvisionedThroughputExceededException`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejection {
    pub error: String,
    /// The peer's HTTP status, if it has one.
    pub status: Option<u16>,
    /// The protocol's own name for the error.
    pub code: Option<Cow<'static, str>>,
    /// The start of the peer's answer.
    pub response: Option<String>,
}

impl Rejection {
    pub fn new(error: impl Into<String>) -> Self {
        Rejection {
            error: error.into(),
            ..Rejection::default()
        }
    }

    /// A refusal the protocol names (`MessageTooLarge`, `INVALID_ARGUMENT`).
    pub fn named(code: impl Into<Cow<'static, str>>, error: impl Into<String>) -> Self {
        Rejection {
            error: error.into(),
            code: Some(code.into()),
            ..Rejection::default()
        }
    }
}

/// The reasons that go with the events handed to `DeadLetter::send`.
#[derive(Debug, Clone, Copy)]
pub enum Why<'a> {
    /// One reason (or none) for every event.
    One(Option<&'a Rejection>),
    /// Each event's own reason, in order.
    Each(&'a [Rejection]),
}

impl<'a> Why<'a> {
    fn of(self, i: usize) -> Option<&'a Rejection> {
        match self {
            Why::One(w) => w,
            Why::Each(all) => all.get(i),
        }
    }
}

/// Where a destination sends its dead letters.
pub struct DeadLetter {
    /// The destination the events failed at.
    pub origin: String,
    /// The dead-letter destination's lane.
    pub lane: Producer,
}

impl DeadLetter {
    /// Wrap and hand over `events`; waits for room if the dead-letter
    /// destination blocks. False if it is closed or sluice is stopping (the
    /// caller then counts the events under their original reason).
    pub async fn send(
        &self,
        events: &[Event],
        reason: DropReason,
        why: Why<'_>,
        stop: &CancellationToken,
    ) -> bool {
        if events.is_empty() {
            return true;
        }
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wrapped: Vec<Event> = events
            .iter()
            .enumerate()
            .map(|(i, e)| wrap(e, &self.origin, reason, why.of(i), time_ms))
            .collect();
        let n = wrapped.len();
        let batch = Batch::new(wrapped);
        match self.lane.policy().reserves() {
            true => {
                let reservation = tokio::select! {
                    _ = stop.cancelled() => return false,
                    r = self.lane.reserve(n) => match r {
                        Ok(r) => r,
                        Err(_) => return false,
                    },
                };
                self.lane.commit(batch, reservation);
            }
            false => {
                if self.lane.is_closed() {
                    return false;
                }
                self.lane.push_nowait(batch);
            }
        }
        true
    }
}

fn wrap(
    e: &Event,
    origin: &str,
    reason: DropReason,
    why: Option<&Rejection>,
    time_ms: u64,
) -> Event {
    #[derive(serde::Serialize)]
    struct Meta<'a> {
        destination: &'a str,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        response: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
        time_ms: u64,
    }
    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        dead_letter: Meta<'a>,
        event: &'a RawValue,
    }
    let text;
    let raw: Box<RawValue>;
    let event: &RawValue = match e.format {
        Format::Json => match std::str::from_utf8(&e.raw)
            .ok()
            .and_then(|s| serde_json::from_str::<&RawValue>(s).ok())
        {
            Some(v) => v,
            None => {
                text = String::from_utf8_lossy(&e.raw).into_owned();
                raw = json_string(&text);
                &raw
            }
        },
        Format::Text => {
            text = String::from_utf8_lossy(&e.raw).into_owned();
            raw = json_string(&text);
            &raw
        }
    };
    let w = Wrapper {
        dead_letter: Meta {
            destination: origin,
            reason: reason.as_str(),
            status: why.and_then(|w| w.status),
            code: why.and_then(|w| w.code.as_deref()),
            response: why.and_then(|w| w.response.as_deref()),
            error: why.map(|w| w.error.as_str()).filter(|e| !e.is_empty()),
            time_ms,
        },
        event,
    };
    // Serialising plain strings and numbers into a Vec cannot fail.
    Event::json(serde_json::to_vec(&w).unwrap_or_default().into())
}

fn json_string(s: &str) -> Box<RawValue> {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    RawValue::from_string(quoted)
        .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn wraps_json_and_text_with_the_reason() {
        let why = Rejection {
            error: "HTTP 400".into(),
            status: Some(400),
            response: Some("bad \"x\"".into()),
            ..Rejection::default()
        };
        let j = wrap(
            &Event::json(Bytes::from_static(br#"{"a":1}"#)),
            "api",
            DropReason::Rejected,
            Some(&why),
            5,
        );
        let v: serde_json::Value = serde_json::from_slice(&j.raw).unwrap();
        assert_eq!(v["event"]["a"], 1);
        assert_eq!(v["dead_letter"]["status"], 400);
        assert_eq!(v["dead_letter"]["response"], "bad \"x\"");
        assert_eq!(v["dead_letter"]["reason"], "rejected");
        assert_eq!(v["dead_letter"]["destination"], "api");
        let t = wrap(
            &Event::text(Bytes::from_static(b"plain \"line\"")),
            "api",
            DropReason::RetriesExhausted,
            None,
            5,
        );
        let v: serde_json::Value = serde_json::from_slice(&t.raw).unwrap();
        assert_eq!(v["event"], "plain \"line\"");
        assert_eq!(v["dead_letter"]["reason"], "retries_exhausted");
        assert!(v["dead_letter"].get("status").is_none());
    }
}
