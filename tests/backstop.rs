//! The HTTP source's Backstop endpoints in front of Graphite's carbon, as a
//! Backstop user would swap sluice in: collectd's own write_http posting to
//! `/collectd`, applications posting to `/publish/<prefix>`, the webhooks,
//! and the answers Backstop gives to what it refuses.

mod common;

use std::time::Duration;

use common::real_peer::{Carbon, collectd_as, free_ports};
use common::{Sluice, http_request, read_lines, wait_until};
use serde_json::Value;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HTTP source with `backstop:` feeding carbon (and a file, to compare
/// what was sent with what carbon stored).
fn backstop_to(carbon: &Carbon, listen: u16, backstop: &str) -> Sluice {
    backstop_with(carbon, listen, backstop, "")
}

/// `backstop_to` with more of the source's settings (`extra`, one line).
fn backstop_with(carbon: &Carbon, listen: u16, backstop: &str, extra: &str) -> Sluice {
    Sluice::start(&format!(
        r#"api: {{address: "127.0.0.1:0"}}
data_dir: "{{dir}}/data"
sources:
  backstop:
    type: http
    address: "127.0.0.1:{listen}"
    path: /events
    backstop: {backstop}
    {extra}
routes:
  - {{name: copy, destination: sent, final: false}}
  - {{name: carbon, destination: carbon}}
destinations:
  carbon:
    type: tcp
    address: "{}"
    encoding: graphite
    metric: {{name: metric, value: value, timestamp: measure_time}}
    backpressure: persistent_queue
  sent: {{type: file, path: "{{dir}}/sent.ndjson"}}
"#,
        carbon.line
    ))
}

fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    http_request(([127, 0, 0, 1], port).into(), "POST", path, headers, body)
}

