//! The configuration's JSON Schema (`sluice schema`), derived from the same
//! types that parse it, so the two cannot drift. Editors use it to complete
//! and check keys (the VS Code YAML extension: `# yaml-language-server:
//! $schema=sluice.schema.json`). What serde reads by hand (sizes, durations,
//! the components' `type`-selected settings) is described here.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::component::{ComponentKind, ComponentMap, ListMap};
use super::units::{ByteSize, Dur};

/// The whole configuration file's schema.
pub fn schema() -> serde_json::Value {
    let mut s = schemars::schema_for!(super::RawConfig);
    s.insert("title".into(), "sluice configuration".into());
    s.to_value()
}

/// One component type's settings, with its `type` fixed to `kind`.
pub fn tagged<T: JsonSchema>(g: &mut SchemaGenerator, kind: &str) -> Schema {
    let settings = g.subschema_for::<T>();
    json_schema!({
        "allOf": [
            settings,
            { "properties": { "type": { "const": kind } }, "required": ["type"] }
        ]
    })
}

impl<T: ComponentKind> JsonSchema for ComponentMap<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}Map", T::NOUN).into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let kinds: Vec<Schema> = T::kind_schemas(g).into_iter().map(|(_, s)| s).collect();
        json_schema!({
            "description": format!("{} by id: each `type` has its own settings", T::SECTION),
            "type": ["object", "null"],
            "additionalProperties": { "oneOf": kinds }
        })
    }
}

impl<T: ComponentKind> JsonSchema for ListMap<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("{}ListMap", T::NOUN).into()
    }

    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        let kinds: Vec<Schema> = T::kind_schemas(g).into_iter().map(|(_, s)| s).collect();
        json_schema!({
            "description": format!("{} by name: each a list of {}s, each `type` with its own settings", T::SECTION, T::NOUN),
            "type": ["object", "null"],
            "additionalProperties": { "type": ["array", "null"], "items": { "oneOf": kinds } }
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "bytes, or a size with a unit: 512KiB, 10MiB, 1GiB, 1.5MB",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9_]+(\\.[0-9_]*)?\\s*([kKmMgGtT][iI]?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a duration: 500ms, 30s, 5m, 1h, 1m30s, or a number of seconds",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*$" },
                { "type": "string", "pattern": "^(\\s*[0-9]+(\\.[0-9]+)?\\s*(ns|us|µs|ms|s|secs?|m|mins?|h|hrs?|d))+\\s*$" }
            ]
        })
    }
}

impl JsonSchema for crate::driver::StatusRule {
    fn schema_name() -> Cow<'static, str> {
        "StatusRule".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a status code (503), a class (\"5xx\") or an exclusion (\"!501\")",
            "anyOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^(!?[1-5][0-9][0-9]|[1-5][xX][xX])$" }
            ]
        })
    }
}

impl JsonSchema for crate::driver::Concurrency {
    fn schema_name() -> Cow<'static, str> {
        "Concurrency".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "requests in flight at once, or `adaptive`",
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "const": "adaptive" }
            ]
        })
    }
}

#[cfg(feature = "kafka")]
impl JsonSchema for crate::destinations::kafka::Acks {
    fn schema_name() -> Cow<'static, str> {
        "Acks".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "replicas that confirm a record: 0 (none), 1 (the leader) or all",
            "enum": [0, 1, -1, "0", "1", "-1", "all", "none", "leader"]
        })
    }
}
