//! `sluice validate`: every example config is valid, and every class of
//! config error is reported as `file:line:column: message` naming the key or
//! route, with a non-zero exit.

mod common;

use std::path::Path;
use std::process::Command;

fn validate(path: &Path) -> (bool, String, String) {
    // `validate` reads TLS files: the examples name theirs through
    // SLUICE_CERT and SLUICE_KEY, here a pair made for the test.
    let pki = common::tls::Pki::new();
    let out = Command::new(common::BIN)
        .args(["validate", "--config"])
        .arg(path)
        .env_remove("NO_SUCH_VAR_FOR_SLUICE_TESTS")
        .env("SLUICE_CERT", pki.path("server.pem"))
        .env("SLUICE_KEY", pki.path("server.key"))
        .env("SLUICE_CA", pki.path("ca.pem"))
        .output()
        .expect("run sluice validate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("config/default.yaml")];
    for e in std::fs::read_dir(root.join("config/examples")).expect("config/examples exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            files.push(p);
        }
    }
    assert!(
        files.len() >= 5,
        "expected the example configs, found {files:?}"
    );
    for f in files {
        let (ok, stdout, stderr) = validate(&f);
        assert!(ok, "{} is invalid:\n{stderr}", f.display());
        assert!(stdout.contains(": ok"), "{stdout}");
        assert!(!stderr.contains("warning:"), "{stderr}");
    }
}

const BASE: &str = "sources:
  in:
    type: tcp
    address: 127.0.0.1:0
routes:
  - name: all
    destination: out
destinations:
  out:
    type: blackhole
";

