//! OTLP/JSON for logs, both ways, as the OpenTelemetry specification and
//! its test vectors spell it. The generated types' own serde gets logs
//! wrong where fidelity matters: it refuses `{"arrayValue":{}}` and
//! `{"kvlistValue":{}}` (protobuf JSON omits an empty repeated field), a
//! double written `"NaN"` or `"Infinity"` (how proto3 JSON writes them),
//! and writes a NaN as `null`; it also refuses an int64 count written as a
//! string (`"rejectedLogRecords": "5"`, again how proto3 JSON writes one).
//!
//! Read: field names in lowerCamelCase or as in the .proto; int64 as a
//! number or a string; enums as a number or their name; `traceId` and
//! `spanId` as hex (OTLP's exception to base64); unknown fields ignored.
//! Written: lowerCamelCase, int64 as strings, defaults left out but an
//! empty value kept as `{}`, non-finite doubles as strings.

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::{Map, Value, json};

type Obj = Map<String, Value>;

/// A field by its lowerCamelCase or its .proto name.
fn field<'a>(o: &'a Obj, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Obj, String> {
    v.as_object()
        .ok_or_else(|| format!("{what}: expected an object"))
}

fn list<'a>(o: &'a Obj, camel: &str, snake: &str) -> Result<&'a [Value], String> {
    match field(o, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{camel}: expected an array")),
    }
}

fn string(o: &Obj, camel: &str, snake: &str) -> Result<String, String> {
    match field(o, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{camel}: expected a string")),
    }
}

/// An integer written as a JSON number or a decimal string.
fn int(v: &Value, what: &str) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|u| u as i64))
            .ok_or_else(|| format!("{what}: not an integer")),
        Value::String(s) => s
            .parse::<i64>()
            .or_else(|_| s.parse::<u64>().map(|u| u as i64))
            .map_err(|_| format!("{what}: not an integer")),
        _ => Err(format!("{what}: expected an integer")),
    }
}

fn int_field(o: &Obj, camel: &str, snake: &str) -> Result<i64, String> {
    field(o, camel, snake).map_or(Ok(0), |v| int(v, camel))
}

fn hex(o: &Obj, camel: &str, snake: &str) -> Result<Vec<u8>, String> {
    let text = string(o, camel, snake)?;
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{camel}: expected hex"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// A `SeverityNumber`: its number or its name (`SEVERITY_NUMBER_WARN`).
fn severity(v: &Value) -> Result<i32, String> {
    if let Value::String(s) = v
        && let Some(name) = s.strip_prefix("SEVERITY_NUMBER_")
    {
        const NAMES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        if name == "UNSPECIFIED" {
            return Ok(0);
        }
        let digits = name.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let base = &name[..name.len() - digits.len()];
        let level = NAMES
            .iter()
            .position(|n| *n == base)
            .ok_or_else(|| format!("severityNumber: unknown `{s}`"))?;
        let step: i32 = if digits.is_empty() {
            1
        } else {
            digits
                .parse()
                .map_err(|_| format!("severityNumber: unknown `{s}`"))?
        };
        return Ok(level as i32 * 4 + step);
    }
    int(v, "severityNumber").map(|n| n as i32)
}

/// A double written as a number or as `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn double(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| "doubleValue: not a number".into()),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .parse()
                .map_err(|_| format!("doubleValue: `{other}` is not a number")),
        },
        _ => Err("doubleValue: expected a number".into()),
    }
}

pub fn any_value(v: &Value) -> Result<AnyValue, String> {
    let o = object(v, "value")?;
    let value = if let Some(s) = field(o, "stringValue", "string_value") {
        Any::StringValue(
            s.as_str()
                .ok_or("stringValue: expected a string")?
                .to_string(),
        )
    } else if let Some(b) = field(o, "boolValue", "bool_value") {
        Any::BoolValue(b.as_bool().ok_or("boolValue: expected a boolean")?)
    } else if let Some(i) = field(o, "intValue", "int_value") {
        Any::IntValue(int(i, "intValue")?)
    } else if let Some(d) = field(o, "doubleValue", "double_value") {
        Any::DoubleValue(double(d)?)
    } else if let Some(a) = field(o, "arrayValue", "array_value") {
        let a = object(a, "arrayValue")?;
        Any::ArrayValue(ArrayValue {
            values: list(a, "values", "values")?
                .iter()
                .map(any_value)
                .collect::<Result<_, _>>()?,
        })
    } else if let Some(kv) = field(o, "kvlistValue", "kvlist_value") {
        let kv = object(kv, "kvlistValue")?;
        Any::KvlistValue(KeyValueList {
            values: key_values(list(kv, "values", "values")?)?,
        })
    } else if let Some(b) = field(o, "bytesValue", "bytes_value") {
        Any::BytesValue(
            base64::engine::general_purpose::STANDARD
                .decode(b.as_str().ok_or("bytesValue: expected base64")?)
                .map_err(|e| format!("bytesValue: {e}"))?,
        )
    } else {
        // `{}`: the empty value, kept as such.
        return Ok(AnyValue::default());
    };
    Ok(AnyValue { value: Some(value) })
}

