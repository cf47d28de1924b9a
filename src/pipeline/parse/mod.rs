//! `parse`: turn a text field (`message` by default) into fields: `json`,
//! `kv` (`key=value` pairs), `regex` (named groups), `syslog` (RFC 5424 and
//! 3164, Vector's field names), `clf` (Apache/nginx common and combined log)
//! or `csv` (with `columns`). The fields go into the event's root, or under
//! `target`. A value that does not parse leaves the event as it was and is
//! counted (`sluice_pipeline_errors_total`), or with `drop_on_error`
//! removed (counted `error`).

mod clf;
mod csv;
mod kv;
mod syslog;

use regex::Regex;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::{KeyString, ObjectMap, Value};

use super::{DropReason, Function, Tally, Work};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Kv,
    Regex,
    Syslog,
    Clf,
    Csv,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The field to parse. Default `message` (a text event's line).
    #[serde(default = "default_field")]
    pub field: String,
    pub format: Format,
    /// Where the parsed fields go: a field path, or the event's root
    /// (default; they overwrite fields of the same name).
    #[serde(default)]
    pub target: Option<String>,
    /// `regex`: a pattern whose named groups become fields.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `csv`: the names of the columns, in order.
    #[serde(default)]
    pub columns: Vec<String>,
    /// `csv`: the delimiter (default `,`); `kv`: between pairs (default
    /// whitespace).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// `kv`: between a key and its value. Default `=`.
    #[serde(default)]
    pub separator: Option<String>,
    /// Remove the parsed field once it parsed. Default false.
    #[serde(default)]
    pub remove_field: bool,
    /// Remove an event whose field does not parse (counted `error`) rather
    /// than passing it on unchanged. Default false.
    #[serde(default)]
    pub drop_on_error: bool,
}

fn default_field() -> String {
    "message".into()
}

/// A format ready to run.
enum Parser {
    Json,
    Kv(kv::Kv),
    Regex(Regex),
    Syslog,
    Clf,
    Csv(csv::Csv),
}

impl Parser {
    /// The fields of `text`, or why it did not parse.
    fn fields(&self, text: &[u8]) -> Result<ObjectMap, String> {
        match self {
            Parser::Json => match serde_json::from_slice::<Value>(text) {
                Ok(Value::Object(o)) => Ok(o),
                Ok(_) => Err("not a JSON object".into()),
                Err(e) => Err(format!("not JSON: {e}")),
            },
            Parser::Kv(k) => k.fields(&String::from_utf8_lossy(text)),
            Parser::Regex(re) => {
                let text = String::from_utf8_lossy(text);
                let caps = re.captures(&text).ok_or("the pattern did not match")?;
                let mut out = ObjectMap::new();
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        out.insert(KeyString::from(name), Value::from(m.as_str()));
                    }
                }
                Ok(out)
            }
            Parser::Syslog => syslog::fields(&String::from_utf8_lossy(text)),
            Parser::Clf => clf::fields(&String::from_utf8_lossy(text)),
            Parser::Csv(c) => c.fields(text),
        }
    }
}

