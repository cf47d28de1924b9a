//! `type: sqs` — each event one Amazon SQS message, sent with
//! `SendMessageBatch` (10 messages, 256 KiB per message and per call; Vector
//! sends one message per call). The answer is per entry: a sender fault is
//! rejected with the entry's error code, anything else is retried alone, so
//! nothing that SQS took is sent again and nothing it refused goes silent.
//!
//! FIFO queues (`.fifo`) need a message group id (`message_group_id`, fixed
//! or a template) and get a deduplication id: a field's value, or the
//! SHA-256 of the body, so a retried send is not queued twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::aws::{AssumeRole, Aws, AwsAuth, is_throttling};
use crate::codec::fields::{Field, FieldReader};
use crate::codec::template::Template;
use crate::config::Validate;
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{
    CauseLog, Compression, DeliveryDefaults, Destination, Encoded, Encoder, Outcome, RecordOutcome,
    Rejection, key_bit, send_in_calls, send_in_order,
};
use crate::event::Event;
use crate::metrics::DropReason;

destination_config! {
    pub struct SqsConfig {
        /// The queue's URL; or `queue_name`, resolved with `GetQueueUrl`.
        #[serde(default)]
        pub queue_url: Option<String>,
        #[serde(default)]
        pub queue_name: Option<String>,
        #[serde(default)]
        pub region: Option<String>,
        /// Another endpoint than AWS's (a local or compatible service).
        #[serde(default)]
        pub endpoint: Option<String>,
        #[serde(default)]
        pub auth: Option<AwsAuth>,
        #[serde(default)]
        pub assume_role: Option<AssumeRole>,
        /// Message attributes: attribute name → event field (a number is
        /// sent as `Number`, anything else as `String`; a missing field is
        /// left out).
        #[serde(default)]
        pub message_attributes: BTreeMap<String, String>,
        /// FIFO queues: the message group, fixed or a template
        /// (`"{{ host ?? \"misc\" }}"`).
        #[serde(default)]
        pub message_group_id: Option<String>,
        /// FIFO queues: the field holding each message's deduplication id
        /// (default: the SHA-256 of the body).
        #[serde(default)]
        pub deduplication_id_field: Option<String>,
    }
}

/// SQS's limits: 10 entries per call, 256 KiB per message (body plus
/// attributes) and per call; 10 attributes per message.
const MAX_ENTRIES: usize = 10;
const MAX_BYTES: u64 = 256 << 10;
const MAX_ATTRIBUTES: usize = 10;

impl SqsConfig {
    fn aws(&self) -> Aws<'_> {
        Aws {
            region: self.region.as_deref(),
            endpoint: self.endpoint.as_deref(),
            auth: self.auth.as_ref(),
            assume_role: self.assume_role.as_ref(),
        }
    }

    fn fifo(&self) -> bool {
        self.queue_url
            .as_deref()
            .or(self.queue_name.as_deref())
            .is_some_and(|q| q.ends_with(".fifo"))
    }
}

impl Validate for SqsConfig {
    fn validate(&self) -> Result<(), String> {
        self.aws().validate()?;
        match (&self.queue_url, &self.queue_name) {
            (Some(_), Some(_)) => return Err("give queue_url or queue_name, not both".into()),
            (None, None) => return Err("queue_url (or queue_name) is needed".into()),
            (Some(u), None) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                return Err(format!(
                    "queue_url: `{u}` is not an http:// or https:// URL"
                ));
            }
            (None, Some(n)) if n.is_empty() => {
                return Err("queue_name must not be empty".into());
            }
            _ => {}
        }
        if self.message_attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "message_attributes: SQS takes at most {MAX_ATTRIBUTES} attributes per message"
            ));
        }
        let mut reader = FieldReader::new();
        for (name, field) in &self.message_attributes {
            if name.is_empty() || name.len() > 256 || name.starts_with("AWS.") {
                return Err(format!(
                    "message_attributes: `{name}` is not a valid SQS attribute name"
                ));
            }
            reader
                .add(field)
                .map_err(|e| format!("message_attributes.{name}: {e}"))?;
        }
        let fifo = self.fifo();
        match &self.message_group_id {
            Some(g) => {
                if !fifo {
                    return Err(
                        "message_group_id applies to FIFO queues (a queue name ending in .fifo)"
                            .into(),
                    );
                }
                Template::parse(g, &mut reader).map_err(|e| format!("message_group_id: {e}"))?;
            }
            None if fifo => {
                return Err("a FIFO queue (.fifo) needs message_group_id".into());
            }
            None => {}
        }
        if let Some(f) = &self.deduplication_id_field {
            if !fifo {
                return Err("deduplication_id_field applies to FIFO queues (.fifo)".into());
            }
            reader
                .add(f)
                .map_err(|e| format!("deduplication_id_field: {e}"))?;
        }
        Ok(())
    }
}

