//! The configuration reference (`docs/reference/configuration.md`), written
//! from the JSON Schema — itself derived from the types that parse the
//! file — so the reference cannot drift from what sluice accepts: a test
//! compares the committed page with `sluice schema --markdown`.
//!
//! Every key of every section and component type, with its type, default
//! and the description from the code; settings shared by many components
//! (`batch`, `tls`, ...) are described once and linked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

/// The whole page.
pub fn markdown(schema: &Value) -> String {
    let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
    let mut page = Page {
        defs: &defs,
        out: String::new(),
        shared: BTreeSet::new(),
    };
    page.out.push_str(
        "# Configuration reference\n\n\
         Generated from the configuration's JSON Schema (`sluice schema --markdown`), which is \
         derived from the types that parse the file: every key listed here is accepted, and \
         nothing else is (an unknown key is an error at its line and column). Durations are \
         `500ms`, `30s`, `5m`, `1m30s` or a number of seconds; sizes `512`, `64KiB`, `10MiB`, \
         `1GiB`, `10MB`. See [Configuration](../configuration.md) for how the file is read.\n\n",
    );
    page.out.push_str("## Top level\n\n");
    page.table(schema);
    for (title, section, what) in [
        ("Sources", "sourceMap", "source"),
        ("Destinations", "destinationMap", "destination"),
    ] {
        let _ = write!(
            page.out,
            "## {title}\n\nEach {what} is a key (its id) under `{}:` with a `type`.\n\n",
            title.to_lowercase()
        );
        page.variants(&defs[section]["additionalProperties"]);
    }
    page.out.push_str("## Pipeline functions\n\nEach function is an item of a pipeline's list, with a `type`.\n\n");
    page.variants(&functions(&defs));
    page.out
        .push_str("## Routes\n\nEach item of `routes:`.\n\n");
    if let Some(route) = defs.get("RawRoute") {
        page.table(route);
    }
    page.out.push_str("## Shared settings\n\n");
    // Described once each; a table may add more while being written.
    let mut done = BTreeSet::new();
    while let Some(name) = page.shared.iter().find(|n| !done.contains(*n)).cloned() {
        done.insert(name.clone());
        let def = defs.get(&name).cloned().unwrap_or(Value::Null);
        let _ = writeln!(page.out, "### {name}\n");
        if let Some(d) = def["description"].as_str() {
            let _ = writeln!(page.out, "{}\n", one_paragraph(d));
        }
        page.table(&def);
    }
    while page.out.ends_with("\n\n") {
        page.out.pop();
    }
    page.out
}

/// The pipeline functions' schema: the items of a pipeline's list.
fn functions(defs: &serde_json::Map<String, Value>) -> Value {
    let list = &defs["functionListMap"]["additionalProperties"];
    let item = &list["items"];
    match item.get("$ref").and_then(Value::as_str) {
        Some(r) => defs
            .get(r.trim_start_matches("#/$defs/"))
            .cloned()
            .unwrap_or(Value::Null),
        None => item.clone(),
    }
}

struct Page<'a> {
    defs: &'a serde_json::Map<String, Value>,
    out: String,
    /// Object definitions linked from a table, described under "Shared settings".
    shared: BTreeSet<String>,
}

