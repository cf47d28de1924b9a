//! Faults a receiver injects, on a schedule relative to the scenario start.

use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Every request (HTTP) or read (TCP) is delayed.
    Latency { ms: u64 },
    /// HTTP: answer `code` to this share of requests (0.0–1.0), with
    /// `Retry-After: retry_after` seconds when set. The body is read and
    /// discarded: its events are not received.
    Status {
        code: u16,
        rate: f64,
        retry_after: Option<u64>,
    },
    /// Accept connections but never read or answer.
    Stall,
    /// Close every open connection when the window starts; new ones are
    /// accepted and work.
    Close,
    /// Stop listening and close every connection; listen again when the
    /// window ends.
    Down,
    /// The peer's process is stopped (SIGSTOP) for the window, then
    /// continued (SIGCONT): connections stay open and are even accepted
    /// (into the kernel's backlog), but nothing is read or answered — a
    /// hung peer, not a dead one. HTTP, TCP and gRPC receivers sit behind
    /// a proxy process that is stopped; a Kafka broker is stopped itself.
    Hang,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub from_s: f64,
    pub to_s: f64,
    pub fault: Fault,
}

/// A receiver's faults over time.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    windows: Vec<Window>,
}

impl Schedule {
    pub fn new(start: Instant, windows: Vec<Window>) -> Self {
        Schedule { start, windows }
    }

    pub fn none(start: Instant) -> Self {
        Self::new(start, Vec::new())
    }

    /// The fault in force now, if any (the first matching window wins).
    pub fn active(&self) -> Option<&Fault> {
        self.active_at(self.start.elapsed())
    }

    pub fn active_at(&self, t: Duration) -> Option<&Fault> {
        let t = t.as_secs_f64();
        self.windows
            .iter()
            .find(|w| w.from_s <= t && t < w.to_s)
            .map(|w| &w.fault)
    }

    pub fn is_down(&self) -> bool {
        matches!(self.active(), Some(Fault::Down))
    }

    pub fn is_hung(&self) -> bool {
        matches!(self.active(), Some(Fault::Hang))
    }

    /// Whether any window hangs the peer's process.
    pub fn hangs(windows: &[Window]) -> bool {
        windows.iter().any(|w| matches!(w.fault, Fault::Hang))
    }

    /// How many `Close` windows have started so far: a connection opened
    /// before the latest one must close.
    pub fn closes_started(&self) -> usize {
        let t = self.start.elapsed().as_secs_f64();
        self.windows
            .iter()
            .filter(|w| matches!(w.fault, Fault::Close) && w.from_s <= t)
            .count()
    }
}

impl Window {
    pub fn new(from_s: f64, to_s: f64, fault: Fault) -> Self {
        Window {
            from_s,
            to_s,
            fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_in_force_is_found_by_time() {
        let s = Schedule::new(
            Instant::now(),
            vec![
                Window::new(1.0, 2.0, Fault::Down),
                Window::new(3.0, 4.0, Fault::Latency { ms: 5 }),
            ],
        );
        assert!(s.active_at(Duration::from_millis(500)).is_none());
        assert!(matches!(
            s.active_at(Duration::from_millis(1500)),
            Some(Fault::Down)
        ));
        assert!(s.active_at(Duration::from_secs(2)).is_none());
        assert!(matches!(
            s.active_at(Duration::from_millis(3999)),
            Some(Fault::Latency { ms: 5 })
        ));
    }
}
