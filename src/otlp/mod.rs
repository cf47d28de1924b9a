//! OpenTelemetry's protocol, shared by the OTLP destination and source:
//! how OTLP data becomes events and back (`event`), plain JSON for its
//! values (`value`), and how any other event becomes a log record
//! (`mapping`).

pub mod event;
pub mod mapping;
pub mod value;
