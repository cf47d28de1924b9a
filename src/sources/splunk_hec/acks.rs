//! Indexer acknowledgements as Splunk's HEC gives them: each request on a
//! channel gets the channel's next `ackId`; `/services/collector/ack` says,
//! per id, whether its events were delivered (or durably queued), and an id
//! reported `true` is forgotten, as Splunk forgets it.
//!
//! Everything is bounded, whatever clients do: at most `max_channels`
//! channels and `max_pending` ids (waiting or delivered and not yet asked
//! about) over all of them; a channel idle for `idle` with nothing waiting
//! is dropped. Beyond a bound a request is answered "server is busy" (503),
//! so a client that never asks about its acks cannot grow sluice's memory.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why no id could be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Channels,
    Pending,
}

#[derive(Default)]
struct Channel {
    next: u64,
    /// Ids whose events are still on their way.
    waiting: HashSet<u64>,
    /// Ids delivered and not yet reported `true`.
    delivered: HashSet<u64>,
    last_used: Option<Instant>,
}

pub struct Acks {
    state: Mutex<State>,
    max_channels: usize,
    max_pending: usize,
    idle: Duration,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, Channel>,
    pending: usize,
}

impl Acks {
    pub fn new(max_channels: usize, max_pending: usize, idle: Duration) -> Self {
        Acks {
            state: Mutex::new(State::default()),
            max_channels,
            max_pending,
            idle,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain counters and sets: still consistent after a
        // panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new id on `channel`, waiting for its events.
    pub fn register(&self, channel: &str, now: Instant) -> Result<u64, Full> {
        let mut st = self.lock();
        if st.pending >= self.max_pending {
            return Err(Full::Pending);
        }
        if !st.channels.contains_key(channel) {
            if st.channels.len() >= self.max_channels {
                self.sweep_locked(&mut st, now);
            }
            if st.channels.len() >= self.max_channels {
                return Err(Full::Channels);
            }
        }
        st.pending += 1;
        let c = st.channels.entry(channel.to_string()).or_default();
        let id = c.next;
        c.next += 1;
        c.waiting.insert(id);
        c.last_used = Some(now);
        Ok(id)
    }

    /// `id`'s events were delivered (`true`) or not (then the id is
    /// forgotten and stays `false`: the client resends after its timeout).
    pub fn complete(&self, channel: &str, id: u64, delivered: bool) {
        let mut st = self.lock();
        let Some(c) = st.channels.get_mut(channel) else {
            return;
        };
        if !c.waiting.remove(&id) {
            return;
        }
        if delivered {
            c.delivered.insert(id);
        } else {
            st.pending -= 1;
        }
    }

    /// Whether each id was delivered; those that were are forgotten.
    pub fn query(&self, channel: &str, ids: &[u64], now: Instant) -> Vec<(u64, bool)> {
        let mut st = self.lock();
        let Some(c) = st.channels.get_mut(channel) else {
            return ids.iter().map(|&id| (id, false)).collect();
        };
        c.last_used = Some(now);
        let answers: Vec<(u64, bool)> = ids
            .iter()
            .map(|&id| (id, c.delivered.remove(&id)))
            .collect();
        let forgotten = answers.iter().filter(|(_, d)| *d).count();
        st.pending -= forgotten;
        answers
    }

    /// Whether `channel` is known (has been used and not dropped).
    #[cfg(test)]
    pub fn knows(&self, channel: &str) -> bool {
        self.lock().channels.contains_key(channel)
    }

    /// Drop channels idle past `idle` with nothing on its way.
    pub fn sweep(&self, now: Instant) {
        let mut st = self.lock();
        self.sweep_locked(&mut st, now);
    }

    fn sweep_locked(&self, st: &mut State, now: Instant) {
        let idle = self.idle;
        let mut freed = 0;
        st.channels.retain(|_, c| {
            let stale = c.waiting.is_empty()
                && c.last_used
                    .is_none_or(|t| now.saturating_duration_since(t) >= idle);
            if stale {
                freed += c.delivered.len();
            }
            !stale
        });
        st.pending -= freed;
    }

    /// Ids over all channels: waiting, or delivered and not yet asked about.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_true_once_delivered_and_forgotten_once_reported() {
        let t = Instant::now();
        let a = Acks::new(2, 3, Duration::from_secs(60));
        let x = a.register("c1", t).expect("id");
        let y = a.register("c1", t).expect("id");
        assert_eq!((x, y), (0, 1));
        assert_eq!(a.query("c1", &[0, 1], t), vec![(0, false), (1, false)]);
        a.complete("c1", 0, true);
        a.complete("c1", 1, false);
        assert_eq!(a.query("c1", &[0, 1], t), vec![(0, true), (1, false)]);
        assert_eq!(a.query("c1", &[0], t), vec![(0, false)], "reported once");
        assert_eq!(a.pending(), 0);
        // Bounds: three pending at most, two channels at most.
        a.register("c1", t).expect("id");
        a.register("c2", t).expect("id");
        assert_eq!(a.register("c3", t), Err(Full::Channels));
        a.register("c2", t).expect("id");
        assert_eq!(a.register("c1", t), Err(Full::Pending));
    }

    #[test]
    fn idle_channels_are_dropped_with_what_they_held() {
        let t = Instant::now();
        let a = Acks::new(1, 10, Duration::from_secs(60));
        let id = a.register("old", t).expect("id");
        a.complete("old", id, true);
        assert_eq!(a.pending(), 1);
        let later = t + Duration::from_secs(61);
        a.register("new", later)
            .expect("the idle channel made room");
        assert!(!a.knows("old"));
        assert_eq!(a.pending(), 1, "only the new channel's id");
    }

    proptest::proptest! {
        /// Whatever clients do, the pending count is exactly what the
        /// channels hold, and never above its bound.
        #[test]
        fn the_pending_count_is_exact(ops in proptest::collection::vec((0u8..4, 0u8..3, 0u64..6), 0..200)) {
            let t = Instant::now();
            let a = Acks::new(2, 5, Duration::from_secs(1));
            let mut clock = t;
            for (op, ch, id) in ops {
                let ch = format!("c{ch}");
                match op {
                    0 => { let _ = a.register(&ch, clock); }
                    1 => a.complete(&ch, id, id % 2 == 0),
                    2 => { a.query(&ch, &[id], clock); }
                    _ => { clock += Duration::from_millis(700); a.sweep(clock); }
                }
                let st = a.lock();
                let held: usize = st.channels.values().map(|c| c.waiting.len() + c.delivered.len()).sum();
                proptest::prop_assert_eq!(held, st.pending);
                proptest::prop_assert!(st.pending <= 5 && st.channels.len() <= 2);
            }
        }
    }
}
