//! `type: s3` against moto: objects under the keys the templates give,
//! with their contents, storage class, encryption and metadata; large
//! files uploaded in parts; an outage of the service and invalid
//! credentials are backpressure, and nothing is lost once they end.
#![cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]

mod common;

use std::time::{Duration, Instant};

use common::aws::AwsPeer;
use common::s3::{create_bucket, head, objects};
use common::{Sluice, seq_of, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn sluice(destinations: &str, routes: &str) -> Sluice {
    Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{{dir}}/data\"\nshutdown_timeout: 5s\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n{routes}destinations:\n{destinations}"
    ))
}

fn seqs<'a>(lines: impl Iterator<Item = &'a String>) -> Vec<u64> {
    let mut v: Vec<u64> = lines.map(|l| seq_of(l)).collect();
    v.sort_unstable();
    v
}

/// `n` events on a TCP connection, from its own thread.
fn send(
    s: &Sluice,
    seqs: std::ops::Range<u64>,
    line: fn(u64) -> String,
) -> std::thread::JoinHandle<()> {
    let addr = s.source("in");
    std::thread::spawn(move || {
        use std::io::Write;
        let mut c = std::io::BufWriter::new(std::net::TcpStream::connect(addr).unwrap());
        for i in seqs {
            c.write_all(line(i).as_bytes()).unwrap();
            c.write_all(b"\n").unwrap();
        }
        c.flush().unwrap();
    })
}

fn small(i: u64) -> String {
    format!(
        r#"{{"seq":{i},"service":"{}","timestamp":"2026-12-0{}T08:00:00Z","msg":"hello"}}"#,
        ["api", "web"][(i % 2) as usize],
        1 + i % 2
    )
}

/// About 1 KiB of digits that compress poorly.
fn big(i: u64) -> String {
    let mut noise = String::with_capacity(1024);
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while noise.len() < 1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push_str(&format!("{x:016x}"));
    }
    format!(r#"{{"seq":{i},"service":"bulk","noise":"{noise}"}}"#)
}

#[test]
fn objects_have_their_keys_contents_and_settings_and_large_ones_go_in_parts() {
    let moto = AwsPeer::moto();
    create_bucket(&moto, "logs");
    create_bucket(&moto, "bulk");
    let keys = moto.key_lines("    ");
    let s = sluice(
        &format!(
            "  small:\n    type: s3\n    bucket: logs\n{keys}    key_prefix: \"svc/{{{{ service }}}}/\"\n    partition: \"%Y/%m/%d\"\n    compression: gzip\n    storage_class: STANDARD_IA\n    sse: aes256\n    metadata: {{ team: observability }}\n    max_file_idle: 300ms\n  big:\n    type: s3\n    bucket: bulk\n{keys}    partition: \"\"\n    max_file_bytes: 12MiB\n    max_file_idle: 500ms\n    multipart_threshold: 5MiB\n    part_size: 5MiB\n"
        ),
        "  - name: small\n    filter: 'service != \"bulk\"'\n    destination: small\n  - name: big\n    filter: 'service == \"bulk\"'\n    destination: big\n",
    );
    let n = 2000;
    send(&s, 0..n, small).join().unwrap();
    let m = 11_000;
    send(&s, 100_000..100_000 + m, big).join().unwrap();
    wait_until("every small event in S3", WAIT, || {
        objects(&moto, "logs")
            .iter()
            .map(|o| o.lines.len())
            .sum::<usize>() as u64
            >= n
    });
    let logs = objects(&moto, "logs");
    assert_eq!(
        seqs(logs.iter().flat_map(|o| &o.lines)),
        (0..n).collect::<Vec<_>>()
    );
    for o in &logs {
        let (dir, name) = o.key.rsplit_once('/').unwrap();
        assert!(
            name.starts_with("sluice-") && name.ends_with(".ndjson.gz"),
            "{}",
            o.key
        );
        for l in &o.lines {
            let v: Value = serde_json::from_str(l).unwrap();
            let day = &v["timestamp"].as_str().unwrap()[8..10];
            assert_eq!(
                dir,
                format!("svc/{}/2026/12/{day}", v["service"].as_str().unwrap())
            );
        }
    }
    let h = head(&moto, "logs", &logs[0].key);
    assert_eq!(h.storage_class().map(|c| c.as_str()), Some("STANDARD_IA"));
    assert_eq!(
        h.server_side_encryption().map(|c| c.as_str()),
        Some("AES256")
    );
    assert_eq!(
        h.metadata().and_then(|m| m.get("team")).map(String::as_str),
        Some("observability")
    );
    assert_eq!(h.content_encoding(), Some("gzip"));
    assert_eq!(h.content_type(), Some("application/x-ndjson"));

    wait_until("every large event in S3", WAIT, || {
        objects(&moto, "bulk")
            .iter()
            .map(|o| o.lines.len())
            .sum::<usize>() as u64
            >= m
    });
    let bulk = objects(&moto, "bulk");
    assert_eq!(
        seqs(bulk.iter().flat_map(|o| &o.lines)),
        (100_000..100_000 + m).collect::<Vec<_>>()
    );
    // A file over the threshold is a multipart upload: S3 gives it the
    // ETag `<md5 of the parts' md5s>-<parts>`.
    let part = 5i64 << 20;
    assert!(bulk.iter().any(|o| o.size >= part), "no file over 5MiB");
    for o in &bulk {
        assert!(o.size <= 12 << 20, "{} is {} bytes", o.key, o.size);
        if o.size >= part {
            let parts = (o.size + part - 1) / part;
            assert!(o.e_tag.ends_with(&format!("-{parts}")), "{o:?}");
        } else {
            assert!(!o.e_tag.contains('-'), "{o:?}");
        }
    }
    wait_until("nothing left staged", WAIT, || {
        let m = s.metrics();
        m.get("sluice_staged_files{destination=\"small\"}") == 0.0
            && m.get("sluice_staged_files{destination=\"big\"}") == 0.0
    });
}

