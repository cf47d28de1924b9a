//! Partitioned batches and flush modes, as a user sees them at the peer:
//! `batch.partition_by` gives each request one key (and an HTTP URL built
//! from it), `time_key` one time window, many keys keep memory flat, and
//! `flush: lazy | immediate` send at size limits only or at once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::receiver::Receiver;
use common::{Sluice, runtime, send_lines, seq_of, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn sluice(destination: &str) -> Sluice {
    Sluice::start(&format!(
        "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{{dir}}/data\"\nsources:\n  in: {{ type: tcp, address: 127.0.0.1:0 }}\nroutes:\n  - name: all\n    destination: out\ndestinations:\n  out:\n{destination}"
    ))
}

fn field(line: &str, name: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v[name].to_string()
}

#[test]
fn each_request_holds_one_key_and_goes_to_its_own_url() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let s = sluice(&format!(
        "    type: http\n    url: \"{}\"\n    batch: {{ partition_by: [tenant, level], max_events: 50, timeout: 100ms }}\n    request: {{ concurrency: 1 }}\n",
        rx.url("/t/{{ tenant }}/in")
    ));
    let n = 3000u64;
    send_lines(
        &s,
        "in",
        (0..n).map(|i| {
            format!(
                r#"{{"seq":{i},"tenant":"{}","level":"{}"}}"#,
                ["a", "b c", "d/e"][(i % 3) as usize],
                ["info", "error"][(i % 2) as usize]
            )
        }),
    );
    wait_until("every event delivered", WAIT, || {
        rx.accepted().len() as u64 >= n
    });
    let mut per_key: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for r in rx.requests() {
        let keys: BTreeSet<(String, String)> = r
            .events
            .iter()
            .map(|e| (field(e, "tenant"), field(e, "level")))
            .collect();
        assert_eq!(keys.len(), 1, "one key per request: {keys:?}");
        let (tenant, level) = keys.into_iter().next().unwrap();
        let encoded = match tenant.as_str() {
            "\"a\"" => "a",
            "\"b c\"" => "b%20c",
            _ => "d%2Fe",
        };
        assert_eq!(r.path, format!("/t/{encoded}/in"));
        assert!(r.events.len() <= 50);
        per_key
            .entry((tenant, level))
            .or_default()
            .extend(r.events.iter().map(|e| seq_of(e)));
    }
    assert_eq!(per_key.len(), 6);
    let mut all: Vec<u64> = per_key.values().flatten().copied().collect();
    for seqs in per_key.values() {
        // One request at a time: each key's events arrive in order.
        assert!(seqs.is_sorted(), "a key's events stay in order");
    }
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "each event once");
}

#[test]
fn a_url_field_not_in_partition_by_is_refused() {
    let err = common::validate_refuses(
        "sluice.yaml",
        "sources:\n  in: { type: tcp, address: 127.0.0.1:0 }\nroutes:\n  - { name: all, destination: out }\ndestinations:\n  out:\n    type: http\n    url: \"http://127.0.0.1:9/{{ tenant }}\"\n    batch: { partition_by: [host] }\n",
    );
    assert!(err.contains("sluice.yaml:"), "{err}");
    assert!(err.contains("add it to batch.partition_by"), "{err}");
}

#[test]
fn time_windows_split_batches() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let s = sluice(&format!(
        "    type: http\n    url: \"{}\"\n    batch: {{ time_key: ts, time_window: 1m, max_events: 1000, timeout: 200ms }}\n",
        rx.url("/in")
    ));
    // Three minutes of events, interleaved.
    send_lines(
        &s,
        "in",
        (0..300u64).map(|i| format!(r#"{{"seq":{i},"ts":"2026-12-05T10:0{}:30Z"}}"#, i % 3)),
    );
    wait_until("every event delivered", WAIT, || rx.accepted().len() >= 300);
    let minutes: Vec<BTreeSet<String>> = rx
        .requests()
        .iter()
        .map(|r| r.events.iter().map(|e| field(e, "ts")).collect())
        .collect();
    assert!(minutes.iter().all(|m| m.len() == 1), "{minutes:?}");
    assert_eq!(minutes.len(), 3, "one request per minute: {minutes:?}");
}

#[test]
fn lazy_sends_only_full_batches_until_shutdown_and_immediate_sends_at_once() {
    let rt = runtime();
    let rx = rt.block_on(Receiver::start());
    let mut s = sluice(&format!(
        "    type: http\n    url: \"{}\"\n    batch: {{ flush: lazy, max_events: 10, timeout: 10ms }}\n",
        rx.url("/in")
    ));
    send_lines(&s, "in", (0..25u64).map(|i| format!(r#"{{"seq":{i}}}"#)));
    wait_until("two full batches", WAIT, || rx.accepted().len() >= 20);
    wait_until("the rest waiting in the lane", WAIT, || {
        s.metrics().dest("sluice_destination_events_total", "out") == 25
    });
    // timeout is 10ms, yet the 5 left wait: lazy sends full batches only.
    assert_eq!(
        rx.requests()
            .iter()
            .map(|r| r.events.len())
            .collect::<Vec<_>>(),
        vec![10, 10]
    );
    s.terminate();
    assert!(s.wait_exit(WAIT).success());
    assert_eq!(rx.accepted().len(), 25, "the last batch goes at shutdown");

    let rx = rt.block_on(Receiver::start());
    let s = sluice(&format!(
        "    type: http\n    url: \"{}\"\n    batch: {{ flush: immediate, timeout: 1h }}\n",
        rx.url("/in")
    ));
    for i in 0..3u64 {
        send_lines(&s, "in", std::iter::once(format!(r#"{{"seq":{i}}}"#)));
        // With `timeout: 1h`, only `immediate` sends it now.
        wait_until("the event sent at once", WAIT, || {
            rx.accepted().len() as u64 == i + 1
        });
    }
    assert!(rx.requests().iter().all(|r| r.events.len() == 1));
}

#[test]
fn ten_thousand_keys_keep_memory_flat() {
    let s = sluice(
        "    type: blackhole\n    batch: { partition_by: [key], max_partitions: 1000, max_events: 100, timeout: 200ms }\n",
    );
    let round = |from: u64| {
        let mut payload = String::new();
        for i in from..from + 30_000 {
            payload.push_str(&format!(
                "{{\"seq\":{i},\"key\":\"k{}\",\"msg\":\"{}\"}}\n",
                i % 10_000,
                "x".repeat(100)
            ));
        }
        use std::io::Write;
        std::net::TcpStream::connect(s.source("in"))
            .unwrap()
            .write_all(payload.as_bytes())
            .unwrap();
        wait_until("the round delivered", WAIT, || {
            common::sent(&s, "out") == from + 30_000
        });
    };
    round(0);
    let after_first = s.rss_bytes();
    round(30_000);
    round(60_000);
    let after_third = s.rss_bytes();
    // 10,000 keys through 1,000 partitions: memory does not grow with the
    // keys or the events (a map of every key would keep growing).
    eprintln!("RSS after the first round {after_first}, after the third {after_third}");
    assert!(
        after_third < after_first + (8 << 20),
        "RSS grew from {after_first} to {after_third}"
    );
}