impl DestinationType for SqsDestination {
    const NAME: &'static str = "sqs";
    /// Small calls, so many at once; a batch waits at most a second to fill
    /// (Cribl's flush period).
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_events: MAX_ENTRIES,
        max_bytes: MAX_BYTES,
        batch_timeout: Duration::from_secs(1),
        concurrency: 10,
        request_timeout: Some(Duration::from_secs(30)),
        max_event_bytes: None,
        sender_order: false,
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        compressions: &[],
        max_events: Some(MAX_ENTRIES),
        max_bytes: Some(MAX_BYTES),
        max_record_bytes: Some(MAX_BYTES),
        retry_on: false,
    };
    type Config = SqsConfig;

    async fn build(cfg: &SqsConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let sdk = cfg.aws().sdk_config().await?;
        let mut reader = FieldReader::new();
        let attributes = cfg
            .message_attributes
            .iter()
            .map(|(n, f)| Ok((n.clone(), reader.add(f)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let group = cfg
            .message_group_id
            .as_deref()
            .map(|g| Template::parse(g, &mut reader))
            .transpose()?;
        let dedup = cfg
            .deduplication_id_field
            .as_deref()
            .map(|f| reader.add(f))
            .transpose()?;
        let common = cfg.common();
        let url = OnceCell::new();
        if let Some(u) = &cfg.queue_url {
            let _ = url.set(u.clone());
        }
        Ok(SqsDestination {
            id: ctx.id.to_string(),
            client: Client::new(&sdk),
            queue_name: cfg.queue_name.clone(),
            url,
            fifo: cfg.fifo(),
            encoder: Encoder::new(
                common.encoding.unwrap_or_default(),
                Compression::None,
                common.metric,
            )?,
            reader,
            reads_fields: !attributes.is_empty() || group.is_some() || dedup.is_some(),
            attributes,
            group,
            dedup,
            log: CauseLog::default(),
        })
    }
}

pub struct SqsDestination {
    id: String,
    client: Client,
    queue_name: Option<String>,
    url: OnceCell<String>,
    fifo: bool,
    encoder: Encoder,
    reader: FieldReader,
    attributes: Vec<(String, Field)>,
    group: Option<Template>,
    dedup: Option<Field>,
    /// Whether any of the above reads event fields.
    reads_fields: bool,
    log: CauseLog,
}

type Span = (u32, u32);

/// One message: ranges into the request's buffer.
struct Message {
    body: Span,
    /// Its attributes, a range of `SqsRequest::attributes`.
    attributes: Span,
    group: Option<Span>,
    dedup: Option<Span>,
}

struct Attribute {
    name: u16,
    number: bool,
    value: Span,
}

pub struct SqsRequest {
    buf: Vec<u8>,
    messages: Vec<Message>,
    attributes: Vec<Attribute>,
    /// What each message counts against SQS's size limits.
    sizes: Vec<u32>,
}

fn span(start: usize, end: usize) -> Span {
    (start as u32, end as u32)
}

fn text(buf: &[u8], (s, e): Span) -> String {
    // Bodies and values are checked to be UTF-8 when encoded.
    String::from_utf8_lossy(&buf[s as usize..e as usize]).into_owned()
}

impl SqsDestination {
    async fn queue_url(&self) -> Result<&str, Outcome> {
        let name = self.queue_name.as_deref().unwrap_or_default();
        self.url
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_queue_url()
                    .queue_name(name)
                    .send()
                    .await
                    .map_err(|e| crate::aws::outcome(&e, &self.log, &self.id))?;
                out.queue_url().map(str::to_string).ok_or(Outcome::Retry {
                    after: None,
                    error: format!("GetQueueUrl for `{name}` answered no URL"),
                })
            })
            .await
            .map(String::as_str)
    }

    fn entry(
        &self,
        req: &SqsRequest,
        i: usize,
        m: &Message,
    ) -> Result<SendMessageBatchRequestEntry, String> {
        let attrs = &req.attributes[m.attributes.0 as usize..m.attributes.1 as usize];
        let attributes = (!attrs.is_empty()).then(|| {
            attrs
                .iter()
                .filter_map(|a| {
                    let v = MessageAttributeValue::builder()
                        .data_type(if a.number { "Number" } else { "String" })
                        .string_value(text(&req.buf, a.value))
                        .build()
                        .ok()?;
                    Some((self.attributes[a.name as usize].0.clone(), v))
                })
                .collect::<HashMap<_, _>>()
        });
        SendMessageBatchRequestEntry::builder()
            .id(i.to_string())
            .message_body(text(&req.buf, m.body))
            .set_message_attributes(attributes)
            .set_message_group_id(m.group.map(|g| text(&req.buf, g)))
            .set_message_deduplication_id(m.dedup.map(|d| text(&req.buf, d)))
            .build()
            .map_err(|e| format!("cannot build an SQS entry: {e}"))
    }

    /// One `SendMessageBatch` call for `range` of the request's messages:
    /// each message's outcome, or the whole call's.
    async fn call(
        &self,
        url: &str,
        req: &SqsRequest,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<RecordOutcome>, Outcome> {
        let entries = range
            .clone()
            .map(|i| self.entry(req, i, &req.messages[i]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Outcome::Rejected(Rejection::new(e)))?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| crate::aws::outcome(&e, &self.log, &self.id))?;
        self.log.ok(&self.id);
        // An entry the answer does not mention is retried: never guessed
        // delivered.
        let mut outcomes = vec![RecordOutcome::RETRY; range.len()];
        let index = |id: &str| {
            id.parse::<usize>()
                .ok()
                .filter(|i| range.contains(i))
                .map(|i| i - range.start)
        };
        for ok in out.successful() {
            if let Some(i) = index(ok.id()) {
                outcomes[i] = RecordOutcome::Delivered;
            }
        }
        for f in out.failed() {
            let Some(i) = index(f.id()) else { continue };
            let code = f.code();
            outcomes[i] = if f.sender_fault() {
                let message = f.message().unwrap_or_default();
                let mut r = Rejection::named(code.to_string(), message.to_string());
                r.response = Some(message.to_string());
                RecordOutcome::rejected(r)
            } else {
                RecordOutcome::Retry {
                    throttled: is_throttling(code),
                    after: None,
                }
            };
        }
        Ok(outcomes)
    }
}

/// Size SQS counts for an attribute: its name, its type (`String` or
/// `Number`) and its value.
fn attribute_size(name: &str, value: usize) -> usize {
    name.len() + 6 + value
}

fn is_number(raw: &[u8]) -> bool {
    matches!(raw.first(), Some(b'-' | b'0'..=b'9'))
}

impl Destination for SqsDestination {
    type Request = SqsRequest;

    fn encode(&self, events: &[Event]) -> Encoded<SqsRequest> {
        let total: usize = events.iter().map(|e| e.raw.len()).sum();
        let mut buf = Vec::with_capacity(total + events.len() * 80);
        let mut messages = Vec::with_capacity(events.len());
        let mut attributes = Vec::new();
        let mut sizes = Vec::with_capacity(events.len());
        let mut skipped = Vec::new();
        let mut scratch = self.reader.scratch();
        let mut enc = self.encoder.scratch();
        let mut group_text = String::new();
        let mut keys = 0u64;
        for (i, e) in events.iter().enumerate() {
            if self.reads_fields {
                self.reader.locate(e, &mut scratch);
            }
            let start = buf.len();
            let first_attribute = attributes.len();
            if !self.encoder.encode_one(e, &mut enc, &mut buf)
                || std::str::from_utf8(&buf[start..]).is_err()
            {
                buf.truncate(start);
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            let body = span(start, buf.len());
            let mut size = buf.len() - start;
            for (n, (name, field)) in self.attributes.iter().enumerate() {
                let Some(raw) = self.reader.raw(e, &scratch, *field) else {
                    continue;
                };
                let number = is_number(raw);
                let Some(v) = self.reader.text(e, &scratch, *field) else {
                    continue;
                };
                if v.is_empty() || std::str::from_utf8(&v).is_err() {
                    continue;
                }
                let s = buf.len();
                buf.extend_from_slice(&v);
                size += attribute_size(name, v.len());
                attributes.push(Attribute {
                    name: n as u16,
                    number,
                    value: span(s, buf.len()),
                });
            }
            let group = match &self.group {
                None => None,
                Some(t) => {
                    if t.render(&self.reader, e, &scratch, &mut group_text)
                        .is_err()
                        || group_text.is_empty()
                    {
                        buf.truncate(start);
                        attributes.truncate(first_attribute);
                        skipped.push((i, DropReason::Unencodable));
                        continue;
                    }
                    keys |= key_bit(group_text.as_bytes());
                    let s = buf.len();
                    buf.extend_from_slice(group_text.as_bytes());
                    Some(span(s, buf.len()))
                }
            };
            let dedup = self.fifo.then(|| {
                let s = buf.len();
                let from_field = self
                    .dedup
                    .and_then(|f| self.reader.text(e, &scratch, f))
                    .filter(|v| !v.is_empty() && v.len() <= 128);
                match from_field {
                    Some(v) => buf.extend_from_slice(&v),
                    None => {
                        let digest = Sha256::digest(&buf[body.0 as usize..body.1 as usize]);
                        for b in digest {
                            buf.extend_from_slice(&HEX[usize::from(b >> 4)..][..1]);
                            buf.extend_from_slice(&HEX[usize::from(b & 15)..][..1]);
                        }
                    }
                }
                span(s, buf.len())
            });
            if size as u64 > MAX_BYTES {
                buf.truncate(start);
                attributes.truncate(first_attribute);
                skipped.push((i, DropReason::Oversize));
                continue;
            }
            sizes.push(size as u32);
            messages.push(Message {
                body,
                attributes: span(first_attribute, attributes.len()),
                group,
                dedup,
            });
        }
        Encoded {
            // A FIFO queue orders each message group.
            keys: self.group.is_some().then_some(keys),
            bytes: sizes.iter().map(|&s| s as usize).sum(),
            record_bytes: sizes.clone(),
            request: SqsRequest {
                buf,
                messages,
                attributes,
                sizes,
            },
            skipped,
        }
    }

    async fn send(&self, req: &SqsRequest, _endpoint: usize) -> Outcome {
        let url = match self.queue_url().await {
            Ok(u) => u,
            Err(o) => return o,
        };
        // A FIFO queue's calls go one after another: concurrent calls
        // could land a group's messages in either order.
        if self.fifo {
            send_in_order(&req.sizes, MAX_ENTRIES, MAX_BYTES, |r| {
                self.call(url, req, r)
            })
            .await
        } else {
            send_in_calls(&req.sizes, MAX_ENTRIES, MAX_BYTES, |r| {
                self.call(url, req, r)
            })
            .await
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";
