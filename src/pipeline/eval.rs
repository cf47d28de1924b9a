//! `eval`: set fields from expressions and remove fields (Cribl's Eval).
//! Expressions are the filter language with values: arithmetic, `+` to
//! join text, `? :`, `||` and `??` for defaults, string methods, `Math.*`,
//! `Date.now()` (see `expr::compute`). Assignments run in order, each
//! seeing the ones before; a field computed as missing is removed, as
//! JavaScript's `undefined` is when the event is written.

use regex::RegexSet;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::condition::{Condition, now_ms};
use super::{Function, Tally, Work};
use crate::expr::compute::{Ctx, Expr};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// The field to set (`a.b`, `tags[0]`).
    pub name: String,
    /// An expression (`status >= 500 ? "error" : "ok"`).
    pub value: String,
}

/// `set: {field: expression}`, kept in the order written (a later
/// expression may read what an earlier one set).
#[derive(Debug, Clone, Default)]
pub struct Sets(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Sets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Sets;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of field names to expressions")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Sets, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(Sets(out))
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Sets, E> {
                Ok(Sets::default())
            }
        }
        d.deserialize_any(Visit)
    }
}

impl schemars::JsonSchema for Sets {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EvalSets".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "field: expression, evaluated in the order written",
            "type": ["object", "null"],
            "additionalProperties": { "type": "string" }
        })
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// Only events this filter matches are changed (default: all).
    #[serde(default)]
    pub filter: Option<String>,
    /// Fields to set, in the order written: `{field: expression}`.
    #[serde(default)]
    pub set: Sets,
    /// The same as Cribl writes it: a list of `{name, value}`, after `set`.
    #[serde(default)]
    pub add: Vec<Assign>,
    /// Fields to remove: paths (`a.b`), or top-level names with `*`
    /// wildcards (`tmp_*`, `*`).
    #[serde(default)]
    pub remove: Vec<String>,
    /// Top-level names (`*` wildcards allowed) that `remove` spares:
    /// `remove: ["*"]` with `keep: [host, message]` keeps only those two.
    #[serde(default)]
    pub keep: Vec<String>,
}