fn key_values(items: &[Value]) -> Result<Vec<KeyValue>, String> {
    items
        .iter()
        .map(|kv| {
            let o = object(kv, "attribute")?;
            Ok(KeyValue {
                key: string(o, "key", "key")?,
                value: field(o, "value", "value").map(any_value).transpose()?,
                ..KeyValue::default()
            })
        })
        .collect()
}

fn attributes(o: &Obj) -> Result<Vec<KeyValue>, String> {
    key_values(list(o, "attributes", "attributes")?)
}

fn record(v: &Value) -> Result<LogRecord, String> {
    let o = object(v, "logRecord")?;
    Ok(LogRecord {
        time_unix_nano: int_field(o, "timeUnixNano", "time_unix_nano")? as u64,
        observed_time_unix_nano: int_field(o, "observedTimeUnixNano", "observed_time_unix_nano")?
            as u64,
        severity_number: field(o, "severityNumber", "severity_number").map_or(Ok(0), severity)?,
        severity_text: string(o, "severityText", "severity_text")?,
        body: field(o, "body", "body").map(any_value).transpose()?,
        attributes: attributes(o)?,
        dropped_attributes_count: int_field(
            o,
            "droppedAttributesCount",
            "dropped_attributes_count",
        )? as u32,
        flags: int_field(o, "flags", "flags")? as u32,
        trace_id: hex(o, "traceId", "trace_id")?,
        span_id: hex(o, "spanId", "span_id")?,
        event_name: string(o, "eventName", "event_name")?,
    })
}

/// An OTLP/JSON logs export request.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let root: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let root = object(&root, "request")?;
    let mut resource_logs = Vec::new();
    for rl in list(root, "resourceLogs", "resource_logs")? {
        let rl = object(rl, "resourceLogs")?;
        let resource = field(rl, "resource", "resource")
            .map(|r| {
                let r = object(r, "resource")?;
                Ok::<_, String>(Resource {
                    attributes: attributes(r)?,
                    dropped_attributes_count: int_field(
                        r,
                        "droppedAttributesCount",
                        "dropped_attributes_count",
                    )? as u32,
                    ..Resource::default()
                })
            })
            .transpose()?;
        let mut scope_logs = Vec::new();
        for sl in list(rl, "scopeLogs", "scope_logs")? {
            let sl = object(sl, "scopeLogs")?;
            let scope = field(sl, "scope", "scope")
                .map(|s| {
                    let s = object(s, "scope")?;
                    Ok::<_, String>(InstrumentationScope {
                        name: string(s, "name", "name")?,
                        version: string(s, "version", "version")?,
                        attributes: attributes(s)?,
                        dropped_attributes_count: int_field(
                            s,
                            "droppedAttributesCount",
                            "dropped_attributes_count",
                        )? as u32,
                    })
                })
                .transpose()?;
            scope_logs.push(ScopeLogs {
                scope,
                log_records: list(sl, "logRecords", "log_records")?
                    .iter()
                    .map(record)
                    .collect::<Result<_, _>>()?,
                schema_url: string(sl, "schemaUrl", "schema_url")?,
            });
        }
        resource_logs.push(ResourceLogs {
            resource,
            scope_logs,
            schema_url: string(rl, "schemaUrl", "schema_url")?,
        });
    }
    Ok(ExportLogsServiceRequest { resource_logs })
}

fn put_str(o: &mut Obj, k: &str, v: &str) {
    if !v.is_empty() {
        o.insert(k.into(), Value::String(v.into()));
    }
}

fn put_int(o: &mut Obj, k: &str, v: i64) {
    if v != 0 {
        o.insert(k.into(), Value::String(v.to_string()));
    }
}

fn put_u32(o: &mut Obj, k: &str, v: u32) {
    if v != 0 {
        o.insert(k.into(), json!(v));
    }
}

