//! `type: pubsub` — each event one Google Cloud Pub/Sub message, published
//! over gRPC (`Publisher.Publish`: 1000 messages and 10 MB per call). A call
//! succeeds or fails as a whole, so a request larger than one call is sent
//! as several and the driver retries only the calls that failed.
//!
//! As Cribl documents, a missing topic and bad credentials are
//! backpressure, not loss: `NOT_FOUND`, `PERMISSION_DENIED` and
//! `UNAUTHENTICATED` are retried (each cause logged once), because the fix
//! is a setting and every event is still good. Only `INVALID_ARGUMENT` and
//! its kin (a message the service refuses) are rejected, with their code.
//!
//! `ordering_key_field` gives each message its key's ordering key. A key's
//! later messages must not overtake a failed one, so the calls of one
//! request go one after another, a failed call holds back the rest, and
//! only one request may be in flight (`request: { concurrency: 1 }`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gcp_auth::{CustomServiceAccount, TokenProvider};
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1::publisher_client::PublisherClient;
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1::{PublishRequest, PubsubMessage};
use prost::Message as _;
use prost::encoding::encoded_len_varint;
use tokio::sync::OnceCell;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::codec::fields::{Field, FieldReader};
use crate::config::Validate;
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{
    CauseLog, Compression, DeliveryDefaults, Destination, Encoded, Encoder, Outcome, RecordOutcome,
    Rejection, key_bit, send_in_calls, send_in_order,
};
use crate::event::Event;
use crate::grpc::code_name;
use crate::metrics::DropReason;

destination_config! {
    pub struct PubsubConfig {
        /// The Google Cloud project that owns the topic.
        pub project: String,
        /// The topic's name, or its full name (`projects/P/topics/T`).
        pub topic: String,
        /// Another endpoint than Google's (the emulator:
        /// `http://127.0.0.1:8085`). An `http://` endpoint sends no
        /// credentials unless `credentials_file` is set.
        #[serde(default)]
        pub endpoint: Option<String>,
        /// A service-account key file. Default: the application-default
        /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file,
        /// the metadata server).
        #[serde(default)]
        pub credentials_file: Option<String>,
        /// Message attributes: attribute name → event field (a missing
        /// field is left out).
        #[serde(default)]
        pub attributes: BTreeMap<String, String>,
        /// The field whose text is each message's ordering key (none when
        /// the event lacks it).
        #[serde(default)]
        pub ordering_key_field: Option<String>,
    }
}

/// Pub/Sub's limits: 1000 messages and 10 MB per `Publish`, 100 attributes
/// of 256-byte names and 1024-byte values, 1024-byte ordering keys.
const MAX_MESSAGES: usize = 1000;
const MAX_CALL_BYTES: u64 = 10_000_000;
const MAX_ATTRIBUTES: usize = 100;
const MAX_ATTRIBUTE_NAME: usize = 256;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
const MAX_ORDERING_KEY: usize = 1024;
const GOOGLE: &str = "https://pubsub.googleapis.com";
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";

impl PubsubConfig {
    fn topic_path(&self) -> String {
        if self.topic.starts_with("projects/") {
            self.topic.clone()
        } else {
            format!("projects/{}/topics/{}", self.project, self.topic)
        }
    }
}

