//! Metric pipelines against the real peers a Graphite, InfluxDB or StatsD
//! user runs: Graphite's carbon 1.1 (read back with `whisper-fetch`),
//! InfluxDB 1.x (InfluxQL), Etsy StatsD 0.9 (its admin interface) and
//! collectd 5 (its write_http plugin feeding sluice). Each test starts its own
//! peer through `scripts/peers` and checks what the peer stored, and sluice's
//! counters.

mod common;

use std::time::Duration;

use common::real_peer::{Carbon, Influx, Statsd, collectd, http_request};
use common::{Sluice, wait_until};
use serde_json::{Value, json};

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn post(s: &Sluice, events: &[Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let (status, answer) = http_request(s.source("in"), "POST", "/", body.as_bytes());
    assert_eq!(status, 200, "sluice answered {status}: {answer}");
}

/// `secs` as RFC 3339 at a UTC offset of `hours`, with `fraction` appended
/// to the seconds (`".250"`).
fn rfc3339(secs: i64, hours: i32, fraction: &str) -> String {
    let tz = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_hours(hours as i8).unwrap());
    let z = jiff::Timestamp::from_second(secs).unwrap().to_zoned(tz);
    let offset = if hours == 0 {
        "Z".to_string()
    } else {
        z.strftime("%:z").to_string()
    };
    format!("{}{fraction}{offset}", z.strftime("%Y-%m-%dT%H:%M:%S"))
}

fn sluice_to(destinations: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
shutdown_timeout: 5s
sources:
  in: {{ type: http, address: 127.0.0.1:0 }}
routes: [{{ name: all, destination: out }}]
destinations:
{destinations}
"#
    ))
}

fn graphite_out(carbon: &Carbon, metric: &str) -> String {
    format!(
        r#"
  out:
    type: tcp
    address: "{}"
    encoding: graphite
    metric: {metric}
    batch: {{ timeout: 50ms }}
"#,
        carbon.line
    )
}

#[test]
fn graphite_stores_every_time_form_at_its_instant() {
    let carbon = Carbon::start();
    let s = sluice_to(&graphite_out(
        &carbon,
        "{ name: name, value: v, timestamp: ts }",
    ));
    let base = now_s() - 7200; // two hours ago: inside the retention, not "now"
    let forms: Vec<Value> = vec![
        json!(base),
        json!(base * 1000 + 123),
        json!(base * 1_000_000 + 123_456),
        json!(base * 1_000_000_000 + 123_456_789),
        json!(format!("{base}")),
        json!(base as f64 + 0.75),
        json!(rfc3339(base, 0, "")),
        json!(rfc3339(base, 2, "")),
        json!(rfc3339(base, 2, ".250")),
        json!(rfc3339(base, -5, ".999999999")),
        json!(rfc3339(base, 0, "").replace('T', "t").replace('Z', "z")),
        json!(rfc3339(base, 2, "").replace("+02:00", "+0200")),
    ];
    let mut events: Vec<Value> = forms
        .iter()
        .enumerate()
        .map(|(i, ts)| json!({"name": format!("times.f{i}"), "v": i, "ts": ts}))
        .collect();
    // Not times: counted, never written at "now".
    events.push(json!({"name": "times.bad", "v": 1, "ts": "yesterday"}));
    events.push(json!({"name": "times.bad", "v": 1, "ts": -5}));
    post(&s, &events);
    for (i, ts) in forms.iter().enumerate() {
        let points = carbon.wait_points(&format!("times.f{i}"), 1);
        assert_eq!(points, vec![(base, i as f64)], "time form {ts}");
    }
    wait_until(
        "the two unreadable times counted",
        Duration::from_secs(10),
        || {
            let m = s.metrics();
            m.dropped("out", "unencodable") == 2
                && m.dest("sluice_destination_sent_events_total", "out") == forms.len() as u64
        },
    );
    assert!(carbon.points("times.bad").is_empty());
}

