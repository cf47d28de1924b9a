//! `remap`: a Vector Remap Language program, compiled by the `vrl` crate
//! with the standard library Vector runs, so a Vector user's program runs
//! unchanged. Keys as Vector's remap transform: `source` or `file`,
//! `drop_on_error` (default false: the event goes on as it came in),
//! `drop_on_abort` (default true). The event is `.`; a program that sets
//! `.` to an array makes one event per element. A program that does not
//! compile is a config error with VRL's own diagnostic, at its line and
//! column in the config file.

use serde::Deserialize;
use serde_saphyr::Spanned;
use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{Program, TargetValue, TimeZone};
use vrl::value::{ObjectMap, Secrets, Value};

use super::config::Invalid;
use super::{DropReason, Function, Tally, Work};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemapConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The program.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub source: Option<Spanned<String>>,
    /// A file holding the program (instead of `source`).
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// Remove an event the program fails on (counted `error`) instead of
    /// passing it on as it came in. Default false.
    #[serde(default)]
    pub drop_on_error: bool,
    /// Remove an event the program `abort`s (counted `filter`). Default
    /// true; false passes it on as it came in.
    #[serde(default = "yes")]
    pub drop_on_abort: bool,
}

fn yes() -> bool {
    true
}

impl RemapConfig {
    /// The program's text, and where in the config it starts (`None`: from
    /// a file).
    fn text(&self) -> Result<(String, Option<crate::config::Loc>), Invalid> {
        match (&self.source, &self.file) {
            (Some(s), None) => Ok((s.value.clone(), Some(s.referenced.into()))),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map(|t| (t, None))
                .map_err(|e| Invalid::from(format!("file `{}`: {e}", f.display()))),
            _ => Err("set `source` (the program) or `file` (a file holding it)"
                .to_string()
                .into()),
        }
    }

    fn compile(&self) -> Result<Program, Invalid> {
        let (text, at) = self.text()?;
        let functions = vrl::stdlib::all();
        match vrl::compiler::compile(&text, &functions) {
            Ok(result) => Ok(result.program),
            Err(diagnostics) => {
                // The first error's place in the program, for the config's
                // line and column.
                let offset = diagnostics
                    .errors()
                    .first()
                    .and_then(|d| d.labels().iter().find(|l| l.primary))
                    .map(|l| l.span.start());
                let rendered = vrl::diagnostic::Formatter::new(&text, diagnostics).to_string();
                Err(Invalid {
                    at,
                    program_offset: offset,
                    program: Some(text),
                    message: format!("the VRL program does not compile:\n{}", rendered.trim_end()),
                })
            }
        }
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        self.compile().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        let program = self.compile().map_err(|e| e.message)?;
        Ok(Box::new(Remap {
            program,
            drop_on_error: self.drop_on_error,
            drop_on_abort: self.drop_on_abort,
        }))
    }
}

struct Remap {
    program: Program,
    drop_on_error: bool,
    drop_on_abort: bool,
}

impl Function for Remap {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut runtime = Runtime::default();
        let timezone = TimeZone::default();
        let info = self.program.info();
        // What to pass on if the program fails: only needed when it can.
        let keep_original =
            (info.fallible && !self.drop_on_error) || (info.abortable && !self.drop_on_abort);
        for mut w in batch {
            let original = match &w {
                Work::Raw(e) if keep_original => Some(Work::Raw(e.clone())),
                Work::Value(v) if keep_original => Some(Work::Value(v.clone())),
                _ => None,
            };
            let value = std::mem::replace(w.value_mut(), Value::Null);
            let mut target = TargetValue {
                value,
                metadata: Value::Object(ObjectMap::new()),
                secrets: Secrets::default(),
            };
            let result = runtime.resolve(&mut target, &self.program, &timezone);
            runtime.clear();
            match result {
                Ok(_) => match target.value {
                    Value::Array(items) => {
                        if items.is_empty() {
                            tally.drop(DropReason::Filter);
                            continue;
                        }
                        tally.emitted += items.len() as u64 - 1;
                        out.extend(items.into_iter().map(|v| Work::Value(event_value(v))));
                    }
                    v => out.push(Work::Value(event_value(v))),
                },
                Err(Terminate::Abort(_)) => match original {
                    Some(o) if !self.drop_on_abort => out.push(o),
                    _ => tally.drop(DropReason::Filter),
                },
                // An error (or an interruption, which nothing here asks for).
                Err(_) => match original {
                    Some(o) if !self.drop_on_error => {
                        tally.errors += 1;
                        out.push(o);
                    }
                    _ => tally.drop(DropReason::Error),
                },
            }
        }
    }
}

