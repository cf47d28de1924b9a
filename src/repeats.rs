//! A failure that repeats (a broker down, a disk full, a port out of file
//! descriptors) is logged once per cause, then at most once a minute while
//! it goes on, with how many times it happened in between — not once per
//! attempt: librdkafka alone reports "all brokers down" twenty times a
//! second, and a line per attempt buries the one that says why.
//!
//! Causes are kept by name (an error code, not its message, which often
//! carries a changing detail), a few at a time: two causes that alternate
//! (a transport failure, then "all brokers down") are each logged once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a cause that keeps happening is reported again.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The causes remembered at once; past this the oldest is forgotten (and
/// would be logged again when it next happens).
const CAUSES_KEPT: usize = 16;

#[derive(Debug, Default)]
pub struct Repeats {
    causes: Mutex<HashMap<String, Seen>>,
    /// Whether any cause is remembered: lets `cleared`, called on every
    /// success, skip the lock.
    failing: AtomicBool,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    /// Occurrences since the last line about it.
    unlogged: u64,
}

impl Repeats {
    /// One occurrence of `cause`. `Some(n)`: log it now, saying it happened
    /// `n` more times since the last line (0 the first time); `None`: it
    /// was logged recently and this one is counted instead.
    pub fn occurred(&self, cause: &str) -> Option<u64> {
        self.occurred_at(cause, Instant::now())
    }

    fn occurred_at(&self, cause: &str, now: Instant) -> Option<u64> {
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        self.failing.store(true, Ordering::Release);
        if let Some(seen) = causes.get_mut(cause) {
            if now.duration_since(seen.logged_at) < REPORT_EVERY {
                seen.unlogged += 1;
                return None;
            }
            let n = seen.unlogged;
            *seen = Seen {
                logged_at: now,
                unlogged: 0,
            };
            return Some(n);
        }
        if causes.len() >= CAUSES_KEPT
            && let Some(oldest) = causes
                .iter()
                .min_by_key(|(_, s)| s.logged_at)
                .map(|(k, _)| k.clone())
        {
            causes.remove(&oldest);
        }
        causes.insert(
            cause.to_string(),
            Seen {
                logged_at: now,
                unlogged: 0,
            },
        );
        Some(0)
    }

    /// Everything works again: forget every cause, so the next failure is
    /// logged at once. `Some(occurrences not yet logged)` if anything had
    /// failed, for a closing line; `None` (without locking) if not.
    pub fn cleared(&self) -> Option<u64> {
        if !self.failing.load(Ordering::Acquire) || !self.failing.swap(false, Ordering::AcqRel) {
            return None;
        }
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        let unlogged = causes.values().map(|s| s.unlogged).sum();
        causes.clear();
        Some(unlogged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_cause_is_logged_once_a_minute_with_its_count() {
        let r = Repeats::default();
        let t = Instant::now();
        assert_eq!(r.occurred_at("down", t), Some(0));
        for i in 1..=100 {
            assert_eq!(r.occurred_at("down", t + Duration::from_millis(i)), None);
        }
        // Another cause in between is its own line, once.
        assert_eq!(r.occurred_at("refused", t), Some(0));
        assert_eq!(r.occurred_at("refused", t), None);
        assert_eq!(r.occurred_at("down", t + REPORT_EVERY), Some(100));
        assert_eq!(r.occurred_at("down", t + REPORT_EVERY), None);
        assert_eq!(r.cleared(), Some(2));
        assert_eq!(r.cleared(), None);
        assert_eq!(r.occurred_at("down", t + REPORT_EVERY), Some(0));
    }

    proptest! {
        /// Every occurrence is either logged or counted in a later line
        /// (or the closing one): none disappears, and a cause is never
        /// logged twice within a minute.
        #[test]
        fn every_occurrence_is_logged_or_counted(
            events in prop::collection::vec((0..CAUSES_KEPT, 0u64..5_000), 1..400)
        ) {
            let r = Repeats::default();
            let mut now = Instant::now();
            let mut accounted = 0u64;
            let mut last_line: HashMap<usize, Instant> = HashMap::new();
            for (cause, step_ms) in &events {
                now += Duration::from_millis(*step_ms);
                if let Some(n) = r.occurred_at(&cause.to_string(), now) {
                    accounted += 1 + n;
                    if let Some(prev) = last_line.insert(*cause, now) {
                        prop_assert!(
                            now.duration_since(prev) >= REPORT_EVERY,
                            "cause {} logged twice within a minute", cause
                        );
                    }
                }
            }
            prop_assert_eq!(accounted + r.cleared().unwrap_or(0), events.len() as u64);
            prop_assert_eq!(r.causes.lock().unwrap().len(), 0);
        }

        /// However many causes, only a few are remembered.
        #[test]
        fn the_causes_kept_stay_bounded(causes in prop::collection::vec(any::<u16>(), 1..300)) {
            let r = Repeats::default();
            for c in &causes {
                r.occurred(&c.to_string());
                prop_assert!(r.causes.lock().unwrap().len() <= CAUSES_KEPT);
            }
        }
    }
}