#[test]
fn graphite_gets_no_empty_tags() {
    let carbon = Carbon::start();
    let s = sluice_to(&graphite_out(
        &carbon,
        "{ name: name, value: v, timestamp: ts, tags: [host, dc] }",
    ));
    let t = now_s() - 60;
    post(
        &s,
        &[
            json!({"name": "cpu.load", "v": 1, "ts": t, "host": "", "dc": "eu"}),
            json!({"name": "cpu.load", "v": 2, "ts": t, "host": "web1", "dc": "eu"}),
            json!({"name": "mem.used", "v": 3, "ts": t, "host": ""}),
        ],
    );
    assert_eq!(carbon.wait_points("cpu.load;dc=eu", 1), vec![(t, 1.0)]);
    assert_eq!(
        carbon.wait_points("cpu.load;dc=eu;host=web1", 1),
        vec![(t, 2.0)]
    );
    assert_eq!(carbon.wait_points("mem.used", 1), vec![(t, 3.0)]);
    let said = carbon.process.output();
    assert!(
        !said.contains("may not be empty") && !said.contains("Error parsing"),
        "carbon refused a line:\n{said}"
    );
}

#[test]
fn collectd_value_lists_reach_graphite_as_named_metrics() {
    let carbon = Carbon::start();
    // The example a user copies, with the peers' addresses put in.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/examples/collectd-to-graphite.yaml"
    ))
    .unwrap();
    let lease = common::real_peer::free_ports::<1>();
    let listen = lease.ports[0];
    let s = Sluice::start_with(&example, |cmd| {
        cmd.env("CARBON_ADDRESS", carbon.line.to_string())
            .env("COLLECTD_LISTEN", format!("127.0.0.1:{listen}"))
            .env("SLUICE_API", "127.0.0.1:0");
    });
    let _collectd = collectd(&format!("http://127.0.0.1:{listen}/collectd"));
    for ds in ["shortterm", "midterm", "longterm"] {
        let points = carbon.wait_points(&format!("sluice-test.load.load.{ds}"), 1);
        assert!(
            points.iter().all(|(_, v)| (0.0..1000.0).contains(v)),
            "{ds}: {points:?}"
        );
    }
    // Interface counters are derives sent as rates: their first reading is
    // `[null, null]`, counted unencodable, never written as 0; later ones
    // arrive as rx and tx.
    carbon.wait_points("sluice-test.interface-lo.if_octets.rx", 1);
    carbon.wait_points("sluice-test.interface-lo.if_octets.tx", 1);
    let m = s.metrics();
    assert!(
        m.dropped("graphite", "unencodable") >= 1,
        "first derive readings counted"
    );
    assert!(
        carbon
            .points("sluice-test.interface-lo.if_octets.rx")
            .iter()
            .all(|(_, v)| *v >= 0.0),
        "no reading written from a null"
    );
    wait_until(
        "every value list sent or counted",
        Duration::from_secs(10),
        || {
            let m = s.metrics();
            let events = m.get("sluice_destination_events_total{destination=\"graphite\"}") as u64;
            events > 0
                && events
                    == m.dest("sluice_destination_sent_events_total", "graphite")
                        + m.dropped("graphite", "unencodable")
        },
    );
}

#[test]
fn statsd_gets_no_empty_tags() {
    let statsd = Statsd::start();
    let s = sluice_to(&format!(
        r#"
  out:
    type: udp
    address: "{}"
    encoding: statsd
    metric: {{ name: name, value: v, tags: [host], type: g }}
"#,
        statsd.udp
    ));
    post(
        &s,
        &[
            json!({"name": "api.up", "v": 3, "host": ""}),
            json!({"name": "api.lat", "v": 2.5, "host": "web1"}),
        ],
    );
    wait_until("statsd has both gauges", Duration::from_secs(10), || {
        statsd.value("gauges", "api.up").as_deref() == Some("3")
            && statsd.value("gauges", "api.lat;host=web1").as_deref() == Some("2.5")
    });
    assert_eq!(
        statsd.value("counters", "statsd.bad_lines_seen").as_deref(),
        Some("0")
    );
}

