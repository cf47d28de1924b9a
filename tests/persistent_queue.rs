//! The `persistent_queue` policy through the real binary: outages, restarts,
//! `kill -9`, damaged segment files, `max_bytes` with both `on_full`
//! choices, a full disk, and the `sluice queue` commands.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::receiver::{Behavior, Receiver};
use common::{BIN, Sluice, seq_of, wait_until_async};
use serde_json::Value;

/// The `out` HTTP destination with a persistent queue under `data`.
fn config(data: &Path, url: &str, sources: &str, queue: &str) -> String {
    format!(
        r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{}"
shutdown_timeout: 5s
sources:
{sources}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{url}"
    batch: {{ max_events: 500, timeout: 50ms }}
    # One request at a time, so that arrival order shows queue order.
    request: {{ concurrency: 1 }}
    retry: {{ initial_backoff: 50ms, max_backoff: 500ms }}
    backpressure: persistent_queue
    queue: {{ {queue} }}
"#,
        data.display()
    )
}

/// A receiver that is down (its port refuses) until `restart`.
async fn down_receiver() -> Receiver {
    let mut rx = Receiver::start().await;
    rx.kill().await;
    rx
}

/// A generator of `count` events (`rate` per second, 0: as fast as the
/// lane takes them), next to the HTTP source.
fn generator(count: u64, rate: u64, event_bytes: usize) -> String {
    format!(
        "  gen: {{ type: generator, rate: {rate}, count: {count}, event_bytes: {event_bytes} }}\n{HTTP_SOURCE}"
    )
}

/// An HTTP source, so sluice keeps running after a generator finishes.
const HTTP_SOURCE: &str = "  web: { type: http, address: 127.0.0.1:0, acknowledgements: true }";

fn start(yaml: &str) -> Sluice {
    tokio::task::block_in_place(|| Sluice::start(yaml))
}

fn seqs(rx: &Receiver) -> Vec<u64> {
    rx.accepted().iter().map(|l| seq_of(l)).collect()
}

fn distinct(seqs: &[u64]) -> BTreeSet<u64> {
    seqs.iter().copied().collect()
}

/// Sequence numbers in order of first arrival must increase: strict
/// ordering, duplicates aside.
fn assert_first_arrivals_in_order(seqs: &[u64]) {
    let mut seen = BTreeSet::new();
    let mut last = None;
    for &s in seqs {
        if seen.insert(s) {
            if let Some(l) = last {
                assert!(s > l, "{s} arrived for the first time after {l}");
            }
            last = Some(s);
        }
    }
}

/// `events = sent + dropped + queued` in a "final accounting" log record
/// (`queued` is logged only when not zero).
fn balanced(v: &Value) -> bool {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    v["message"] == "final accounting" && n("events") == n("sent") + n("dropped") + n("queued")
}

fn terminate(s: &mut Sluice) {
    s.terminate();
    let status = tokio::task::block_in_place(|| s.wait_exit(Duration::from_secs(30)));
    assert!(
        status.success(),
        "sluice exited with {status}: {:#?}",
        s.logs()
    );
}

fn status_out(s: &Sluice) -> Value {
    let st = s.status();
    st["destinations"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == "out").cloned())
        .unwrap_or(Value::Null)
}

