//! `flatten`: nested objects and arrays into top-level fields whose names
//! join the path with a delimiter (Cribl's Flatten: `{"a":{"b":1},"c":[2]}`
//! becomes `{"a_b":1,"c_0":2}`), for destinations that take flat records.
//! Below `depth` levels the rest is kept whole as the field's value.

use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use super::{Function, Tally, Work};

fn default_delimiter() -> String {
    "_".into()
}

fn default_depth() -> usize {
    16
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The top-level fields to flatten (default: every field).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Put before each flattened name (default: none).
    #[serde(default)]
    pub prefix: String,
    /// Between the parts of a name (default `_`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// How many levels to flatten (default 16, at most 64).
    #[serde(default = "default_depth")]
    pub depth: usize,
}

/// Deeper than this is kept whole: names beyond it are not readable anyway.
const MAX_DEPTH: usize = 64;

impl FlattenConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(format!("depth: between 1 and {MAX_DEPTH}"));
        }
        if let Some(f) = self
            .fields
            .iter()
            .find(|f| f.is_empty() || f.contains(['.', '[']))
        {
            return Err(format!("fields: `{f}` is not a top-level field name"));
        }
        Ok(())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        self.validate()?;
        Ok(Box::new(Flatten {
            fields: self.fields.clone(),
            prefix: self.prefix.clone(),
            delimiter: self.delimiter.clone(),
            depth: self.depth,
        }))
    }
}

struct Flatten {
    fields: Vec<String>,
    prefix: String,
    delimiter: String,
    depth: usize,
}

impl Flatten {
    fn flatten_into(&self, out: &mut ObjectMap, name: String, v: Value, depth: usize) {
        let nested = match &v {
            Value::Object(m) => !m.is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        };
        if !nested || depth >= self.depth {
            out.insert(KeyString::from(name), v);
            return;
        }
        let join = |part: &str| format!("{name}{}{part}", self.delimiter);
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    self.flatten_into(out, join(k.as_str()), child, depth + 1);
                }
            }
            Value::Array(a) => {
                for (i, child) in a.into_iter().enumerate() {
                    self.flatten_into(out, join(&i.to_string()), child, depth + 1);
                }
            }
            other => {
                out.insert(KeyString::from(name), other);
            }
        }
    }

    fn flatten(&self, v: &mut Value) {
        let Value::Object(map) = v else {
            return;
        };
        let mut out = ObjectMap::new();
        for (k, child) in std::mem::take(map) {
            if self.fields.is_empty() || self.fields.iter().any(|f| f == k.as_str()) {
                self.flatten_into(&mut out, format!("{}{k}", self.prefix), child, 0);
            } else {
                out.insert(k, child);
            }
        }
        *map = out;
    }
}

impl Function for Flatten {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, _: &mut Tally) {
        for mut w in batch {
            self.flatten(w.value_mut());
            out.push(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(yaml: &str, json: &str) -> serde_json::Value {
        let config: FlattenConfig = serde_saphyr::from_str(yaml).expect("config");
        let f = Flatten {
            fields: config.fields,
            prefix: config.prefix,
            delimiter: config.delimiter,
            depth: config.depth,
        };
        let mut v: Value = serde_json::from_str(json).expect("json");
        f.flatten(&mut v);
        serde_json::to_value(&v).expect("json")
    }

    #[test]
    fn objects_and_arrays_become_names() {
        let json = r#"{"a":{"b":1,"c":{"d":true}},"e":[2,{"f":3}],"g":{},"h":"x"}"#;
        assert_eq!(
            flat("{type: flatten}", json),
            serde_json::json!({"a_b":1,"a_c_d":true,"e_0":2,"e_1_f":3,"g":{},"h":"x"})
        );
        assert_eq!(
            flat(
                "{type: flatten, fields: [a], delimiter: '.', depth: 1}",
                json
            ),
            serde_json::json!({"a.b":1,"a.c":{"d":true},"e":[2,{"f":3}],"g":{},"h":"x"})
        );
        assert_eq!(
            flat("{type: flatten, fields: [e], prefix: 'x_'}", json)["x_e_1_f"],
            serde_json::json!(3)
        );
    }

    #[test]
    fn refusals() {
        for yaml in [
            "{type: flatten, depth: 0}",
            "{type: flatten, fields: ['a.b']}",
        ] {
            let config: FlattenConfig = serde_saphyr::from_str(yaml).expect("config");
            assert!(config.validate().is_err(), "{yaml}");
        }
    }
}
