//! `type: kinesis` — each event one Kinesis Data Streams record, sent with
//! `PutRecords` (500 records, 1 MiB per record counting its key, 5 MiB per
//! call). The answer marks each failed record
//! (`ProvisionedThroughputExceededException`, `InternalFailure`): only those
//! are retried, as throttled, so the destination backs off; Vector's sink
//! lost them silently for years (vector#359, #16954).
//!
//! With `partition_key_field`, the driver never has two requests holding
//! one key in flight (`request.ordering: auto`), at any concurrency;
//! `ordering: per_key` ([`per_key`]) also keeps each key's records in
//! order through a request's partial failures, at the cost of more,
//! smaller calls.

mod per_key;

use std::io::Write;
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use flate2::write::GzEncoder;
use serde::Deserialize;

use crate::aws::{AssumeRole, Aws, AwsAuth, is_throttling};
use crate::codec::fields::{Field, FieldReader};
use crate::config::Validate;
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{
    CauseLog, Compression, DeliveryDefaults, Destination, Encoded, Encoder, Outcome, RecordOutcome,
    Rejection, key_bit, send_in_calls,
};
use crate::event::Event;
use crate::metrics::DropReason;

destination_config! {
    pub struct KinesisConfig {
        /// The stream's name, or its ARN (`arn:aws:kinesis:...`).
        pub stream: String,
        #[serde(default)]
        pub region: Option<String>,
        /// Another endpoint than AWS's (a local or compatible service).
        #[serde(default)]
        pub endpoint: Option<String>,
        #[serde(default)]
        pub auth: Option<AwsAuth>,
        #[serde(default)]
        pub assume_role: Option<AssumeRole>,
        /// The field whose text is the partition key; a random key when
        /// this is unset or the event lacks it.
        #[serde(default)]
        pub partition_key_field: Option<String>,
        /// `none` (default) or `per_key`.
        #[serde(default)]
        pub ordering: Ordering,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ordering {
    /// Records of a key may land out of order when some are retried.
    #[default]
    None,
    /// A failed record holds back the later records of its key.
    PerKey,
}

/// Kinesis's limits: 500 records and 5 MiB per call, 1 MiB per record
/// (data plus partition key), keys of 1 to 256 characters.
const MAX_RECORDS: usize = 500;
const MAX_CALL_BYTES: u64 = 5 << 20;
const MAX_RECORD_BYTES: u64 = 1 << 20;
const MAX_KEY_CHARS: usize = 256;

impl KinesisConfig {
    fn aws(&self) -> Aws<'_> {
        Aws {
            region: self.region.as_deref(),
            endpoint: self.endpoint.as_deref(),
            auth: self.auth.as_ref(),
            assume_role: self.assume_role.as_ref(),
        }
    }
}

impl Validate for KinesisConfig {
    fn validate(&self) -> Result<(), String> {
        self.aws().validate()?;
        if self.stream.trim().is_empty() {
            return Err("stream: a stream name or ARN is needed".into());
        }
        if let Some(f) = &self.partition_key_field {
            FieldReader::new()
                .add(f)
                .map_err(|e| format!("partition_key_field: {e}"))?;
        }
        // Requests holding one key never overlap (the driver's ordering);
        // per_key orders what a request holds, so it needs keys to order.
        if self.ordering == Ordering::PerKey && self.partition_key_field.is_none() {
            return Err("ordering: per_key needs partition_key_field".into());
        }
        if self.ordering == Ordering::PerKey
            && self.common().request.ordering == Some(crate::driver::Ordering::None)
        {
            return Err(
                "ordering: per_key needs the driver's ordering (request.ordering other than none)"
                    .into(),
            );
        }
        Ok(())
    }
}

impl DestinationType for KinesisDestination {
    const NAME: &'static str = "kinesis";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_events: MAX_RECORDS,
        max_bytes: MAX_CALL_BYTES,
        batch_timeout: Duration::from_secs(1),
        concurrency: 5,
        request_timeout: Some(Duration::from_secs(30)),
        max_event_bytes: None,
        sender_order: false,
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        compressions: &[Compression::Gzip],
        max_events: Some(MAX_RECORDS),
        max_bytes: Some(MAX_CALL_BYTES),
        max_record_bytes: Some(MAX_RECORD_BYTES),
        retry_on: false,
    };
    type Config = KinesisConfig;

    async fn build(cfg: &KinesisConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let sdk = cfg.aws().sdk_config().await?;
        let mut reader = FieldReader::new();
        let key = cfg
            .partition_key_field
            .as_deref()
            .map(|f| reader.add(f))
            .transpose()?;
        let common = cfg.common();
        Ok(KinesisDestination {
            id: ctx.id.to_string(),
            client: Client::new(&sdk),
            stream: cfg.stream.clone(),
            gzip: common.compression == Some(Compression::Gzip),
            encoder: Encoder::new(
                common.encoding.unwrap_or_default(),
                Compression::None,
                common.metric,
            )?,
            reader,
            key,
            per_key: cfg.ordering == Ordering::PerKey,
            log: CauseLog::default(),
        })
    }
}

pub struct KinesisDestination {
    id: String,
    client: Client,
    stream: String,
    gzip: bool,
    encoder: Encoder,
    reader: FieldReader,
    key: Option<Field>,
    per_key: bool,
    log: CauseLog,
}