/// `log_to_metric` into real StatsD with no `metric:` mapping: each event's
/// counter and gauge arrive typed as the metric events say (`|c`, `|g`),
/// tagged, and StatsD saw no bad line.
#[test]
fn log_to_metric_reaches_statsd_typed_with_no_mapping() {
    let statsd = Statsd::start();
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: http, address: 127.0.0.1:0, pipeline: metrics }}
pipelines:
  metrics:
    - type: log_to_metric
      metrics:
        - {{ type: counter, field: status, name: responses, tags: {{ status: "{{{{ status }}}}" }} }}
        - {{ type: gauge, field: queue, name: queue_depth }}
routes: [{{ name: all, destination: out }}]
destinations:
  out: {{ type: udp, address: "{}", encoding: statsd }}
"#,
        statsd.udp
    ));
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"status": if i % 3 == 0 { 500 } else { 200 }, "queue": i}))
        .collect();
    post(&s, &events);
    wait_until(
        "statsd counted every response",
        Duration::from_secs(10),
        || {
            statsd.value("counters", "responses;status=200").as_deref() == Some("20")
                && statsd.value("counters", "responses;status=500").as_deref() == Some("10")
                // A name that is a JavaScript identifier is printed unquoted.
                && statsd.admin("gauges").contains("queue_depth: 29")
        },
    );
    assert_eq!(
        statsd.value("counters", "statsd.bad_lines_seen").as_deref(),
        Some("0")
    );
}

fn influx_out(influx: &Influx, db: &str, metric: &str, extra: &str) -> String {
    format!(
        r#"
  out:
    type: http
    url: "http://{}/write?db={db}&precision=ns"
    encoding: influx
    metric: {metric}
    batch: {{ max_events: 200, timeout: 200ms }}
{extra}
"#,
        influx.http
    )
}

#[test]
fn influx_keeps_every_time_exactly_and_integer_fields_integer() {
    let influx = Influx::start();
    influx.create_database("t");
    // Another writer made `value` an integer field.
    assert_eq!(influx.write("t", "ints value=1i 1000").0, 204);
    let s = sluice_to(&influx_out(
        &influx,
        "t",
        "{ name: name, value: v, timestamp: ts, tags: [host] }",
        "",
    ));
    let ns = 1_796_155_200_123_456_789_i64;
    let mut events: Vec<Value> = (0..10)
        .map(|i| json!({"name": "ns", "v": i, "ts": ns + i, "host": "a"}))
        .collect();
    events.push(json!({"name": "ms", "v": 1.5, "ts": 1_796_155_200_123_i64}));
    events.push(json!({"name": "us", "v": 1.5, "ts": 1_796_155_200_123_456_i64}));
    events.push(json!({"name": "rfc", "v": 1.5, "ts": "2026-12-01T22:00:00.250+02:00"}));
    events.push(json!({"name": "rfc", "v": 2.5, "ts": "2026-12-01t20:00:01z"}));
    events.push(json!({"name": "ints", "v": 7, "ts": 2000}));
    post(&s, &events);
    let rows = influx.wait_rows("t", "SELECT value FROM ns", 10);
    let times: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(
        times,
        (0..10).map(|i| ns + i).collect::<Vec<_>>(),
        "ten points 1 ns apart stay ten"
    );
    let time_of = |m: &str, n: usize| -> Vec<i64> {
        influx
            .wait_rows("t", &format!("SELECT value FROM {m}"), n)
            .iter()
            .map(|r| r[0].as_i64().unwrap())
            .collect()
    };
    assert_eq!(time_of("ms", 1), vec![1_796_155_200_123_000_000]);
    assert_eq!(time_of("us", 1), vec![1_796_155_200_123_456_000]);
    assert_eq!(
        time_of("rfc", 2),
        vec![1_796_155_200_250_000_000, 1_796_155_201_000_000_000]
    );
    let ints = influx.wait_rows("t", "SELECT value FROM ints", 2);
    assert_eq!(
        ints[1][1],
        json!(7),
        "an integer literal is written as an integer"
    );
    wait_until("all sent", Duration::from_secs(10), || {
        s.metrics()
            .dest("sluice_destination_sent_events_total", "out")
            == events.len() as u64
    });
}