#[test]
fn errors_name_file_line_column_and_key() {
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "unknown top-level key",
            format!("{BASE}bogus: 1\n"),
            ":11:1: ",
            "bogus: unknown field `bogus`",
        ),
        (
            "unknown key in a component",
            "sources:\n  in:\n    type: tcp\n    address: 127.0.0.1:0\n    colour: blue\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":5:5: ",
            "sources.in.colour: unknown field `colour`",
        ),
        (
            "unknown key in nested delivery settings",
            format!("{BASE}    batch:\n      max_events: 10\n      max_event: 3\n"),
            ":13:7: ",
            "destinations.out.batch.max_event: unknown field",
        ),
        (
            "wrong type (size)",
            "sources:\n  in:\n    type: tcp\n    address: 127.0.0.1:0\n    max_line_bytes: lots\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":5:21: ",
            "sources.in.max_line_bytes: `lots` is not a size",
        ),
        (
            "wrong type (number)",
            format!("{BASE}    request:\n      concurrency: many\n"),
            ":12:20: ",
            "destinations.out.request.concurrency",
        ),
        (
            "wrong type (address)",
            "sources:\n  in:\n    type: tcp\n    address: not-an-address\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":4:14: ",
            "sources.in.address",
        ),
        (
            "bad duration",
            format!("{BASE}shutdown_timeout: 5 fortnights\n"),
            ":11:19: ",
            "shutdown_timeout: unknown duration unit `fortnights`",
        ),
        (
            "missing required key",
            "sources:\n  in:\n    type: tcp\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":3:5: ",
            "sources.in: missing field `address`",
        ),
        (
            "unknown component type",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: kafkaa}\n".into(),
            ":7:15: ",
            "destination `out`: unknown type `kafkaa`",
        ),
        (
            "route names an unknown destination",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: nowhere\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":5:18: ",
            "route `all`: unknown destination `nowhere`",
        ),
        (
            "filter that does not compile (exact column inside the filter)",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: errors\n    filter: 'level == \"error\" && (status >= 500'\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":5:48: ",
            "route `errors`: filter: expected `)`",
        ),
        (
            "filter with a bad regex",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: re\n    filter: \"msg =~ /a(b/\"\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":5:21: ",
            "route `re`: filter: invalid regex",
        ),
        (
            "unmatched names an unknown destination",
            format!("{BASE}unmatched: elsewhere\n"),
            ":11:12: ",
            "unmatched: unknown destination `elsewhere`",
        ),
        (
            "unset environment variable",
            "sources:\n  in: {type: tcp, address: \"127.0.0.1:${NO_SUCH_VAR_FOR_SLUICE_TESTS}\"}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":2:39: ",
            "`NO_SUCH_VAR_FOR_SLUICE_TESTS` is not set",
        ),
        (
            "YAML syntax error",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0\nroutes: []\n".into(),
            ":3:7: ",
            "did not find expected",
        ),
        (
            "duplicate route names",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: a\n    destination: out\n  - name: a\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":6:11: ",
            "route `a` is defined twice",
        ),
        (
            "two sources on one port",
            "sources:\n  a: {type: tcp, address: 127.0.0.1:7001}\n  b: {type: http, address: 127.0.0.1:7001}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole}\n".into(),
            ":3:6: ",
            "source `b` listens on the same address as source `a`",
        ),
        (
            "invalid component setting",
            format!("{BASE}    rate: 0\n"),
            ":10:5: ",
            "destination `out`: rate must be at least 1",
        ),
        (
            "dead letter to an unknown destination",
            format!("{BASE}    dead_letter: nowhere\n"),
            ":10:5: ",
            "dead_letter names unknown destination `nowhere`",
        ),
        (
            "dead letter to itself",
            format!("{BASE}    dead_letter: out\n"),
            ":10:5: ",
            "dead_letter cannot be the destination itself",
        ),
        (
            "dead letters in a circle",
            format!("{BASE}    dead_letter: b\n  b:\n    type: blackhole\n    dead_letter: out\n"),
            ":10:5: ",
            "would go round in a circle",
        ),
        (
            "http with both url and endpoints",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: http\n    url: http://x:1/\n    endpoints: [{url: http://y:1/}]\n".into(),
            ":8:5: ",
            "set either `url` or `endpoints`",
        ),
        (
            "http with a bad url",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: http, url: \"ftp://x/\"}\n".into(),
            ":7:8: ",
            "must be http:// or https://",
        ),
        (
            "http endpoints all at weight 0",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: http\n    endpoints: [{url: \"http://a:1/\", weight: 0}]\n".into(),
            ":8:5: ",
            "every endpoint has weight 0",
        ),
        (
            "retry_on for a destination without status codes",
            format!("{BASE}    retry: {{ retry_on: [500] }}\n"),
            ":10:5: ",
            "which blackhole destinations do not have",
        ),
        (
            "a status rule that is not one",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: http\n    url: http://a:1/\n    retry: { retry_on: [5xx, \"!5xx\"] }\n".into(),
            ":10:30: ",
            "destinations.out.retry.retry_on[1]",
        ),
        (
            "tcp with a bad address",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: tcp, address: \"logs.example\"}\n".into(),
            ":7:8: ",
            "`logs.example` is not host:port",
        ),
        (
            "json_array on a stream",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: tcp, address: \"a:1\", encoding: json_array}\n".into(),
            ":7:8: ",
            "encoding `json_array` is not supported by tcp destinations (use one of: ndjson, raw,",
        ),
        (
            "compression on UDP",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: udp, address: \"a:1\", compression: gzip}\n".into(),
            ":7:8: ",
            "compression `gzip` is not supported by udp destinations (supported: none)",
        ),
        (
            "a batch limit above the protocol's",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: udp\n    address: \"a:1\"\n    batch:\n      max_event_bytes: 100KiB\n".into(),
            ":11:24: ",
            "batch.max_event_bytes: 102400 exceeds udp's limit of 65507",
        ),
        (
            "an output router rule to an unknown destination",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: r\ndestinations:\n  out: {type: blackhole}\n  r:\n    type: output_router\n    rules:\n      - {filter: 'true', destination: nowhere}\n".into(),
            ":11:39: ",
            "output router `r`: unknown destination `nowhere`",
        ),
        (
            "an output router filter that does not compile",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: r\ndestinations:\n  out: {type: blackhole}\n  r:\n    type: output_router\n    rules:\n      - {filter: 'a ==', destination: out}\n".into(),
            ":11:",
            "output router `r`: rule `0`: filter:",
        ),
        (
            "output routers in a circle",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: a\ndestinations:\n  a:\n    type: output_router\n    rules: [{destination: b}]\n  b:\n    type: output_router\n    rules: [{destination: a}]\n".into(),
            ":8:5: ",
            "routers send to each other in a circle",
        ),
        (
            "a dead letter to an output router",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out: {type: blackhole, dead_letter: r}\n  r:\n    type: output_router\n    rules: [{destination: out}]\n".into(),
            ":7:8: ",
            "dead_letter cannot be an output router",
        ),
        (
            "metric fields without a metric encoding",
            format!("{BASE}    metric: {{ name: n, value: v }}\n"),
            ":10:5: ",
            "`metric` applies only to the graphite, statsd and influx encodings",
        ),
        (
            "a metric field that is not a path",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: tcp\n    address: \"a:1\"\n    encoding: graphite\n    metric: { name: \"a b\", value: v }\n".into(),
            ":8:5: ",
            "metric.name: `a b`",
        ),
        (
            "an unknown statsd type",
            "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n    type: udp\n    address: \"a:1\"\n    encoding: statsd\n    metric: { name: n, value: v, type: counter }\n".into(),
            ":11:40: ",
            "destinations.out.metric.type: unknown variant `counter`",
        ),
        (
            "concurrency that is neither a number nor adaptive",
            format!("{BASE}    request: {{ concurrency: lots }}\n"),
            ":11:29: ",
            "expected a number or `adaptive`",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, yaml, position, message) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, yaml).unwrap();
        let (ok, _, stderr) = validate(&path);
        assert!(!ok, "{what}: validate accepted it");
        let expected = format!("{}{position}", path.display());
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&expected))
            .unwrap_or_else(|| panic!("{what}: expected `{expected}...` in:\n{stderr}"));
        assert!(
            line.contains(message),
            "{what}: expected `{message}` in `{line}`"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let yaml = "sources:\n  in: {type: tcp, address: 127.0.0.1:0}\nroutes:\n  - name: a\n    filter: 'x =='\n    destination: nope\n  - name: b\n    destination: out\ndestinations:\n  out: {type: blackhole}\nunmatched: gone\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, _, stderr) = validate(&path);
    assert!(!ok);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("multi.yaml:"))
        .collect();
    assert_eq!(errors.len(), 3, "{stderr}");
}