type Span = (u32, u32);

struct Record {
    data: Span,
    key: Span,
}

pub struct KinesisRequest {
    buf: Vec<u8>,
    records: Vec<Record>,
    /// Data plus key bytes of each record, what Kinesis counts.
    sizes: Vec<u32>,
}

fn span(start: usize, end: usize) -> Span {
    (start as u32, end as u32)
}

/// The first `MAX_KEY_CHARS` characters of a key (records of one long key
/// stay together).
fn key_prefix(key: &str) -> &str {
    match key.char_indices().nth(MAX_KEY_CHARS) {
        Some((i, _)) => &key[..i],
        None => key,
    }
}

impl KinesisDestination {
    fn entry(&self, req: &KinesisRequest, i: usize) -> Result<PutRecordsRequestEntry, String> {
        let r = &req.records[i];
        let data = &req.buf[r.data.0 as usize..r.data.1 as usize];
        let key = &req.buf[r.key.0 as usize..r.key.1 as usize];
        PutRecordsRequestEntry::builder()
            .data(Blob::new(data))
            .partition_key(String::from_utf8_lossy(key))
            .build()
            .map_err(|e| format!("cannot build a Kinesis record: {e}"))
    }

    /// One `PutRecords` call for the request's records at `picked`: each
    /// one's outcome, or the whole call's.
    async fn call(
        &self,
        req: &KinesisRequest,
        picked: impl ExactSizeIterator<Item = usize>,
    ) -> Result<Vec<RecordOutcome>, Outcome> {
        let n = picked.len();
        let entries = picked
            .map(|i| self.entry(req, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Outcome::Rejected(Rejection::new(e)))?;
        let call = self.client.put_records().set_records(Some(entries));
        let call = if self.stream.starts_with("arn:") {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        let out = call
            .send()
            .await
            .map_err(|e| crate::aws::outcome(&e, &self.log, &self.id))?;
        self.log.ok(&self.id);
        // One result per record, in order; a record without one is retried.
        let mut outcomes = vec![RecordOutcome::RETRY; n];
        for (o, r) in outcomes.iter_mut().zip(out.records()) {
            *o = match r.error_code() {
                None if r.sequence_number().is_some() => RecordOutcome::Delivered,
                None => RecordOutcome::RETRY,
                // PutRecords fails a record only for throughput or an
                // internal failure: both mean "later, slower".
                Some(code) => RecordOutcome::Retry {
                    throttled: is_throttling(code) || code == "InternalFailure",
                    after: None,
                },
            };
        }
        Ok(outcomes)
    }
}

impl Destination for KinesisDestination {
    type Request = KinesisRequest;

    fn encode(&self, events: &[Event]) -> Encoded<KinesisRequest> {
        let total: usize = events.iter().map(|e| e.raw.len() + 40).sum();
        let mut buf = Vec::with_capacity(total);
        let mut records = Vec::with_capacity(events.len());
        let mut sizes = Vec::with_capacity(events.len());
        let mut skipped = Vec::new();
        let mut scratch = self.reader.scratch();
        let mut enc = self.encoder.scratch();
        let mut plain = Vec::new();
        let mut keys = 0u64;
        for (i, e) in events.iter().enumerate() {
            let start = buf.len();
            let ok = if self.gzip {
                plain.clear();
                self.encoder.encode_one(e, &mut enc, &mut plain) && {
                    let mut z = GzEncoder::new(&mut buf, flate2::Compression::default());
                    z.write_all(&plain).is_ok() && z.finish().is_ok()
                }
            } else {
                self.encoder.encode_one(e, &mut enc, &mut buf)
            };
            if !ok {
                buf.truncate(start);
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            let data = span(start, buf.len());
            let key_start = buf.len();
            let from_field = self.key.and_then(|f| {
                self.reader.locate(e, &mut scratch);
                self.reader.string(e, &scratch, f)
            });
            match from_field.as_deref().map(key_prefix) {
                Some(k) if !k.is_empty() => {
                    keys |= key_bit(k.as_bytes());
                    buf.extend_from_slice(k.as_bytes());
                }
                _ => {
                    let r = fastrand::u128(..);
                    for b in r.to_be_bytes() {
                        buf.extend_from_slice(&HEX[usize::from(b >> 4)..][..1]);
                        buf.extend_from_slice(&HEX[usize::from(b & 15)..][..1]);
                    }
                }
            }
            let size = buf.len() - start;
            if size as u64 > MAX_RECORD_BYTES {
                buf.truncate(start);
                skipped.push((i, DropReason::Oversize));
                continue;
            }
            sizes.push(size as u32);
            records.push(Record {
                data,
                key: span(key_start, buf.len()),
            });
        }
        Encoded {
            // A random key (no field) promises no order.
            keys: self.key.is_some().then_some(keys),
            bytes: sizes.iter().map(|&s| s as usize).sum(),
            record_bytes: sizes.clone(),
            request: KinesisRequest {
                buf,
                records,
                sizes,
            },
            skipped,
        }
    }

    async fn send(&self, req: &KinesisRequest, _endpoint: usize) -> Outcome {
        if self.per_key {
            return self.send_per_key(req).await;
        }
        send_in_calls(&req.sizes, MAX_RECORDS, MAX_CALL_BYTES, |r| {
            self.call(req, r)
        })
        .await
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
