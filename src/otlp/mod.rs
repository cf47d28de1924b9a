//! OpenTelemetry's protocol, shared by the OTLP destination and source:
//! how OTLP data becomes events and back (`event`), plain JSON for its
//! values (`value`), OTLP/JSON for logs as the specification writes it
//! (`json`), metric events as OTLP metrics (`metric`), how any other event
//! becomes a log record (`mapping`), counting an export's records before
//! decoding it (`wire`), and log records' bytes carried through untouched
//! (`shallow` decodes an export down to them, `record_json` writes each
//! one's event, `exports` finds an event's record again, `borrowed` sends
//! them on).

pub mod borrowed;
pub mod event;
pub mod exports;
pub mod groups;
pub mod json;
pub mod mapping;
pub mod metric;
pub mod record_json;
pub mod shallow;
pub mod value;
pub mod wire;
