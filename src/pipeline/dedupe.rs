//! `dedupe`: remove an event whose `fields` (or, without them, whole
//! content as written) were seen among the last `max_events` distinct ones
//! — and, with `within`, no longer ago than that (Cribl's Suppress) —
//! counted `dedupe`. What is remembered is a 128-bit fingerprint per
//! distinct event with the time it was first seen, in a least-recently-seen
//! cache: about 100 bytes each, so the default 5,000 (Vector's) take about
//! 0.5 MB and the most allowed, 10,000,000, about 1 GB. Two different
//! events sharing a fingerprint is a 1 in 2^64 chance even at the most.
//!
//! The fingerprint is SipHash-1-3 (128-bit) under random keys, so nobody
//! sending events can aim for a collision. With `persist`, what it
//! remembers (and its keys) is written to the data directory at shutdown and
//! read back at the next start (`Saved`), so a restart does not let repeats
//! through; a reload that keeps it keeps it in memory as before.

use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use siphasher::sip128::{Hasher128, SipHasher13};
use tokio::time::Instant;
use vrl::path::OwnedValuePath;

mod saved;

use super::{DropReason, Function, Tally, Work};
use crate::config::units::Dur;

fn default_max_events() -> usize {
    5000
}

/// The most distinct events a dedupe may remember (about 1 GB).
const MAX_EVENTS: usize = 10_000_000;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DedupeConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The fields that make two events the same (default: the whole event).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Distinct events remembered, the least recently seen forgotten first
    /// (5000; at most 10000000).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// A repeat later than this after the first is let through (and starts
    /// a new period); default: as long as it is remembered.
    #[serde(default)]
    pub within: Option<Dur>,
    /// Keep what it remembers across restarts, in the data directory.
    #[serde(default)]
    pub persist: bool,
}

pub struct State {
    seen: Mutex<lru::LruCache<u128, Instant>>,
    /// The fingerprint's keys, fixed for the state's life (and saved with it).
    keys: (u64, u64),
    /// Where it is saved at shutdown, with `persist`.
    file: Option<PathBuf>,
}

impl State {
    fn new(size: NonZeroUsize, file: Option<PathBuf>) -> State {
        let random = std::collections::hash_map::RandomState::new();
        let mut state = State {
            seen: Mutex::new(lru::LruCache::new(size)),
            keys: (random.hash_one(1u8), random.hash_one(2u8)),
            file,
        };
        if let Some(path) = &state.file {
            match saved::read(path, size.get()) {
                Ok(Some((keys, entries))) => {
                    let now = Instant::now();
                    let seen = state.seen.get_mut().unwrap_or_else(|e| e.into_inner());
                    for (fp, age_ms) in entries {
                        let first = now
                            .checked_sub(Duration::from_millis(age_ms))
                            .unwrap_or(now);
                        seen.put(fp, first);
                    }
                    state.keys = keys;
                    tracing::info!(file = %path.display(), remembered = seen.len(), "dedupe: read what it remembered");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "dedupe: cannot read what it remembered; starting afresh")
                }
            }
            // Read once: a later build of a changed dedupe starts afresh.
            let _ = std::fs::remove_file(path);
        }
        state
    }
}