const DRAINED: &str =
    "persistent queue drained: its backlog is delivered; new events use memory again";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_loses_nothing_and_drains_in_order() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let total = 40_000u64;
    let sources = generator(total, 1000, 150);
    let mut s = start(&config(
        data.path(),
        &rx.url("/"),
        &sources,
        "max_events: 1000",
    ));
    let outage = Instant::now();
    wait_until_async("the queue to engage", Duration::from_secs(30), || {
        status_out(&s)["persistent_queue"]["engaged"] == true
    })
    .await;
    wait_until_async("events on disk", Duration::from_secs(30), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") > 5000
    })
    .await;
    let m = s.metrics();
    assert!(m.dest("sluice_persistent_queue_bytes", "out") > 0);
    assert_eq!(m.dest("sluice_destination_sent_events_total", "out"), 0);
    // The generator never waited on the dead receiver: the disk took it all.
    assert!(m.get("sluice_destination_blocked_seconds_total{destination=\"out\"}") < 1.0);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    assert!(
        !s.has_log(DRAINED),
        "nothing can drain while the peer is down"
    );
    rx.restart().await;
    wait_until_async("every event delivered", Duration::from_secs(120), || {
        distinct(&seqs(&rx)).len() as u64 == total
    })
    .await;
    let got = seqs(&rx);
    assert_eq!(distinct(&got), (0..total).collect());
    assert_first_arrivals_in_order(&got);
    wait_until_async("the queue to empty", Duration::from_secs(30), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") == 0
    })
    .await;
    wait_until_async("memory again", Duration::from_secs(30), || {
        status_out(&s)["persistent_queue"]["engaged"] == false
    })
    .await;
    assert!(s.has_log(DRAINED));
    terminate(&mut s);
    let acc = s.final_accounting("out");
    assert!(balanced(&acc), "{acc}");
    assert_eq!(acc["events"].as_u64(), Some(total));
    assert_eq!(acc["queued"].as_u64().unwrap_or(0), 0, "{acc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_an_outage_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let sources = generator(30000, 2000, 150);
    // A large in-memory lane: most of what is queued at shutdown is in
    // memory, and must be written to disk rather than lost.
    let queue = "max_events: 20000";
    let mut first = start(&config(data.path(), &rx.url("/"), &sources, queue));
    wait_until_async("events queued", Duration::from_secs(30), || {
        first
            .metrics()
            .dest("sluice_destination_events_total", "out")
            >= 8000
    })
    .await;
    terminate(&mut first);
    let acc = first.final_accounting("out");
    let queued = acc["queued"].as_u64().unwrap();
    assert_eq!(acc["events"].as_u64(), Some(queued), "{acc}");
    assert!(balanced(&acc), "{acc}");
    assert!(queued >= 8000);
    // The second run has no generator: everything it delivers is the first
    // run's.
    let mut second = start(&config(data.path(), &rx.url("/"), HTTP_SOURCE, queue));
    assert_eq!(
        second
            .metrics()
            .dest("sluice_persistent_queue_events", "out"),
        queued
    );
    rx.restart().await;
    wait_until_async(
        "every queued event delivered",
        Duration::from_secs(120),
        || distinct(&seqs(&rx)).len() as u64 == queued,
    )
    .await;
    let got = seqs(&rx);
    assert_eq!(distinct(&got), (0..queued).collect());
    assert_first_arrivals_in_order(&got);
    terminate(&mut second);
    let acc = second.final_accounting("out");
    assert!(balanced(&acc), "{acc}");
    assert_eq!(acc["queued"].as_u64().unwrap_or(0), 0, "{acc}");
}

/// POST events `range` to sluice's HTTP source; true if acknowledged (200).
async fn post(client: &reqwest::Client, url: &str, range: std::ops::Range<u64>) -> bool {
    let body: String = range
        .map(|i| format!("{{\"seq\":{i},\"msg\":\"crash test event {i}\"}}\n"))
        .collect();
    matches!(client.post(url).body(body).send().await, Ok(r) if r.status() == 200)
}