#[test]
fn collectd_and_publish_reach_carbon_under_backstops_names() {
    let carbon = Carbon::start();
    let lease = free_ports::<1>();
    let port = lease.ports[0];
    let s = backstop_to(&carbon, port, "{prefixes: [custom, note]}");
    // collectd's own write_http, as a Backstop user configures it; the host
    // spells its dots out, as Backstop allows.
    let _collectd = collectd_as(
        &format!("http://127.0.0.1:{port}/collectd"),
        "prodDOTeu.rack7.web1",
    );
    let base = "mitt.prod-eu.rack7.web1";
    for m in ["load.1m", "load.5m", "load.15m"] {
        carbon.wait_points(&format!("{base}.{m}"), 2);
    }
    // Every stored point is a value collectd sent, at the second it was
    // taken, under the name Backstop gives it.
    let sent: Vec<Value> = read_lines(&s.dir.join("sent.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for m in ["load.1m", "load.5m", "load.15m"] {
        let name = format!("{base}.{m}");
        for (t, v) in carbon.points(&name) {
            let found = sent.iter().any(|e| {
                e["metric"] == name.as_str()
                    && e["measure_time"].as_f64().map(|x| x as i64) == Some(t)
                    && e["value"].as_f64().is_some_and(|x| (x - v).abs() < 1e-9)
            });
            assert!(
                found,
                "{name} {t} {v} is not a point collectd sent: {sent:?}"
            );
        }
    }

    // A custom metric, one object or an array of them.
    let t = now_s() - 30;
    let (code, body) = post(
        port,
        "/publish/custom",
        &[],
        &format!(r#"{{"metric":"app.requests","value":42,"measure_time":{t}}}"#),
    );
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, _) = post(
        port,
        "/publish/note",
        &[],
        &format!(
            r#"[{{"metric":"deploys","value":1,"measure_time":{t}}},{{"metric":"rollbacks","value":0,"measure_time":{t}}}]"#
        ),
    );
    assert_eq!(code, 200);
    assert_eq!(
        carbon.wait_points("custom.app.requests", 1),
        vec![(t, 42.0)]
    );
    assert_eq!(carbon.wait_points("note.deploys", 1), vec![(t, 1.0)]);
    assert_eq!(carbon.wait_points("note.rollbacks", 1), vec![(t, 0.0)]);

    // What Backstop refuses, answered as Backstop answers it, and counted.
    // (collectd's own first posts may have been refused already: its first
    // interface reading is a null, which Backstop calls missing.)
    let before = s.metrics();
    let refusals = [
        (
            "/publish/other",
            r#"{"metric":"a","value":1,"measure_time":1}"#,
            404,
            "unknown prefix",
        ),
        ("/publish/custom", "not json", 400, "JSON is required"),
        (
            "/publish/custom",
            r#"[{"metric":"a","value":1}]"#,
            400,
            "missing fields",
        ),
        (
            "/collectd",
            "[{\"host\":\"a.b.c\",\"plugin\":\"load\",\"values\":[1],\"time\":1}]",
            400,
            "missing fields",
        ),
    ];
    for (path, body, code, answer) in refusals {
        let got = post(port, path, &[], body);
        assert_eq!(got, (code, answer.to_string()), "{path} {body}");
    }
    let m = s.metrics();
    let delta = |reason| m.rejected("backstop", reason) - before.rejected("backstop", reason);
    assert_eq!(delta("bad_request"), 3);
    assert_eq!(delta("malformed"), 1);
    assert!(carbon.points("other.a").is_empty());
}

/// Without `backstop.users`, the source's own `auth` guards Backstop's
/// endpoints as it guards `path`: nothing reaches carbon without it.
#[test]
fn the_sources_auth_guards_the_backstop_endpoints() {
    let carbon = Carbon::start();
    let lease = free_ports::<1>();
    let port = lease.ports[0];
    let s = backstop_with(
        &carbon,
        port,
        "{prefixes: [custom]}",
        "auth: { bearer: tok-3141 }",
    );
    let t = now_s() - 60;
    let body = |v: u32| format!(r#"{{"metric":"guarded","value":{v},"measure_time":{t}}}"#);
    let good = ("Authorization", "Bearer tok-3141");
    let wrong = ("Authorization", "Bearer tok-2718");
    assert_eq!(post(port, "/publish/custom", &[], &body(1)).0, 401);
    assert_eq!(post(port, "/publish/custom", &[wrong], &body(2)).0, 401);
    assert_eq!(post(port, "/collectd", &[], "[]").0, 401);
    assert_eq!(post(port, "/github", &[], "{}").0, 401);
    assert_eq!(post(port, "/pagerduty", &[], "{}").0, 401);
    assert_eq!(post(port, "/events", &[], "{}").0, 401);
    assert_eq!(post(port, "/publish/custom", &[good], &body(3)).0, 200);
    wait_until(
        "the authorised point in carbon",
        Duration::from_secs(30),
        || !carbon.points("custom.guarded").is_empty(),
    );
    let values: Vec<f64> = carbon
        .points("custom.guarded")
        .iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(values, vec![3.0], "only the authorised point: {values:?}");
    assert_eq!(s.metrics().rejected("backstop", "unauthorized"), 6);
}

#[test]
fn credentials_the_api_key_and_the_webhooks() {
    let carbon = Carbon::start();
    let lease = free_ports::<1>();
    let port = lease.ports[0];
    let s = backstop_to(
        &carbon,
        port,
        r#"{prefixes: [custom], api_key: k123, users: ["alice:s3cret", "bob:hunter2"]}"#,
    );
    let t = now_s() - 60;
    let body = format!(r#"{{"metric":"x","value":7,"measure_time":{t}}}"#);
    // alice:s3cret, bob:hunter2, and a wrong password.
    let alice = ("Authorization", "Basic YWxpY2U6czNjcmV0");
    let bob = ("Authorization", "Basic Ym9iOmh1bnRlcjI=");
    let wrong = ("Authorization", "Basic YWxpY2U6bm9wZQ==");
    let (code, answer) = post(port, "/publish/custom", &[], &body);
    assert_eq!((code, answer.as_str()), (401, "Not authorized\n"));
    assert_eq!(post(port, "/publish/custom", &[wrong], &body).0, 401);
    assert_eq!(post(port, "/publish/custom", &[alice], &body).0, 200);
    assert_eq!(post(port, "/publish/custom", &[bob], &body).0, 200);
    // /health stays open, as in Backstop.
    let (code, health) = http_request(([127, 0, 0, 1], port).into(), "GET", "/health", &[], "");
    assert_eq!((code, health.as_str()), (200, r#"{"health":"ok"}"#));

    // Every name under the API key (Hosted Graphite).
    assert_eq!(carbon.wait_points("k123.custom.x", 1), vec![(t, 7.0)]);

    // A GitHub push: one annotation per commit. The times are an hour ago
    // (carbon keeps two days), written in UTC and at +01:00.
    let day = now_s() - 3600;
    let at = jiff::Timestamp::from_second(day).expect("a time");
    let utc = at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let plus_one = at
        .to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(1)))
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let payload = serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"name": "shop"},
        "commits": [
            {"id": "aa11", "timestamp": utc, "author": {"email": "dev@example.com"}},
            {"id": "bb22", "timestamp": plus_one, "author": {"email": "ops@example.org"}},
        ],
    });
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload.to_string())
        .finish();
    let form_type = ("Content-Type", "application/x-www-form-urlencoded");
    assert_eq!(post(port, "/github", &[alice, form_type], &form).0, 200);
    assert_eq!(
        carbon.wait_points("k123.github.shop.refs.heads.main.dev-example-com.aa11", 1),
        vec![(day, 1.0)]
    );
    assert_eq!(
        carbon.wait_points("k123.github.shop.refs.heads.main.ops-example-org.bb22", 1),
        vec![(day, 1.0)]
    );

    // A PagerDuty incident from nagios.
    let incident = format!(
        "service[name]=nagios&trigger_summary_data[HOSTNAME]=db1.example&trigger_summary_data[SERVICEDESC]=diskspace&created_on={utc}"
    );
    assert_eq!(
        post(port, "/pagerduty", &[alice, form_type], &incident).0,
        200
    );
    assert_eq!(
        carbon.wait_points("k123.alerts.nagios.db1_example.diskspace", 1),
        vec![(day, 1.0)]
    );
    let (code, answer) = post(
        port,
        "/pagerduty",
        &[alice, form_type],
        "service[name]=other",
    );
    assert_eq!((code, answer.as_str()), (400, "unknown alert"));

    wait_until("everything delivered", Duration::from_secs(10), || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "carbon") == 5
    });
    assert_eq!(s.metrics().rejected("backstop", "unauthorized"), 2);
}