impl EvalConfig {
    fn compile(&self) -> Result<Eval, String> {
        if self.set.0.is_empty() && self.add.is_empty() && self.remove.is_empty() {
            return Err("set fields with `set` (or `add`) or remove them with `remove`".into());
        }
        let filter = self
            .filter
            .as_deref()
            .map(Condition::new)
            .transpose()
            .map_err(|e| format!("filter: {e}"))?;
        let set = self.set.0.iter().map(|(name, value)| {
            let path = super::path::parse(name).map_err(|e| format!("set: {e}"))?;
            let expr = Expr::compile(value).map_err(|e| format!("set.{name}: {e}"))?;
            Ok((path, expr))
        });
        let add = self.add.iter().enumerate().map(|(i, a)| {
            let path = super::path::parse(&a.name).map_err(|e| format!("add[{i}].name: {e}"))?;
            let expr = Expr::compile(&a.value).map_err(|e| format!("add[{i}].value: {e}"))?;
            Ok((path, expr))
        });
        let add = set.chain(add).collect::<Result<Vec<_>, String>>()?;
        let mut remove_paths = Vec::new();
        let mut remove_globs = Vec::new();
        for (i, r) in self.remove.iter().enumerate() {
            if r.contains('*') {
                remove_globs.push(glob(r).map_err(|e| format!("remove[{i}]: {e}"))?);
            } else {
                remove_paths.push(super::path::parse(r).map_err(|e| format!("remove[{i}]: {e}"))?);
            }
        }
        let keep = self
            .keep
            .iter()
            .enumerate()
            .map(|(i, k)| glob(k).map_err(|e| format!("keep[{i}]: {e}")))
            .collect::<Result<Vec<_>, String>>()?;
        let regexes = |g: Vec<String>| RegexSet::new(g).map_err(|e| e.to_string());
        Ok(Eval {
            filter,
            add,
            remove_paths,
            remove_globs: regexes(remove_globs)?,
            keep: regexes(keep)?,
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        Ok(Box::new(self.compile()?))
    }
}

/// A top-level name with `*` wildcards, as an anchored regex.
fn glob(pattern: &str) -> Result<String, String> {
    if pattern.is_empty() || pattern.contains(['.', '[']) {
        return Err(format!(
            "`{pattern}`: wildcards and `keep` name top-level fields (`tmp_*`)"
        ));
    }
    let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
    Ok(format!("^{}$", parts.join(".*")))
}

struct Eval {
    filter: Option<Condition>,
    add: Vec<(OwnedValuePath, Expr)>,
    remove_paths: Vec<OwnedValuePath>,
    remove_globs: RegexSet,
    keep: RegexSet,
}

impl Eval {
    /// Set the fields; whether some expression built text too long to keep.
    fn assign(&self, v: &mut Value, now: f64) -> bool {
        let mut failed = false;
        for (path, expr) in &self.add {
            let ctx = Ctx::new(v, now);
            let result = expr.eval(&ctx).into_value();
            if ctx.too_long() {
                failed = true;
                continue;
            }
            match result {
                Some(x) => {
                    v.insert(path, x);
                }
                None => {
                    v.remove(path, false);
                }
            }
        }
        failed
    }

    fn prune(&self, v: &mut Value) {
        for path in &self.remove_paths {
            let top = path.segments.first().and_then(|s| match s {
                vrl::path::OwnedSegment::Field(f) => Some(f.as_str()),
                _ => None,
            });
            if top.is_some_and(|t| self.keep.is_match(t)) {
                continue;
            }
            v.remove(path, false);
        }
        if self.remove_globs.is_empty() {
            return;
        }
        if let Value::Object(map) = v {
            map.retain(|k, _| {
                !self.remove_globs.is_match(k.as_str()) || self.keep.is_match(k.as_str())
            });
        }
    }
}

impl Function for Eval {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut scratch = self.filter.as_ref().map(Condition::scratch);
        let now = now_ms();
        for mut w in batch {
            if let (Some(f), Some(s)) = (&self.filter, scratch.as_mut())
                && !f.matches(&w, s, now)
            {
                out.push(w);
                continue;
            }
            let v = w.value_mut();
            if self.assign(v, now) {
                tally.errors += 1;
            }
            self.prune(v);
            out.push(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str, events: &[&str]) -> (Vec<serde_json::Value>, Tally) {
        let config: EvalConfig = serde_saphyr::from_str(yaml).expect("config");
        let f = config
            .build(&crate::pipeline::state::Slot::detached())
            .expect("builds");
        crate::pipeline::tests::run_json(f.as_ref(), events)
    }

    #[test]
    fn sets_in_order_removes_and_keeps() {
        let (out, tally) = run(
            r#"
type: eval
filter: "exists(status)"
add:
  - {name: severity, value: "status >= 500 ? 'error' : 'info'"}
  - {name: summary, value: "severity + ': ' + path"}
  - {name: meta.kb, value: "Math.round(bytes / 1024)"}
  - {name: gone, value: "nothing"}
remove: ["tmp_*", "debug", "path"]
keep: ["tmp_keep"]
"#,
            &[
                r#"{"status":503,"path":"/a","bytes":4096,"tmp_x":1,"tmp_keep":2,"debug":true,"gone":1}"#,
                r#"{"other":1,"tmp_x":1}"#,
            ],
        );
        assert_eq!(
            out[0],
            serde_json::json!({"status":503,"bytes":4096,"tmp_keep":2,"severity":"error","summary":"error: /a","meta":{"kb":4}})
        );
        // Not matched by the filter: untouched.
        assert_eq!(out[1], serde_json::json!({"other":1,"tmp_x":1}));
        assert_eq!(tally.errors, 0);
    }

    #[test]
    fn set_keeps_the_order_written() {
        let (out, _) = run(
            "{type: eval, set: {z: '1', a: 'z + 1', m: 'a * 10'}}",
            &[r#"{"x":0}"#],
        );
        assert_eq!(out[0], serde_json::json!({"x":0,"z":1,"a":2,"m":20}));
    }

    #[test]
    fn remove_everything_but() {
        let (out, _) = run(
            "{type: eval, remove: ['*'], keep: [host, 'msg*']}",
            &[r#"{"host":"h","message":"m","msg_id":3,"pid":1}"#],
        );
        assert_eq!(out[0], serde_json::json!({"host":"h","msg_id":3}));
    }

    #[test]
    fn refusals_name_the_setting() {
        for (yaml, want) in [
            ("{type: eval}", "`set`"),
            ("{type: eval, set: {a: '1 +'}}", "set.a"),
            (
                "{type: eval, add: [{name: a, value: '1 +'}]}",
                "add[0].value",
            ),
            ("{type: eval, add: [{name: '', value: '1'}]}", "add[0].name"),
            ("{type: eval, remove: ['a.*']}", "remove[0]"),
            ("{type: eval, remove: [a], keep: ['a.b']}", "keep[0]"),
            ("{type: eval, filter: 'a +', remove: [a]}", "filter"),
        ] {
            let config: EvalConfig = serde_saphyr::from_str(yaml).expect("config");
            let e = config.validate().expect_err(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }
}