#[test]
fn influx_typed_fields_several_per_point() {
    let influx = Influx::start();
    influx.create_database("t");
    let s = sluice_to(&influx_out(
        &influx,
        "t",
        r#"
      name: name
      timestamp: ts
      tags: [host]
      fields:
        temp: { field: t, type: float }
        count: { field: c, type: integer }
        label: { field: l, type: string }
        up: { field: u }"#,
        "",
    ));
    post(
        &s,
        &[
            json!({"name": "dev", "ts": 1000, "host": "a", "t": 21, "c": "42", "l": "say \"hi\"", "u": true}),
            // A fraction cannot be an integer: counted, not truncated.
            json!({"name": "dev", "ts": 2000, "host": "a", "t": 1, "c": 1.5}),
        ],
    );
    wait_until("one sent, one unencodable", Duration::from_secs(10), || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "out") == 1
            && m.dropped("out", "unencodable") == 1
    });
    let rows = influx.wait_rows("t", "SELECT temp, count, label, up FROM dev", 1);
    assert_eq!(
        rows[0],
        json!([1_000_000_000_000_i64, 21, 42, "say \"hi\"", true])
            .as_array()
            .unwrap()
            .clone()
    );
    let keys = influx.query("t", "SHOW FIELD KEYS FROM dev");
    let types: Vec<(String, String)> = keys["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()))
        .collect();
    // (`type: unsigned` is not here: InfluxDB 1.x refuses `7u`, 2.x takes it.)
    for (key, want) in [
        ("temp", "float"),
        ("count", "integer"),
        ("label", "string"),
        ("up", "boolean"),
    ] {
        assert!(
            types.contains(&(key.to_string(), want.to_string())),
            "{key}: {types:?}"
        );
    }
}

/// InfluxDB where another writer made `pw`'s `value` an integer, and
/// sluice writing to it with a dead-letter file.
fn partial_write_setup() -> (Influx, Sluice) {
    let influx = Influx::start();
    influx.create_database("t");
    assert_eq!(influx.write("t", "pw value=0i 1").0, 204);
    let s = sluice_to(&influx_out(
        &influx,
        "t",
        "{ name: name, value: v, timestamp: ts }",
        "    dead_letter: dlq\n  dlq:\n    type: file\n    path: \"{dir}/dead.ndjson\"",
    ));
    (influx, s)
}

#[test]
fn influx_partial_write_counts_and_dead_letters_the_refused_point() {
    let (influx, s) = partial_write_setup();
    let events: Vec<Value> = (1..=100)
        .map(|i| {
            let v = if i == 42 { json!(1.5) } else { json!(i) };
            json!({"name": "pw", "v": v, "ts": 1000 + i, "seq": i})
        })
        .collect();
    post(&s, &events);
    wait_until("99 sent, 1 dead-lettered", Duration::from_secs(20), || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "out") == 99
            && m.dropped("out", "dead_letter") == 1
    });
    let count = influx.wait_rows("t", "SELECT count(value) FROM pw", 1);
    assert_eq!(count[0][1], json!(100), "99 points and the other writer's");
    let file = s.dir.join("dead.ndjson");
    wait_until("the dead letter written", Duration::from_secs(10), || {
        file.exists() && !common::read_lines(&file).is_empty()
    });
    let dead = common::read_lines(&file);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let v: Value = serde_json::from_str(&dead[0]).unwrap();
    assert_eq!(v["event"]["seq"], 42);
    assert_eq!(v["dead_letter"]["status"], 400);
    assert_eq!(v["dead_letter"]["code"], "partial write");
    let error = v["dead_letter"]["error"].as_str().unwrap();
    assert!(error.contains("field type conflict"), "{error}");
}

#[test]
fn influx_partial_write_it_cannot_attribute_is_counted_not_guessed() {
    let (influx, s) = partial_write_setup();
    // Two conflicts of different types: InfluxDB names only the first.
    let events: Vec<Value> = (1..=100)
        .map(|i| {
            let v = match i {
                10 => json!(1.5),
                20 => json!("text"),
                _ => json!(i),
            };
            json!({"name": "pw", "v": v, "ts": 1000 + i})
        })
        .collect();
    post(&s, &events);
    wait_until("98 sent, 2 rejected", Duration::from_secs(20), || {
        let m = s.metrics();
        m.dest("sluice_destination_sent_events_total", "out") == 98
            && m.dropped("out", "rejected") == 2
    });
    let count = influx.wait_rows("t", "SELECT count(value) FROM pw", 1);
    assert_eq!(count[0][1], json!(99));
    assert!(
        !s.dir.join("dead.ndjson").exists()
            || common::read_lines(&s.dir.join("dead.ndjson")).is_empty()
    );
}

