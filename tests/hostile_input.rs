//! Input chosen to hurt, through the real binary: a filter nested
//! thousands deep sent to the unauthenticated tap API, and events nested
//! hundreds of thousands deep sent to destinations that build a tree of
//! each event (`encoding: capnp`, OTLP). Each is a clear error or a
//! counted rejection; the process stays up and keeps delivering.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::receiver::Receiver;
use common::{Sluice, runtime, send_lines, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// A raw GET, so the test controls every byte of the request line.
fn get(addr: std::net::SocketAddr, path_and_query: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

#[test]
fn a_filter_nested_thousands_deep_is_refused_not_a_stack_overflow() {
    let s = Sluice::start(
        "api: { address: 127.0.0.1:0 }\nsources:\n  gen: { type: generator, rate: 100 }\nroutes:\n  - { name: all, destination: out }\ndestinations:\n  out: { type: blackhole }\n",
    );
    // The issue's request: 2,000 `!` then `x`, and a paren storm.
    for filter in [
        format!("{}x", "!".repeat(2000)),
        format!("{}x", "%28".repeat(50_000)),
    ] {
        let (status, body) = get(s.api, &format!("/api/v1/tap?route=all&filter={filter}"));
        assert!(
            status == 400 || status == 414 || status == 431,
            "{status}: {}",
            &body[..body.len().min(300)]
        );
        if status == 400 {
            assert!(body.contains("nested more than"), "{body}");
        }
    }
    let (status, _) = get(s.api, "/health");
    assert_eq!(status, 200, "still up");
    // A deep filter in the configuration is an error at its line.
    let err = common::validate_refuses(
        "deep",
        &format!(
            "sources:\n  gen: {{ type: generator }}\nroutes:\n  - name: all\n    filter: '{}x'\n    destination: out\ndestinations:\n  out: {{ type: blackhole }}\n",
            "!".repeat(500)
        ),
    );
    assert!(
        err.contains(":5:") && err.contains("nested more than"),
        "{err}"
    );
}

#[test]
fn events_nested_too_deep_are_counted_unencodable_and_the_rest_delivered() {
    let rt = runtime();
    let capnp = rt.block_on(Receiver::start());
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  in: {{ type: tcp, address: 127.0.0.1:0, max_line_bytes: 4MiB }}
routes:
  - {{ name: all, destination: capnp }}
destinations:
  capnp: {{ type: http, url: "{}", encoding: capnp, batch: {{ timeout: 20ms }} }}
"#,
        capnp.url("/c")
    ));
    let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(300_000), "]".repeat(300_000));
    send_lines(
        &s,
        "in",
        [
            r#"{"seq":0}"#.to_string(),
            deep.clone(),
            r#"{"seq":1}"#.to_string(),
        ]
        .into_iter(),
    );
    wait_until("the shallow events delivered", WAIT, || {
        common::sent(&s, "capnp") == 2
    });
    let m = s.metrics();
    assert_eq!(m.dropped("capnp", "unencodable"), 1);
    let (status, _) = get(s.api, "/health");
    assert_eq!(status, 200);
}

#[test]
fn a_configuration_nested_thousands_deep_is_an_error_at_its_line() {
    for yaml in [
        format!(
            "sources:\n  gen: {{ type: generator, x: {}1{} }}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!(
            "sources:\n  gen:\n    x:\n{}",
            (0..3000)
                .map(|i| format!("{}- \n", " ".repeat(6 + i * 2)))
                .collect::<String>()
        ),
    ] {
        let err = common::validate_refuses("deep.yaml", &yaml);
        assert!(err.contains("deep.yaml:"), "an error at its place: {err}");
        assert!(!err.contains("overflow"), "{err}");
    }
}