impl ParseConfig {
    fn compile(&self) -> Result<Parse, String> {
        let only = |what: &str, set: bool, formats: &str| {
            if set {
                Err(format!("`{what}` applies only to {formats}"))
            } else {
                Ok(())
            }
        };
        only(
            "pattern",
            self.pattern.is_some() && self.format != Format::Regex,
            "format: regex",
        )?;
        only(
            "columns",
            !self.columns.is_empty() && self.format != Format::Csv,
            "format: csv",
        )?;
        only(
            "delimiter",
            self.delimiter.is_some() && !matches!(self.format, Format::Csv | Format::Kv),
            "format: csv and kv",
        )?;
        only(
            "separator",
            self.separator.is_some() && self.format != Format::Kv,
            "format: kv",
        )?;
        let parser = match self.format {
            Format::Json => Parser::Json,
            Format::Kv => Parser::Kv(kv::Kv::new(
                self.delimiter.as_deref(),
                self.separator.as_deref(),
            )?),
            Format::Regex => {
                let p = self
                    .pattern
                    .as_deref()
                    .ok_or("format: regex needs a `pattern`")?;
                let re = Regex::new(p).map_err(|e| format!("pattern: {e}"))?;
                if re.capture_names().flatten().next().is_none() {
                    return Err("pattern: name the groups that become fields: (?P<name>...)".into());
                }
                Parser::Regex(re)
            }
            Format::Syslog => Parser::Syslog,
            Format::Clf => Parser::Clf,
            Format::Csv => Parser::Csv(csv::Csv::new(&self.columns, self.delimiter.as_deref())?),
        };
        let field = super::path::parse(&self.field).map_err(|e| format!("field: {e}"))?;
        let target = self
            .target
            .as_deref()
            .map(super::path::parse)
            .transpose()
            .map_err(|e| format!("target: {e}"))?;
        Ok(Parse {
            parser,
            field,
            target,
            remove_field: self.remove_field,
            drop_on_error: self.drop_on_error,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        Ok(Box::new(self.compile()?))
    }
}

struct Parse {
    parser: Parser,
    field: OwnedValuePath,
    target: Option<OwnedValuePath>,
    remove_field: bool,
    drop_on_error: bool,
}

impl Parse {
    /// Parse one event's field into it; `false` when it did not parse.
    fn apply(&self, v: &mut Value) -> bool {
        let fields = match v.get(&self.field) {
            Some(t @ (Value::Bytes(_) | Value::String(_))) => {
                self.parser.fields(super::work::text(t).unwrap_or_default())
            }
            // A JSON field that is already an object parses as itself.
            Some(Value::Object(o)) if matches!(self.parser, Parser::Json) => Ok(o.clone()),
            Some(_) => Err("not a string".to_string()),
            None => Err("no such field".to_string()),
        };
        let Ok(fields) = fields else { return false };
        if self.remove_field {
            v.remove(&self.field, false);
        }
        match &self.target {
            Some(t) => {
                v.insert(t, Value::Object(fields));
            }
            None => {
                if let Value::Object(root) = v {
                    root.extend(fields);
                }
            }
        }
        true
    }
}

impl Function for Parse {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        for mut w in batch {
            if self.apply(w.value_mut()) {
                out.push(w);
            } else if self.drop_on_error {
                tally.drop(DropReason::Error);
            } else {
                tally.errors += 1;
                out.push(w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn config(format: Format) -> ParseConfig {
        ParseConfig {
            kind: "parse".into(),
            name: None,
            field: "message".into(),
            format,
            target: None,
            pattern: None,
            columns: Vec::new(),
            delimiter: None,
            separator: None,
            remove_field: false,
            drop_on_error: false,
        }
    }

    fn run(c: &ParseConfig, line: &str) -> (Value, Tally) {
        let p = c.compile().expect("valid");
        let mut out = Vec::new();
        let mut tally = Tally::default();
        let e = crate::event::Event::text(Bytes::copy_from_slice(line.as_bytes()));
        p.run(vec![Work::Raw(e)], &mut out, &mut tally);
        let v = out
            .pop()
            .map(|mut w| w.value_mut().clone())
            .unwrap_or(Value::Null);
        (v, tally)
    }

    #[test]
    fn json_into_the_root_or_a_target() {
        let (v, t) = run(&config(Format::Json), r#"{"a":1,"b":{"c":"d"}}"#);
        assert_eq!(
            v.get(&crate::pipeline::path::parse("b.c").expect("path")),
            Some(&Value::from("d"))
        );
        assert_eq!(t.errors, 0);
        let c = ParseConfig {
            target: Some("parsed".into()),
            remove_field: true,
            ..config(Format::Json)
        };
        let (v, _) = run(&c, r#"{"a":1}"#);
        assert_eq!(
            v.get(&crate::pipeline::path::parse("parsed.a").expect("path")),
            Some(&Value::Integer(1))
        );
        assert_eq!(
            v.get(&crate::pipeline::path::parse("message").expect("path")),
            None
        );
        let (v, t) = run(&config(Format::Json), "not json");
        assert_eq!(
            v.get(&crate::pipeline::path::parse("message").expect("path")),
            Some(&Value::from("not json"))
        );
        assert_eq!(t.errors, 1);
    }

    #[test]
    fn regex_groups_become_fields() {
        let c = ParseConfig {
            pattern: Some(r"^(?P<method>\w+) (?P<path>\S+)".into()),
            ..config(Format::Regex)
        };
        let (v, _) = run(&c, "GET /health HTTP/1.1");
        assert_eq!(
            v.get(&crate::pipeline::path::parse("method").expect("path")),
            Some(&Value::from("GET"))
        );
        assert_eq!(
            v.get(&crate::pipeline::path::parse("path").expect("path")),
            Some(&Value::from("/health"))
        );
        let dropping = ParseConfig {
            drop_on_error: true,
            ..c
        };
        let p = dropping.compile().expect("valid");
        let mut out = Vec::new();
        let mut tally = Tally::default();
        let e = crate::event::Event::text(Bytes::from_static(b"???"));
        p.run(vec![Work::Raw(e)], &mut out, &mut tally);
        assert!(out.is_empty());
        assert_eq!(tally.dropped[DropReason::Error as usize], 1);
    }

    #[test]
    fn settings_for_another_format_are_refused() {
        let c = ParseConfig {
            pattern: Some("x".into()),
            ..config(Format::Json)
        };
        assert!(c.validate().is_err());
        assert!(config(Format::Regex).validate().is_err());
    }
}
