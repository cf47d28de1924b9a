//! Exponential backoff with full jitter, and the `Retry-After` hint.
//!
//! Full jitter (a uniformly random delay between zero and the exponential
//! cap) spreads retries from many requests so a recovering peer is not hit by
//! a synchronised wave. `backon`'s jitter adds randomness on top of the
//! exponential delay instead, which keeps retries clumped; this is five lines.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub honor_retry_after: bool,
}

impl Backoff {
    /// Delay before retry number `attempt` (1 = the first retry). A peer's
    /// `Retry-After` wins when honoured, capped by `max`.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        if self.honor_retry_after
            && let Some(h) = hint
        {
            return h.min(self.max);
        }
        let cap = self.cap(attempt);
        cap.mul_f64(fastrand::f64())
    }

    /// The exponential ceiling for `attempt`: initial × 2^(attempt-1), at most `max`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        self.initial
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            honor_retry_after: true,
        };
        assert_eq!(b.cap(1), Duration::from_secs(1));
        assert_eq!(b.cap(4), Duration::from_secs(8));
        assert_eq!(b.cap(7), Duration::from_secs(60));
        assert_eq!(b.cap(1000), Duration::from_secs(60));
        for a in 1..10 {
            assert!(b.delay(a, None) <= b.cap(a));
        }
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
        let ignore = Backoff {
            honor_retry_after: false,
            ..b
        };
        assert!(ignore.delay(1, Some(Duration::from_secs(30))) <= Duration::from_secs(1));
    }
}
