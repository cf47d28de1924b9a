//! Which log record an OTLP event stands for, found from its bytes alone.
//!
//! The OTLP source writes an export's events into one JSON buffer and
//! registers the buffer here, with where each event's JSON and record sit.
//! The OTLP destination asks whether an event's bytes are exactly one
//! registered event's JSON, and if so sends that record's protobuf (see
//! `borrowed`). Nothing rides on the event itself: a field for it on every
//! event cost the pass-through path 15 % (56-byte events instead of 40).
//!
//! Sound because an event's bytes keep their buffer alive: while they are
//! alive no other allocation holds their address, so an address inside a
//! registered buffer is that buffer's, and bytes that are exactly one
//! event's JSON range are that event's JSON, whoever sliced them. A
//! pipeline's rewrite, a queue's read-back or a forwarded copy are new
//! bytes elsewhere and match nothing. A buffer leaves the registry when its
//! last slice is dropped.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;

use super::borrowed::Borrowed;

/// Registered buffers by start address.
static LIVE: Mutex<BTreeMap<usize, Weak<Export>>> = Mutex::new(BTreeMap::new());
/// How many buffers are registered: with none (no protobuf source, or
/// OTLP/JSON in), a lookup is one load, not a lock per event.
static REGISTERED: AtomicUsize = AtomicUsize::new(0);

/// One export's events: where their JSON is, and their records.
struct Export {
    base: usize,
    len: usize,
    /// By JSON start, ascending (events are written in order).
    places: Vec<(Range<u32>, Borrowed)>,
}

impl Export {
    fn holds(&self, at: usize, len: usize) -> bool {
        at >= self.base && at - self.base + len <= self.len
    }

    fn find(&self, at: usize, len: usize) -> Option<Borrowed> {
        let start = u32::try_from(at - self.base).ok()?;
        let end = start.checked_add(u32::try_from(len).ok()?)?;
        let i = self
            .places
            .binary_search_by_key(&start, |(r, _)| r.start)
            .ok()?;
        let (range, record) = self.places.get(i)?;
        (range.end == end).then(|| record.clone())
    }
}

/// The JSON buffer, which leaves the registry when dropped.
struct Registered {
    json: Vec<u8>,
    export: Arc<Export>,
}

impl AsRef<[u8]> for Registered {
    fn as_ref(&self) -> &[u8] {
        &self.json
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = Arc::downgrade(&self.export);
        if live
            .get(&self.export.base)
            .is_some_and(|w| Weak::ptr_eq(w, &ours))
        {
            live.remove(&self.export.base);
        }
        REGISTERED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `json`, the events of one export, as shared bytes; `places`: each
/// event's JSON range and its record, in order.
pub fn register(json: Vec<u8>, places: Vec<(Range<usize>, Borrowed)>) -> Bytes {
    let places: Vec<(Range<u32>, Borrowed)> = places
        .into_iter()
        .filter_map(|(r, b)| {
            let start = u32::try_from(r.start).ok()?;
            Some((start..u32::try_from(r.end).ok()?, b))
        })
        .collect();
    if places.is_empty() || json.is_empty() {
        return Bytes::from(json);
    }
    let export = Arc::new(Export {
        base: json.as_ptr() as usize,
        len: json.len(),
        places,
    });
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(export.base, Arc::downgrade(&export));
    REGISTERED.fetch_add(1, Ordering::Relaxed);
    // The vector's buffer does not move with the vector.
    Bytes::from_owner(Registered { json, export })
}

/// Finds records for a batch's events; keeps the last export it found, as
/// a batch is mostly runs of one export's events.
#[derive(Default)]
pub struct Finder {
    last: Option<Arc<Export>>,
}

impl Finder {
    /// The record `raw` is the JSON of, if it is exactly one event's.
    pub fn find(&mut self, raw: &[u8]) -> Option<Borrowed> {
        let (at, len) = (raw.as_ptr() as usize, raw.len());
        if len == 0 {
            return None;
        }
        if let Some(e) = &self.last
            && e.holds(at, len)
        {
            return e.find(at, len);
        }
        // An event's own buffer, if registered, is counted while it lives.
        if REGISTERED.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let export = {
            let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
            let (_, w) = live.range(..=at).next_back()?;
            w.upgrade()?
        };
        if !export.holds(at, len) {
            return None;
        }
        let found = export.find(at, len);
        self.last = Some(export);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::borrowed::{ResourceWire, ScopeWire};

    /// Two events' JSON in one registered buffer, each standing for a
    /// record of `body`.
    fn registered(body: &Bytes) -> (Bytes, Weak<Export>) {
        let scope = ScopeWire::new(body, &ResourceWire::new(None, ""), None, "");
        let places = vec![
            (0..7, scope.borrow(&body.slice(0..3)).unwrap()),
            (7..14, scope.borrow(&body.slice(3..6)).unwrap()),
        ];
        let all = register(b"{\"a\":1}{\"b\":2}".to_vec(), places);
        let export = LIVE
            .lock()
            .unwrap()
            .get(&(all.as_ptr() as usize))
            .unwrap()
            .clone();
        (all, export)
    }

    #[test]
    fn an_events_exact_bytes_find_its_record_and_nothing_else_does() {
        let body = Bytes::from_static(b"abcdef");
        let (all, export) = registered(&body);
        let mut f = Finder::default();
        assert_eq!(f.find(&all.slice(0..7)).unwrap().record(), b"abc");
        assert_eq!(f.find(&all.slice(7..14)).unwrap().record(), b"def");
        // A slice that is not one event's JSON, a copy elsewhere, the
        // whole buffer: no record.
        assert!(f.find(&all.slice(1..7)).is_none());
        assert!(f.find(&all.slice(0..8)).is_none());
        assert!(f.find(&all).is_none());
        assert!(f.find(&Bytes::copy_from_slice(&all[0..7])).is_none());
        assert!(Finder::default().find(b"{\"a\":1}").is_none());
        // Gone with its last slice (the finder's cache holds the export,
        // not the buffer).
        let event = all.slice(0..7);
        drop(all);
        assert!(Finder::default().find(&event).is_some());
        let base = event.as_ptr() as usize;
        drop((event, f));
        assert!(export.upgrade().is_none(), "freed once unused");
        let live = LIVE.lock().unwrap();
        assert!(
            live.get(&base).is_none_or(|w| !Weak::ptr_eq(w, &export)),
            "unregistered"
        );
    }
}