/// Google's rule for topic names: 3 to 255 characters, a letter first, then
/// letters, digits and `-_.~+%`, not starting with `goog`.
fn valid_topic(t: &str) -> bool {
    (3..=255).contains(&t.len())
        && t.starts_with(|c: char| c.is_ascii_alphabetic())
        && !t.starts_with("goog")
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

impl Validate for PubsubConfig {
    fn validate(&self) -> Result<(), String> {
        if self.project.trim().is_empty() {
            return Err("project must not be empty".into());
        }
        let topic = match self.topic.strip_prefix("projects/") {
            Some(rest) => match rest.split_once("/topics/") {
                Some((p, t)) if !p.is_empty() => t,
                _ => {
                    return Err(format!(
                        "topic: `{}` is neither a topic name nor projects/P/topics/T",
                        self.topic
                    ));
                }
            },
            None => self.topic.as_str(),
        };
        if !valid_topic(topic) {
            return Err(format!(
                "topic: `{topic}` is not a valid Pub/Sub topic name (3-255 characters, a letter first, then letters, digits and -_.~+%)"
            ));
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!("endpoint: `{e}` is not an http:// or https:// URL"));
        }
        if self.attributes.len() > MAX_ATTRIBUTES {
            return Err(format!(
                "attributes: Pub/Sub takes at most {MAX_ATTRIBUTES} attributes per message"
            ));
        }
        let mut reader = FieldReader::new();
        for (name, field) in &self.attributes {
            if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME || name.starts_with("goog") {
                return Err(format!(
                    "attributes: `{name}` is not a valid Pub/Sub attribute name (1-{MAX_ATTRIBUTE_NAME} bytes, not starting with goog)"
                ));
            }
            reader
                .add(field)
                .map_err(|e| format!("attributes.{name}: {e}"))?;
        }
        if let Some(f) = &self.ordering_key_field {
            reader
                .add(f)
                .map_err(|e| format!("ordering_key_field: {e}"))?;
            // Requests holding one key never overlap: the driver's ordering.
            if self.common().request.ordering == Some(crate::driver::Ordering::None) {
                return Err(
                    "ordering_key_field needs the driver's ordering (request.ordering other than none)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

impl DestinationType for PubsubDestination {
    const NAME: &'static str = "pubsub";
    /// Vector's batch (1000 events, 1 s); 1 MB per request as Google's own
    /// client libraries, well under the 10 MB a call may carry.
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults {
        max_events: MAX_MESSAGES,
        max_bytes: 1_000_000,
        batch_timeout: Duration::from_secs(1),
        concurrency: 5,
        request_timeout: Some(Duration::from_secs(60)),
        max_event_bytes: None,
        sender_order: false,
    };
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        compressions: &[],
        max_events: Some(MAX_MESSAGES),
        max_bytes: Some(MAX_CALL_BYTES),
        max_record_bytes: Some(MAX_CALL_BYTES),
        retry_on: false,
    };
    type Config = PubsubConfig;

    async fn build(cfg: &PubsubConfig, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let url = cfg.endpoint.as_deref().unwrap_or(GOOGLE);
        let channel = crate::grpc::channel(url, None)?;
        let credentials = match &cfg.credentials_file {
            Some(path) => Credentials::Fixed(Arc::new(key_file(path)?)),
            None if url.starts_with("http://") => Credentials::None,
            None => Credentials::Default(OnceCell::new()),
        };
        let mut reader = FieldReader::new();
        let attributes = cfg
            .attributes
            .iter()
            .map(|(n, f)| Ok((n.clone(), reader.add(f)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let ordering_key = cfg
            .ordering_key_field
            .as_deref()
            .map(|f| reader.add(f))
            .transpose()?;
        let topic = cfg.topic_path();
        let common = cfg.common();
        Ok(PubsubDestination {
            id: ctx.id.to_string(),
            channel,
            credentials,
            // The topic's name and the request's framing share the call.
            max_call_bytes: MAX_CALL_BYTES - topic.len() as u64 - 16,
            topic,
            encoder: Encoder::new(
                common.encoding.unwrap_or_default(),
                Compression::None,
                common.metric,
            )?,
            reader,
            attributes,
            ordering_key,
            log: CauseLog::default(),
        })
    }
}

/// A service-account key file, checked before gcp_auth takes it: it builds
/// each token request from the file's `token_uri` and panics on one that
/// is not a URI.
fn key_file(path: &str) -> Result<CustomServiceAccount, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("credentials_file `{path}`: cannot read it: {e}"))?;
    let key: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("credentials_file `{path}`: not a JSON key file: {e}"))?;
    let uri = key["token_uri"].as_str().unwrap_or_default();
    match uri.parse::<tonic::codegen::http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
        _ => {
            return Err(format!(
                "credentials_file `{path}`: token_uri `{uri}` is not an http(s) URL"
            ));
        }
    }
    CustomServiceAccount::from_json(&text).map_err(|e| format!("credentials_file `{path}`: {e}"))
}

/// Where the bearer token comes from.
enum Credentials {
    /// The emulator: none.
    None,
    /// `credentials_file`.
    Fixed(Arc<dyn TokenProvider>),
    /// Application-default credentials, found on first use: a process
    /// started before its metadata server answers is backpressure, not a
    /// failed start.
    Default(OnceCell<Arc<dyn TokenProvider>>),
}

pub struct PubsubDestination {
    id: String,
    channel: Channel,
    credentials: Credentials,
    topic: String,
    max_call_bytes: u64,
    encoder: Encoder,
    reader: FieldReader,
    attributes: Vec<(String, Field)>,
    ordering_key: Option<Field>,
    log: CauseLog,
}

pub struct PubsubRequest {
    messages: Vec<PubsubMessage>,
    /// Each message's encoded size, for cutting calls.
    sizes: Vec<u32>,
}

impl PubsubDestination {
    /// The `authorization` header's value, if any. gcp_auth caches the
    /// token and fetches a new one shortly before it expires.
    async fn authorization(&self) -> Result<Option<MetadataValue<Ascii>>, Outcome> {
        let provider = match &self.credentials {
            Credentials::None => return Ok(None),
            Credentials::Fixed(p) => p,
            Credentials::Default(cell) => cell
                .get_or_try_init(gcp_auth::provider)
                .await
                .map_err(|e| self.credentials_failed(&e))?,
        };
        let token = provider
            .token(&[SCOPE])
            .await
            .map_err(|e| self.credentials_failed(&e))?;
        MetadataValue::try_from(format!("Bearer {}", token.as_str()))
            .map(Some)
            .map_err(|e| self.credentials_failed(&e))
    }

    fn credentials_failed(&self, e: &dyn std::error::Error) -> Outcome {
        let text = crate::driver::error_chain(e);
        self.log.failing(&self.id, "no Google credentials", &text);
        Outcome::Retry {
            after: None,
            error: format!("Google credentials: {text}"),
        }
    }

    /// One `Publish` call for `range` of the request's messages.
    async fn call(
        &self,
        req: &PubsubRequest,
        range: std::ops::Range<usize>,
    ) -> Result<Vec<RecordOutcome>, Outcome> {
        let auth = self.authorization().await?;
        let mut call = tonic::Request::new(PublishRequest {
            topic: self.topic.clone(),
            messages: req.messages[range.clone()].to_vec(),
        });
        if let Some(a) = auth {
            call.metadata_mut().insert("authorization", a);
        }
        let mut client = PublisherClient::new(self.channel.clone());
        match client.publish(call).await {
            Ok(answer) => {
                self.log.ok(&self.id);
                // A message without an id was not published: retried, never
                // guessed delivered.
                let ids = answer.into_inner().message_ids.len();
                Ok((0..range.len())
                    .map(|i| {
                        if i < ids {
                            RecordOutcome::Delivered
                        } else {
                            RecordOutcome::RETRY
                        }
                    })
                    .collect())
            }
            Err(status) => Err(classify(&status, &self.log, &self.id, &self.topic)),
        }
    }
}

/// A failed `Publish`: retried (with the cause logged once when it is a
/// setting to fix), throttled, or rejected with its code.
fn classify(status: &Status, log: &CauseLog, id: &str, topic: &str) -> Outcome {
    let code = status.code();
    let text = format!("{}: {}", code_name(code), status.message());
    match code {
        Code::ResourceExhausted => Outcome::Throttled {
            after: None,
            error: text,
        },
        // The connection itself: the endpoint is down.
        Code::Unavailable => {
            log.failing(id, "unreachable", &text);
            Outcome::EndpointFailed { error: text }
        }
        Code::NotFound => {
            log.failing(id, &format!("topic {topic} not found"), &text);
            Outcome::Retry {
                after: None,
                error: text,
            }
        }
        Code::PermissionDenied | Code::Unauthenticated => {
            log.failing(id, code_name(code), &text);
            Outcome::Retry {
                after: None,
                error: text,
            }
        }
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::AlreadyExists
        | Code::Unimplemented => {
            let mut r = Rejection::named(code_name(code), status.message().to_string());
            r.response = Some(status.message().to_string());
            Outcome::Rejected(r)
        }
        // DEADLINE_EXCEEDED, ABORTED, INTERNAL, CANCELLED, UNKNOWN, DATA_LOSS.
        _ => Outcome::Retry {
            after: None,
            error: text,
        },
    }
}

impl Destination for PubsubDestination {
    type Request = PubsubRequest;

    fn encode(&self, events: &[Event]) -> Encoded<PubsubRequest> {
        let total: usize = events.iter().map(|e| e.raw.len()).sum();
        let mut buf = Vec::with_capacity(total);
        // Messages without their data, and where it is in `buf`: the data
        // becomes slices of one buffer once it is complete.
        let mut messages = Vec::with_capacity(events.len());
        let mut spans = Vec::with_capacity(events.len());
        let mut sizes = Vec::with_capacity(events.len());
        let mut skipped = Vec::new();
        let mut scratch = self.reader.scratch();
        let mut enc = self.encoder.scratch();
        let reads_fields = !self.attributes.is_empty() || self.ordering_key.is_some();
        let mut keys = 0u64;
        for (i, e) in events.iter().enumerate() {
            let start = buf.len();
            if !self.encoder.encode_one(e, &mut enc, &mut buf) {
                buf.truncate(start);
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            if reads_fields {
                self.reader.locate(e, &mut scratch);
            }
            let mut m = PubsubMessage::default();
            for (name, field) in &self.attributes {
                if let Some(v) = self.reader.string(e, &scratch, *field)
                    && !v.is_empty()
                {
                    let v = truncate(&v, MAX_ATTRIBUTE_VALUE);
                    m.attributes.insert(name.clone(), v.to_string());
                }
            }
            if let Some(k) = self
                .ordering_key
                .and_then(|f| self.reader.string(e, &scratch, f))
            {
                m.ordering_key = truncate(&k, MAX_ORDERING_KEY).to_string();
                keys |= key_bit(m.ordering_key.as_bytes());
            }
            let data = buf.len() - start;
            // Pub/Sub refuses a message with neither data nor attributes.
            if data == 0 && m.attributes.is_empty() {
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            // The message as the call carries it: its fields, its data
            // (tag, length, bytes), and its own tag and length.
            let size = m.encoded_len() + 1 + encoded_len_varint(data as u64) + data + 5;
            if size as u64 > self.max_call_bytes {
                buf.truncate(start);
                skipped.push((i, DropReason::Oversize));
                continue;
            }
            sizes.push(size as u32);
            spans.push((start, buf.len()));
            messages.push(m);
        }
        let data = Bytes::from(buf);
        for (m, (s, e)) in messages.iter_mut().zip(spans) {
            m.data = data.slice(s..e);
        }
        Encoded {
            keys: self.ordering_key.is_some().then_some(keys),
            bytes: sizes.iter().map(|&s| s as usize).sum(),
            record_bytes: sizes.clone(),
            request: PubsubRequest { messages, sizes },
            skipped,
        }
    }

    async fn send(&self, req: &PubsubRequest, _endpoint: usize) -> Outcome {
        if self.ordering_key.is_some() {
            send_in_order(&req.sizes, MAX_MESSAGES, self.max_call_bytes, |r| {
                self.call(req, r)
            })
            .await
        } else {
            send_in_calls(&req.sizes, MAX_MESSAGES, self.max_call_bytes, |r| {
                self.call(req, r)
            })
            .await
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_googles_rule() {
        assert!(valid_topic("logs"));
        assert!(valid_topic("a-b_c.d~e+f%20"));
        assert!(!valid_topic("lo"));
        assert!(!valid_topic("1logs"));
        assert!(!valid_topic("goog-logs"));
        assert!(!valid_topic("logs/x"));
    }

    #[test]
    fn codes_map_to_the_platforms_outcomes() {
        let log = CauseLog::default();
        let o = |c| classify(&Status::new(c, "why"), &log, "ps", "projects/p/topics/t");
        assert!(matches!(
            o(Code::ResourceExhausted),
            Outcome::Throttled { .. }
        ));
        assert!(matches!(
            o(Code::Unavailable),
            Outcome::EndpointFailed { .. }
        ));
        for c in [
            Code::NotFound,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Internal,
        ] {
            assert!(matches!(o(c), Outcome::Retry { .. }), "{c:?}");
        }
        let Outcome::Rejected(r) = o(Code::InvalidArgument) else {
            panic!("INVALID_ARGUMENT is permanent");
        };
        assert_eq!(r.code.as_deref(), Some("INVALID_ARGUMENT"));
        assert_eq!(r.response.as_deref(), Some("why"));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
