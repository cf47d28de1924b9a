//! A model test of the promise, through the real binary: generated
//! scenarios over backpressure policy × `on_full` × queue mode ×
//! acknowledgements × peer behaviour (up, down, slow, refusing, flaky,
//! flapping) × how the run ends (drained, cut off by the shutdown timeout,
//! `kill -9`). For every scenario:
//!
//! - every `/metrics` scrape while it runs balances each destination's
//!   books (`events = sent + dropped + queued + in flight + on disk`), and
//!   no counter ever goes down;
//! - no acknowledgement claims an event that was dropped: every event of a
//!   request answered 200 reaches the peer — at once, or from the
//!   persistent queue once sluice is started again after a cut or a kill;
//! - after a clean exit every accepted event was delivered, counted under a
//!   drop reason, or is still queued, and the final accounting balances.
//!
//! `SLUICE_MODEL_CASES` sets how many scenarios (default 16); shrunk
//! failures are kept in `proptest-regressions/model.txt` and run first.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::receiver::{Behavior, Receiver, Reply};
use common::{Sluice, seq_of};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Block,
    DropNewest,
    DropOldest,
    /// `persistent_queue` with its mode and `on_full`.
    Disk {
        mode: &'static str,
        on_full: &'static str,
        small: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Up,
    Down,
    Slow,
    /// 400 for everything: rejected for good.
    Refusing,
    /// 503 for about half the requests.
    Flaky,
    /// Down and up again every 150 ms.
    Flapping,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The peer comes back, everything drains, then SIGTERM.
    Drain,
    /// SIGTERM with the peer still as it was; `shutdown_timeout: 300ms`.
    Cut,
    /// SIGKILL with the peer still as it was.
    Kill,
}

#[derive(Debug, Clone)]
struct Scenario {
    policy: Policy,
    acks: bool,
    peer: Peer,
    end: End,
    /// Events per request, one entry per request.
    requests: Vec<u64>,
    capacity: usize,
    batch: usize,
}

fn policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        Just(Policy::Block),
        Just(Policy::DropNewest),
        Just(Policy::DropOldest),
        (
            prop_oneof![Just("backpressure"), Just("always"), Just("error")],
            prop_oneof![Just("block"), Just("drop")],
            any::<bool>()
        )
            .prop_map(|(mode, on_full, small)| Policy::Disk {
                mode,
                on_full,
                small
            }),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        policy(),
        any::<bool>(),
        prop_oneof![
            Just(Peer::Up),
            Just(Peer::Down),
            Just(Peer::Slow),
            Just(Peer::Refusing),
            Just(Peer::Flaky),
            Just(Peer::Flapping),
        ],
        prop_oneof![Just(End::Drain), Just(End::Cut), Just(End::Kill)],
        prop::collection::vec(1u64..60, 5..30),
        prop_oneof![Just(50usize), Just(300), Just(2000)],
        prop_oneof![Just(10usize), Just(100)],
    )
        .prop_map(
            |(policy, acks, peer, end, requests, capacity, batch)| Scenario {
                policy,
                acks,
                peer,
                end,
                requests,
                capacity,
                batch,
            },
        )
}

impl Scenario {
    fn config(&self, data: &Path, url: &str) -> String {
        let (backpressure, queue) = match self.policy {
            Policy::Block => ("block", String::new()),
            Policy::DropNewest => ("drop", String::new()),
            Policy::DropOldest => ("drop", ", drop: oldest".to_string()),
            Policy::Disk {
                mode,
                on_full,
                small,
            } => (
                "persistent_queue",
                format!(
                    ", mode: {mode}, on_full: {on_full}, fsync: always, max_bytes: {}, segment_bytes: 64KiB",
                    if small { "16KiB" } else { "64MiB" }
                ),
            ),
        };
        let timeout = if self.end == End::Drain {
            "10s"
        } else {
            "300ms"
        };
        format!(
            r#"
api: {{ address: 127.0.0.1:0 }}
data_dir: "{}"
shutdown_timeout: {timeout}
sources:
  web: {{ type: http, address: 127.0.0.1:0, acknowledgements: {}, max_wait: 200ms }}
routes: [{{ name: all, destination: out }}]
destinations:
  out:
    type: http
    url: "{url}"
    batch: {{ max_events: {}, timeout: 20ms }}
    request: {{ concurrency: 2, timeout: 1s }}
    retry: {{ initial_backoff: 20ms, max_backoff: 200ms }}
    backpressure: {backpressure}
    queue: {{ max_events: {}{queue} }}
"#,
            data.display(),
            self.acks,
            self.batch,
            self.capacity,
        )
    }

