//! A logs export decoded down to each record's bytes: the resources and
//! scopes as prost decodes them (a repeated field merged, as in the full
//! types), the records left as slices of the export's body. The same field
//! numbers as `ExportLogsServiceRequest`, so the same bytes decode either
//! way; each record is then read by `record_json` (or prost, for what that
//! declines) and borrowed as it is (`borrowed`).

use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShallowExport {
    #[prost(message, repeated, tag = "1")]
    pub resource_logs: Vec<ShallowResourceLogs>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShallowResourceLogs {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_logs: Vec<ShallowScopeLogs>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShallowScopeLogs {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// Each an encoded `LogRecord`, a slice of the body decoded from.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub log_records: Vec<Bytes>,
    #[prost(string, tag = "3")]
    pub schema_url: String,
}