impl DedupeConfig {
    fn check(&self) -> Result<(Vec<OwnedValuePath>, NonZeroUsize), String> {
        let size = NonZeroUsize::new(self.max_events)
            .filter(|n| n.get() <= MAX_EVENTS)
            .ok_or_else(|| format!("max_events: between 1 and {MAX_EVENTS}"))?;
        let fields = self
            .fields
            .iter()
            .map(|f| super::path::parse(f).map_err(|e| format!("fields: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((fields, size))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.check().map(|_| ())
    }

    pub fn build(&self, slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
        let (fields, size) = self.check()?;
        let file = if self.persist {
            slot.file("dedupe")
        } else {
            None
        };
        let state = slot.get(|| State::new(size, file));
        Ok(Box::new(Dedupe {
            fields,
            within: self.within.map(Dur::get),
            state,
        }))
    }
}

struct Dedupe {
    fields: Vec<OwnedValuePath>,
    within: Option<Duration>,
    state: Arc<State>,
}

impl Dedupe {
    /// What makes the event itself: its fields' values (each written as
    /// JSON, missing told apart from null), or its content as written.
    fn fingerprint(&self, w: &mut Work) -> u128 {
        let (k0, k1) = self.state.keys;
        let mut h = SipHasher13::new_with_keys(k0, k1);
        let mut feed = |bytes: &[u8]| h.write(bytes);
        if self.fields.is_empty() {
            match w {
                Work::Raw(e) => feed(&e.raw),
                Work::Value(v) => feed(&serde_json::to_vec(v).unwrap_or_default()),
            }
        } else {
            let v = w.value_mut();
            for f in &self.fields {
                match v.get(f) {
                    Some(found) => {
                        feed(b"\x01");
                        feed(&serde_json::to_vec(found).unwrap_or_default());
                    }
                    None => feed(b"\x00"),
                }
                feed(b"\x1f");
            }
        }
        h.finish128().as_u128()
    }
}

impl Function for Dedupe {
    fn save(&self) {
        let Some(path) = &self.state.file else { return };
        let seen = self.state.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Least recently seen first, so reading it back rebuilds the order.
        let entries = seen.iter().rev().map(|(fp, first)| {
            (
                *fp,
                now.saturating_duration_since(*first).as_millis() as u64,
            )
        });
        match saved::write(path, self.state.keys, seen.len(), entries) {
            Ok(()) => {
                tracing::info!(file = %path.display(), remembered = seen.len(), "dedupe: saved what it remembers")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "dedupe: cannot save what it remembers")
            }
        }
    }

    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let now = Instant::now();
        let mut seen = self.state.seen.lock().unwrap_or_else(|e| e.into_inner());
        for mut w in batch {
            let fp = self.fingerprint(&mut w);
            let repeat = match (seen.get(&fp), self.within) {
                (Some(first), Some(within)) => now.saturating_duration_since(*first) < within,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if repeat {
                tally.drop(DropReason::Dedupe);
            } else {
                seen.put(fp, now);
                out.push(w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::pipeline::state::Slot;

    fn build(yaml: &str) -> Box<dyn Function> {
        let c: DedupeConfig = serde_saphyr::from_str(yaml).expect("config");
        c.build(&Slot::detached()).expect("builds")
    }

    fn run(f: &dyn Function, events: Vec<String>) -> (Vec<serde_json::Value>, u64) {
        let (out, tally) = crate::pipeline::tests::run_json(f, &events);
        (out, tally.dropped[DropReason::Dedupe as usize])
    }

    #[tokio::test(start_paused = true)]
    async fn exact_against_a_reference_set() {
        // 50,000 events drawn from 3,000 ids, cache larger than the ids: the
        // first of each id passes, every repeat is removed, exactly.
        let f = build("{type: dedupe, fields: [id], max_events: 4000}");
        let mut reference = HashSet::new();
        let mut expected = Vec::new();
        let mut events = Vec::new();
        for i in 0..50_000u64 {
            let id = (i * 7919 + i / 3) % 3000;
            if reference.insert(id) {
                expected.push(id);
            }
            events.push(format!(r#"{{"id":{id},"i":{i}}}"#));
        }
        let mut passed = Vec::new();
        let mut dropped = 0;
        for chunk in events.chunks(999) {
            let (out, d) = run(f.as_ref(), chunk.to_vec());
            dropped += d;
            passed.extend(out.iter().filter_map(|e| e["id"].as_u64()));
        }
        assert_eq!(passed, expected);
        assert_eq!(dropped, 50_000 - expected.len() as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn whole_content_missing_is_not_null_and_within_lets_old_repeats_through() {
        let f = build("{type: dedupe, within: 10s}");
        let (out, _) = run(
            f.as_ref(),
            vec![
                r#"{"a":1}"#.into(),
                r#"{"a":1}"#.into(),
                r#"{"a":2}"#.into(),
            ],
        );
        assert_eq!(out.len(), 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        let (out, _) = run(f.as_ref(), vec![r#"{"a":1}"#.into()]);
        assert_eq!(out.len(), 1, "the first was more than `within` ago");
        let f = build("{type: dedupe, fields: [x]}");
        let (out, _) = run(
            f.as_ref(),
            vec![
                r#"{"x":null}"#.into(),
                r#"{}"#.into(),
                r#"{"x":null}"#.into(),
            ],
        );
        assert_eq!(out.len(), 2, "missing and null are different");
    }

    #[test]
    fn memory_is_bounded_by_max_events() {
        let c: DedupeConfig =
            serde_saphyr::from_str("{type: dedupe, max_events: 1000}").expect("c");
        let slot = Slot::detached();
        let f = c.build(&slot).expect("builds");
        for chunk in 0..100u64 {
            let events = (0..10_000u64)
                .map(|i| format!(r#"{{"k":{}}}"#, chunk * 10_000 + i))
                .collect();
            let (out, _) = run(f.as_ref(), events);
            assert_eq!(out.len(), 10_000, "every one distinct");
        }
        let state = slot.get(|| State::new(NonZeroUsize::MIN, None));
        let seen = state.seen.lock().expect("lock");
        assert_eq!(
            seen.len(),
            1000,
            "a million distinct keys, a thousand remembered"
        );
    }

    /// With `persist`, what it remembers is saved at shutdown and read at
    /// the next start (keys included, so fingerprints match); read once.
    #[tokio::test(start_paused = true)]
    async fn persisted_across_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c: DedupeConfig =
            serde_saphyr::from_str("{type: dedupe, fields: [id], persist: true}").expect("c");
        let start = || {
            let states = crate::pipeline::state::States::default();
            states.begin(Some(dir.path()));
            let slot = Slot {
                states,
                key: "p/dedupe".into(),
                names: ("p".into(), "dedupe".into()),
            };
            c.build(&slot).expect("builds")
        };
        let ids = |r: std::ops::Range<u32>| r.map(|i| format!(r#"{{"id":{i}}}"#)).collect();
        let first = start();
        assert_eq!(run(first.as_ref(), ids(0..100)).0.len(), 100);
        first.save();
        drop(first);
        let again = start();
        let (out, dropped) = run(again.as_ref(), ids(50..150));
        assert_eq!(
            (out.len(), dropped),
            (50, 50),
            "0..100 remembered across the restart"
        );
        let fresh = start();
        assert_eq!(
            run(fresh.as_ref(), ids(0..10)).0.len(),
            10,
            "the file is read once"
        );
    }

    #[test]
    fn refusals() {
        for yaml in [
            "{type: dedupe, max_events: 0}",
            "{type: dedupe, max_events: 10000001}",
            "{type: dedupe, fields: ['']}",
        ] {
            let c: DedupeConfig = serde_saphyr::from_str(yaml).expect("config");
            assert!(c.validate().is_err(), "{yaml}");
        }
    }
}
