//! sluice's own log lines as OTLP log records (`telemetry.otlp.logs:
//! true`). The layer is installed with the log subscriber at start, before
//! any config is read, and does nothing until a config enables it. Records
//! then wait in a bounded buffer, are dropped (and counted, in the next
//! export's log) when it is full, and go out every second; a slow or
//! absent collector never holds up the thread that logged.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::destinations::otlp::OtlpDestination;

/// Records held between exports at most; more are dropped and counted.
const CAPACITY: usize = 10_000;

static BUFFER: OnceLock<Arc<Buffer>> = OnceLock::new();
/// Whether the configuration in force asks for logs (a reload can turn
/// them off; the buffer, once made, stays).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Keep log records (or stop keeping them) as the configuration says.
pub fn set_active(on: bool) {
    ACTIVE.store(on, Ordering::Relaxed);
}

pub struct Buffer {
    records: Mutex<Vec<LogRecord>>,
    dropped: AtomicU64,
    resource: Resource,
}

/// The layer for the log subscriber (see the module documentation).
pub fn layer() -> OtlpLogs {
    OtlpLogs
}

/// Start keeping log records for export. The first call's resource stays.
pub fn enable(resource: Resource) -> Arc<Buffer> {
    set_active(true);
    BUFFER
        .get_or_init(|| {
            Arc::new(Buffer {
                records: Mutex::new(Vec::new()),
                dropped: AtomicU64::new(0),
                resource,
            })
        })
        .clone()
}

impl Buffer {
    fn push(&self, r: LogRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() < CAPACITY {
            records.push(r);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Send what is held (nothing when empty). What a failed export held is
    /// gone: logs are best effort, and holding them would only grow.
    pub async fn export(&self, client: &OtlpDestination) {
        let records = std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()));
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "telemetry: the log buffer was full; records were dropped"
            );
        }
        if records.is_empty() {
            return;
        }
        let _ = client.export_logs(self.request(records)).await;
    }

    fn request(&self, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(super::metrics::scope()),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

pub struct OtlpLogs;

impl<S: Subscriber> Layer<S> for OtlpLogs {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if !ACTIVE.load(Ordering::Relaxed) {
            return;
        }
        let Some(buffer) = BUFFER.get() else {
            return;
        };
        buffer.push(record(event));
    }
}

/// One event as a log record: its message the body, its other fields and
/// target attributes, its level the severity.
fn record(event: &Event<'_>) -> LogRecord {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    fields.redact();
    fields
        .attributes
        .push(super::metrics::text("target", meta.target()));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let (number, text) = match *meta.level() {
        Level::ERROR => (SeverityNumber::Error, "ERROR"),
        Level::WARN => (SeverityNumber::Warn, "WARN"),
        Level::INFO => (SeverityNumber::Info, "INFO"),
        Level::DEBUG => (SeverityNumber::Debug, "DEBUG"),
        Level::TRACE => (SeverityNumber::Trace, "TRACE"),
    };
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: now,
        severity_number: number as i32,
        severity_text: text.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(fields.message)),
        }),
        attributes: fields.attributes,
        ..Default::default()
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    attributes: Vec<KeyValue>,
}

impl Fields {
    /// The message and text attributes, with secrets redacted (an error's
    /// text may quote a URL with its password).
    fn redact(&mut self) {
        let r = crate::config::redact::in_force();
        if let std::borrow::Cow::Owned(m) = r.redact(&self.message) {
            self.message = m;
        }
        for kv in &mut self.attributes {
            if let Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) = &mut kv.value
                && let std::borrow::Cow::Owned(t) = r.redact(s)
            {
                *s = t;
            }
        }
    }

    fn add(&mut self, field: &Field, value: Value) {
        self.attributes.push(KeyValue {
            key: field.name().into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        });
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.add(field, Value::StringValue(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.add(field, Value::StringValue(value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::IntValue(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(
            field,
            Value::IntValue(i64::try_from(value).unwrap_or(i64::MAX)),
        );
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::DoubleValue(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::BoolValue(value));
    }
}
