//! The documentation says what the code does: every link in README.md and
//! docs/ leads to a file and a heading that exist, every configuration
//! shown is valid (`sluice validate`, the user's own check), every file the
//! code cites exists, and every metric sluice serves is documented.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("docs/ exists") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// A fenced code block: its language, first line number and text.
type Block = (String, usize, String);

/// The text outside fenced code blocks (with line numbers), and the blocks.
fn split(text: &str) -> (Vec<(usize, &str)>, Vec<Block>) {
    let (mut prose, mut blocks) = (Vec::new(), Vec::new());
    let mut fence: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut fence, line.strip_prefix("```")) {
            (None, Some(lang)) => fence = Some((lang.trim().to_string(), i + 2, String::new())),
            (Some(_), Some(_)) => blocks.extend(fence.take()),
            (Some((_, _, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => prose.push((i + 1, line)),
        }
    }
    (prose, blocks)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// to hyphens; a repeated one gets `-1`, `-2`, ...
fn anchors(text: &str) -> BTreeSet<String> {
    let (prose, _) = split(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose {
        let Some(h) = line.strip_prefix('#') else {
            continue;
        };
        let h = h.trim_start_matches('#');
        if !h.starts_with(' ') {
            continue;
        }
        let slug: String = h
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '-' || *c == ' ' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    }
    out
}

#[test]
fn every_link_leads_to_a_page_and_a_heading_that_exist() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let (prose, _) = split(&text);
        for (line_no, line) in prose {
            let mut rest = line;
            while let Some(i) = rest.find("](") {
                rest = &rest[i + 2..];
                let Some(end) = rest.find(')') else { break };
                let target = &rest[..end];
                rest = &rest[end..];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
                let path = if file.is_empty() {
                    page.clone()
                } else {
                    page.parent().expect("dir").join(file)
                };
                let at = format!("{}:{line_no}: {target}", page.display());
                if !path.exists() {
                    broken.push(format!("{at}: no such file"));
                    continue;
                }
                if !anchor.is_empty() {
                    let linked = std::fs::read_to_string(&path).unwrap_or_default();
                    if !anchors(&linked).contains(anchor) {
                        broken.push(format!("{at}: no such heading"));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every YAML block is YAML; every one made of configuration sections passes
/// `sluice validate`, run as a user would from the repository (the
/// examples' relative paths resolve) — a part of a configuration (only
/// `destinations:`, say) completed with what it leaves out (`complete`). A
/// block that names files of the reader's own (certificates) says so with
/// a `# validate: needs ...` comment and is only parsed.
#[test]
fn every_configuration_shown_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::tls::Pki::new();
    let (mut whole, mut failures) = (0, Vec::new());
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("read");
        let (_, blocks) = split(&text);
        for (lang, line, body) in blocks {
            if lang != "yaml" {
                continue;
            }
            let at = format!("{}:{line}", page.display());
            // A block may hold several documents (`---`): two instances.
            let parsed: Result<Vec<serde_json::Value>, _> = serde_saphyr::from_multiple(&body);
            let Ok(docs) = parsed else {
                failures.push(format!("{at}: not YAML: {parsed:?}"));
                continue;
            };
            if body.contains("# validate: needs") {
                continue;
            }
            // `${NAME}` without a default: the reader exports it.
            let mut exported = Vec::new();
            let mut rest = body.as_str();
            while let Some(i) = rest.find("${") {
                rest = &rest[i + 2..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if rest[name.len()..].starts_with('}') {
                    exported.push(name);
                }
            }
            for config in docs.into_iter().filter_map(complete) {
                whole += 1;
                let path = dir.path().join(format!("block-{whole}.yaml"));
                // JSON is YAML; positions in errors are then the JSON's.
                std::fs::write(&path, config.to_string()).expect("write");
                let out = Command::new(common::BIN)
                    .envs(exported.iter().map(|n| (n, "example")))
                    .args(["validate", "--config"])
                    .arg(&path)
                    .current_dir(root())
                    .env("SLUICE_CERT", pki.path("server.pem"))
                    .env("SLUICE_KEY", pki.path("server.key"))
                    .env("SLUICE_CA", pki.path("ca.pem"))
                    .output()
                    .expect("run sluice validate");
                if !out.status.success() {
                    failures.push(format!(
                        "{at}: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
    }
    assert!(whole >= 15, "only {whole} whole configurations found");
    assert!(
        failures.is_empty(),
        "{} of {whole} configurations shown are invalid:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A snippet of configuration sections made whole: a generator source if it
/// has no source, a blackhole for each destination it names but does not
/// define (or for its routes to use), a route if it has none. `None`: not
/// configuration sections (a fragment of one component, say).
fn complete(v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::{Value, json};
    const SECTIONS: &[&str] = &[
        "api",
        "data_dir",
        "shutdown_timeout",
        "sources",
        "routes",
        "unmatched",
        "destinations",
        "pipelines",
        "tests",
        "telemetry",
    ];
    let Value::Object(mut c) = v else { return None };
    if !c.keys().all(|k| SECTIONS.contains(&k.as_str()))
        || !["sources", "routes", "destinations", "pipelines"]
            .iter()
            .any(|k| c.contains_key(*k))
    {
        return None;
    }
    c.entry("sources")
        .or_insert_with(|| json!({"snippet_in": {"type": "generator", "rate": 1}}));
    let mut destinations = c
        .remove("destinations")
        .and_then(|d| d.as_object().cloned())
        .unwrap_or_default();
    let mut named: Vec<String> = Vec::new();
    if let Some(Value::Array(routes)) = c.get("routes") {
        named.extend(
            routes
                .iter()
                .filter_map(|r| r["destination"].as_str().map(String::from)),
        );
    }
    if let Some(u) = c
        .get("unmatched")
        .and_then(Value::as_str)
        .filter(|u| *u != "drop")
    {
        named.push(u.to_string());
    }
    for d in destinations.values() {
        if let Some(dl) = d["dead_letter"].as_str() {
            named.push(dl.to_string());
        }
        if let Some(rules) = d["rules"].as_array() {
            named.extend(
                rules
                    .iter()
                    .filter_map(|r| r["destination"].as_str().map(String::from)),
            );
        }
        if let Some(def) = d["default"].as_str().filter(|d| *d != "drop") {
            named.push(def.to_string());
        }
    }
    for n in named {
        destinations
            .entry(n)
            .or_insert_with(|| json!({"type": "blackhole"}));
    }
    if destinations.is_empty() {
        destinations.insert("snippet_out".into(), json!({"type": "blackhole"}));
    }
    let first = destinations.keys().next().cloned().unwrap_or_default();
    c.insert("destinations".into(), Value::Object(destinations));
    c.entry("routes")
        .or_insert_with(|| json!([{"name": "snippet_all", "destination": first}]));
    Some(Value::Object(c))
}

/// A page under docs/ that the code or scripts cite exists.
#[test]
fn every_page_the_code_cites_exists() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("target") {
                    walk(&p, out);
                }
            } else if p
                .extension()
                .is_some_and(|x| x == "rs" || x == "sh" || x == "py" || x == "js")
            {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for d in [
        "src",
        "tests",
        "benches",
        "loadtest",
        "scripts",
        "fuzz/fuzz_targets",
    ] {
        walk(&root().join(d), &mut files);
    }
    let mut cited = 0;
    let mut missing = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("docs/") {
            rest = &rest[i..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || "/-_.".contains(c)))
                .unwrap_or(rest.len());
            let cite = rest[..end].trim_end_matches('.');
            rest = &rest[end..];
            if cite.ends_with(".md") {
                cited += 1;
                if !root().join(cite).is_file() {
                    missing.push(format!("{}: {cite}", f.display()));
                }
            }
        }
    }
    assert!(cited >= 3, "only {cited} citations found");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// Every metric family `/metrics` serves is in docs/metrics.md (its sample
/// name, as users write it in alerts).
#[test]
fn every_metric_served_is_documented() {
    let s = common::Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
data_dir: "{dir}/data"
sources:
  gen: { type: generator, rate: 100 }
  logs: { type: syslog, address: 127.0.0.1:0 }
pipelines:
  tag:
    - { type: eval, set: { team: "'core'" } }
routes:
  - { name: all, pipeline: tag, destination: fanout }
destinations:
  fanout:
    type: output_router
    rules:
      - { name: errors, filter: 'level == "error"', destination: files }
    default: lb
  files: { type: filesystem, output_dir: "{dir}/out", staging_dir: "{dir}/staging" }
  lb:
    type: http
    endpoints: [{ url: "http://127.0.0.1:9/a" }, { url: "http://127.0.0.1:9/b" }]
    backpressure: persistent_queue
"#,
    );
    common::wait_until("events routed", std::time::Duration::from_secs(20), || {
        s.metrics().source_events("gen") > 0
    });
    let text = common::http_get(s.api, "/metrics");
    let documented =
        std::fs::read_to_string(root().join("docs/metrics.md")).expect("docs/metrics.md");
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() > 30, "{families:?}");
    let missing: Vec<&&str> = families
        .iter()
        .filter(|f| !documented.contains(&format!("`{f}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}

/// The committed configuration reference is what this binary generates.
#[test]
fn the_configuration_reference_is_current() {
    let out = Command::new(common::BIN)
        .args(["schema", "--markdown"])
        .output()
        .expect("run sluice schema --markdown");
    assert!(out.status.success());
    let committed = std::fs::read_to_string(root().join("docs/reference/configuration.md"))
        .expect("docs/reference/configuration.md");
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "docs/reference/configuration.md is stale: run `cargo run -- schema --markdown > docs/reference/configuration.md`"
    );
}