fn one_destination(moto: &AwsPeer, secret: &str, extra: &str) -> String {
    format!(
        "  out:\n    type: s3\n    bucket: events\n    region: us-east-1\n    endpoint: \"{}\"\n    auth: {{ access_key_id: \"{}\", secret_access_key: \"{}\" }}\n    partition: \"\"\n    max_file_bytes: 16KiB\n    max_file_idle: 200ms\n    queue: {{ max_events: 100 }}\n    batch: {{ max_events: 50, timeout: 20ms }}\n    retry: {{ initial_backoff: 50ms, max_backoff: 500ms }}\n{extra}",
        moto.endpoint(),
        moto.access_key_id,
        secret
    )
}

const ALL: &str = "  - name: all\n    destination: out\n";

fn upload_errors(s: &Sluice) -> f64 {
    s.metrics()
        .get("sluice_staging_errors_total{destination=\"out\",stage=\"upload\"}")
}

#[test]
fn s3_stopped_for_twenty_seconds_loses_nothing() {
    let moto = AwsPeer::moto();
    create_bucket(&moto, "events");
    let s = sluice(
        &one_destination(
            &moto,
            &moto.secret_access_key,
            "    request: { timeout: 2s }\n",
        ),
        ALL,
    );
    send(&s, 0..1000, small).join().unwrap();
    wait_until("the first events in S3", WAIT, || {
        objects(&moto, "events")
            .iter()
            .map(|o| o.lines.len())
            .sum::<usize>()
            >= 1000
    });
    moto.pause();
    let outage = Instant::now();
    send(&s, 1000..2000, small).join().unwrap();
    wait_until("failed uploads counted", WAIT, || upload_errors(&s) > 0.0);
    // While uploads fail, nothing more is taken.
    let sender = send(&s, 2000..6000, small);
    wait_until("sources to wait on the destination", WAIT, || {
        s.metrics()
            .get("sluice_destination_blocked_seconds_total{destination=\"out\"}")
            > 1.0
    });
    assert!(s.logs().iter().any(|l| l["cause"] == "upload"));
    // The outage lasts 20 s, as the scenario says; then S3 is back.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(outage.elapsed()));
    moto.resume();
    sender.join().unwrap();
    wait_until("every event in S3", Duration::from_secs(120), || {
        objects(&moto, "events")
            .iter()
            .map(|o| o.lines.len())
            .sum::<usize>()
            >= 6000
    });
    assert_eq!(
        seqs(objects(&moto, "events").iter().flat_map(|o| &o.lines)),
        (0..6000).collect::<Vec<_>>(),
        "nothing lost, nothing twice"
    );
    assert_eq!(s.metrics().dropped_any("out"), 0);
}

#[test]
fn invalid_credentials_are_backpressure_until_a_reload_fixes_them() {
    let moto = AwsPeer::moto_checking_keys();
    create_bucket(&moto, "events");
    let good = moto.secret_access_key.clone();
    let s = sluice(&one_destination(&moto, "wrong", ""), ALL);
    send(&s, 0..500, small).join().unwrap();
    wait_until("failed uploads counted", WAIT, || upload_errors(&s) > 0.0);
    let cause = s
        .logs()
        .into_iter()
        .find(|l| l["cause"] == "upload")
        .expect("the cause is logged");
    assert!(
        cause["error"]
            .as_str()
            .unwrap()
            .contains("SignatureDoesNotMatch"),
        "{cause}"
    );
    assert!(objects(&moto, "events").is_empty());
    assert_eq!(common::sent(&s, "out"), 500, "staged meanwhile");
    // Fix the secret; the staged files are uploaded after the reload.
    let config = s.dir.join("sluice.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace("\"wrong\"", &format!("\"{good}\""))).unwrap();
    common::signal(s.pid(), libc::SIGHUP);
    wait_until("every event in S3", WAIT, || {
        objects(&moto, "events")
            .iter()
            .map(|o| o.lines.len())
            .sum::<usize>()
            >= 500
    });
    assert_eq!(
        seqs(objects(&moto, "events").iter().flat_map(|o| &o.lines)),
        (0..500).collect::<Vec<_>>()
    );
}