/// `aggregate` into real Graphite and InfluxDB with no `metric:` mapping:
/// 3,000 events over three hosts in one 10 s window of event time become,
/// per host, an exact count and sum, and a p99 within the sketch's 1 %;
/// the pipeline's books say where every event went.
#[test]
fn aggregate_windows_reach_graphite_and_influx_exactly() {
    let carbon = Carbon::start();
    let influx = Influx::start();
    influx.create_database("agg");
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
shutdown_timeout: 5s
sources:
  in: {{ type: http, address: 127.0.0.1:0, pipeline: agg }}
pipelines:
  agg:
    - type: aggregate
      window: 10s
      time_field: ts
      lateness: 0s
      group_by: [host]
      metrics:
        - {{ name: requests, type: count }}
        - {{ name: bytes, type: sum, field: size }}
        - {{ name: latency, type: percentile, field: ms, percentiles: [99] }}
routes:
  - {{ name: graphite, destination: graphite, final: false }}
  - {{ name: influx, destination: influx }}
destinations:
  graphite: {{ type: tcp, address: "{}", encoding: graphite, batch: {{ timeout: 50ms }} }}
  influx: {{ type: http, url: "http://{}/write?db=agg&precision=ns", encoding: influx, batch: {{ timeout: 50ms }} }}
"#,
        carbon.line, influx.http
    ));
    // A closed window a minute ago: it goes out on the pipeline's clock.
    let start = (now_s() - 60) / 10 * 10;
    let end = start + 10;
    let mut events = Vec::new();
    let mut ms_of: Vec<Vec<i64>> = vec![Vec::new(); 3];
    for i in 0..3000i64 {
        let host = i % 3;
        let ms = 1 + (i * 7919) % 997;
        ms_of[host as usize].push(ms);
        events.push(
            json!({"host": format!("h{host}"), "ts": start * 1000 + i * 3, "size": i, "ms": ms}),
        );
    }
    for chunk in events.chunks(500) {
        post(&s, chunk);
    }
    for h in 0..3i64 {
        let sum: i64 = (0..3000).filter(|i| i % 3 == h).sum();
        let mut ms = ms_of[h as usize].clone();
        ms.sort_unstable();
        let p99 = ms[(0.99 * (ms.len() as f64 - 1.0)) as usize] as f64;
        assert_eq!(
            carbon.wait_points(&format!("requests;host=h{h}"), 1),
            vec![(end, 1000.0)]
        );
        assert_eq!(
            carbon.wait_points(&format!("bytes;host=h{h}"), 1),
            vec![(end, sum as f64)]
        );
        let got = carbon.wait_points(&format!("latency_p99;host=h{h}"), 1);
        assert!((got[0].1 - p99).abs() <= 0.01 * p99, "{got:?} vs {p99}");
        let rows = influx.wait_rows(
            "agg",
            &format!("SELECT value FROM requests WHERE host = 'h{h}'"),
            1,
        );
        assert_eq!(rows, vec![vec![json!(end * 1_000_000_000), json!(1000)]]);
        let rows = influx.wait_rows(
            "agg",
            &format!("SELECT value FROM bytes WHERE host = 'h{h}'"),
            1,
        );
        assert_eq!(rows[0][1].as_f64(), Some(sum as f64));
    }
    let m = s.metrics();
    assert_eq!(
        m.get(r#"sluice_pipeline_dropped_events_total{pipeline="agg",function="aggregate",reason="aggregated"}"#),
        3000.0
    );
    assert_eq!(
        m.get(r#"sluice_pipeline_emitted_events_total{pipeline="agg",function="aggregate"}"#),
        9.0
    );
    assert_eq!(
        m.get(r#"sluice_pipeline_sent_events_total{pipeline="agg"}"#),
        9.0
    );
}