/// Five mistakes of different kinds — two key typos, a value of the wrong
/// kind, a host name where an address goes, a repeated id — and a TLS file
/// that is not there: each reported, once, at its line and column, in
/// words a user reads (no Rust type names, no parser settings), and
/// nothing reported about what only follows from them.
#[test]
fn validate_reports_every_mistake_of_a_file_at_once() {
    let yaml = r#"api: { address: 127.0.0.1:0 }
sources:
  in:
    type: tcp
    adress: 127.0.0.1:9000
  web:
    type: http
    address: localhost:8080
routes:
  - name: all
    destination: out
    filtr: 'true'
  - { name: tls, filter: 'secure == true', destination: tls_out }
destinations:
  out:
    type: http
    url: http://127.0.0.1:9/x
    batch: { max_events: -5 }
  out:
    type: blackhole
  tls_out:
    type: tcp
    address: 127.0.0.1:9
    tls: { ca_file: /nonexistent/ca.pem }
"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, _, stderr) = validate(&path);
    assert!(!ok);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("five.yaml:"))
        .collect();
    let expected = [
        ":5:5: sources.in.adress: unknown field `adress`",
        ":8:14: sources.web.address: expected an address as IP:PORT, not `localhost:8080` (host names are not looked up: write 127.0.0.1:8080",
        ":12:5: routes[0].filtr: unknown field `filtr`",
        ":18:26: destinations.out.batch.max_events: expected a whole number, 0 or more, not `-5`",
        ":19:3: `out` is given twice here; each key may appear once",
        ":22:5: destination `tls_out`: tls.ca_file /nonexistent/ca.pem",
    ];
    assert_eq!(errors.len(), expected.len(), "{stderr}");
    for (line, want) in errors.iter().zip(expected) {
        assert!(
            line.contains(want),
            "expected {want:?} in {line:?}\n{stderr}"
        );
    }
    for internal in [
        "invalid u64",
        "DuplicateKeyPolicy",
        ".value",
        "missing field",
    ] {
        assert!(!stderr.contains(internal), "{internal} leaked: {stderr}");
    }
}

