//! Volume reduction through the binary: `sample`, `throttle` and `dedupe` in a
//! pipeline, their books by reason, and their state across reloads — kept
//! when the function is unchanged, started afresh when its settings change.

mod common;

use std::time::Duration;

use common::{Sluice, http_request, read_lines, send_lines, wait_until};
use serde_json::Value;

/// A tcp source into `out` (a file) through pipeline `name` of `functions`
/// (YAML lines); with `extra_route`, a non-final copy to a blackhole first
/// (a reload that changes only the routes).
fn config_with(name: &str, functions: &str, extra_route: bool) -> String {
    let extra = if extra_route {
        "  - { name: copy, destination: sink, final: false }\n"
    } else {
        ""
    };
    format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
pipelines:
  {name}:
{functions}
routes:
{extra}  - {{ name: all, destination: out, pipeline: {name} }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
  sink: {{ type: blackhole }}
"#
    )
}

fn config(limit: u64, extra_route: bool) -> String {
    config_with(
        "reduce",
        &format!(
            "    - {{ type: throttle, limit: {limit}, window: 1h, key: host }}\n    - {{ type: sample, rate: 10, key: host }}"
        ),
        extra_route,
    )
}

fn reload(s: &Sluice, yaml: &str) {
    let yaml = yaml.replace("{dir}", &s.dir.display().to_string());
    std::fs::write(s.dir.join("sluice.yaml"), yaml).expect("write config");
    let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
    assert_eq!(code, 200, "{body}");
}