pub fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        None | Some(Any::StringValueStrindex(_)) => json!({}),
        Some(Any::StringValue(s)) => json!({ "stringValue": s }),
        Some(Any::BoolValue(b)) => json!({ "boolValue": b }),
        Some(Any::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(Any::DoubleValue(d)) if d.is_finite() => json!({ "doubleValue": d }),
        Some(Any::DoubleValue(d)) => {
            let t = if d.is_nan() {
                "NaN"
            } else if *d > 0.0 {
                "Infinity"
            } else {
                "-Infinity"
            };
            json!({ "doubleValue": t })
        }
        Some(Any::BytesValue(b)) => {
            json!({ "bytesValue": base64::engine::general_purpose::STANDARD.encode(b) })
        }
        Some(Any::ArrayValue(a)) => {
            json!({ "arrayValue": { "values": a.values.iter().map(any_json).collect::<Vec<_>>() } })
        }
        Some(Any::KvlistValue(kv)) => {
            json!({ "kvlistValue": { "values": key_values_json(&kv.values) } })
        }
    }
}

fn key_values_json(kvs: &[KeyValue]) -> Vec<Value> {
    kvs.iter()
        .map(|kv| {
            let mut o = Obj::new();
            o.insert("key".into(), Value::String(kv.key.clone()));
            if let Some(v) = &kv.value {
                o.insert("value".into(), any_json(v));
            }
            Value::Object(o)
        })
        .collect()
}

fn put_attributes(o: &mut Obj, kvs: &[KeyValue]) {
    if !kvs.is_empty() {
        o.insert("attributes".into(), Value::Array(key_values_json(kvs)));
    }
}

fn hex_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn record_json(r: &LogRecord) -> Value {
    let mut o = Obj::new();
    put_int(&mut o, "timeUnixNano", r.time_unix_nano as i64);
    put_int(
        &mut o,
        "observedTimeUnixNano",
        r.observed_time_unix_nano as i64,
    );
    if r.severity_number != 0 {
        o.insert("severityNumber".into(), json!(r.severity_number));
    }
    put_str(&mut o, "severityText", &r.severity_text);
    if let Some(b) = &r.body {
        o.insert("body".into(), any_json(b));
    }
    put_attributes(&mut o, &r.attributes);
    put_u32(&mut o, "droppedAttributesCount", r.dropped_attributes_count);
    put_u32(&mut o, "flags", r.flags);
    put_str(&mut o, "traceId", &hex_text(&r.trace_id));
    put_str(&mut o, "spanId", &hex_text(&r.span_id));
    put_str(&mut o, "eventName", &r.event_name);
    Value::Object(o)
}

/// `request` as OTLP/JSON.
pub fn encode_logs(request: &ExportLogsServiceRequest) -> Vec<u8> {
    let resource_logs: Vec<Value> = request
        .resource_logs
        .iter()
        .map(|rl| {
            let mut o = Obj::new();
            if let Some(r) = &rl.resource {
                let mut ro = Obj::new();
                put_attributes(&mut ro, &r.attributes);
                put_u32(
                    &mut ro,
                    "droppedAttributesCount",
                    r.dropped_attributes_count,
                );
                o.insert("resource".into(), Value::Object(ro));
            }
            let scope_logs: Vec<Value> = rl
                .scope_logs
                .iter()
                .map(|sl| {
                    let mut so = Obj::new();
                    if let Some(s) = &sl.scope {
                        let mut sc = Obj::new();
                        put_str(&mut sc, "name", &s.name);
                        put_str(&mut sc, "version", &s.version);
                        put_attributes(&mut sc, &s.attributes);
                        put_u32(
                            &mut sc,
                            "droppedAttributesCount",
                            s.dropped_attributes_count,
                        );
                        so.insert("scope".into(), Value::Object(sc));
                    }
                    so.insert(
                        "logRecords".into(),
                        Value::Array(sl.log_records.iter().map(record_json).collect()),
                    );
                    put_str(&mut so, "schemaUrl", &sl.schema_url);
                    Value::Object(so)
                })
                .collect();
            o.insert("scopeLogs".into(), Value::Array(scope_logs));
            put_str(&mut o, "schemaUrl", &rl.schema_url);
            Value::Object(o)
        })
        .collect();
    serde_json::to_vec(&json!({ "resourceLogs": resource_logs })).unwrap_or_default()
}