/// Valid but not meant: printed as warnings (exit 0), or failing with
/// `--deny-warnings`.
#[test]
fn warnings_are_printed_and_deny_warnings_fails_on_them() {
    let yaml = "sources:\n  in: { type: tcp, address: 127.0.0.1:0 }\npipelines:\n  p:\n    - { type: eval, set: { a: \"1\" } }\nroutes:\n  - { name: all, destination: out }\n  - { name: never, destination: out }\ndestinations:\n  out: { type: blackhole }\n  spare: { type: blackhole }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (ok, stdout, stderr) = validate(&path);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(": ok"));
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": warning: "))
        .collect();
    assert_eq!(warnings.len(), 3, "{stderr}");
    assert!(
        warnings[0].contains("w.yaml:5:7: warning: pipeline `p`"),
        "{stderr}"
    );
    assert!(
        warnings[1].contains("w.yaml:8:13: warning: route `never` is never reached"),
        "{stderr}"
    );
    assert!(
        warnings[2].contains("w.yaml:11:10: warning: destination `spare`"),
        "{stderr}"
    );
    let out = Command::new(common::BIN)
        .args(["validate", "--deny-warnings", "--config"])
        .arg(&path)
        .output()
        .expect("run sluice validate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--deny-warnings"));
}

#[test]
fn run_refuses_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, format!("{BASE}bogus: 1\n")).unwrap();
    let out = Command::new(common::BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:11:1:"));
}

#[test]
fn the_binary_lists_its_destination_types() {
    let out = Command::new(common::BIN)
        .args(["destinations", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let types: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| {
        types
            .iter()
            .find(|t| t["type"] == name)
            .unwrap_or_else(|| panic!("no {name} in {types:?}"))
    };
    for name in ["http", "tcp", "udp", "file", "console", "blackhole"] {
        find(name);
    }
    assert_eq!(find("udp")["max_record_bytes"], 65507);
    assert_eq!(find("http")["retry_on"], true);
    assert_eq!(find("tcp")["defaults"]["concurrency"], 2);
    let version = Command::new(common::BIN).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(
        text.contains("destinations: ") && text.contains("http") && text.contains("output_router"),
        "{text}"
    );
}

/// `sluice schema`'s output, parsed.
fn schema() -> serde_json::Value {
    let out = Command::new(common::BIN)
        .arg("schema")
        .output()
        .expect("run sluice schema");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

/// A YAML config as JSON, `${VAR:-default}` resolved to its default.
fn as_json(text: &str) -> serde_json::Value {
    let text = sluice::config::interpolate::interpolate(text, |_| None).expect("interpolate");
    serde_saphyr::from_str(&text).expect("YAML")
}

#[test]
fn every_shipped_config_matches_the_json_schema_and_mistakes_do_not() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = schema();
    // The committed copy editors point at is the one this binary prints.
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("config/sluice.schema.json"))
            .expect("config/sluice.schema.json"),
    )
    .expect("committed schema is JSON");
    assert!(
        committed == schema,
        "config/sluice.schema.json is stale: run `cargo run -- schema > config/sluice.schema.json`"
    );
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut files = vec![root.join("config/default.yaml")];
    for e in std::fs::read_dir(root.join("config/examples")).expect("config/examples exists") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            files.push(p);
        }
    }
    for f in &files {
        let doc = as_json(&std::fs::read_to_string(f).unwrap());
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
    }
    // What `sluice validate` refuses, the schema refuses too.
    let mistakes = [
        BASE.replace("type: blackhole", "type: blackhole\n    batchh: {}"),
        BASE.replace(
            "type: blackhole",
            "type: http\n    url: http://x/\n    batch: {max_bytes: lots}",
        ),
        BASE.replace("type: blackhole", "type: blackholes"),
        BASE.replace(
            "address: 127.0.0.1:0",
            "address: 127.0.0.1:0\n    max_line_bytes: -1",
        ),
    ];
    for m in &mistakes {
        assert!(!validator.is_valid(&as_json(m)), "the schema took:\n{m}");
    }
}

