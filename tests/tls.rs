//! TLS and mTLS on the sources and the API, with the clients users run:
//! curl, `openssl s_client` and the OpenTelemetry SDK. Certificates come
//! from a private CA made for each test (`common::tls::Pki`).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::tls::Pki;
use common::{Sluice, read_lines, wait_until};

/// `curl` over HTTPS, trusting the test CA; `extra` adds arguments (a client
/// certificate, a body). Never retries: a refused handshake is an answer.
fn curl(pki: &Pki, url: &str, extra: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", &pki.path("ca.pem")])
        .args(extra)
        .arg(url)
        .output()
        .expect("run curl (Debian package curl)")
}

fn with_client_cert(pki: &Pki) -> [String; 4] {
    [
        "--cert".into(),
        pki.path("client.pem"),
        "--key".into(),
        pki.path("client.key"),
    ]
}

fn text(o: &Output) -> String {
    format!(
        "status {} stdout `{}` stderr `{}`",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// sluice with `sources` (YAML lines under `sources:`), everything routed
/// to `{dir}/out.ndjson`.
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

/// A source's `tls:` block from `pki`'s server pair, requiring client
/// certificates from its CA if `mtls`.
fn server_tls(pki: &Pki, mtls: bool) -> String {
    let ca = if mtls {
        format!(r#", client_ca_file: "{}""#, pki.path("ca.pem"))
    } else {
        String::new()
    };
    format!(
        r#"tls: {{ cert_file: "{}", key_file: "{}"{ca} }}"#,
        pki.path("server.pem"),
        pki.path("server.key")
    )
}

fn lines_in(s: &Sluice) -> Vec<String> {
    let path = s.dir.join("out.ndjson");
    if path.exists() {
        read_lines(&path)
    } else {
        Vec::new()
    }
}

/// An HTTP source requiring client certificates: curl with one delivers,
/// curl without one and a plaintext client are refused, counted `tls` and
/// logged once per cause.
#[test]
fn an_https_source_under_mtls_takes_only_clients_with_a_certificate() {
    let pki = Pki::new();
    let s = to_file(&format!(
        "  web: {{ type: http, address: 127.0.0.1:0, {} }}",
        server_tls(&pki, true)
    ));
    let url = format!("https://{}/", s.source("web"));

    let cert = with_client_cert(&pki);
    let mut args: Vec<&str> = cert.iter().map(String::as_str).collect();
    args.extend(["-H", "content-type: application/json", "-d", r#"{"n":1}"#]);
    args.extend(["-w", "%{http_code}", "-o", "/dev/null"]);
    let ok = curl(&pki, &url, &args);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{}", text(&ok));
    wait_until("the event in the file", Duration::from_secs(20), || {
        lines_in(&s).iter().any(|l| l.contains(r#""n":1"#))
    });

    // No client certificate, twice: refused both times, logged once.
    for _ in 0..2 {
        let refused = curl(&pki, &url, &["-d", r#"{"n":2}"#]);
        assert!(!refused.status.success(), "{}", text(&refused));
    }
    // A plaintext client on the TLS port.
    let plain = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-d", r#"{"n":3}"#])
        .arg(format!("http://{}/", s.source("web")))
        .output()
        .expect("curl");
    assert!(!plain.status.success(), "{}", text(&plain));

    wait_until("three tls rejections", Duration::from_secs(20), || {
        s.metrics().rejected("web", "tls") == 3
    });
    // The count comes before the log line reaches the test's reader.
    let warning = "TLS handshake failed (logged once per cause; counted in sluice_source_rejected_total{reason=\"tls\"})";
    wait_until("a warning per cause", Duration::from_secs(20), || {
        s.log_records(warning).len() >= 2
    });
    let warned = s.log_records(warning);
    let causes: Vec<String> = warned
        .iter()
        .map(|r| r["cause"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(causes.len(), 2, "one warning per cause: {causes:?}");
    assert!(
        causes.iter().any(|c| c.contains("certificate")),
        "{causes:?}"
    );
    let lines = lines_in(&s);
    assert_eq!(
        lines.len(),
        1,
        "only the client with a certificate got in: {lines:?}"
    );
}

/// A TCP source over TLS, fed by `openssl s_client` as a syslog-over-TLS
/// sender would (TLS 1.2 forced, to show the floor is 1.2 and not 1.3).
#[test]
fn a_tcp_source_over_tls_takes_lines_from_openssl() {
    let pki = Pki::new();
    let s = to_file(&format!(
        "  tcp: {{ type: tcp, address: 127.0.0.1:0, {} }}",
        server_tls(&pki, false)
    ));
    let addr = s.source("tcp").to_string();
    for version in ["-tls1_2", "-tls1_3"] {
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-no_ign_eof",
                "-verify_return_error",
                version,
            ])
            .args(["-connect", &addr, "-CAfile", &pki.path("ca.pem")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run openssl s_client");
        let mut stdin = client.stdin.take().expect("stdin");
        for i in 0..100 {
            writeln!(stdin, r#"{{"version":"{version}","i":{i}}}"#).expect("write");
        }
        drop(stdin);
        let out = client.wait_with_output().expect("openssl");
        assert!(out.status.success(), "{}", text(&out));
    }
    wait_until("200 lines delivered", Duration::from_secs(20), || {
        lines_in(&s).len() == 200
    });
    assert_eq!(s.metrics().rejected("tcp", "tls"), 0);

    // A plaintext sender is refused and counted, and sends nothing through.
    common::send_lines(&s, "tcp", std::iter::once(r#"{"plain":true}"#.to_string()));
    wait_until(
        "the plaintext sender counted",
        Duration::from_secs(20),
        || s.metrics().rejected("tcp", "tls") == 1,
    );
    assert!(!lines_in(&s).iter().any(|l| l.contains("plain")));
}

/// A renewed certificate is served without a restart: the files are
/// replaced by ones from another CA, and clients trusting only the new CA
/// get in.
#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let (old, new) = (Pki::new(), Pki::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
    std::fs::copy(old.path("server.pem"), &cert).expect("copy");
    std::fs::copy(old.path("server.key"), &key).expect("copy");
    let s = to_file(&format!(
        r#"  web: {{ type: http, address: 127.0.0.1:0, tls: {{ cert_file: "{}", key_file: "{}" }} }}"#,
        cert.display(),
        key.display(),
    ));
    let url = format!("https://{}/", s.source("web"));
    let post = |pki: &Pki, n: u32| curl(pki, &url, &["-fd", &format!(r#"{{"n":{n}}}"#)]);
    let before = post(&old, 1);
    assert!(before.status.success(), "{}", text(&before));

    // Renew: key first, then certificate, as a renewal tool might; the
    // moment in between (a key without its certificate) must not break
    // what is served.
    std::fs::copy(new.path("server.key"), &key).expect("copy");
    std::fs::copy(new.path("server.pem"), &cert).expect("copy");
    wait_until(
        "the new certificate served",
        Duration::from_secs(20),
        || post(&new, 2).status.success(),
    );
    let after = post(&old, 3);
    assert!(
        !after.status.success(),
        "the old CA still trusted: {}",
        text(&after)
    );
    wait_until("the renewal logged", Duration::from_secs(10), || {
        s.has_log("tls: certificate files changed, reloaded")
    });
    wait_until("both events delivered", Duration::from_secs(20), || {
        lines_in(&s).len() == 2
    });
}

/// The API over HTTPS with mTLS: `/health` with a client certificate;
/// without one, refused.
#[test]
fn the_api_serves_https_and_requires_client_certificates() {
    let pki = Pki::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:{port}, {} }}
sources:
  gen: {{ type: generator, rate: 10 }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#,
        server_tls(&pki, true)
    ));
    let url = format!("https://127.0.0.1:{port}/health");
    let cert = with_client_cert(&pki);
    let cert: Vec<&str> = cert.iter().map(String::as_str).collect();
    let ok = curl(&pki, &url, &cert);
    assert!(ok.status.success(), "{}", text(&ok));
    let metrics = curl(&pki, &format!("https://127.0.0.1:{port}/metrics"), &cert);
    assert!(
        String::from_utf8_lossy(&metrics.stdout).contains("sluice_source_events_total"),
        "{}",
        text(&metrics)
    );
    let refused = curl(&pki, &url, &[]);
    assert!(!refused.status.success(), "{}", text(&refused));
    // The refusal is logged by the handshake's own task, maybe after curl
    // has its answer.
    common::wait_until(
        "the handshake failure logged",
        Duration::from_secs(10),
        || {
            s.has_log("TLS handshake failed (logged once per cause; counted in sluice_source_rejected_total{reason=\"tls\"})")
        },
    );
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(30)).success());
}

/// The OpenTelemetry SDK exports over gRPC and HTTP to an OTLP source under
/// mTLS, presenting its client certificate from the standard variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_sdk_exports_to_an_otlp_source_over_mtls() {
    let pki = Pki::new();
    let tls = server_tls(&pki, true);
    let s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  otel: {{ type: otlp, grpc_address: 127.0.0.1:0, {tls} }}
  otelhttp: {{ type: otlp, http_address: 127.0.0.1:0, {tls} }}
routes:
  - {{ name: logs, filter: '_otlp == "log"', destination: out }}
destinations:
  out: {{ type: file, path: "{{dir}}/out.ndjson" }}
"#
    ));
    let env = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.path("ca.pem")),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.path("client.pem"),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.path("client.key")),
    ];
    for (protocol, source) in [("grpc", "otel"), ("http", "otelhttp")] {
        let endpoint = format!("https://{}", s.source(source));
        let out = common::otlp::sdk_with_env(&[protocol, &endpoint, "50"], &env).await;
        assert_eq!(out["logs"], true, "{protocol}: {out}");
    }
    wait_until("100 log records", Duration::from_secs(30), || {
        lines_in(&s).len() == 100
    });
    assert_eq!(s.metrics().rejected("otel", "tls"), 0);
    assert_eq!(s.metrics().rejected("otelhttp", "tls"), 0);
}

/// `sluice validate` reads the files: a missing one and a key that is not
/// the certificate's are errors at the `tls` line, naming the file.
#[test]
fn validate_checks_the_certificate_files() {
    let (pki, other) = (Pki::new(), Pki::new());
    let missing = common::validate_refuses(
        "missing.yaml",
        &format!(
            "sources:\n  web:\n    type: http\n    address: 127.0.0.1:0\n    tls: {{ cert_file: /nonexistent/s.pem, key_file: \"{}\" }}\nroutes:\n  - {{ name: all, destination: out }}\ndestinations:\n  out: {{ type: console }}\n",
            pki.path("server.key")
        ),
    );
    assert!(
        missing.contains("missing.yaml:") && missing.contains("/nonexistent/s.pem"),
        "{missing}"
    );
    let mismatched = common::validate_refuses(
        "mismatched.yaml",
        &format!(
            "api:\n  tls: {{ cert_file: \"{}\", key_file: \"{}\" }}\n",
            pki.path("server.pem"),
            other.path("server.key")
        ),
    );
    assert!(
        mismatched.contains("mismatched.yaml:2:") && mismatched.contains("api.tls"),
        "{mismatched}"
    );
}

/// rsyslog (Debian's, with rsyslog-gnutls) forwards over TLS with its own
/// client certificate to a TCP source under mTLS, octet-counted as RFC 5425
/// has it: what `logger` wrote arrives.
#[test]
fn rsyslog_forwards_over_mtls_to_a_tcp_source() {
    let pki = Pki::new();
    let s = to_file(&format!(
        "  sys: {{ type: tcp, address: 127.0.0.1:0, framing: octet_counting, {} }}",
        server_tls(&pki, true)
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("log.sock");
    let config = dir.path().join("rsyslog.conf");
    std::fs::create_dir_all(dir.path().join("work")).expect("mkdir");
    std::fs::write(
        &config,
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
"#,
            ca = pki.path("ca.pem"),
            cert = pki.path("client.pem"),
            key = pki.path("client.key"),
            work = dir.path().join("work").display(),
            socket = socket.display(),
            port = s.source("sys").port(),
        ),
    )
    .expect("write rsyslog.conf");
    let rsyslogd = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&config)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsyslogd (Debian packages rsyslog and rsyslog-gnutls: scripts/peers install)");
    let _stop = KillOnDrop(rsyslogd);
    wait_until("rsyslogd's socket", Duration::from_secs(20), || {
        socket.exists()
    });
    for i in 0..20 {
        let sent = Command::new("logger")
            .arg("-u")
            .arg(&socket)
            .arg(format!("over mtls {i}"))
            .status()
            .expect("run logger (bsdutils)");
        assert!(sent.success());
    }
    wait_until("20 messages from rsyslog", Duration::from_secs(30), || {
        lines_in(&s).len() == 20
    });
    let lines = lines_in(&s);
    for i in 0..20 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("over mtls {i}\\n"))),
            "message {i} missing: {lines:?}"
        );
    }
    assert_eq!(s.metrics().rejected("sys", "tls"), 0);
}

/// Kills a peer process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS sender that never reads (as syslog daemons do) and closes while
/// sluice still holds its data unread (a full `block` destination): every
/// line it wrote arrives. TLS 1.3 session tickets would sit unread in the
/// sender's socket, its close would send a reset, and the kernel here would
/// discard what sluice had not read: sluice sends none on raw TCP.
#[test]
fn a_sender_that_never_reads_loses_nothing_when_it_closes() {
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, pki_types};
    let pki = Pki::new();
    let mut s = Sluice::start(&format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
sources:
  tcp: {{ type: tcp, address: 127.0.0.1:0, {} }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: console, queue: {{ max_events: 100 }} }}
"#,
        server_tls(&pki, false)
    ));
    let n = 100_000u64;
    let addr = s.source("tcp");
    common::runtime().block_on(async {
        let ca = pki_types::CertificateDer::from_pem_file(pki.path("ca.pem")).expect("ca");
        let mut roots = RootCertStore::empty();
        roots.add(ca).expect("root");
        let config = ClientConfig::builder_with_provider(std::sync::Arc::new(
            tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(pki_types::ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .expect("handshake");
        let mut block = String::new();
        for i in 0..n {
            block.push_str(&format!("{{\"seq\":{i}}}\n"));
        }
        // sluice stops reading once its lane is full: the rest waits in the
        // sockets' buffers when the sender closes.
        tokio::time::timeout(Duration::from_secs(5), tls.write_all(block.as_bytes()))
            .await
            .expect("the kernel's buffers take it all")
            .expect("write");
        tls.flush().await.expect("flush");
        tls.shutdown().await.expect("close");
    });
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    let read = common::count_stdout_lines(&mut s);
    wait_until(
        "every line the sender wrote",
        Duration::from_secs(30),
        || read.load(std::sync::atomic::Ordering::Relaxed) == n,
    );
}
