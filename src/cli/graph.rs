//! `sluice graph`: the topology of a configuration as Graphviz DOT, as
//! `vector graph` prints it — to see what a config wires together before
//! running it (`sluice graph -c sluice.yaml | dot -Tsvg > topology.svg`).
//!
//! Every event of every source meets the route table, whose routes are tried
//! in order; so the sources point at one `routes` node rather than at each
//! route (10 sources × 30 routes would be 300 edges saying nothing more).
//! A route's pipeline is part of its label, not a node: pipelines are shared
//! by name, and one node for them would merge paths that never meet.

use std::fmt::Write as _;

use sluice::config::Config;

pub fn dot(c: &Config) -> String {
    let mut out = String::new();
    out.push_str("digraph sluice {\n  rankdir=\"LR\";\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for s in &c.sources {
        let mut label = format!("{}\n{}", s.id, s.config.kind());
        if let Some(p) = s.config.pipeline() {
            let _ = write!(label, "\npipeline: {p}");
        }
        node(&mut out, &id("source", &s.id), &label, "trapezium");
    }
    node(&mut out, ROUTES, "routes", "diamond");
    for s in &c.sources {
        edge(&mut out, &id("source", &s.id), ROUTES, None, false);
    }
    for r in &c.routes {
        let mut label = r.name.clone();
        if r.filter != "true" {
            let _ = write!(label, "\n{}", r.filter);
        }
        if let Some(p) = &r.pipeline {
            let _ = write!(label, "\npipeline: {p}");
        }
        if !r.is_final {
            label.push_str("\n(not final)");
        }
        let route = id("route", &r.name);
        node(&mut out, &route, &label, "box");
        edge(&mut out, ROUTES, &route, None, false);
        edge(
            &mut out,
            &route,
            &id("destination", &r.destination),
            None,
            false,
        );
    }
    if let Some(u) = &c.unmatched {
        edge(
            &mut out,
            ROUTES,
            &id("destination", u),
            Some("unmatched"),
            true,
        );
    }
    for d in &c.destinations {
        let me = id("destination", &d.id);
        match d.config.output_router() {
            Some(router) => {
                node(
                    &mut out,
                    &me,
                    &format!("{}\noutput_router", d.id),
                    "diamond",
                );
                for (i, rule) in router.rules.iter().enumerate() {
                    let name = rule.name.clone().unwrap_or_else(|| i.to_string());
                    let label = match &rule.filter {
                        Some(f) => format!("{name}: {}", f.value),
                        None => name,
                    };
                    edge(
                        &mut out,
                        &me,
                        &id("destination", &rule.destination.value),
                        Some(&label),
                        false,
                    );
                }
                if let Some(default) = router.default_target() {
                    edge(
                        &mut out,
                        &me,
                        &id("destination", &default.value),
                        Some("default"),
                        true,
                    );
                }
            }
            None => {
                let mut label = format!("{}\n{}", d.id, d.config.type_name());
                if let Some(common) = d.config.common() {
                    let _ = write!(label, "\n{}", common.lane_policy().as_str());
                }
                if let Some(p) = d.config.pipeline() {
                    let _ = write!(label, "\npipeline: {p}");
                }
                node(&mut out, &me, &label, "invtrapezium");
                if let Some(dl) = d.config.dead_letter() {
                    edge(
                        &mut out,
                        &me,
                        &id("destination", dl),
                        Some("dead letter"),
                        true,
                    );
                }
            }
        }
    }
    out.push_str("}\n");
    out
}

const ROUTES: &str = "routes";

/// Sources, routes and destinations have separate namespaces in the config,
/// so each node id says which it is.
fn id(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

fn node(out: &mut String, id: &str, label: &str, shape: &str) {
    let _ = writeln!(
        out,
        "  {} [shape=\"{shape}\", label={}];",
        quote(id),
        quote(label)
    );
}

fn edge(out: &mut String, from: &str, to: &str, label: Option<&str>, dashed: bool) {
    let mut attrs = Vec::new();
    if let Some(l) = label {
        attrs.push(format!("label={}", quote(l)));
    }
    if dashed {
        attrs.push("style=\"dashed\"".to_string());
    }
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" [{}]", attrs.join(", "))
    };
    let _ = writeln!(out, "  {} -> {}{attrs};", quote(from), quote(to));
}

/// A DOT string literal: only `"` and `\` need escaping; a newline becomes
/// DOT's `\n` line break. Names and filters come from the config file, so
/// anything may be in them.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters_cannot_break_out_of_a_label() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote("x\ny"), r#""x\ny""#);
    }
}