fn lines(host: &str, n: usize) -> impl Iterator<Item = String> {
    let host = host.to_string();
    (0..n).map(move |i| format!(r#"{{"host":"{host}","i":{i}}}"#))
}

fn dropped(s: &Sluice, reason: &str) -> u64 {
    s.metrics().get(&format!(
        r#"sluice_pipeline_dropped_events_total{{pipeline="reduce",function="{reason}",reason="{reason}"}}"#
    )) as u64
}

#[test]
fn throttle_and_sample_count_exactly_and_keep_their_state_across_a_reload() {
    let s = Sluice::start(&config(100, false));
    let out = s.dir.join("out.ndjson");
    // 300 from each of two hosts: 100 of each pass the throttle, and the
    // sample keeps the 1st, 11th, ... 91st of those: 10 each.
    send_lines(&s, "in", lines("a", 300).chain(lines("b", 300)));
    wait_until(
        "600 events through the pipeline",
        Duration::from_secs(20),
        || {
            s.metrics()
                .series(r#"sluice_pipeline_received_events_total{pipeline="reduce"}"#)
                == Some(600.0)
        },
    );
    wait_until("20 written", Duration::from_secs(20), || {
        read_lines(&out).len() == 20
    });
    assert_eq!(dropped(&s, "throttle"), 400);
    assert_eq!(dropped(&s, "sample"), 180);
    // The status API (and so the page and `top`) says how much each
    // function reduced the flow: 600 → 200 → 20.
    let status = s.status();
    let reduce = &status["pipelines"][0];
    assert_eq!(reduce["reduction"], 0.9667, "{reduce}");
    let steps: Vec<(&Value, &Value, &Value)> = reduce["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| (&f["in"], &f["out"], &f["reduction"]))
        .collect();
    assert_eq!(
        steps,
        [
            (&600.into(), &200.into(), &0.6667.into()),
            (&200.into(), &20.into(), &0.9.into())
        ]
    );
    let got: Vec<Value> = read_lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(got.iter().all(|e| e["sample_rate"] == 10), "{got:?}");
    for host in ["a", "b"] {
        let seen: Vec<u64> = got
            .iter()
            .filter(|e| e["host"] == host)
            .filter_map(|e| e["i"].as_u64())
            .collect();
        assert_eq!(seen, (0..100).step_by(10).collect::<Vec<_>>(), "{host}");
    }

    // A reload that leaves the pipeline as it was: the throttle's buckets
    // stay spent for the hour, so nothing more of `a` passes.
    reload(&s, &config(100, true));
    wait_until("reloaded", Duration::from_secs(20), || {
        s.status()["config"]["version"] == 2
    });
    send_lines(&s, "in", lines("a", 50));
    wait_until("650 received", Duration::from_secs(20), || {
        s.metrics()
            .series(r#"sluice_pipeline_received_events_total{pipeline="reduce"}"#)
            == Some(650.0)
    });
    assert_eq!(dropped(&s, "throttle"), 450);
    assert_eq!(read_lines(&out).len(), 20);

    // A changed limit starts afresh: 30 of `a` pass the new throttle; the
    // sample, unchanged, goes on counting from where it was (its next
    // keep for `a` is the 101st it sees... the 1st of these 30).
    reload(&s, &config(30, true));
    wait_until("reloaded again", Duration::from_secs(20), || {
        s.status()["config"]["version"] == 3
    });
    send_lines(&s, "in", lines("a", 50));
    wait_until("23 written", Duration::from_secs(20), || {
        read_lines(&out).len() == 23
    });
    assert_eq!(dropped(&s, "throttle"), 470);
    assert_eq!(dropped(&s, "sample"), 207);
    // The books: received = sent + dropped (nothing emitted).
    let m = s.metrics();
    assert_eq!(
        m.get(r#"sluice_pipeline_sent_events_total{pipeline="reduce"}"#) as u64,
        23
    );
}

#[test]
fn dedupe_removes_repeats_and_counts_them() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  in: { type: tcp, address: 127.0.0.1:0, pipeline: once }
pipelines:
  once:
    - { type: dedupe, fields: [id], max_events: 1000 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    // 2,000 lines over 300 ids: each id once, in the order first seen.
    let ids: Vec<u64> = (0..2000u64).map(|i| (i * 37 + i / 7) % 300).collect();
    send_lines(
        &s,
        "in",
        ids.iter()
            .enumerate()
            .map(|(i, id)| format!(r#"{{"id":{id},"i":{i}}}"#)),
    );
    let out = s.dir.join("out.ndjson");
    let mut first: Vec<u64> = Vec::new();
    for id in &ids {
        if !first.contains(id) {
            first.push(*id);
        }
    }
    wait_until("every id once", Duration::from_secs(20), || {
        read_lines(&out).len() == first.len()
    });
    let got: Vec<u64> = read_lines(&out)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["id"].as_u64())
        .collect();
    assert_eq!(got, first);
    let m = s.metrics();
    assert_eq!(
        m.get(r#"sluice_pipeline_dropped_events_total{pipeline="once",function="dedupe",reason="dedupe"}"#)
            as u64,
        2000 - first.len() as u64
    );
}

/// `persist: true`: what a dedupe remembers survives a restart (saved at
/// shutdown into the data directory, read at the next start), so the ids
/// seen before the restart are still removed after it.
#[test]
fn a_persistent_dedupe_remembers_across_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{}"
sources:
  in: {{ type: tcp, address: 127.0.0.1:0 }}
pipelines:
  once:
    - {{ type: dedupe, fields: [id], persist: true }}
routes:
  - {{ name: all, destination: out, pipeline: once }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#,
        data.path().display()
    );
    let ids = |r: std::ops::Range<u32>| r.map(|i| format!(r#"{{"id":{i}}}"#));
    let mut first = Sluice::start(&config);
    send_lines(&first, "in", ids(0..100));
    let out = first.dir.join("out.ndjson");
    wait_until("100 written", Duration::from_secs(20), || {
        read_lines(&out).len() == 100
    });
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(20)).success());

    let second = Sluice::start(&config);
    send_lines(&second, "in", ids(50..150));
    let dropped = || {
        second.metrics().get(
            r#"sluice_pipeline_dropped_events_total{pipeline="once",function="dedupe",reason="dedupe"}"#,
        ) as u64
    };
    wait_until("100 through", Duration::from_secs(20), || {
        second
            .metrics()
            .series(r#"sluice_pipeline_received_events_total{pipeline="once"}"#)
            == Some(100.0)
    });
    assert_eq!(dropped(), 50, "50..100 were seen before the restart");
    let out = second.dir.join("out.ndjson");
    wait_until("50 written", Duration::from_secs(20), || {
        read_lines(&out).len() == 50
    });
    let got: Vec<u64> = read_lines(&out)
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["id"].as_u64())
        .collect();
    assert_eq!(got, (100..150).collect::<Vec<_>>());
}

fn aggregate_config(window: &str, extra_route: bool) -> String {
    config_with(
        "count",
        &format!(
            "    - {{ type: aggregate, window: {window}, group_by: [host], metrics: [{{ name: events, type: count }}] }}"
        ),
        extra_route,
    )
}

/// An aggregate's open window across reloads: one that keeps the function
/// keeps the window (the counts go on); one that changes it has the old
/// configuration send what it held; shutdown sends the rest. Every event
/// is in exactly one count, and the books balance.
#[test]
fn aggregate_windows_survive_reloads_and_shutdown() {
    let mut s = Sluice::start(&aggregate_config("1h", false));
    let out = s.dir.join("out.ndjson");
    let received = |s: &Sluice, n: f64| {
        s.metrics()
            .series(r#"sluice_pipeline_received_events_total{pipeline="count"}"#)
            == Some(n)
    };
    send_lines(&s, "in", lines("a", 10));
    wait_until("10 in", Duration::from_secs(20), || received(&s, 10.0));
    reload(&s, &aggregate_config("1h", true));
    wait_until("reloaded", Duration::from_secs(20), || {
        s.status()["config"]["version"] == 2
    });
    send_lines(&s, "in", lines("a", 5));
    wait_until("15 in", Duration::from_secs(20), || received(&s, 15.0));
    assert!(read_lines(&out).is_empty(), "the hour is not over");

    // A changed window: the old aggregate's 15 go out with the old config.
    reload(&s, &aggregate_config("2h", true));
    wait_until("the old window sent", Duration::from_secs(20), || {
        read_lines(&out).len() == 1
    });
    send_lines(&s, "in", lines("b", 7));
    wait_until("22 in", Duration::from_secs(20), || received(&s, 22.0));
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(20)).success());
    let counts: Vec<(String, u64)> = read_lines(&out)
        .iter()
        .map(|l| {
            let m: Value = serde_json::from_str(l).expect("json");
            assert_eq!(m["name"], "events");
            assert_eq!(m["type"], "counter");
            (
                m["tags"]["host"].as_str().unwrap_or_default().to_string(),
                m["value"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [("a".to_string(), 15), ("b".to_string(), 7)],
        "kept across the first reload, sent at the second, the rest at shutdown"
    );
}