/// An export response's `partialSuccess`: how many were refused (`field`,
/// e.g. `rejectedLogRecords`, a number or a string) and why. An empty or
/// unreadable answer refused nothing.
pub fn partial_success(body: &[u8], camel: &str, snake: &str) -> (i64, String) {
    let Ok(Value::Object(root)) = serde_json::from_slice::<Value>(body) else {
        return (0, String::new());
    };
    let Some(Value::Object(p)) = field(&root, "partialSuccess", "partial_success") else {
        return (0, String::new());
    };
    let rejected = field(p, camel, snake)
        .and_then(|v| int(v, camel).ok())
        .unwrap_or(0);
    let message = string(p, "errorMessage", "error_message").unwrap_or_default();
    (rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(json: &str) -> Option<AnyValue> {
        let req = decode_logs(
            format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{json}}}]}}]}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap();
        req.resource_logs[0].scope_logs[0].log_records[0]
            .body
            .clone()
    }

    #[test]
    fn what_the_generated_serde_refuses_is_read() {
        assert!(matches!(
            body_of(r#"{"arrayValue":{}}"#).and_then(|v| v.value),
            Some(Any::ArrayValue(a)) if a.values.is_empty()
        ));
        assert!(matches!(
            body_of(r#"{"kvlistValue":{}}"#).and_then(|v| v.value),
            Some(Any::KvlistValue(kv)) if kv.values.is_empty()
        ));
        assert!(matches!(
            body_of(r#"{"doubleValue":"NaN"}"#).and_then(|v| v.value),
            Some(Any::DoubleValue(d)) if d.is_nan()
        ));
        assert!(matches!(
            body_of(r#"{"doubleValue":"-Infinity"}"#).and_then(|v| v.value),
            Some(Any::DoubleValue(d)) if d == f64::NEG_INFINITY
        ));
        assert_eq!(body_of("{}"), Some(AnyValue::default()));
        assert!(matches!(
            body_of(r#"{"bytesValue":"aGk="}"#).and_then(|v| v.value),
            Some(Any::BytesValue(b)) if b == b"hi"
        ));
        assert!(matches!(
            body_of(r#"{"intValue":"9007199254740993"}"#).and_then(|v| v.value),
            Some(Any::IntValue(9_007_199_254_740_993))
        ));
    }

    #[test]
    fn a_request_round_trips_exactly() {
        let text = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeLogs":[{"scope":{"name":"lib","version":"1"},"logRecords":[{"timeUnixNano":"1764842400000000001","severityNumber":"SEVERITY_NUMBER_WARN2","body":{"kvlistValue":{"values":[{"key":"e","value":{}},{"key":"n","value":{"doubleValue":"NaN"}},{"key":"b","value":{"bytesValue":"AAE="}},{"key":"a","value":{"arrayValue":{}}}]}},"attributes":[{"key":"k"}],"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#;
        let req = decode_logs(text.as_bytes()).unwrap();
        let r = &req.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(r.severity_number, 14);
        assert_eq!(r.time_unix_nano, 1_764_842_400_000_000_001);
        assert_eq!(r.trace_id.len(), 16);
        let again = decode_logs(&encode_logs(&req)).unwrap();
        // NaN != NaN: compare the encodings.
        assert_eq!(encode_logs(&again), encode_logs(&req));
        let out = String::from_utf8(encode_logs(&req)).unwrap();
        assert!(out.contains(r#"{"key":"e","value":{}}"#), "{out}");
        assert!(out.contains(r#""doubleValue":"NaN""#), "{out}");
        assert!(out.contains(r#""bytesValue":"AAE=""#), "{out}");
        assert!(out.contains(r#""arrayValue":{"values":[]}"#), "{out}");
    }

    /// Found by the fuzzer: serde_json's fast float parsing read
    /// `3.3333333333333334e+86` as a neighbouring double (fixed with its
    /// `float_roundtrip` feature).
    #[test]
    fn doubles_keep_every_bit() {
        for d in [
            3.333_333_333_333_333_4e86,
            3.333_333_333_333_333e86,
            6.137_660_877_940_419e-275,
            0.1,
            f64::MIN_POSITIVE,
            f64::MAX,
        ] {
            let text = format!(
                r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"doubleValue":{d:?}}}}}]}}]}}]}}"#
            );
            let req = decode_logs(text.as_bytes()).unwrap();
            let again = decode_logs(&encode_logs(&req)).unwrap();
            let body = |r: &ExportLogsServiceRequest| {
                r.resource_logs[0].scope_logs[0].log_records[0].body.clone()
            };
            assert_eq!(body(&again), body(&req));
            assert_eq!(
                body(&req),
                Some(AnyValue {
                    value: Some(Any::DoubleValue(d))
                })
            );
        }
    }

    #[test]
    fn partial_success_counts_are_read_as_numbers_or_strings() {
        for body in [
            &br#"{"partialSuccess":{"rejectedLogRecords":"5","errorMessage":"bad"}}"#[..],
            br#"{"partialSuccess":{"rejectedLogRecords":5,"errorMessage":"bad"}}"#,
            br#"{"partial_success":{"rejected_log_records":"5","error_message":"bad"}}"#,
        ] {
            assert_eq!(
                partial_success(body, "rejectedLogRecords", "rejected_log_records"),
                (5, "bad".to_string())
            );
        }
        assert_eq!(
            partial_success(b"", "rejectedLogRecords", "rejected_log_records"),
            (0, String::new())
        );
    }
}