/// `kill -9` at random moments while a client writes with acknowledgements
/// (`mode: always`, `fsync: always`) and a slow receiver drains: every
/// acknowledged event is delivered in the end, in order, and duplicates are
/// bounded by what was in flight at each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_event() {
    let data = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.set(Behavior::Delay(Duration::from_millis(30)));
    let queue = "mode: always, fsync: always, max_events: 2000, segment_bytes: 256KiB";
    let yaml = config(data.path(), &rx.url("/"), HTTP_SOURCE, queue);
    let client = reqwest::Client::new();
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let rounds = 10;
    for round in 0..rounds {
        let s = start(&yaml);
        let url = format!("http://{}/", s.source("web"));
        let kill_after = Duration::from_millis(fastrand::u64(100..1000));
        let started = Instant::now();
        while started.elapsed() < kill_after {
            let n = fastrand::u64(1..200);
            if post(&client, &url, next..next + n).await {
                acked.extend(next..next + n);
            }
            next += n;
        }
        // A request may be in flight: the kill lands in the middle of it.
        let in_flight = {
            let (client, url, from) = (client.clone(), url.clone(), next);
            next += 100;
            tokio::spawn(async move { post(&client, &url, from..from + 100).await.then_some(from) })
        };
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..5))).await;
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(s.pid(), libc::SIGKILL);
        }
        if let Ok(Some(from)) = in_flight.await {
            acked.extend(from..from + 100);
        }
        drop(s);
        eprintln!("round {round}: {} acknowledged so far", acked.len());
    }
    // A last run without a kill drains the rest.
    let mut s = start(&yaml);
    wait_until_async(
        "every acknowledged event delivered",
        Duration::from_secs(120),
        || {
            let got = distinct(&seqs(&rx));
            acked.iter().all(|a| got.contains(a))
        },
    )
    .await;
    let got = seqs(&rx);
    assert_first_arrivals_in_order(&got);
    let dupes = got.len() - distinct(&got).len();
    eprintln!(
        "{} acknowledged, {} delivered, {dupes} duplicates over {rounds} kills",
        acked.len(),
        got.len()
    );
    // At most what was being delivered at each kill: the lane's read-ahead.
    assert!(dupes <= rounds * 2000, "{dupes} duplicates");
    wait_until_async("the queue to empty", Duration::from_secs(30), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") == 0
    })
    .await;
    terminate(&mut s);
    assert_eq!(s.final_accounting("out")["dropped"].as_u64(), Some(0));
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

