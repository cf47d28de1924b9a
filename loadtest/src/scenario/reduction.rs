//! The volume-reduction rows of the throughput table: one pipeline function
//! each, on the same 200-byte events, with what should arrive of what was
//! sent, so each row's rate counts every event its function processed.
//!
//! The throughput generator repeats one block of `batch` events (seq
//! 0..batch); the distinct-keys row numbers every event afresh instead, so a
//! bounded dedupe is offered millions of keys it has never seen and its
//! memory must stay flat.

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// 1 in 10 kept.
    Sample,
    /// A bucket per status, a limit nothing reaches: the bucket's cost.
    Throttle,
    /// Repeats of the block removed: only its first `batch` pass.
    Dedupe,
    /// Every event a new key, the cache bounded at its default 5,000.
    DedupeDistinct,
    /// Per level and status: count, sum and p99 in a window that closes
    /// after the run; the events passed through.
    Aggregate,
    /// One counter per event, tagged with its status.
    LogToMetric,
}

impl Reduction {
    pub fn path(self) -> &'static str {
        match self {
            Reduction::Sample => "tcp → filter → sample 1 in 10 → tcp",
            Reduction::Throttle => "tcp → filter → throttle by status → tcp",
            Reduction::Dedupe => "tcp → filter → dedupe by seq (repeats) → tcp",
            Reduction::DedupeDistinct => {
                "tcp → filter → dedupe by seq (every key new, 5,000 kept) → tcp"
            }
            Reduction::Aggregate => {
                "tcp → filter → aggregate count/sum/p99 by level, status (passthrough) → tcp"
            }
            Reduction::LogToMetric => "tcp → filter → log_to_metric counter → tcp",
        }
    }

    pub fn pipeline(self) -> Value {
        match self {
            Reduction::Sample => json!([{ "type": "sample", "rate": 10 }]),
            Reduction::Throttle => {
                json!([{ "type": "throttle", "limit": 1_000_000_000u64, "key": "status" }])
            }
            Reduction::Dedupe | Reduction::DedupeDistinct => {
                json!([{ "type": "dedupe", "fields": ["seq"] }])
            }
            Reduction::Aggregate => json!([{
                "type": "aggregate",
                "window": "1h",
                "passthrough": true,
                "group_by": ["level", "status"],
                "metrics": [
                    { "name": "events", "type": "count" },
                    { "name": "status_sum", "type": "sum", "field": "status" },
                    { "name": "seq", "type": "percentile", "field": "seq", "percentiles": [99] },
                ],
            }]),
            Reduction::LogToMetric => json!([{
                "type": "log_to_metric",
                "metrics": [{ "type": "counter", "field": "status", "name": "responses", "tags": { "status": "{{ status }}" } }],
            }]),
        }
    }

    /// What should arrive of `sent` events sent as repeated blocks of
    /// `batch`.
    pub fn expected(self, sent: u64, batch: u64) -> u64 {
        match self {
            Reduction::Sample => sent.div_ceil(10),
            Reduction::Dedupe => sent.min(batch),
            Reduction::Throttle
            | Reduction::DedupeDistinct
            | Reduction::Aggregate
            | Reduction::LogToMetric => sent,
        }
    }

    /// Every event numbered afresh (the generator's tracked ids).
    pub fn distinct(self) -> bool {
        self == Reduction::DedupeDistinct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_arrives() {
        assert_eq!(Reduction::Sample.expected(1001, 512), 101);
        assert_eq!(Reduction::Dedupe.expected(5120, 512), 512);
        assert_eq!(Reduction::Dedupe.expected(100, 512), 100);
        assert_eq!(Reduction::LogToMetric.expected(7, 512), 7);
    }
}
