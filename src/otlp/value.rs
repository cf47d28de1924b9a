//! OTLP values as plain JSON, both ways, so filters read them as they read
//! any event (`attributes.http_status >= 500`, `body =~ /timeout/`).
//!
//! An `AnyValue` is written as the JSON it stands for: a string, a boolean,
//! an integer, a double (always with a fraction or an exponent, `1.0`), an
//! array, an object for a key-value list, `null` for no value. Read back,
//! the JSON number's form gives int or double, so values keep their type.
//! Bytes have no JSON type: they are written as base64 text and read back
//! as a string (the one thing the plain form cannot round-trip). Attribute
//! lists are objects in their original order.

use std::fmt;

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

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
            // serde_json writes a non-finite double as null: JSON has no NaN.
            Some(Value::DoubleValue(v)) => s.serialize_f64(*v),
            Some(Value::BytesValue(v)) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
            }
            Some(Value::ArrayValue(a)) => {
                let mut seq = s.serialize_seq(Some(a.values.len()))?;
                for v in &a.values {
                    seq.serialize_element(&Plain(v.value.as_ref()))?;
                }
                seq.end()
            }
            Some(Value::KvlistValue(kv)) => Attributes(&kv.values).serialize(s),
        }
    }
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

/// Plain JSON read back as an `AnyValue`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlainValue(pub Option<AnyValue>);

impl<'de> Deserialize<'de> for PlainValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor).map(PlainValue)
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

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Option<AnyValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(any(Value::BoolValue(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(any(Value::IntValue(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        // Beyond i64: the nearest double rather than a wrapped integer.
        Ok(any(match i64::try_from(v) {
            Ok(i) => Value::IntValue(i),
            Err(_) => Value::DoubleValue(v as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(any(Value::DoubleValue(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(any(Value::StringValue(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(any(Value::StringValue(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(PlainValue(v)) = seq.next_element()? {
            values.push(v.unwrap_or_default());
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(any(Value::KvlistValue(KeyValueList {
            values: entries(map)?,
        })))
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
        assert_eq!(back.0, attrs);
    }
}
