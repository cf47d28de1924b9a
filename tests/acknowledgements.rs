//! An acknowledgement never claims an event that was dropped: through the
//! real binary, every way a destination sheds events for lack of room
//! (`on_full: drop` at `max_bytes`, `backpressure: drop` newest and oldest)
//! answers the sender with a retryable status and `Retry-After`, and every
//! event a sender was told was taken (200) arrives once the peer is back.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::Receiver;
use common::{Sluice, seq_of, wait_until_async};

fn start(yaml: &str) -> Sluice {
    tokio::task::block_in_place(|| Sluice::start(yaml))
}

/// What the senders were told, per request.
#[derive(Default)]
struct Answers {
    /// Event ids of requests answered 200.
    acked: BTreeSet<u64>,
    ok: u64,
    /// Answered 503 with a `Retry-After`.
    retry: u64,
    /// Anything else (a failure of the test's premise).
    other: Vec<String>,
}

/// POST `posts` requests of `per` events of about `size` bytes each, from
/// `senders` concurrent clients, and record every answer.
async fn post_all(url: &str, posts: u64, per: u64, size: usize, senders: u64) -> Answers {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (client, url, answers) = (client.clone(), url.to_string(), answers.clone());
        tasks.push(tokio::spawn(async move {
            let mut p = s;
            while p < posts {
                let ids = p * per..(p + 1) * per;
                let body: String = ids.clone().map(|i| common::event_line(i, size)).collect();
                let r = client.post(&url).body(body).send().await;
                let mut a = answers.lock().unwrap();
                match r {
                    Ok(r) if r.status() == 200 => {
                        a.ok += 1;
                        a.acked.extend(ids);
                    }
                    Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => {
                        a.retry += 1
                    }
                    Ok(r) => a.other.push(format!("{} {:?}", r.status(), r.headers())),
                    Err(e) => a.other.push(e.to_string()),
                }
                drop(a);
                p += senders;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(answers).ok().unwrap().into_inner().unwrap()
}

fn config(data: &Path, url: &str, destination: &str) -> String {
    format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{}"
shutdown_timeout: 5s
sources:
  web: {{ type: http, address: 127.0.0.1:0, acknowledgements: true, max_wait: 30s }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{url}"
    batch: {{ max_events: 500, timeout: 20ms }}
    retry: {{ initial_backoff: 50ms, max_backoff: 200ms }}
{destination}
"#,
        data.display()
    )
}

/// Wait until every acknowledged event arrived (the receiver is back).
async fn every_acknowledged_event_arrives(rx: &Receiver, a: &Answers) {
    wait_until_async(
        "every acknowledged event delivered",
        Duration::from_secs(120),
        || {
            let got: BTreeSet<u64> = rx.accepted().iter().map(|l| seq_of(l)).collect();
            a.acked.iter().all(|i| got.contains(i))
        },
    )
    .await;
}

/// The issue's own scenario: `mode: always`, `fsync: always`, 2 MiB,
/// `on_full: drop`, the peer down, 200 requests of 100 events. Before the
/// fix 199 were answered 200 while 5,900 events were dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_persistent_queue_never_acknowledges_what_it_dropped() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start().await;
    rx.kill().await;
    let s = start(&config(
        data.path(),
        &rx.url("/"),
        "    backpressure: persistent_queue\n    queue: { mode: always, fsync: always, max_bytes: 2MiB, on_full: drop }",
    ));
    let url = format!("http://{}/", s.source("web"));
    let a = post_all(&url, 200, 100, 300, 4).await;
    assert!(a.other.is_empty(), "{:?}", a.other);
    let m = s.metrics();
    let dropped = m.dropped("out", "queue_full");
    assert!(
        a.retry > 0 && dropped > 0,
        "the queue filled: {} retryable answers, {dropped} dropped",
        a.retry
    );
    assert!(a.ok > 0, "some requests fitted");
    // Every request whose events were dropped heard about it.
    assert!(
        dropped <= a.retry * 100,
        "{dropped} dropped, only {} requests told",
        a.retry
    );
    rx.restart().await;
    every_acknowledged_event_arrives(&rx, &a).await;
}

/// `backpressure: drop`, newest and oldest: what the lane sheds (the
/// incoming batch, or the oldest queued one) is never answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_lane_never_acknowledges_what_it_shed() {
    for which in ["newest", "oldest"] {
        let data = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start().await;
        rx.kill().await;
        let s = start(&config(
            data.path(),
            &rx.url("/"),
            &format!("    backpressure: drop\n    queue: {{ max_events: 1000, drop: {which} }}"),
        ));
        let url = format!("http://{}/", s.source("web"));
        // The lane holds 1000; 60 requests of 100 overflow it while the
        // peer is down. Requests whose events stay queued wait for the
        // peer: bring it back once the overflow has been answered.
        let posting = {
            let url = url.clone();
            tokio::spawn(async move { post_all(&url, 60, 100, 200, 60).await })
        };
        let sm = &s;
        // A drop lane never waits: every request is routed at once.
        wait_until_async(
            &format!("drop {which}: every request routed"),
            Duration::from_secs(30),
            || sm.metrics().dest("sluice_destination_events_total", "out") == 6000,
        )
        .await;
        assert!(
            !posting.is_finished(),
            "drop {which}: requests whose events are queued wait for the peer"
        );
        rx.restart().await;
        let a = posting.await.unwrap();
        assert!(a.other.is_empty(), "drop {which}: {:?}", a.other);
        let dropped = s.metrics().dropped("out", "backpressure");
        assert!(a.retry > 0, "drop {which}: nobody was told to retry");
        assert!(
            dropped <= a.retry * 100,
            "drop {which}: {dropped} dropped, {} requests told",
            a.retry
        );
        assert!(dropped > 0, "drop {which}: the lane overflowed");
        every_acknowledged_event_arrives(&rx, &a).await;
    }
}
