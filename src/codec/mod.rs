//! Turning events into bytes for a peer, shared by every destination:
//! encodings (`ndjson`, `json_array`, `raw`, graphite, statsd, influx),
//! compression (decompressing into reused buffers, `buffer_pool`), and
//! reading event fields for protocol metadata (`fields`) and name templates
//! (`template`), event times read exactly (`time`).

pub mod buffer_pool;
pub mod capnp;
pub mod compression;
pub mod encoding;
pub mod fields;
pub mod json_syntax;
pub mod nesting;
pub mod template;
pub mod time;
pub mod url_template;

pub use compression::{Compression, Inflate};
pub use encoding::{
    Body, EncodeScratch, Encoder, Encoding, MetricConfig, StatsdKind, influx_partial_write,
};
pub use fields::{Field, FieldReader, FieldScratch};
pub use template::Template;
