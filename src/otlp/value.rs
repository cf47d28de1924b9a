//! OTLP values as plain JSON, both ways, so filters read them as they read
//! any event (`attributes.http_status >= 500`, `body =~ /timeout/`).
//!
//! An `AnyValue` is written as the JSON it stands for: a string, a boolean,
//! an integer, a double (always with a fraction or an exponent, `1.0`), an
//! array, an object for a key-value list, `null` for the empty value (`{}`
//! in OTLP/JSON). Read back, the JSON number's form gives int or double, so
//! values keep their type. Attribute lists are objects in their original
//! order.
//!
//! What plain JSON cannot hold is written as OTLP/JSON's own typed form, a
//! one-key object: bytes as `{"bytesValue": "<base64>"}`, a NaN or infinite
//! double as `{"doubleValue": "NaN"}` (`"Infinity"`, `"-Infinity"`). A
//! key-value list that would read as one of those (its only key
//! `bytesValue`, `doubleValue` or `kvlistValue`) is wrapped as
//! `{"kvlistValue": {...}}`. So every value round-trips exactly, and an
//! event from elsewhere can ask for bytes or NaN the same way.

use std::fmt;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// The typed forms (see the module documentation).
const BYTES: &str = "bytesValue";
const DOUBLE: &str = "doubleValue";
const KVLIST: &str = "kvlistValue";

/// An `AnyValue` written as plain JSON.
pub struct Plain<'a>(pub Option<&'a Value>);

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            // A string-table index exists only in profiles.
            None | Some(Value::StringValueStrindex(_)) => s.serialize_unit(),
            Some(Value::StringValue(v)) => s.serialize_str(v),
            Some(Value::BoolValue(v)) => s.serialize_bool(*v),
            Some(Value::IntValue(v)) => s.serialize_i64(*v),
            Some(Value::DoubleValue(v)) if v.is_finite() => s.serialize_f64(*v),
            Some(Value::DoubleValue(v)) => {
                let text = if v.is_nan() {
                    "NaN"
                } else if *v > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(DOUBLE, text)?;
                m.end()
            }
            Some(Value::BytesValue(v)) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(BYTES, &base64::engine::general_purpose::STANDARD.encode(v))?;
                m.end()
            }
            Some(Value::ArrayValue(a)) => {
                let mut seq = s.serialize_seq(Some(a.values.len()))?;
                for v in &a.values {
                    seq.serialize_element(&Plain(v.value.as_ref()))?;
                }
                seq.end()
            }
            Some(Value::KvlistValue(kv)) if looks_typed(&kv.values) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(KVLIST, &Attributes(&kv.values))?;
                m.end()
            }
            Some(Value::KvlistValue(kv)) => Attributes(&kv.values).serialize(s),
        }
    }
}

/// A key-value list that would read back as a typed form.
fn looks_typed(kv: &[KeyValue]) -> bool {
    matches!(kv, [only] if [BYTES, DOUBLE, KVLIST].contains(&only.key.as_str()))
}

/// A key-value list written as a JSON object.
pub struct Attributes<'a>(pub &'a [KeyValue]);

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for kv in self.0 {
            map.serialize_entry(
                &kv.key,
                &Plain(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )?;
        }
        map.end()
    }
}

/// Plain JSON read back as an `AnyValue` (`None`: no value was there at
/// all; `null` is the empty value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlainValue(pub Option<AnyValue>);

impl<'de> Deserialize<'de> for PlainValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(|v| PlainValue(Some(v)))
    }
}

/// A JSON object read back as a key-value list, in the object's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlainAttributes(pub Vec<KeyValue>);

impl<'de> Deserialize<'de> for PlainAttributes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<KeyValue>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                entries(map)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
        }
        d.deserialize_any(V).map(PlainAttributes)
    }
}

fn entries<'de, A: MapAccess<'de>>(mut map: A) -> Result<Vec<KeyValue>, A::Error> {
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
    while let Some(key) = map.next_key::<String>()? {
        let PlainValue(value) = map.next_value()?;
        out.push(key_value(key, value));
    }
    Ok(out)
}

/// An object's entries, or the typed form it spells (one key, `bytesValue`,
/// `doubleValue` or `kvlistValue`, with a value of that form's shape).
fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<AnyValue, A::Error> {
    let Some(first) = map.next_key::<String>()? else {
        return Ok(kvlist(Vec::new()));
    };
    if ![BYTES, DOUBLE, KVLIST].contains(&first.as_str()) {
        let PlainValue(value) = map.next_value()?;
        let mut out = vec![key_value(first, value)];
        out.extend(entries(map)?);
        return Ok(kvlist(out));
    }
    // Held as JSON until it is known whether the object has more keys.
    let held: serde_json::Value = map.next_value()?;
    let Some(second) = map.next_key::<String>()? else {
        if let Some(v) = typed(&first, &held) {
            return Ok(v);
        }
        return Ok(kvlist(vec![key_value(first, Some(from_json(&held)))]));
    };
    let PlainValue(value) = map.next_value()?;
    let mut out = vec![
        key_value(first, Some(from_json(&held))),
        key_value(second, value),
    ];
    out.extend(entries(map)?);
    Ok(kvlist(out))
}

fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(Value::KvlistValue(KeyValueList { values })),
    }
}

/// The typed form `key: v` stands for, if `v` has its shape.
fn typed(key: &str, v: &serde_json::Value) -> Option<AnyValue> {
    let value = match (key, v) {
        (BYTES, serde_json::Value::String(b)) => {
            Value::BytesValue(base64::engine::general_purpose::STANDARD.decode(b).ok()?)
        }
        (DOUBLE, serde_json::Value::String(t)) => Value::DoubleValue(match t.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => return None,
        }),
        (DOUBLE, serde_json::Value::Number(n)) => Value::DoubleValue(n.as_f64()?),
        (KVLIST, serde_json::Value::Object(_)) => return Some(from_json(v)),
        _ => return None,
    };
    any(value)
}

/// A value already read as JSON (one held while looking for a typed form).
fn from_json(v: &serde_json::Value) -> AnyValue {
    use serde::de::IntoDeserializer;
    ValueVisitor
        .deserialize_from(v.clone().into_deserializer())
        .unwrap_or_default()
}

impl ValueVisitor {
    fn deserialize_from<'de, D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(self)
    }
}

/// A key-value pair (the generated struct has fields only profiles use).
pub fn key_value(key: String, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key,
        value,
        ..KeyValue::default()
    }
}

fn any(v: Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn some(v: Value) -> AnyValue {
    AnyValue { value: Some(v) }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = AnyValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(AnyValue::default())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(some(Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(some(Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // Beyond i64: the nearest double rather than a wrapped integer.
        Ok(some(match i64::try_from(v) {
            Ok(i) => Value::IntValue(i),
            Err(_) => Value::DoubleValue(v as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(some(Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(some(Value::StringValue(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(some(Value::StringValue(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(PlainValue(v)) = seq.next_element()? {
            values.push(v.unwrap_or_default());
        }
        Ok(some(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, v: Value) -> KeyValue {
        key_value(key.into(), any(v))
    }

    #[test]
    fn values_keep_their_type_and_order_through_plain_json() {
        let attrs = vec![
            kv("s", Value::StringValue("web".into())),
            kv("i", Value::IntValue(-3)),
            kv("d", Value::DoubleValue(1.0)),
            kv("b", Value::BoolValue(true)),
            kv(
                "a",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::IntValue(7)),
                    }],
                }),
            ),
            kv(
                "m",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("z", Value::StringValue("last".into()))],
                }),
            ),
            key_value("none".into(), None),
        ];
        let json = serde_json::to_string(&Attributes(&attrs)).unwrap();
        assert_eq!(
            json,
            r#"{"s":"web","i":-3,"d":1.0,"b":true,"a":[7],"m":{"z":"last"},"none":null}"#
        );
        let back: PlainAttributes = serde_json::from_str(&json).unwrap();
        // A key without a value reads back with the empty value: `{}`.
        let mut want = attrs.clone();
        want[6].value = Some(AnyValue::default());
        assert_eq!(back.0, want);
    }

    #[test]
    fn bytes_non_finite_doubles_and_the_empty_value_round_trip() {
        let typed_list = Value::KvlistValue(KeyValueList {
            values: vec![kv("bytesValue", Value::StringValue("not bytes".into()))],
        });
        let attrs = vec![
            kv("bytes", Value::BytesValue(vec![0, 159, 146, 150])),
            kv("nan", Value::DoubleValue(f64::NAN)),
            kv("inf", Value::DoubleValue(f64::INFINITY)),
            kv("-inf", Value::DoubleValue(f64::NEG_INFINITY)),
            key_value("empty".into(), Some(AnyValue::default())),
            kv("looks typed", typed_list),
            kv(
                "nested",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue::default(), some(Value::BytesValue(vec![1]))],
                }),
            ),
        ];
        let json = serde_json::to_string(&Attributes(&attrs)).unwrap();
        assert_eq!(
            json,
            r#"{"bytes":{"bytesValue":"AJ+Slg=="},"nan":{"doubleValue":"NaN"},"inf":{"doubleValue":"Infinity"},"-inf":{"doubleValue":"-Infinity"},"empty":null,"looks typed":{"kvlistValue":{"bytesValue":"not bytes"}},"nested":[null,{"bytesValue":"AQ=="}]}"#
        );
        let back: PlainAttributes = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0.len(), attrs.len());
        for (a, b) in attrs.iter().zip(&back.0) {
            assert_eq!(a.key, b.key);
            match (&a.value, &b.value) {
                (
                    Some(AnyValue {
                        value: Some(Value::DoubleValue(x)),
                    }),
                    Some(AnyValue {
                        value: Some(Value::DoubleValue(y)),
                    }),
                ) if x.is_nan() => assert!(y.is_nan()),
                _ => assert_eq!(a, b),
            }
        }
        // An object with a typed key and more keys is a plain list.
        let two: PlainValue = serde_json::from_str(r#"{"bytesValue":"AQ==","x":1}"#).unwrap();
        assert!(matches!(
            two.0.and_then(|v| v.value),
            Some(Value::KvlistValue(kv)) if kv.values.len() == 2
        ));
    }
}
