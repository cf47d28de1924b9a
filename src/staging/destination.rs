//! The destination half every staged type shares: encode a batch into one
//! part per partition, write the parts to their staged files, close at the
//! end. A staged destination (filesystem, S3) is this plus its `Finish`.

use std::path::Path;
use std::sync::Arc;

use std::sync::atomic::Ordering;

use super::name::Renamed;
use super::{Finish, HasStaging, Part, Partitioner, Stager};
use crate::codec::{Compression, Encoder};
use crate::destinations::{BuildContext, HasCommon, unencodable};
use crate::driver::{Encoded, Outcome, RecordOutcome};
use crate::event::Event;

pub struct StagedFiles {
    stager: Arc<Stager>,
    partitioner: Partitioner,
    /// The encoding only: compression is applied per file when it is
    /// sealed, not per batch.
    encoder: Encoder,
}

/// A batch as its parts, one per partition.
pub type Parts = Arc<Vec<Part>>;

impl StagedFiles {
    pub fn start<C: HasCommon + HasStaging, F: Finish>(
        config: &C,
        ctx: &BuildContext<'_>,
        finish: F,
    ) -> Result<StagedFiles, String> {
        Self::start_with_prefix(config, ctx, finish, "")
    }

    /// `start`, with every partition under `prefix` (an S3 `key_prefix`).
    pub fn start_with_prefix<C: HasCommon + HasStaging, F: Finish>(
        config: &C,
        ctx: &BuildContext<'_>,
        finish: F,
        prefix: &str,
    ) -> Result<StagedFiles, String> {
        let keys = config.staging();
        keys.validate()?;
        let common = config.common();
        let encoder = Encoder::new(keys.encoding, Compression::None, common.metric)?;
        let partitioner = Partitioner::new(&keys.template(prefix), keys.time_field())?;
        let root = keys.root(ctx.data_dir, ctx.id);
        Ok(StagedFiles {
            stager: Arc::new(Stager::start(ctx.id, &keys, root, finish, ctx.metrics)),
            partitioner,
            encoder,
        })
    }

    pub fn root(&self) -> &Path {
        self.stager.root()
    }

    pub fn encode(&self, events: &[Event]) -> Encoded<Parts> {
        let mut scratch = self.partitioner.scratch();
        let groups = self.partitioner.group(events, &mut scratch);
        let mut enc = self.encoder.scratch();
        let mut skipped = Vec::new();
        for (why, n) in Renamed::ALL.iter().zip(scratch.take_renamed()) {
            self.stager.metrics().renamed(*why, n);
        }
        let mut parts = Vec::with_capacity(groups.len());
        let mut bytes = 0;
        for (partition, indices) in groups {
            let mut data =
                Vec::with_capacity(indices.iter().map(|&i| events[i].raw.len() + 1).sum());
            let mut kept = Vec::with_capacity(indices.len());
            for i in indices {
                if self.encoder.encode_one(&events[i], &mut enc, &mut data) {
                    data.push(b'\n');
                    kept.push(i);
                } else {
                    skipped.push(i);
                }
            }
            bytes += data.len();
            if !data.is_empty() {
                parts.push(Part {
                    partition,
                    data,
                    events: kept,
                    done: Default::default(),
                });
            }
        }
        skipped.sort_unstable();
        // The driver takes the skipped events out of the job before it
        // sends: number each part's events as they will be then.
        if !skipped.is_empty() {
            for p in &mut parts {
                for i in &mut p.events {
                    *i -= skipped.partition_point(|&s| s < *i);
                }
            }
        }
        Encoded {
            keys: None,
            request: Arc::new(parts),
            bytes,
            skipped: unencodable(skipped),
            record_bytes: Vec::new(),
        }
    }

    pub async fn send(&self, parts: &Parts) -> Outcome {
        let (stager, written) = (self.stager.clone(), parts.clone());
        // File I/O blocks; keep it off the async workers.
        let error = match tokio::task::spawn_blocking(move || stager.write(&written)).await {
            Ok(Ok(())) => return Outcome::Delivered,
            Ok(Err(error)) => error,
            Err(e) => format!("staging writer task failed: {e}"),
        };
        // What is in its staged files is delivered (a crash loses none of
        // it): count it so, and retry only the rest.
        if !parts.iter().any(|p| p.done.load(Ordering::Acquire)) {
            return Outcome::Retry { after: None, error };
        }
        let n = parts.iter().map(|p| p.events.len()).sum();
        let mut records = vec![RecordOutcome::Delivered; n];
        for p in parts.iter().filter(|p| !p.done.load(Ordering::Acquire)) {
            for &i in &p.events {
                if let Some(r) = records.get_mut(i) {
                    *r = RecordOutcome::Retry {
                        throttled: false,
                        after: None,
                    };
                }
            }
        }
        tracing::debug!(%error, "some partitions written; retrying the rest");
        Outcome::Partial(records)
    }

    pub async fn close(&self) {
        self.stager.close().await;
    }
}
