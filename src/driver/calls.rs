//! One request sent as several calls: the batch APIs (SQS's 10 entries,
//! Kinesis's 500 records, Pub/Sub's 10 MB) cap a call below what a batch
//! may hold, and each call answers per record or as a whole. The calls of
//! one request go out at once; their answers merge into one outcome, so the
//! driver retries exactly the records that failed.

use futures::future::join_all;

use super::{Outcome, RecordOutcome};

/// Split `sizes` (in order) into consecutive runs of at most `max_n` items
/// and `max_bytes` bytes: the calls one request is sent as. An item larger
/// than `max_bytes` alone is never produced (encode drops those).
pub fn chunks(sizes: &[u32], max_n: usize, max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        let s = u64::from(s);
        if i > start && (i - start == max_n || bytes + s > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

/// Send a request's records as the calls `chunks` cuts them into (all at
/// once), each call answering per record or as a whole: one outcome for the
/// request. A single call's whole failure is the request's, so an endpoint
/// that is down is marked so.
pub async fn send_in_calls<F, Fut>(sizes: &[u32], max_n: usize, max_bytes: u64, call: F) -> Outcome
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<RecordOutcome>, Outcome>>,
{
    let calls = chunks(sizes, max_n, max_bytes);
    let mut results = join_all(calls.iter().map(|r| call(r.clone()))).await;
    if results.len() == 1 {
        return match results.pop() {
            Some(Ok(o)) => per_record(o),
            Some(Err(o)) => o,
            None => Outcome::Delivered,
        };
    }
    let mut outcomes = Vec::with_capacity(sizes.len());
    for (r, range) in results.into_iter().zip(&calls) {
        match r {
            Ok(o) => outcomes.extend(o),
            Err(o) => outcomes.extend(std::iter::repeat_n(as_record(&o), range.len())),
        }
    }
    per_record(outcomes)
}

/// `send_in_calls` one call after another, for keys whose order must hold
/// (Pub/Sub ordering keys): the first call that does not deliver all of its
/// records holds back the rest of the request, which is retried behind it,
/// so no later record overtakes an earlier one.
pub async fn send_in_order<F, Fut>(sizes: &[u32], max_n: usize, max_bytes: u64, call: F) -> Outcome
where
    F: Fn(std::ops::Range<usize>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<RecordOutcome>, Outcome>>,
{
    let calls = chunks(sizes, max_n, max_bytes);
    if let [only] = calls.as_slice() {
        return match call(only.clone()).await {
            Ok(o) => per_record(o),
            Err(o) => o,
        };
    }
    let mut outcomes = Vec::with_capacity(sizes.len());
    for range in calls {
        let n = range.len();
        let answered = match call(range).await {
            Ok(o) => o,
            Err(o) => vec![as_record(&o); n],
        };
        let held = answered.iter().any(|o| *o != RecordOutcome::Delivered);
        outcomes.extend(answered);
        if held {
            break;
        }
    }
    outcomes.resize(sizes.len(), RecordOutcome::RETRY);
    per_record(outcomes)
}

/// `Delivered` when every record was; the per-record outcomes otherwise.
pub fn per_record(outcomes: Vec<RecordOutcome>) -> Outcome {
    if outcomes.iter().all(|o| *o == RecordOutcome::Delivered) {
        Outcome::Delivered
    } else {
        Outcome::Partial(outcomes)
    }
}

/// A whole call's outcome, for each of its records when other calls of the
/// same request fared differently.
pub fn as_record(o: &Outcome) -> RecordOutcome {
    match o {
        Outcome::Delivered => RecordOutcome::Delivered,
        Outcome::Throttled { after, .. } => RecordOutcome::Retry {
            throttled: true,
            after: *after,
        },
        Outcome::Rejected(r) => RecordOutcome::rejected(r.clone()),
        _ => RecordOutcome::RETRY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_both_limits() {
        assert_eq!(chunks(&[], 10, 100), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(chunks(&[1; 25], 10, 100), vec![0..10, 10..20, 20..25]);
        assert_eq!(chunks(&[40, 40, 40, 10], 10, 100), vec![0..2, 2..4]);
        assert_eq!(chunks(&[100, 1], 10, 100), vec![0..1, 1..2]);
    }

    #[tokio::test]
    async fn in_order_a_failed_call_holds_back_the_rest() {
        use std::sync::Mutex;
        let made = Mutex::new(Vec::new());
        // Three calls of two; the second fails as a whole.
        let o = send_in_order(&[1; 6], 2, 100, |r| {
            made.lock().unwrap().push(r.clone());
            async move {
                if r.start == 2 {
                    Err(Outcome::Retry {
                        after: None,
                        error: "x".into(),
                    })
                } else {
                    Ok(vec![RecordOutcome::Delivered; r.len()])
                }
            }
        })
        .await;
        assert_eq!(
            *made.lock().unwrap(),
            vec![0..2, 2..4],
            "the third call waits"
        );
        let d = RecordOutcome::Delivered;
        let r = RecordOutcome::RETRY;
        assert_eq!(
            o,
            Outcome::Partial(vec![d.clone(), d, r.clone(), r.clone(), r.clone(), r])
        );
    }
}