/// What `validate` prints quotes no value from the environment and no
/// URL's password, even where the value is the error.
#[test]
fn validate_never_prints_a_secret() {
    let run = |name: &str, yaml: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).expect("write");
        let out = Command::new(common::BIN)
            .args(["validate", "--config"])
            .arg(&path)
            .env("PASS", "hunter2-pw")
            .env("SIZE_SECRET", "tok-9f8e7d")
            .output()
            .expect("run sluice validate");
        assert!(!out.status.success());
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in ["hunter2-pw", "tok-9f8e7d", "typed-in-pw"] {
            assert!(!printed.contains(secret), "{secret} printed: {printed}");
        }
        printed
    };
    let route = "routes:\n  - { name: all, destination: out }\n";
    let size = run(
        "size.yaml",
        &format!(
            "sources:\n  web: {{ type: http, address: 127.0.0.1:0, max_body_bytes: \"${{SIZE_SECRET}}\" }}\n{route}destinations:\n  out: {{ type: console }}\n"
        ),
    );
    assert!(
        size.contains("size.yaml:2:") && size.contains("<redacted>"),
        "{size}"
    );
    let urls = run(
        "urls.yaml",
        &format!(
            "sources:\n  web: {{ type: http, address: 127.0.0.1:0 }}\n{route}destinations:\n  out: {{ type: http, url: \"ftp://admin:${{PASS}}@files.example/x\" }}\n  typed: {{ type: http, url: \"ftp://admin:typed-in-pw@files.example/x\" }}\n"
        ),
    );
    // Still useful: each error at its line, the redacted value in place.
    assert!(urls.contains("urls.yaml:6:"), "{urls}");
    assert!(urls.contains("urls.yaml:7:"), "{urls}");
    assert!(
        urls.contains("ftp://admin:<redacted>@files.example/x"),
        "{urls}"
    );
}

/// A running sluice never logs, nor shows on its status API, a value
/// interpolated from the environment or a URL's password, even where a
/// log line quotes the URL (here the endpoint of a failed delivery).
#[test]
fn a_running_sluice_never_logs_a_secret() {
    use std::time::Duration;
    let s = common::Sluice::start_with(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  web: { type: http, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out:
    type: http
    url: "http://admin:${PASS}@127.0.0.1:1/${TOKEN}/in"
    retry: { initial_backoff: 50ms }
"#,
        |cmd| {
            cmd.env("PASS", "hunter2-pw").env("TOKEN", "tok-9f8e7d");
        },
    );
    let (status, _) = common::http_request(s.source("web"), "POST", "/", &[], "{\"a\":1}\n");
    assert_eq!(status, 200);
    common::wait_until(
        "the connection error logged, redacted",
        Duration::from_secs(30),
        || {
            s.logs()
                .iter()
                .any(|l| l["endpoint"] == "http://127.0.0.1:1/<redacted>/in")
        },
    );
    let status = common::http_get(s.api, "/api/v1/status");
    let logs = format!("{:?}", s.logs());
    for secret in ["hunter2-pw", "tok-9f8e7d"] {
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
        assert!(!status.contains(secret), "{secret} in the status: {status}");
    }
}
