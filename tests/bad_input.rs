//! Bad input never panics and never disappears silently: malformed JSON,
//! oversize lines and bodies, bad compression and bad credentials are
//! refused with the right answer, counted by reason, and the source keeps
//! serving. Real sockets, real topology, real files.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{read_lines, wait_until_async};
use serde_json::Value;
use sluice::topology::Running;
use tokio::io::AsyncWriteExt;

struct Setup {
    running: Running,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let yaml = format!(
            r#"
api: {{ enabled: false }}
sources:
  web:
    type: http
    address: 127.0.0.1:0
    path: /in
    max_body_bytes: 64KiB
    auth: {{ bearer: s3cret }}
  tcp:
    type: tcp
    address: 127.0.0.1:0
    max_line_bytes: 1KiB
    decoding: json
  udp:
    type: udp
    address: 127.0.0.1:0
    max_line_bytes: 1KiB
routes:
  - name: all
    destination: out
destinations:
  out: {{ type: file, path: "{d}/out.ndjson", batch: {{ timeout: 20ms }} }}
"#
        );
        Setup {
            running: common::topology(&yaml).await,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/in", self.running.source_addr("web").unwrap())
    }

    fn metric(&self, series: &str) -> u64 {
        common::Metrics(self.running.metrics().encode()).get(series) as u64
    }

    fn rejected(&self, source: &str, reason: &str) -> u64 {
        self.metric(&format!(
            "sluice_source_rejected_total{{source=\"{source}\",reason=\"{reason}\"}}"
        ))
    }

    fn accepted(&self, source: &str) -> u64 {
        self.metric(&format!(
            "sluice_source_events_total{{source=\"{source}\"}}"
        ))
    }

    async fn finish(self) -> Vec<String> {
        let reports = self.running.shutdown().await;
        assert!(
            reports.iter().all(|r| r.balanced() && r.sent == r.events),
            "{reports:?}"
        );
        read_lines(&self.dir.path().join("out.ndjson"))
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_bad_requests_counts_them_and_keeps_serving() {
    let s = Setup::new().await;
    let c = reqwest::Client::new();
    let post = |body: Vec<u8>| c.post(s.url()).bearer_auth("s3cret").body(body);

    // Credentials.
    let r = c.post(s.url()).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = c
        .post(s.url())
        .bearer_auth("wrong")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(s.rejected("web", "unauthorized"), 2);

    // Malformed lines are counted; the rest is accepted.
    let r = post(b"{\"n\":1}\n{nope\n{\"n\":2}\n".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    // Nothing valid at all: 400.
    let r = post(b"nope\nstill nope\n".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A broken JSON array: 400.
    let r = post(b"[{\"n\":9},".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(s.rejected("web", "malformed"), 1 + 2 + 1);

    // Compression: valid gzip and zstd decode; garbage is a 400.
    let r = post(gzip(b"{\"n\":3}\n{\"n\":4}\n"))
        .header("content-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(zstd::encode_all(&b"[{\"n\":5},{\"n\":6}]"[..], 3).unwrap())
        .header("content-encoding", "zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(b"\x1f\x8b definitely not gzip".to_vec())
        .header("content-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(b"{}".to_vec())
        .header("content-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(s.rejected("web", "bad_request"), 2);

    // Size limits, before and after decompression (a small gzip bomb).
    let r = post(vec![b' '; 100 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let bomb = gzip(&vec![b' '; 4 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let r = post(bomb)
        .header("content-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(s.rejected("web", "oversize"), 2);

    // Still serving.
    let r = post(b"{\"n\":7}".to_vec()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.accepted("web"), 7);

    let lines = s.finish().await;
    let ns: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, vec![1, 2, 3, 4, 5, 6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_count_oversize_and_malformed_lines_and_keep_going() {
    let s = Setup::new().await;
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    let mut tcp = tokio::net::TcpStream::connect(s.running.source_addr("tcp").unwrap())
        .await
        .unwrap();
    let input = format!("{{\"t\":1}}\n{long}\nnot json\n{{\"t\":2}}\n{long}");
    // Write in small pieces so the oversize line spans several reads.
    for piece in input.as_bytes().chunks(700) {
        tcp.write_all(piece).await.unwrap();
        tcp.flush().await.unwrap();
    }
    tcp.write_all(b"\n{\"t\":3}").await.unwrap();
    tcp.shutdown().await.unwrap();

    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = s.running.source_addr("udp").unwrap();
    udp.send_to(b"{\"u\":1}\n{\"u\":2}", to).await.unwrap();
    udp.send_to(long.as_bytes(), to).await.unwrap();
    udp.send_to(b"plain text datagram", to).await.unwrap();

    wait_until_async(
        "tcp and udp input processed",
        Duration::from_secs(20),
        || s.accepted("tcp") == 3 && s.accepted("udp") == 3 && s.rejected("udp", "oversize") == 1,
    )
    .await;
    assert_eq!(s.rejected("tcp", "oversize"), 2);
    assert_eq!(s.rejected("tcp", "malformed"), 1);
    let lines = s.finish().await;
    let mut got: Vec<String> = lines.into_iter().collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            r#"{"message":"plain text datagram"}"#,
            r#"{"t":1}"#,
            r#"{"t":2}"#,
            r#"{"t":3}"#,
            r#"{"u":1}"#,
            r#"{"u":2}"#,
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_that_is_not_utf8_never_reaches_a_peer() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let running = common::topology(&format!(
        r#"
api: {{ enabled: false }}
sources:
  strict: {{ type: http, address: 127.0.0.1:0 }}
  lenient: {{ type: http, address: 127.0.0.1:0, invalid_utf8: replace }}
  tcp: {{ type: tcp, address: 127.0.0.1:0, decoding: json }}
routes: [{{ name: all, destination: out }}]
destinations:
  out: {{ type: file, path: "{d}/out.ndjson", batch: {{ timeout: 20ms }} }}
"#
    ))
    .await;
    let bad: &[u8] = b"{\"src\":\"x\",\"c\":\"\xff\xfe\"}\n{\"src\":\"x\",\"ok\":1}\n";
    let c = reqwest::Client::new();
    for (source, accepted, rejected) in [("strict", 1, 1), ("lenient", 2, 0)] {
        let url = format!("http://{}/", running.source_addr(source).unwrap());
        let r = c.post(url).body(bad.to_vec()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(
            (v["accepted"].as_u64(), v["rejected"].as_u64()),
            (Some(accepted), Some(rejected)),
            "{source}"
        );
    }
    let mut tcp = tokio::net::TcpStream::connect(running.source_addr("tcp").unwrap())
        .await
        .unwrap();
    tcp.write_all(bad).await.unwrap();
    tcp.shutdown().await.unwrap();
    let metric = |series: &str| common::Metrics(running.metrics().encode()).get(series) as u64;
    wait_until_async("every line counted", Duration::from_secs(10), || {
        metric("sluice_source_rejected_total{source=\"strict\",reason=\"malformed\"}") == 1
            && metric("sluice_source_rejected_total{source=\"tcp\",reason=\"malformed\"}") == 1
            && metric("sluice_destination_sent_events_total{destination=\"out\"}") == 4
    })
    .await;
    running.shutdown().await;
    let raw = std::fs::read(dir.path().join("out.ndjson")).unwrap();
    let text = String::from_utf8(raw).expect("only UTF-8 reaches the file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines.iter().any(|l| l["c"] == "\u{fffd}\u{fffd}"),
        "{lines:?}"
    );
}