    fn persistent(&self) -> bool {
        matches!(self.policy, Policy::Disk { .. })
    }
}

/// What the senders were told.
#[derive(Default, Debug)]
struct Told {
    /// Ids of requests answered 200.
    acked: BTreeSet<u64>,
    sent: u64,
}

/// Ids a refusing peer answered 400: counted `rejected`, never delivered.
type Refused = Arc<Mutex<BTreeSet<u64>>>;

async fn set_peer(rx: &mut Receiver, peer: Peer, up: &mut bool, refused: &Refused) {
    let want_up = !matches!(peer, Peer::Down);
    if want_up && !*up {
        rx.restart().await;
    } else if !want_up && *up {
        rx.kill().await;
    }
    *up = want_up;
    rx.set(match peer {
        Peer::Up | Peer::Down | Peer::Flapping => Behavior::Ok,
        Peer::Slow => Behavior::Delay(Duration::from_millis(40)),
        Peer::Refusing => {
            let refused = refused.clone();
            Behavior::Custom(Arc::new(move |events| {
                let mut r = refused.lock().unwrap_or_else(|e| e.into_inner());
                r.extend(events.iter().map(|l| seq_of(l)));
                Reply::code(400)
            }))
        }
        Peer::Flaky => {
            let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
            Behavior::Custom(Arc::new(move |_| {
                if n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .is_multiple_of(2)
                {
                    Reply::code(503)
                } else {
                    Reply::ok()
                }
            }))
        }
    });
}

