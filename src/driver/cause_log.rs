//! A failing destination's cause, logged once when it starts (and again
//! when it changes) and once when it clears with how many attempts failed,
//! not per request: the AWS and Google destinations retry setting problems
//! (bad credentials, a missing queue or topic) as backpressure, and a log
//! line per retry would bury the cause.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Only the failure path takes the lock.
#[derive(Default)]
pub struct CauseLog {
    failing: AtomicBool,
    failures: AtomicU64,
    cause: Mutex<String>,
}

impl CauseLog {
    pub fn failing(&self, what: &str, cause: &str, error: &str) {
        let mut last = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        if *last != cause {
            tracing::warn!(
                destination = what,
                %cause,
                %error,
                "requests fail; retrying (backpressure) until this is fixed"
            );
            *last = cause.to_string();
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing.store(true, Ordering::Release);
    }

    pub fn ok(&self, what: &str) {
        if self.failing.swap(false, Ordering::AcqRel) {
            let mut last = self.cause.lock().unwrap_or_else(|e| e.into_inner());
            let failures = self.failures.swap(0, Ordering::Relaxed);
            tracing::info!(destination = what, cause = %last, failures, "requests succeed again");
            last.clear();
        }
    }
}

/// An error with its sources, `outer: inner: innermost`: the cause a log
/// line or a dead letter names.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_speaks_once_per_cause() {
        let l = CauseLog::default();
        l.failing("q", "AccessDenied", "x");
        l.failing("q", "AccessDenied", "x");
        assert!(l.failing.load(Ordering::Acquire));
        assert_eq!(l.failures.load(Ordering::Relaxed), 2);
        l.ok("q");
        assert_eq!(l.failures.load(Ordering::Relaxed), 0);
        assert!(!l.failing.load(Ordering::Acquire));
        assert!(l.cause.lock().unwrap().is_empty());
    }
}