impl Page<'_> {
    /// One `### type` section per variant of a `oneOf` of tagged types.
    fn variants(&mut self, one_of: &Value) {
        let mut by_kind: BTreeMap<String, Value> = BTreeMap::new();
        for v in one_of["oneOf"].as_array().into_iter().flatten() {
            let parts = v["allOf"].as_array().cloned().unwrap_or_default();
            let kind = parts
                .iter()
                .find_map(|p| p["properties"]["type"]["const"].as_str())
                .unwrap_or("?")
                .to_string();
            let settings = parts
                .iter()
                .find_map(|p| p.get("$ref").and_then(Value::as_str))
                .and_then(|r| self.defs.get(r.trim_start_matches("#/$defs/")))
                .cloned()
                .unwrap_or(Value::Null);
            by_kind.insert(kind, settings);
        }
        for (kind, settings) in by_kind {
            let _ = writeln!(self.out, "### `{kind}`\n");
            if let Some(d) = settings["description"].as_str() {
                let _ = writeln!(self.out, "{}\n", one_paragraph(d));
            }
            self.table(&settings);
        }
    }

    /// A table of an object schema's properties.
    fn table(&mut self, object: &Value) {
        let Some(props) = object["properties"].as_object() else {
            self.out.push_str("(no settings)\n\n");
            return;
        };
        let required: BTreeSet<&str> = object["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        self.out
            .push_str("| key | type | default | description |\n|---|---|---|---|\n");
        for (key, p) in props {
            if key == "type" {
                continue;
            }
            let ty = self.type_of(p);
            let default = if required.contains(key.as_str()) {
                "**required**".to_string()
            } else {
                match p.get("default") {
                    None | Some(Value::Null) => String::new(),
                    Some(d) => format!("`{}`", compact(d)),
                }
            };
            let description = p["description"]
                .as_str()
                .or_else(|| self.referenced(p).and_then(|d| d["description"].as_str()))
                .map(one_paragraph)
                .unwrap_or_default();
            let _ = writeln!(
                self.out,
                "| `{key}` | {ty} | {default} | {} |",
                cell(&description)
            );
        }
        self.out.push('\n');
    }

    fn referenced(&self, p: &Value) -> Option<&Value> {
        let r = p.get("$ref").and_then(Value::as_str)?;
        self.defs.get(r.trim_start_matches("#/$defs/"))
    }

    /// A property's type in words: scalars by name, enums by their values,
    /// shared objects linked to their section.
    fn type_of(&mut self, p: &Value) -> String {
        if let Some(r) = p.get("$ref").and_then(Value::as_str) {
            let name = r.trim_start_matches("#/$defs/").to_string();
            let def = self.defs.get(&name).cloned().unwrap_or(Value::Null);
            return match name.as_str() {
                "Duration" => "duration".into(),
                "ByteSize" => "size".into(),
                _ if def["properties"].is_object() => {
                    self.shared.insert(name.clone());
                    format!("[{name}](#{})", name.to_lowercase())
                }
                _ => self.type_of(&def),
            };
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = p[key].as_array() {
                let words: Vec<String> = options
                    .iter()
                    .filter(|o| o["type"] != "null")
                    .map(|o| self.type_of(o))
                    .collect();
                let mut unique: Vec<String> = Vec::new();
                for w in words {
                    if !unique.contains(&w) {
                        unique.push(w);
                    }
                }
                return unique.join(" or ");
            }
        }
        if let Some(values) = p["enum"].as_array() {
            return values
                .iter()
                .map(|v| format!("`{}`", compact(v)))
                .collect::<Vec<_>>()
                .join(", ");
        }
        if let Some(c) = p.get("const") {
            return format!("`{}`", compact(c));
        }
        let ty = match &p["type"] {
            Value::Array(types) => types
                .iter()
                .filter(|t| *t != "null")
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            Value::String(t) => t.clone(),
            _ => String::new(),
        };
        match ty.as_str() {
            "array" => format!("list of {}", self.type_of(&p["items"])),
            "object" if p["additionalProperties"].is_object() => {
                format!("map of {}", self.type_of(&p["additionalProperties"]))
            }
            "" => "any".into(),
            _ => ty,
        }
    }
}

/// A description's first paragraph on one line.
fn one_paragraph(d: &str) -> String {
    d.split("\n\n")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Safe inside a table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
    .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_destination_and_function_type_has_a_section() {
        let page = markdown(&super::super::schema::schema());
        for kind in crate::destinations::TYPES {
            if *kind != crate::destinations::output_router::NAME {
                assert!(page.contains(&format!("### `{kind}`")), "{kind}");
            }
        }
        for kind in [
            "tcp", "http", "syslog", "file", "kafka", "eval", "remap", "parse",
        ] {
            assert!(page.contains(&format!("### `{kind}`")), "{kind}");
        }
        assert!(
            page.contains("### BatchConfig"),
            "shared settings are described"
        );
        assert!(!page.contains("](#)"), "a link to nothing");
    }
}
