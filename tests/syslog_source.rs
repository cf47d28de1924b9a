//! The `syslog` source with the senders users have: `logger` (RFC 5424 and
//! RFC 3164, UDP and TCP, newline and octet-counted frames), rsyslog and
//! syslog-ng forwarding over TLS with client certificates.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::real_peer::{PeerProcess, free_ports};
use common::tls::Pki;
use common::{Sluice, read_lines, wait_until};
use serde_json::Value;

fn to_file(sources: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
{sources}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#
    ))
}

fn events(s: &Sluice) -> Vec<Value> {
    read_lines(&s.dir.join("out.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("every event is JSON"))
        .collect()
}

fn find<'a>(got: &'a [Value], message: &str) -> &'a Value {
    got.iter()
        .find(|e| e["message"] == message)
        .unwrap_or_else(|| panic!("no event with message {message:?}: {got:#?}"))
}

fn logger(args: &[&str]) {
    let ok = Command::new("logger")
        .args(args)
        .status()
        .expect("run logger (bsdutils)");
    assert!(ok.success(), "logger {args:?}");
}

/// What a user checks first: every way `logger` sends arrives parsed, a
/// line that is not syslog arrives whole and is counted, and the books add up.
#[test]
fn logger_in_both_formats_over_udp_and_tcp() {
    let s = to_file(
        "  udp: { type: syslog, mode: udp, address: 127.0.0.1:0 }\n  tcp: { type: syslog, address: 127.0.0.1:0 }",
    );
    let (udp, tcp) = (
        s.source("udp").port().to_string(),
        s.source("tcp").port().to_string(),
    );
    let at = |port: &str, extra: &[&str]| {
        let mut a = vec!["-n", "127.0.0.1", "-P"];
        a.push(if port == udp { &udp } else { &tcp });
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let send = |port: &str, extra: &[&str]| {
        let a = at(port, extra);
        logger(&a.iter().map(String::as_str).collect::<Vec<_>>());
    };
    send(
        &udp,
        &[
            "-d",
            "--rfc5424",
            "-i",
            "-t",
            "web",
            "-p",
            "local0.err",
            "--msgid",
            "REQ",
            "--sd-id",
            "req@32473",
            "--sd-param",
            "id=\"42\"",
            "udp 5424",
        ],
    );
    send(
        &udp,
        &[
            "-d",
            "--rfc3164",
            "-t",
            "cron",
            "-p",
            "cron.info",
            "udp 3164",
        ],
    );
    send(
        &tcp,
        &[
            "-T",
            "--rfc5424",
            "-t",
            "db",
            "-p",
            "daemon.warning",
            "tcp 5424 newline",
        ],
    );
    send(
        &tcp,
        &[
            "-T",
            "--octet-count",
            "--rfc5424",
            "-t",
            "db",
            "-p",
            "daemon.notice",
            "tcp 5424 octet\nsecond line",
        ],
    );
    send(
        &tcp,
        &[
            "-T",
            "--rfc3164",
            "-t",
            "app",
            "-p",
            "user.debug",
            "tcp 3164",
        ],
    );
    // Not syslog, by TCP and by UDP: kept, counted.
    let mut c = std::net::TcpStream::connect(s.source("tcp")).expect("connect");
    c.write_all(b"no priority here\n").expect("write");
    drop(c);
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .send_to(b"nor here", s.source("udp"))
        .expect("send");
    wait_until("seven events", Duration::from_secs(20), || {
        events(&s).len() == 7
    });
    let got = events(&s);
    let e = find(&got, "udp 5424");
    assert_eq!(
        (
            &e["appname"],
            &e["facility"],
            &e["severity"],
            &e["msgid"],
            &e["version"]
        ),
        (
            &"web".into(),
            &"local0".into(),
            &"err".into(),
            &"REQ".into(),
            &1.into()
        ),
        "{e}"
    );
    assert_eq!(e["req@32473"]["id"], "42", "{e}");
    assert_eq!(e["source_ip"], "127.0.0.1");
    assert!(e["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
    assert!(e["procid"].is_i64(), "{e}");
    let e = find(&got, "udp 3164");
    assert_eq!(
        (&e["appname"], &e["facility"], &e["severity"]),
        (&"cron".into(), &"cron".into(), &"info".into()),
        "{e}"
    );
    assert!(e.get("version").is_none(), "{e}");
    let e = find(&got, "tcp 5424 newline");
    assert_eq!(
        (&e["facility"], &e["severity"]),
        (&"daemon".into(), &"warning".into()),
        "{e}"
    );
    // Octet counting carries a newline inside one message.
    let e = find(&got, "tcp 5424 octet\nsecond line");
    assert_eq!(e["severity"], "notice", "{e}");
    let e = find(&got, "tcp 3164");
    assert_eq!(
        (&e["appname"], &e["severity"]),
        (&"app".into(), &"debug".into()),
        "{e}"
    );
    for e in &got {
        assert!(
            e["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.contains('T')),
            "{e}"
        );
    }
    let plain = find(&got, "no priority here");
    assert!(plain.get("facility").is_none(), "{plain}");
    find(&got, "nor here");
    let m = s.metrics();
    assert_eq!(m.source_events("udp") + m.source_events("tcp"), 7);
    assert_eq!(
        m.get(r#"sluice_source_unparsed_events_total{source="udp"}"#)
            + m.get(r#"sluice_source_unparsed_events_total{source="tcp"}"#),
        2.0
    );
    m.books_balance("out").expect("books");
}

/// An oversize message is skipped and counted; the connection goes on.
#[test]
fn an_oversize_message_is_counted_and_the_next_arrives() {
    let s = to_file("  tcp: { type: syslog, address: 127.0.0.1:0, max_line_bytes: 100 }");
    let mut c = std::net::TcpStream::connect(s.source("tcp")).expect("connect");
    let long = "x".repeat(500);
    c.write_all(format!("<13>{long}\n300 <13>{}\n<13>after\n", "y".repeat(296)).as_bytes())
        .expect("write");
    drop(c);
    wait_until("the message after", Duration::from_secs(20), || {
        events(&s).len() == 1
    });
    assert_eq!(events(&s)[0]["message"], "after");
    wait_until("two oversize", Duration::from_secs(10), || {
        s.metrics().rejected("tcp", "oversize") == 2
    });
}

fn mtls(pki: &Pki) -> String {
    format!(
        r#"tls: {{ cert_file: "{}", key_file: "{}", client_ca_file: "{}" }}"#,
        pki.path("server.pem"),
        pki.path("server.key"),
        pki.path("ca.pem")
    )
}

/// RFC 5425 from the two syslog daemons users run, each with its client
/// certificate: rsyslog (gtls, octet-counted RFC 5424) and syslog-ng (its
/// `syslog()` driver over TLS); and the same daemons over plain TCP in
/// their traditional format (newline-framed RFC 3164); a client with no
/// certificate is refused and counted.
#[test]
fn rsyslog_and_syslog_ng_forward_over_tcp_and_mutual_tls() {
    let pki = Pki::new();
    let s = to_file(&format!(
        "  sys: {{ type: syslog, address: 127.0.0.1:0, {} }}\n  plain: {{ type: syslog, address: 127.0.0.1:0 }}",
        mtls(&pki)
    ));
    let port = s.source("sys").port();
    let plain = s.source("plain").port();
    let dir = tempfile::tempdir().expect("tempdir");

    // rsyslog, fed by `logger` through its own socket.
    let rsock = dir.path().join("rsyslog.sock");
    let rconf = dir.path().join("rsyslog.conf");
    std::fs::create_dir_all(dir.path().join("work")).expect("mkdir");
    std::fs::write(
        &rconf,
        format!(
            r#"global(
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}"
  workDirectory="{work}"
)
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}")
action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid"
       TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{plain}" protocol="tcp" StreamDriver="ptcp"
       template="RSYSLOG_ForwardFormat")
"#,
            ca = pki.path("ca.pem"),
            cert = pki.path("client.pem"),
            key = pki.path("client.key"),
            work = dir.path().join("work").display(),
            socket = rsock.display(),
        ),
    )
    .expect("write rsyslog.conf");
    let lease = free_ports::<1>();
    let rsyslog = PeerProcess::start(
        "rsyslog",
        Box::new(()),
        &[lease.ports[0].to_string(), rconf.display().to_string()],
        None,
    );

    // syslog-ng, fed the same way.
    let nsock = dir.path().join("syslog-ng.sock");
    let nconf = dir.path().join("syslog-ng.conf");
    std::fs::write(
        &nconf,
        format!(
            r#"@version: 3.38
options {{ stats-level(0); }};
source s_in {{ unix-dgram("{socket}"); }};
destination d_sluice {{
  syslog("127.0.0.1" port({port}) transport("tls")
    tls(ca-file("{ca}") cert-file("{cert}") key-file("{key}") peer-verify(required-trusted)));
}};
destination d_plain {{ network("127.0.0.1" port({plain}) transport("tcp")); }};
log {{ source(s_in); destination(d_sluice); destination(d_plain); }};
"#,
            socket = nsock.display(),
            ca = pki.path("ca.pem"),
            cert = pki.path("client.pem"),
            key = pki.path("client.key"),
        ),
    )
    .expect("write syslog-ng.conf");
    let syslog_ng = PeerProcess::start(
        "syslog-ng",
        Box::new(()),
        &[lease.ports[0].to_string(), nconf.display().to_string()],
        None,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(rsock.exists() && nsock.exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslog and syslog-ng did not open their sockets within 30 s\nrsyslog: {}\nsyslog-ng: {}",
            rsyslog.output(),
            syslog_ng.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..10 {
        for (sock, who) in [(&rsock, "rsyslog"), (&nsock, "syslog-ng")] {
            logger(&[
                "-u",
                &sock.display().to_string(),
                "-t",
                "pay",
                "-p",
                "local3.warning",
                &format!("{who} over tls {i}"),
            ]);
        }
    }
    wait_until("40 messages", Duration::from_secs(60), || {
        events(&s).len() >= 40
    });
    let got = events(&s);
    assert_eq!(got.len(), 40, "{got:#?}\nsyslog-ng: {}", syslog_ng.output());
    for i in 0..10 {
        for who in ["rsyslog", "syslog-ng"] {
            let text = format!("{who} over tls {i}");
            let both: Vec<&Value> = got
                .iter()
                .filter(|e| e["message"] == text.as_str())
                .collect();
            assert_eq!(both.len(), 2, "{text}, over TLS and over TCP: {got:#?}");
            for e in &both {
                assert_eq!(
                    (&e["appname"], &e["facility"], &e["severity"]),
                    (&"pay".into(), &"local3".into(), &"warning".into()),
                    "{e}"
                );
                assert!(e["hostname"].as_str().is_some_and(|h| !h.is_empty()), "{e}");
            }
            // RFC 5424 over TLS, the traditional format over plain TCP.
            assert_eq!(
                both.iter().filter(|e| e["version"] == 1).count(),
                1,
                "{who}: {both:#?}"
            );
        }
    }
    let m = s.metrics();
    assert_eq!((m.source_events("sys"), m.source_events("plain")), (20, 20));
    // A client with no certificate: refused, counted, nothing arrives.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-no_ign_eof",
            "-CAfile",
            &pki.path("ca.pem"),
            "-connect",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut i) = c.stdin.take() {
                let _ = i.write_all(b"<13>no certificate\n");
            }
            c.wait()
        });
    assert!(out.is_ok(), "run openssl s_client");
    wait_until(
        "the refused handshake counted",
        Duration::from_secs(20),
        || s.metrics().rejected("sys", "tls") >= 1,
    );
    assert_eq!(events(&s).len(), 40);
    for source in ["sys", "plain"] {
        let unparsed = format!(r#"sluice_source_unparsed_events_total{{source="{source}"}}"#);
        assert_eq!(s.metrics().get(&unparsed), 0.0);
    }
}