/// An event is an object: anything else the program left becomes its
/// `message`, as Vector does.
fn event_value(v: Value) -> Value {
    match v {
        Value::Object(_) => v,
        other => super::work::message(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn remap(src: &str) -> RemapConfig {
        RemapConfig {
            kind: "remap".into(),
            name: None,
            source: Some(Spanned {
                value: src.to_string(),
                referenced: serde_saphyr::Location::UNKNOWN,
                defined: serde_saphyr::Location::UNKNOWN,
            }),
            file: None,
            drop_on_error: false,
            drop_on_abort: true,
        }
    }

    fn run(c: &RemapConfig, input: &str) -> (Vec<serde_json::Value>, Tally) {
        let f = c
            .build(&crate::pipeline::state::Slot::detached())
            .expect("compiles");
        let mut out = Vec::new();
        let mut tally = Tally::default();
        let e = crate::event::Event::json(Bytes::copy_from_slice(input.as_bytes()));
        f.run(vec![Work::Raw(e)], &mut out, &mut tally);
        let events = out
            .into_iter()
            .filter_map(Work::into_event)
            .map(|e| serde_json::from_slice(&e.raw).expect("json"))
            .collect();
        (events, tally)
    }

    #[test]
    fn vector_documentation_examples() {
        // From Vector's remap transform documentation.
        let (out, _) = run(
            &remap(
                ". = parse_json!(.message)\n.new_field = \"new value\"\n.status = to_int!(.status)\ndel(.status)",
            ),
            r#"{"message":"{\"status\":\"200\",\"x\":1}"}"#,
        );
        assert_eq!(
            out,
            vec![serde_json::json!({"x": 1, "new_field": "new value"})]
        );
        let (out, _) = run(
            &remap(".ts = to_unix_timestamp(t'2021-01-01T00:00:00Z')"),
            "{}",
        );
        assert_eq!(out[0]["ts"], 1609459200);
        let (out, _) = run(
            &remap(r#".t = parse_timestamp!("2021-02-03 04:05:06", "%Y-%m-%d %H:%M:%S")"#),
            "{}",
        );
        assert_eq!(out[0]["t"], "2021-02-03T04:05:06Z");
    }

    #[test]
    fn errors_pass_the_event_on_and_abort_drops_it() {
        let (out, t) = run(&remap(".n = to_int!(.s)"), r#"{"s":"x"}"#);
        assert_eq!(out, vec![serde_json::json!({"s": "x"})]);
        assert_eq!(t.errors, 1);
        let strict = RemapConfig {
            drop_on_error: true,
            ..remap(".n = to_int!(.s)")
        };
        let (out, t) = run(&strict, r#"{"s":"x"}"#);
        assert!(out.is_empty());
        assert_eq!(t.dropped[DropReason::Error as usize], 1);
        let (out, t) = run(
            &remap("if .level == \"debug\" { abort }"),
            r#"{"level":"debug"}"#,
        );
        assert!(out.is_empty());
        assert_eq!(t.dropped[DropReason::Filter as usize], 1);
    }

    #[test]
    fn an_array_becomes_events() {
        let (out, t) = run(&remap(". = [{\"a\": 1}, {\"a\": 2}, \"text\"]"), "{}");
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], serde_json::json!({"message": "text"}));
        assert_eq!(t.emitted, 2);
    }

    #[test]
    fn a_program_that_does_not_compile_says_where() {
        let e = remap(".a = 1\n.b = upcase(.c)")
            .validate()
            .expect_err("fallible call unhandled");
        assert_eq!(
            e.program_offset
                .map(|o| &".a = 1\n.b = upcase(.c)"[o..o + 6]),
            Some("upcase")
        );
        assert!(e.message.contains("error[E"), "{}", e.message);
    }
}
