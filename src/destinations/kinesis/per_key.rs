//! `ordering: per_key`. `PutRecords` keeps the order of a call's records
//! only when all succeed: a failed record retried later lands after the
//! records that followed it. So a call carries at most one record per key,
//! and a key whose record failed sends nothing more in this request; its
//! later records go back to the driver with it, in order, and the driver's
//! retry sends them again in that order (the driver's ordering keeps a
//! later request holding the key from overtaking).
//!
//! The documented cost: a request takes as many rounds of calls as its most
//! frequent key has records, one after the other.

use std::collections::HashSet;

use super::{KinesisDestination, KinesisRequest, MAX_CALL_BYTES, MAX_RECORDS};
use crate::driver::{Outcome, RecordOutcome};
use crate::driver::{as_record, per_record, send_in_calls};

impl KinesisDestination {
    pub(super) async fn send_per_key(&self, req: &KinesisRequest) -> Outcome {
        let key = |i: usize| {
            let k = req.records[i].key;
            &req.buf[k.0 as usize..k.1 as usize]
        };
        let mut outcomes: Vec<Option<RecordOutcome>> = vec![None; req.records.len()];
        let mut held: HashSet<&[u8]> = HashSet::new();
        let mut round: Vec<usize> = Vec::new();
        let mut sizes: Vec<u32> = Vec::new();
        let mut first = true;
        loop {
            round.clear();
            sizes.clear();
            let mut in_round: HashSet<&[u8]> = HashSet::new();
            for (i, slot) in outcomes.iter_mut().enumerate() {
                if slot.is_some() {
                    continue;
                }
                if held.contains(key(i)) {
                    *slot = Some(RecordOutcome::RETRY);
                } else if in_round.insert(key(i)) {
                    round.push(i);
                    sizes.push(req.sizes[i]);
                }
            }
            if round.is_empty() {
                break;
            }
            let answer = send_in_calls(&sizes, MAX_RECORDS, MAX_CALL_BYTES, |r| {
                self.call(req, round[r].iter().copied())
            })
            .await;
            let results = match answer {
                Outcome::Delivered => vec![RecordOutcome::Delivered; round.len()],
                Outcome::Partial(each) => each,
                // Nothing went through yet: the request's own outcome, so
                // an endpoint that is down is marked so.
                whole if first => return whole,
                whole => vec![as_record(&whole); round.len()],
            };
            first = false;
            for (&i, o) in round.iter().zip(results) {
                if matches!(o, RecordOutcome::Retry { .. }) {
                    held.insert(key(i));
                }
                outcomes[i] = Some(o);
            }
        }
        per_record(
            outcomes
                .into_iter()
                .map(|o| o.unwrap_or(RecordOutcome::RETRY))
                .collect(),
        )
    }
}
