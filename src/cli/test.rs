//! `sluice test --config FILE`: runs the config's `tests:` — events in, a
//! pipeline or a route (its filter, then its pipeline), the events expected
//! out, compared as JSON values, in order — as `vector test` does. Each
//! failure is printed with a diff; the exit status says whether all passed.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;

use sluice::config::{Config, TestDef, TestTarget};
use sluice::event::{Event, Format};
use sluice::expr::Filter;
use sluice::metrics::Metrics;
use sluice::pipeline::Pipeline;

/// One test's outcome: `Ok` or the report of how it failed.
pub fn run_one(config: &Config, t: &TestDef) -> Result<(), String> {
    // A registry of its own: tests never touch a running sluice's books.
    let metrics = Metrics::new();
    let pipeline = |name: &str| -> Result<std::sync::Arc<Pipeline>, String> {
        let def = config
            .pipelines
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no pipeline `{name}`"))?;
        Pipeline::build(
            &def.name,
            &def.functions,
            &metrics,
            Default::default(),
            &Default::default(),
        )
        .map_err(|e| e.to_string())
    };
    let events: Vec<Event> = t.inputs.iter().map(event_of).collect();
    let out = match &t.target {
        TestTarget::Pipeline(name) => pipeline(name)?.process(events),
        TestTarget::Route(name) => {
            let route = config
                .routes
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| format!("no route `{name}`"))?;
            let filter = Filter::new(&route.filter).map_err(|e| e.to_string())?;
            let mut scratch = filter.scratch();
            let matched: Vec<Event> = events
                .into_iter()
                .filter(|e| filter.matches(e, &mut scratch))
                .collect();
            match &route.pipeline {
                Some(p) => pipeline(p)?.process(matched),
                None => matched,
            }
        }
    };
    let got: Vec<Value> = out.iter().map(value_of).collect();
    let want: Vec<Value> = t.output.iter().map(expected).collect();
    if got == want {
        Ok(())
    } else {
        Err(diff(&want, &got))
    }
}

/// Run every test; print each result; `true` when all passed.
pub fn run(config: &Config) -> bool {
    let mut failed = 0;
    for t in &config.tests {
        match run_one(config, t) {
            Ok(()) => println!("test {} ... passed", t.name),
            Err(report) => {
                failed += 1;
                println!(
                    "test {} ... failed ({}:{}:{})\n{report}",
                    t.name, config.source_name, t.location.line, t.location.column
                );
            }
        }
    }
    let total = config.tests.len();
    println!(
        "\n{} passed, {failed} failed, of {total} test{}",
        total - failed,
        if total == 1 { "" } else { "s" }
    );
    failed == 0
}

/// An input as an event: JSON text or a mapping is a JSON event, other text
/// a text event (as a source with `decoding: auto` reads a line).
fn event_of(input: &Value) -> Event {
    match input {
        Value::String(s) if serde_json::from_str::<Value>(s).is_ok() => {
            Event::json(Bytes::copy_from_slice(s.as_bytes()))
        }
        Value::String(s) => Event::text(Bytes::copy_from_slice(s.as_bytes())),
        other => Event::json(Bytes::from(other.to_string())),
    }
}

/// An event out as a value: its JSON, or its text as a string.
fn value_of(e: &Event) -> Value {
    match e.format {
        Format::Json => serde_json::from_slice(&e.raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.raw).into_owned())),
        Format::Text => Value::String(String::from_utf8_lossy(&e.raw).into_owned()),
    }
}

/// An expected event: a mapping, or text (JSON text is read as JSON).
fn expected(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|j| j.is_object() || j.is_array())
            .unwrap_or_else(|| v.clone()),
        other => other.clone(),
    }
}

/// The expected and actual events, one JSON document per event, as a line
/// diff (`-` expected, `+` got).
fn diff(want: &[Value], got: &[Value]) -> String {
    let show = |vs: &[Value]| -> String {
        vs.iter()
            .map(|v| serde_json::to_string_pretty(v).unwrap_or_default() + "\n")
            .collect()
    };
    let (w, g) = (show(want), show(got));
    let mut out = format!(
        "  expected {} event{}, got {}:\n",
        want.len(),
        if want.len() == 1 { "" } else { "s" },
        got.len()
    );
    for change in similar::TextDiff::from_lines(&w, &g).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        let _ = write!(out, "  {sign} {change}");
        if change.missing_newline() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        Config::load_str("t.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = r#"
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
pipelines:
  clean:
    - { type: drop, filter: 'level == "debug"' }
    - { type: rename, fields: { msg: message } }
routes:
  - { name: errors, filter: 'level == "error"', destination: out, pipeline: clean }
destinations:
  out: { type: console }
"#;

    #[test]
    fn passing_and_failing_tests() {
        let c = config(&format!(
            "{BASE}tests:\n  - {{ name: drops debug, pipeline: clean, input: '{{\"level\":\"debug\"}}', output: [] }}\n  - {{ name: renames, pipeline: clean, inputs: [{{ level: info, msg: hi }}], output: ['{{\"level\":\"info\",\"message\":\"hi\"}}'] }}\n  - {{ name: route filter, route: errors, inputs: ['{{\"level\":\"info\"}}', {{ level: error, msg: x }}], output: [{{ level: error, message: x }}] }}\n  - {{ name: wrong, pipeline: clean, input: plain text, output: [other] }}\n"
        ));
        let results: Vec<_> = c.tests.iter().map(|t| run_one(&c, t)).collect();
        assert!(results[0].is_ok(), "{results:?}");
        assert!(results[1].is_ok(), "{results:?}");
        assert!(results[2].is_ok(), "{results:?}");
        let report = results[3].as_ref().expect_err("fails");
        assert!(report.contains("- \"other\""), "{report}");
        assert!(report.contains("\"message\": \"plain text\""), "{report}");
    }

    #[test]
    fn tests_must_name_what_exists() {
        let e = Config::load_str(
            "t.yaml",
            &format!("{BASE}tests:\n  - {{ name: a, pipeline: nope, input: x, output: [] }}\n  - {{ name: b, route: errors, output: [] }}\n"),
        )
        .expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("test `a`: unknown pipeline `nope`"), "{text}");
        assert!(text.contains("test `b`: give one `input`"), "{text}");
    }
}
