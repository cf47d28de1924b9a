//! `mask`: replace what a regex matches in one field, or in every string of
//! the event, with a replacement (`$1` refers to a group) or the match's
//! SHA-256 (hex), so equal secrets stay comparable without being readable.

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{Function, Tally, Work};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Hash {
    Sha256,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The field to mask; without it, every string in the event.
    #[serde(default)]
    pub field: Option<String>,
    /// A regular expression (Rust `regex` syntax: no look-around, linear time).
    pub pattern: String,
    /// What replaces each match (`$1`, `${name}`: its groups). Default `***`.
    #[serde(default)]
    pub replace: Option<String>,
    /// Replace each match with its SHA-256 instead (hex).
    #[serde(default)]
    pub hash: Option<Hash>,
}

impl MaskConfig {
    fn compile(&self) -> Result<Mask, String> {
        if self.replace.is_some() && self.hash.is_some() {
            return Err("set `replace` or `hash`, not both".into());
        }
        let re = Regex::new(&self.pattern).map_err(|e| format!("pattern: {e}"))?;
        let field = super::path::parse_opt(self.field.as_deref(), "field")?;
        Ok(Mask {
            re,
            field,
            with: match self.hash {
                Some(Hash::Sha256) => With::Sha256,
                None => With::Text(self.replace.clone().unwrap_or_else(|| "***".into())),
            },
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        Ok(Box::new(self.compile()?))
    }
}

enum With {
    Text(String),
    Sha256,
}

struct Mask {
    re: Regex,
    field: Option<OwnedValuePath>,
    with: With,
}

impl Mask {
    /// `s` masked, or `None` when nothing matched (left as it is).
    fn mask(&self, s: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(s);
        if !self.re.is_match(&text) {
            return None;
        }
        Some(match &self.with {
            With::Text(r) => self.re.replace_all(&text, r.as_str()).into_owned(),
            With::Sha256 => self
                .re
                .replace_all(&text, |c: &regex::Captures| {
                    hex(&Sha256::digest(c[0].as_bytes()))
                })
                .into_owned(),
        })
    }

    fn walk(&self, v: &mut Value) {
        match v {
            Value::Bytes(_) | Value::String(_) => {
                if let Some(m) = super::work::text(v).and_then(|b| self.mask(b)) {
                    *v = Value::from(m);
                }
            }
            Value::Object(o) => o.values_mut().for_each(|v| self.walk(v)),
            Value::Array(a) => a.iter_mut().for_each(|v| self.walk(v)),
            _ => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Function for Mask {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, _: &mut Tally) {
        for mut w in batch {
            let v = w.value_mut();
            match &self.field {
                Some(path) => {
                    if let Some(b) = v.get(path).and_then(super::work::text)
                        && let Some(m) = self.mask(b)
                    {
                        v.insert(path, Value::from(m));
                    }
                }
                None => self.walk(v),
            }
            out.push(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_or_hash() {
        let m = MaskConfig {
            kind: "mask".into(),
            name: None,
            field: None,
            pattern: r"\d{13,16}".into(),
            replace: Some("<card>".into()),
            hash: None,
        }
        .compile()
        .expect("mask");
        assert_eq!(
            m.mask(b"card 4111111111111111 ok").as_deref(),
            Some("card <card> ok")
        );
        assert_eq!(m.mask(b"no digits"), None);
        let h = MaskConfig {
            hash: Some(Hash::Sha256),
            replace: None,
            ..MaskConfig {
                kind: "mask".into(),
                name: None,
                field: None,
                pattern: "secret".into(),
                replace: None,
                hash: None,
            }
        }
        .compile()
        .expect("mask");
        assert_eq!(
            h.mask(b"a secret").as_deref(),
            Some("a 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b")
        );
    }
}