/// The counters that must never go down, from one scrape.
fn counters(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("sluice_") && l.contains("_total"))
        .filter_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            Some((name.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Wait for `cond` up to `timeout`; `Err` names what never came.
fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    while !cond() {
        if std::time::Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn received(rx: &Receiver) -> BTreeSet<u64> {
    rx.accepted().iter().map(|l| seq_of(l)).collect()
}

/// Acknowledged ids the peer did not get. Only a persistent queue
/// acknowledges before delivery (on disk is its promise), so only there
/// may the peer refuse an acknowledged event afterwards (counted
/// `rejected`); elsewhere a refusal fails the acknowledgement.
fn missing(s: &Scenario, acked: &BTreeSet<u64>, rx: &Receiver, refused: &Refused) -> Vec<u64> {
    let got = received(rx);
    let refused = refused.lock().unwrap_or_else(|e| e.into_inner());
    let acks_before_delivery = s.persistent();
    acked
        .iter()
        .filter(|i| !(got.contains(i) || acks_before_delivery && refused.contains(i)))
        .copied()
        .collect()
}

fn run(s: &Scenario, rt: &tokio::runtime::Runtime) -> Result<(), String> {
    let data = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut rx = rt.block_on(Receiver::start());
    let mut up = true;
    let refused = Refused::default();
    rt.block_on(set_peer(&mut rx, s.peer, &mut up, &refused));
    let yaml = s.config(data.path(), &rx.url("/"));
    let mut sluice = Sluice::start(&yaml);
    let url = format!("http://{}/", sluice.source("web"));

    // Senders, concurrently, while the peer behaves as chosen (flapping:
    // down and up every 150 ms).
    let told = Arc::new(Mutex::new(Told::default()));
    let senders = {
        let (told, url, requests) = (told.clone(), url.clone(), s.requests.clone());
        rt.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap_or_default();
            let mut next = 0u64;
            let mut tasks = Vec::new();
            for n in requests {
                let ids = next..next + n;
                next += n;
                let (client, url, told) = (client.clone(), url.clone(), told.clone());
                tasks.push(tokio::spawn(async move {
                    let body: String = ids.clone().map(|i| common::event_line(i, 80)).collect();
                    let answer = client.post(&url).body(body).send().await;
                    let mut t = told.lock().unwrap_or_else(|e| e.into_inner());
                    t.sent += n;
                    if matches!(answer, Ok(r) if r.status() == 200) {
                        t.acked.extend(ids);
                    }
                }));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    let mut scrape = |sluice: &Sluice| -> Result<(), String> {
        let m = sluice.metrics();
        m.books_balance("out")
            .map_err(|e| format!("a scrape did not balance: {e}"))?;
        let now = counters(&m.0);
        for (k, v) in &now {
            if last.get(k).is_some_and(|before| v < before) {
                return Err(format!("{k} went down: {} -> {v}", last[k]));
            }
        }
        last = now;
        Ok(())
    };
    for i in 0..8 {
        std::thread::sleep(Duration::from_millis(75));
        if s.peer == Peer::Flapping {
            let next = if i % 2 == 0 { Peer::Down } else { Peer::Up };
            rt.block_on(set_peer(&mut rx, next, &mut up, &refused));
        }
        scrape(&sluice)?;
    }

    let mut senders = Some(senders);
    match s.end {
        End::Drain => {
            rt.block_on(set_peer(&mut rx, Peer::Up, &mut up, &refused));
            if let Some(t) = senders.take() {
                rt.block_on(t).map_err(|e| e.to_string())?;
            }
            let settled = |sl: &Sluice| {
                let m = sl.metrics();
                let d = "out";
                m.dest("sluice_destination_events_total", d)
                    == m.dest("sluice_destination_sent_events_total", d) + m.dropped_any(d)
            };
            wait("the destination to settle", Duration::from_secs(20), || {
                settled(&sluice)
            })?;
            scrape(&sluice)?;
            sluice.terminate();
        }
        End::Cut => sluice.terminate(),
        End::Kill => common::signal(sluice.pid(), libc::SIGKILL),
    }
    let exit = sluice.wait_exit(Duration::from_secs(30));
    if s.end != End::Kill && !exit.success() {
        return Err(format!("sluice exited with {exit}"));
    }
    // Whatever the senders still waited on was answered (or cut off).
    if let Some(t) = senders.take() {
        rt.block_on(t).map_err(|e| e.to_string())?;
    }
    let told = std::mem::take(&mut *told.lock().unwrap_or_else(|e| e.into_inner()));

    if s.end != End::Kill {
        let acc = sluice.final_accounting("out");
        let n = |k: &str| acc[k].as_u64().unwrap_or(0);
        if n("events") != n("sent") + n("dropped") + n("queued") {
            return Err(format!("the final accounting does not balance: {acc}"));
        }
        // One route takes every event: what `out` got is what was accepted.
        let accepted = n("events");
        let got = received(&rx).len() as u64;
        if accepted > got + n("dropped") + n("queued") {
            return Err(format!(
                "{accepted} accepted, {got} received, {} dropped, {} queued: events vanished",
                n("dropped"),
                n("queued")
            ));
        }
        let lossless = matches!(s.policy, Policy::Block)
            || matches!(
                s.policy,
                Policy::Disk {
                    on_full: "block",
                    ..
                }
            );
        if s.end == End::Drain && lossless && s.peer != Peer::Refusing && got < accepted {
            return Err(format!(
                "{accepted} accepted and {got} received with a lossless policy"
            ));
        }
    }

    // The persistent queue gives back what it kept: start again, peer up.
    // (Without acknowledgements a 200 promises nothing past the door.)
    if s.acks && s.persistent() && s.end != End::Drain {
        rt.block_on(set_peer(&mut rx, Peer::Up, &mut up, &refused));
        let mut again = Sluice::start(&yaml);
        let drained = wait(
            "acknowledged events delivered from the persistent queue",
            Duration::from_secs(20),
            || missing(s, &told.acked, &rx, &refused).is_empty(),
        );
        again.terminate();
        again.wait_exit(Duration::from_secs(30));
        if let Err(e) = drained {
            let missing: Vec<u64> = missing(s, &told.acked, &rx, &refused)
                .into_iter()
                .take(10)
                .collect();
            return Err(format!(
                "{e}: {} acknowledged, first missing {missing:?}",
                told.acked.len()
            ));
        }
    }
    if s.acks {
        let missing: Vec<u64> = missing(s, &told.acked, &rx, &refused)
            .into_iter()
            .take(5)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{} acknowledged, first missing at the peer: {missing:?}",
                told.acked.len()
            ));
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("SLUICE_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 16,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_promise_holds_for_generated_scenarios(s in scenario()) {
        let rt = common::runtime();
        if let Err(e) = run(&s, &rt) {
            eprintln!("FAILED {s:?}: {e}");
            return Err(TestCaseError::fail(format!("{s:?}: {e}")));
        }
    }
}
