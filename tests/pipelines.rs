//! Pipelines through the binary: a syslog line parsed into fields,
//! reshaped by VRL, redacted and dropped by filter on its way from a TCP
//! source to a file, with a pipeline at each place one can be attached;
//! an nginx access log parsed and its health checks dropped; the books;
//! and config errors at their line and column.

mod common;

use std::time::Duration;

use common::{Sluice, read_lines, send_lines, validate_refuses, wait_until};
use serde_json::{Value, json};

fn events(path: &std::path::Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// What every pipeline's books must say: received + emitted = sent + dropped.
fn books(m: &common::Metrics, pipeline: &str) -> (u64, u64, u64, u64) {
    let sum = |name: &str| -> u64 {
        let prefix = format!("{name}{{pipeline=\"{pipeline}\"");
        m.0.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (
        sum("sluice_pipeline_received_events_total"),
        sum("sluice_pipeline_emitted_events_total"),
        sum("sluice_pipeline_sent_events_total"),
        sum("sluice_pipeline_dropped_events_total"),
    )
}

#[test]
fn syslog_lines_become_redacted_splunk_style_events() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  syslog: { type: tcp, address: 127.0.0.1:0, pipeline: parse_syslog }
pipelines:
  parse_syslog:
    - { type: parse, format: syslog }
  clean:
    - { type: drop, filter: 'severity == "debug"' }
    - { type: mask, field: message, pattern: '\b\d{13,16}\b', replace: '<card>' }
    - type: remap
      source: |
        .time = to_unix_timestamp(parse_timestamp!(.timestamp, "%+"))
        .host = del(.hostname)
        .sourcetype = "syslog"
        .event = { "message": del(.message), "app": del(.appname), "severity": del(.severity) }
        del(.timestamp)
        del(.facility)
        del(.procid)
  stamp:
    - { type: remap, source: '.index = "main"' }
routes:
  - { name: all, destination: out, pipeline: clean }
destinations:
  out: { type: file, path: "{dir}/out.ndjson", pipeline: stamp }
"#,
    );
    send_lines(
        &s,
        "syslog",
        [
            "<134>1 2026-12-06T10:00:00Z web-1 checkout 4242 - - paid with 4111111111111111 ok",
            "<135>Dec  6 10:00:01 web-2 cron[77]: debug noise",
            "<134>1 2026-12-06T10:00:02Z web-1 checkout - - - visa 5500000000000004 declined",
            "<134>Dec  6 10:00:03 web-3 sshd[1]: Accepted publickey for deploy",
        ]
        .into_iter()
        .map(String::from),
    );
    let out = s.dir.join("out.ndjson");
    wait_until("three events written", Duration::from_secs(20), || {
        read_lines(&out).len() == 3
    });
    let got = events(&out);
    assert_eq!(
        got[0],
        json!({
            "time": 1_796_551_200,
            "host": "web-1",
            "sourcetype": "syslog",
            "index": "main",
            "version": 1,
            "event": { "message": "paid with <card> ok", "app": "checkout", "severity": "info" },
        })
    );
    assert_eq!(got[1]["event"]["message"], "visa <card> declined");
    assert_eq!(got[2]["host"], "web-3");
    assert_eq!(got[2]["event"]["app"], "sshd");

    let m = s.metrics();
    for p in ["parse_syslog", "clean", "stamp"] {
        let (received, emitted, sent, dropped) = books(&m, p);
        assert_eq!(received + emitted, sent + dropped, "{p}'s books");
    }
    assert_eq!(books(&m, "parse_syslog"), (4, 0, 4, 0));
    assert_eq!(books(&m, "clean"), (4, 0, 3, 1));
    assert_eq!(
        m.get(r#"sluice_pipeline_dropped_events_total{pipeline="clean",function="drop",reason="filter"}"#),
        1.0
    );
    assert_eq!(books(&m, "stamp"), (3, 0, 3, 0));
    // The status API shows the same books, by function.
    let status = s.status();
    let clean = status["pipelines"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "clean"))
        .cloned()
        .unwrap_or_else(|| panic!("no `clean` in {status}"));
    assert_eq!(
        (&clean["received"], &clean["sent"], &clean["dropped"]),
        (&json!(4), &json!(3), &json!(1))
    );
    assert_eq!(clean["functions"][0]["name"], "drop");
    assert_eq!(clean["functions"][0]["dropped"]["filter"], 1);
}