fn queue_cli(args: &[&str], data: &Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(["queue"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fill a queue through the binary (receiver down), then stop gracefully.
async fn fill_queue(data: &Path, url: &str, count: u64) -> u64 {
    let sources = generator(count, 0, 200);
    let mut s = start(&config(
        data,
        url,
        &sources,
        "mode: always, segment_bytes: 4KiB, compression: zstd",
    ));
    wait_until_async("everything on disk", Duration::from_secs(60), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") == count
    })
    .await;
    terminate(&mut s);
    s.final_accounting("out")["queued"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_skipped_counted_and_quarantined_and_the_cli_finds_them() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let total = fill_queue(data.path(), &rx.url("/"), 20_000).await;
    assert_eq!(total, 20_000);
    let qdir = data.path().join("queues/out");

    let (code, out, err) = queue_cli(&["inspect", "--json"], data.path());
    assert_eq!(code, 0, "{out}{err}");
    // A data_dir that does not exist is an error, not an empty backlog.
    for cmd in ["inspect", "verify"] {
        let (code, out, err) = queue_cli(&[cmd], &data.path().join("typo"));
        assert_eq!(code, 2, "{cmd}: {out}{err}");
        assert!(err.contains("typo: no such data directory"), "{err}");
    }
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["destination"], "out");
    assert_eq!(v["events"].as_u64(), Some(total));
    assert!(v["segments"].as_u64().unwrap() > 2);
    assert!(v["oldest_age_seconds"].as_f64().is_some());
    let (code, out, _) = queue_cli(&["verify"], data.path());
    assert_eq!(code, 0, "{out}");

    // Flip a byte in the middle of the second segment, and cut the last
    // segment short as a crash would.
    let segs = segments(&qdir);
    let mut bytes = std::fs::read(&segs[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&segs[1], &bytes).unwrap();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(len - 10)
        .unwrap();

    let (code, out, err) = queue_cli(&["verify"], data.path());
    assert_eq!(code, 1, "{out}{err}");
    let name = segs[1].file_name().unwrap().to_str().unwrap();
    assert!(out.contains("DAMAGED") && out.contains(name), "{out}");
    assert!(out.contains("cut short"), "{out}");

    rx.restart().await;
    let mut s = start(&config(
        data.path(),
        &rx.url("/"),
        HTTP_SOURCE,
        "segment_bytes: 64KiB",
    ));
    let m = s.metrics();
    let corrupt = m.dropped("out", "corrupt");
    assert!(corrupt > 0, "the damaged frame is counted");
    assert!(qdir.join("quarantine").read_dir().unwrap().count() >= 1);
    wait_until_async("the rest delivered", Duration::from_secs(60), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") == 0
            && s.metrics()
                .dest("sluice_destination_sent_events_total", "out")
                > 0
    })
    .await;
    let got = distinct(&seqs(&rx));
    terminate(&mut s);
    let acc = s.final_accounting("out");
    assert!(balanced(&acc), "{acc}");
    // Lost: the damaged frame's events and the torn final frame (never
    // acknowledged as written in a real crash); nothing else.
    let missing = total - got.len() as u64;
    assert!(
        missing >= corrupt,
        "{missing} missing, {corrupt} counted corrupt"
    );
    assert!(
        missing <= corrupt + 1000,
        "only one torn frame beyond the corrupt one: {missing}"
    );
    assert_eq!(
        acc["events"].as_u64(),
        Some(got.len() as u64 + corrupt),
        "{acc}"
    );
    let (code, out, _) = queue_cli(&["verify"], data.path());
    assert_eq!(code, 0, "repaired: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_full_drop_sheds_and_counts_at_max_bytes() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let sources = generator(50000, 0, 200);
    let mut s = start(&config(
        data.path(),
        &rx.url("/"),
        &sources,
        "mode: always, max_bytes: 1MiB, segment_bytes: 256KiB, on_full: drop, max_events: 1000",
    ));
    wait_until_async("every event routed", Duration::from_secs(60), || {
        s.metrics().dest("sluice_destination_events_total", "out") == 50_000
    })
    .await;
    let m = s.metrics();
    let shed = m.dropped("out", "queue_full");
    assert!(shed > 30_000, "most of 10 MB cannot fit in 1 MiB: {shed}");
    let bytes = m.dest("sluice_persistent_queue_bytes", "out");
    assert!(bytes <= (1 << 20) + (256 << 10), "{bytes} bytes on disk");
    let queued = m.dest("sluice_persistent_queue_events", "out");
    rx.restart().await;
    wait_until_async("the queue delivered", Duration::from_secs(60), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") == 0
    })
    .await;
    assert_eq!(distinct(&seqs(&rx)).len() as u64, 50_000 - shed);
    assert!(queued > 0);
    terminate(&mut s);
    let acc = s.final_accounting("out");
    assert!(balanced(&acc), "{acc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_full_block_pushes_back_then_delivers_everything() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let total = 30_000u64;
    let sources = generator(total, 0, 200);
    let mut s = start(&config(
        data.path(),
        &rx.url("/"),
        &sources,
        "max_bytes: 1MiB, segment_bytes: 256KiB, max_events: 1000",
    ));
    // The disk fills, then the generator waits.
    wait_until_async("the queue full", Duration::from_secs(60), || {
        status_out(&s)["persistent_queue"]["full"] == true
    })
    .await;
    let blocked = |s: &Sluice| {
        s.metrics()
            .get("sluice_destination_blocked_seconds_total{destination=\"out\"}")
    };
    let before = blocked(&s);
    wait_until_async("the source blocked", Duration::from_secs(60), || {
        blocked(&s) > before + 1.0
    })
    .await;
    let m = s.metrics();
    let routed = m.dest("sluice_destination_events_total", "out");
    assert!(routed < total, "the generator was held back: {routed}");
    assert_eq!(m.dropped("out", "queue_full"), 0);
    let bytes = m.dest("sluice_persistent_queue_bytes", "out");
    assert!(bytes <= (1 << 20) + (256 << 10), "{bytes} bytes on disk");
    rx.restart().await;
    wait_until_async("everything delivered", Duration::from_secs(120), || {
        distinct(&seqs(&rx)).len() as u64 == total
    })
    .await;
    assert_first_arrivals_in_order(&seqs(&rx));
    terminate(&mut s);
    let acc = s.final_accounting("out");
    assert!(balanced(&acc), "{acc}");
    assert_eq!(acc["dropped"].as_u64(), Some(0), "{acc}");
}

/// A full disk, simulated with a file-size limit (`ulimit -f`: writes past
/// it fail with EFBIG), behaves like `max_bytes`: counted, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_counted_not_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let sources = generator(20000, 0, 200);
    let yaml = config(
        data.path(),
        &rx.url("/"),
        &sources,
        "mode: always, on_full: drop, segment_bytes: 16MiB",
    );
    // 512 KiB per file: the first segment fills up long before 16 MiB.
    let s = tokio::task::block_in_place(|| {
        Sluice::start_with(&yaml, |cmd| {
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            *cmd = Command::new("bash");
            cmd.arg("-c")
                .arg("ulimit -f 512 && exec \"$0\" \"$@\"")
                .arg(program)
                .args(args)
                .env("SLUICE_LOG", "info")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
        })
    });
    wait_until_async("every event routed", Duration::from_secs(60), || {
        s.metrics().dest("sluice_destination_events_total", "out") == 20_000
    })
    .await;
    let m = s.metrics();
    let shed = m.dropped("out", "queue_full");
    assert!(shed > 10_000, "{shed}");
    assert!(m.dest("sluice_persistent_queue_bytes", "out") <= 512 * 1024);
    assert!(
        s.logs()
            .iter()
            .any(|l| l["message"] == "persistent queue: write failed; treating the queue as full"),
        "the failure is logged"
    );
    // Still serving, and what fitted is delivered once the peer is back.
    // What fitted is not the disk gauge at one moment: a batch the driver
    // already took out of the queue to retry is on neither gauge. So wait
    // until every event is delivered or counted dropped.
    rx.restart().await;
    wait_until_async(
        "every event delivered or counted dropped",
        Duration::from_secs(60),
        || {
            let m = s.metrics();
            m.dest("sluice_destination_sent_events_total", "out") + m.dropped_any("out") == 20_000
        },
    )
    .await;
    let m = s.metrics();
    let sent = m.dest("sluice_destination_sent_events_total", "out");
    assert_eq!(
        distinct(&seqs(&rx)).len() as u64,
        sent,
        "what fitted is delivered, each event once"
    );
    assert_eq!(m.dropped_any("out"), m.dropped("out", "queue_full"));
    let mut s = s;
    terminate(&mut s);
    assert!(balanced(&s.final_accounting("out")));
}

#[test]
fn queue_settings_need_the_persistent_queue_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [
        (
            "backpressure: block\n    queue: { fsync: always }",
            "queue.fsync applies only with `backpressure: persistent_queue`",
        ),
        (
            "backpressure: persistent_queue\n    queue: { drain_rate: 10 }",
            "queue.drain_rate applies only with `ordering: live_first`",
        ),
        (
            "backpressure: persistent_queue\n    queue: { fsync: never, fsync_interval: 1s }",
            "queue.fsync_interval applies only with `fsync: interval`",
        ),
        (
            "backpressure: persistent_queue\n    queue: { mode: sometimes }",
            "sometimes",
        ),
    ];
    for (snippet, want) in bad {
        let yaml = format!(
            "sources:\n  s: {{ type: stdin }}\nroutes: [{{ name: r, destination: d }}]\ndestinations:\n  d:\n    type: blackhole\n    {snippet}\n"
        );
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, yaml).unwrap();
        let out = Command::new(BIN)
            .args(["validate", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(want), "{snippet}: {err}");
        assert!(err.contains("c.yaml:"), "names the file: {err}");
    }
}

/// Backlog of `backlog` generator events (seq < backlog) built while the
/// receiver is down, then live events posted (seq from 1,000,000) right
/// as it comes back. Returns the arrival order.
async fn backlog_then_live(queue: &str, backlog: u64) -> Vec<u64> {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let sources = generator(backlog, 0, 150);
    let mut s = start(&config(data.path(), &rx.url("/"), &sources, queue));
    wait_until_async("the backlog on disk", Duration::from_secs(60), || {
        // All but the memory lane and what the driver holds (a job being
        // retried and the next one).
        s.metrics().dest("sluice_persistent_queue_events", "out") >= backlog - 2000
    })
    .await;
    // A slowish peer (20 ms a request), so draining takes seconds.
    rx.set(Behavior::Delay(Duration::from_millis(20)));
    rx.restart().await;
    // Once delivery has resumed and the in-memory lane has room again
    // (what the driver held and the 1000 in memory are out), live events
    // arrive. Before that they would queue on disk under any ordering.
    wait_until_async("delivery to resume", Duration::from_secs(60), || {
        s.metrics()
            .dest("sluice_destination_sent_events_total", "out")
            >= 2000
            && status_out(&s)["queued"] == 0
    })
    .await;
    let url = format!("http://{}/", s.source("web"));
    let client = reqwest::Client::new();
    let before = rx.accepted().len();
    assert!(post(&client, &url, 1_000_000..1_000_100).await);
    eprintln!("live events posted after {before} had arrived");
    wait_until_async("everything delivered", Duration::from_secs(120), || {
        distinct(&seqs(&rx)).len() as u64 == backlog + 100
    })
    .await;
    terminate(&mut s);
    assert!(balanced(&s.final_accounting("out")));
    seqs(&rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_ordering_delivers_the_backlog_before_live_events() {
    let got = backlog_then_live("max_events: 1000", 30_000).await;
    assert_first_arrivals_in_order(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_first_delivers_live_events_while_the_backlog_drains() {
    let got = backlog_then_live(
        "max_events: 1000, ordering: live_first, drain_rate: 2000",
        30_000,
    )
    .await;
    let first_live = got.iter().position(|&s| s >= 1_000_000).unwrap();
    let last_backlog = got.iter().rposition(|&s| s < 1_000_000).unwrap();
    assert!(
        first_live < last_backlog,
        "live events arrived at {first_live}, before the backlog finished at {last_backlog}"
    );
}

/// `mode: error`: with a lane large enough to hold the whole outage in
/// memory, a failing destination still moves it to disk at once, so a
/// crash loses nothing that was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mode_error_writes_through_while_the_destination_fails() {
    let data = tempfile::tempdir().unwrap();
    let mut rx = down_receiver().await;
    let sources = generator(10000, 0, 150);
    let yaml = config(
        data.path(),
        &rx.url("/"),
        &sources,
        "mode: error, max_events: 100000",
    );
    let s = start(&yaml);
    // Everything but what the driver holds (a job being retried and the
    // next one) goes to disk.
    wait_until_async("the outage on disk", Duration::from_secs(60), || {
        s.metrics().dest("sluice_persistent_queue_events", "out") >= 9000
    })
    .await;
    assert_eq!(status_out(&s)["persistent_queue"]["engaged"], true);
    let on_disk = s.metrics().dest("sluice_persistent_queue_events", "out");
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(s.pid(), libc::SIGKILL);
    }
    drop(s);
    rx.restart().await;
    let mut s = start(&config(
        data.path(),
        &rx.url("/"),
        HTTP_SOURCE,
        "mode: error",
    ));
    wait_until_async("the disk delivered", Duration::from_secs(60), || {
        distinct(&seqs(&rx)).len() as u64 >= on_disk
    })
    .await;
    assert_first_arrivals_in_order(&seqs(&rx));
    terminate(&mut s);
    assert!(balanced(&s.final_accounting("out")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_cannot_share_a_queue() {
    let data = tempfile::tempdir().unwrap();
    let yaml = config(data.path(), "http://127.0.0.1:1/", HTTP_SOURCE, "");
    let _first = start(&yaml);
    let path = data.path().join("second.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("another process is using this queue") && err.contains("queues/out"),
        "{err}"
    );
}