#[test]
fn nginx_access_logs_parsed_health_checks_dropped_and_enriched_from_csv() {
    let tables = tempfile::tempdir().expect("tempdir");
    let csv = tables.path().join("apis.csv");
    std::fs::write(
        &csv,
        "api,team,tier\norders,checkout,\"gold, 24x7\"\nusers,identity,silver\n",
    )
    .expect("write csv");
    let s = Sluice::start(
        &r#"
api: { address: 127.0.0.1:0 }
sources:
  nginx: { type: tcp, address: 127.0.0.1:0 }
pipelines:
  access:
    - { type: parse, format: clf, remove_field: true }
    - { type: drop, filter: 'path == "/health" || agent.startsWith("kube-probe")' }
    - { type: rename, fields: { host: client } }
    - { type: parse, field: path, format: regex, pattern: '^/api/(?P<api>\w+)', target: route }
    - { type: lookup, file: "CSV", field: route.api, column: api, target: owner }
    - type: eval
      filter: exists(status)
      set:
        status_class: "Math.floor(status / 100) + 'xx'"
        kb: "Math.round(size / 1024 * 10) / 10"
        team: "owner.team || 'unowned'"
      remove: [protocol, "ref*"]
routes:
  - { name: all, destination: out, pipeline: access }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#
        .replace("CSV", &csv.display().to_string()),
    );
    send_lines(
        &s,
        "nginx",
        [
            r#"10.0.0.7 - - [06/Dec/2026:10:00:00 +0000] "GET /api/orders?id=3 HTTP/1.1" 200 5120 "-" "curl/8.5.0""#,
            r#"10.0.0.9 - - [06/Dec/2026:10:00:01 +0000] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29""#,
            r#"10.0.0.8 - alice [06/Dec/2026:10:00:02 +0100] "POST /login HTTP/1.1" 302 0 "https://example.com/" "Mozilla/5.0""#,
            "not an access log line",
        ]
        .into_iter()
        .map(String::from),
    );
    let out = s.dir.join("out.ndjson");
    wait_until("three events written", Duration::from_secs(20), || {
        read_lines(&out).len() == 3
    });
    let got = events(&out);
    assert_eq!(got[0]["client"], "10.0.0.7");
    assert_eq!(got[0]["status"], 200);
    assert_eq!(got[0]["route"], json!({ "api": "orders" }));
    assert_eq!(got[0]["timestamp"], "2026-12-06T10:00:00Z");
    // Enriched from the CSV, then computed from it.
    assert_eq!(
        got[0]["owner"],
        json!({ "team": "checkout", "tier": "gold, 24x7" })
    );
    assert_eq!(got[0]["team"], "checkout");
    assert_eq!(got[0]["status_class"], "2xx");
    assert_eq!(got[0]["kb"], json!(5));
    assert!(got[0].get("protocol").is_none());
    assert_eq!(got[1]["user"], "alice");
    assert_eq!(got[1]["timestamp"], "2026-12-06T09:00:02Z");
    assert_eq!(got[1]["status_class"], "3xx");
    assert_eq!(got[1]["team"], "unowned");
    assert!(got[1].get("referrer").is_none());
    assert!(got[1].get("route").is_none());
    // The line that is not an access log goes on as it came, counted.
    assert_eq!(got[2], json!({ "message": "not an access log line" }));
    let m = s.metrics();
    assert_eq!(
        m.get(r#"sluice_pipeline_errors_total{pipeline="access",function="parse"}"#),
        1.0
    );
    // The second parse found no /api/ path in two of them.
    assert_eq!(
        m.get(r#"sluice_pipeline_errors_total{pipeline="access",function="parse_2"}"#),
        2.0
    );
    assert_eq!(books(&m, "access"), (4, 0, 3, 1));
}

#[test]
fn unroll_and_a_remap_that_returns_events_are_counted_as_emitted() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  web: { type: http, address: 127.0.0.1:0 }
pipelines:
  split:
    - { type: unroll, field: items, target: item }
    - type: remap
      source: |
        if .item == "skip" { abort }
        . = [., {"copy_of": .item}]
routes:
  - { name: all, destination: out, pipeline: split }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let (status, _) = common::http_request(
        s.source("web"),
        "POST",
        "/",
        &[],
        "{\"id\":1,\"items\":[\"a\",\"skip\",\"b\"]}\n{\"id\":2,\"items\":[]}\n",
    );
    assert_eq!(status, 200);
    let out = s.dir.join("out.ndjson");
    wait_until("four events written", Duration::from_secs(20), || {
        read_lines(&out).len() == 4
    });
    let got = events(&out);
    assert_eq!(got[0], json!({ "id": 1, "item": "a" }));
    assert_eq!(got[1], json!({ "copy_of": "a" }));
    assert_eq!(got[3], json!({ "copy_of": "b" }));
    let m = s.metrics();
    // In 2; unroll: +2 emitted, 1 dropped (the empty list); remap: 1
    // aborted, +2 emitted; out 4.
    assert_eq!(books(&m, "split"), (2, 4, 4, 2));
}

#[test]
fn pipeline_errors_are_reported_at_their_line_and_column() {
    let err = validate_refuses(
        "vrl.yaml",
        r#"sources:
  in: { type: tcp, address: 127.0.0.1:0, pipeline: missing }
pipelines:
  p:
    - type: remap
      source: |
        .a = 1
        .b = upcase(.c)
    - { type: parse, format: regex, pattern: '(' }
routes:
  - { name: all, destination: out, pipeline: nope }
destinations:
  out: { type: console }
"#,
    );
    // `upcase(.c)` on line 8, column 14, can fail unhandled: VRL says so.
    assert!(err.contains("vrl.yaml:8:14:"), "{err}");
    assert!(err.contains("pipeline `p`, function 1 (remap)"), "{err}");
    assert!(err.contains("error[E"), "{err}");
    assert!(err.contains("vrl.yaml:9:"), "{err}");
    assert!(err.contains("pattern:"), "{err}");
    assert!(err.contains("vrl.yaml:2:"), "{err}");
    assert!(
        err.contains("unknown pipeline `missing` (defined: p)"),
        "{err}"
    );
    assert!(err.contains("vrl.yaml:11:"), "{err}");
    assert!(err.contains("unknown pipeline `nope`"), "{err}");
    let unknown = validate_refuses(
        "kind.yaml",
        "sources:\n  in: { type: tcp, address: 127.0.0.1:0 }\npipelines:\n  p:\n    - { type: nope }\nroutes:\n  - { name: all, destination: out }\ndestinations:\n  out: { type: console }\n",
    );
    assert!(unknown.contains("kind.yaml:5:"), "{unknown}");
    assert!(unknown.contains("unknown type `nope`"), "{unknown}");
    let cribl = validate_refuses(
        "cribl.yaml",
        r#"sources:
  in: { type: tcp, address: 127.0.0.1:0 }
pipelines:
  p:
    - type: eval
      set: { kb: "bytes / " }
    - { type: lookup, file: /nonexistent/teams.csv, field: service }
routes:
  - { name: all, destination: out, pipeline: p }
destinations:
  out: { type: console }
"#,
    );
    assert!(cribl.contains("cribl.yaml:5:"), "{cribl}");
    assert!(cribl.contains("set.kb"), "{cribl}");
    assert!(cribl.contains("cribl.yaml:7:"), "{cribl}");
    assert!(cribl.contains("/nonexistent/teams.csv"), "{cribl}");
}

/// `sluice test` runs VRL programs from Vector's documentation with their
/// documented results, and a Cribl-style pipeline on real log lines; it
/// exits 0 when all pass, and 1 with a diff when one fails.
#[test]
fn sluice_test_runs_the_configs_tests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = r#"
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
pipelines:
  kv:
    - { type: remap, source: '. = parse_key_value!(.message)' }
  syslog:
    - { type: remap, source: '. = parse_syslog!(.message)' }
  redact:
    - { type: remap, source: '.text = redact(string!(.text), filters: [r''\d+''])' }
  access:
    - { type: parse, format: clf }
    - { type: drop, filter: 'path == "/health"' }
    - { type: remap, source: 'del(.message); del(.timestamp)' }
routes:
  - { name: errors, filter: 'level == "error"', destination: out }
destinations:
  out: { type: console }
tests:
  - name: parse_key_value (Vector docs)
    pipeline: kv
    input: { message: '@timestamp="Sun Jan 10 16:47:39 EST 2021" level=info msg="Stopping all fetchers" tag#production=stopping_fetchers id=ConsumerFetcherManager-1382721708341 module=kafka.consumer.ConsumerFetcherManager' }
    output:
      - { "@timestamp": "Sun Jan 10 16:47:39 EST 2021", level: info, msg: Stopping all fetchers, "tag#production": stopping_fetchers, id: ConsumerFetcherManager-1382721708341, module: kafka.consumer.ConsumerFetcherManager }
  - name: parse_syslog (Vector docs)
    pipeline: syslog
    input: '<13>1 2020-03-13T20:45:38.119Z dynamicwireless.name non 2426 ID931 [exampleSDID@32473 iut="3" eventSource= "Application" eventID="1011"] Try to override the THX port, maybe it will reboot the neural interface!'
    output:
      - appname: non
        exampleSDID@32473: { eventID: "1011", eventSource: Application, iut: "3" }
        facility: user
        hostname: dynamicwireless.name
        message: Try to override the THX port, maybe it will reboot the neural interface!
        msgid: ID931
        procid: 2426
        severity: notice
        timestamp: "2020-03-13T20:45:38.119Z"
        version: 1
  - name: redact (Vector docs)
    pipeline: redact
    input: '{"text":"my id is 123456"}'
    output: ['{"text":"my id is [REDACTED]"}']
  - name: health checks dropped
    pipeline: access
    inputs:
      - '10.0.0.9 - - [06/Dec/2026:10:00:01 +0000] "GET /health HTTP/1.1" 200 2 "-" "kube-probe/1.29"'
      - '10.0.0.7 - - [06/Dec/2026:10:00:00 +0000] "GET /api HTTP/1.1" 200 512'
    output:
      - { host: 10.0.0.7, method: GET, path: /api, protocol: HTTP/1.1, status: 200, size: 512 }
  - name: route filter
    route: errors
    inputs: ['{"level":"info"}', '{"level":"error"}']
    output: [{ level: error }]
"#;
    let path = dir.path().join("tests.yaml");
    std::fs::write(&path, yaml).expect("write");
    let run = |p: &std::path::Path| {
        std::process::Command::new(common::BIN)
            .args(["test", "--config"])
            .arg(p)
            .output()
            .expect("run sluice test")
    };
    let out = run(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("5 passed, 0 failed, of 5 tests"),
        "{stdout}"
    );

    let broken = yaml.replace("severity: notice", "severity: info");
    std::fs::write(&path, broken).expect("write");
    let out = run(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("test parse_syslog (Vector docs) ... failed"),
        "{stdout}"
    );
    assert!(stdout.contains(r#"-   "severity": "info","#), "{stdout}");
    assert!(stdout.contains(r#"+   "severity": "notice","#), "{stdout}");
    assert!(
        stdout.contains("4 passed, 1 failed, of 5 tests"),
        "{stdout}"
    );
}

/// Every shipped example with `tests:` passes them.
#[test]
fn the_examples_tests_pass() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut ran = 0;
    for e in std::fs::read_dir(&root).expect("config/examples") {
        let path = e.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        if !text.contains("\ntests:") {
            continue;
        }
        let out = std::process::Command::new(common::BIN)
            .args(["test", "--config"])
            .arg(&path)
            .output()
            .expect("run sluice test");
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 2, "only {ran} examples have tests");
}

/// Real syslog lines: rsyslog (Debian's) forwards what `logger` wrote over
/// TCP in both its RFC 5424 and its traditional (RFC 3164) formats, and a
/// source pipeline parses each into the same fields.
#[test]
fn rsyslog_lines_in_both_formats_are_parsed_into_fields() {
    let s = Sluice::start(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  sys: { type: tcp, address: 127.0.0.1:0, pipeline: syslog }
pipelines:
  syslog:
    - { type: parse, format: syslog }
    - type: eval
      set: { format: "exists(version) ? 'rfc5424' : 'rfc3164'" }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: file, path: "{dir}/out.ndjson" }
"#,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("log.sock");
    let config = dir.path().join("rsyslog.conf");
    std::fs::create_dir_all(dir.path().join("work")).expect("mkdir");
    let port = s.source("sys").port();
    std::fs::write(
        &config,
        format!(
            r#"global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp" template="RSYSLOG_ForwardFormat")
"#,
            work = dir.path().join("work").display(),
            socket = socket.display(),
        ),
    )
    .expect("write rsyslog.conf");
    let rsyslogd = std::process::Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&config)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run rsyslogd (Debian package rsyslog: scripts/peers install)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _stop = Kill(rsyslogd);
    wait_until("rsyslogd's socket", Duration::from_secs(20), || {
        socket.exists()
    });
    for (i, priority) in ["user.err", "local3.info", "auth.warning"]
        .iter()
        .enumerate()
    {
        let sent = std::process::Command::new("logger")
            .arg("-u")
            .arg(&socket)
            .args(["-t", "checkout", "-p", priority])
            .arg(format!("payment {i} declined for order {}", 1000 + i))
            .status()
            .expect("run logger (bsdutils)");
        assert!(sent.success());
    }
    let out = s.dir.join("out.ndjson");
    wait_until(
        "six events, each message in both formats",
        Duration::from_secs(30),
        || read_lines(&out).len() == 6,
    );
    let got = events(&out);
    for format in ["rfc5424", "rfc3164"] {
        let mine: Vec<&Value> = got.iter().filter(|e| e["format"] == format).collect();
        assert_eq!(mine.len(), 3, "{format}: {got:#?}");
        for (i, (facility, severity)) in [("user", "err"), ("local3", "info"), ("auth", "warning")]
            .iter()
            .enumerate()
        {
            let e = mine
                .iter()
                .find(|e| e["message"] == format!("payment {i} declined for order {}", 1000 + i))
                .unwrap_or_else(|| panic!("{format} message {i}: {mine:#?}"));
            assert_eq!(e["appname"], "checkout", "{e}");
            assert_eq!(e["facility"], *facility, "{e}");
            assert_eq!(e["severity"], *severity, "{e}");
            assert!(e["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
            assert!(
                e["timestamp"].as_str().is_some_and(|t| t.contains('T')),
                "{e}"
            );
        }
    }
    let m = s.metrics();
    assert_eq!(
        m.get(r#"sluice_pipeline_errors_total{pipeline="syslog",function="parse"}"#),
        0.0
    );
}
