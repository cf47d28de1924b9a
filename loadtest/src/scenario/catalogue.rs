//! The chaos scenarios. Each names what it proves in its description; times
//! are seconds from the scenario start, shorter in a smoke run.

use serde_json::{Value, json};

use super::{Addrs, Chaos, Check, Ctx, Expect, Kind, ReceiverSpec, Report};
use crate::fault::{Fault, Window};
use crate::generator::Protocol;

/// Every chaos scenario's name, in run order.
pub const NAMES: &[&str] = &[
    "outage-block",
    "outage-drop",
    "outage-persistent-queue",
    "kill9-persistent-queue",
    "http-503-storm",
    "http-429-retry-after",
    "http-400-dead-letter",
    "http-connection-close",
    "lb-blackhole",
    "tcp-receiver-stall",
    "udp-destination",
    "slow-receiver",
    "kafka-broker-restart",
    "http-hang",
    "tcp-hang",
    "otlp-grpc-hang",
    "kafka-broker-hang",
    "reload-under-load",
    "hostile-clients",
];

fn route_all(dest: &str) -> Value {
    json!([{ "name": "all", "destination": dest }])
}

fn http_dest(url: String, extra: Value) -> Value {
    let mut d = json!({
        "type": "http",
        "url": url,
        "batch": { "max_events": 500, "timeout": "200ms" },
        "request": { "timeout": "5s" },
        "retry": { "initial_backoff": "200ms", "max_backoff": "5s" },
    });
    merge(&mut d, extra);
    d
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), extra) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// Everything to a Kafka destination on the `broker` receiver, with a
/// persistent queue (`mode: error`) and `max_backoff` as given.
fn kafka_pipeline(max_backoff: &'static str) -> super::Pipeline {
    Box::new(move |a| {
        (
            route_all("out"),
            json!({ "out": {
                "type": "kafka",
                "brokers": [a.addr("broker")],
                "topic": crate::receiver::kafka::TOPIC,
                "compression": "zstd",
                "request": { "timeout": "3s" },
                "retry": { "initial_backoff": "200ms", "max_backoff": max_backoff },
                "backpressure": "persistent_queue",
                "queue": { "mode": "error", "max_events": 2000 },
            } }),
        )
    })
}

fn receiver(name: &'static str, kind: Kind, faults: Vec<Window>) -> ReceiverSpec {
    ReceiverSpec { name, kind, faults }
}

/// `base` with one HTTP receiver, `collector`, injecting `faults`, and every
/// event routed to an HTTP destination on it with the `extra` settings.
fn collector(base: Chaos, faults: Vec<Window>, extra: Value) -> Chaos {
    Chaos {
        receivers: vec![receiver("collector", Kind::Http, faults)],
        pipeline: Box::new(move |a| {
            (
                route_all("out"),
                json!({ "out": http_dest(a.http("collector"), extra.clone()) }),
            )
        }),
        ..base
    }
}

fn check(f: impl Fn(&Report) -> Vec<String> + 'static) -> Option<Check> {
    Some(Box::new(f))
}

fn need(ok: bool, what: String) -> Vec<String> {
    if ok { Vec::new() } else { vec![what] }
}

fn receiver_events(r: &Report, name: &str) -> u64 {
    r.receivers
        .iter()
        .find(|x| x.name == name)
        .map(|x| x.events)
        .unwrap_or(0)
}

fn answers(r: &Report, name: &str, code: u16) -> u64 {
    r.receivers
        .iter()
        .find(|x| x.name == name)
        .and_then(|x| x.answers.get(&code).copied())
        .unwrap_or(0)
}

/// How long after `back` (the peer's return) deliveries resumed: the first
/// sample after it in which the receivers got more than before.
fn resumed_after(r: &Report, back: f64) -> Option<f64> {
    let before = r
        .timeline
        .iter()
        .take_while(|x| x.t <= back)
        .last()
        .map_or(0, |x| x.received);
    r.timeline
        .iter()
        .find(|x| x.t > back && x.received > before)
        .map(|x| x.t - back)
}

/// Delivery resumed within `RECOVERY` seconds of the peer's return, however
/// long the outage (plus one sampling interval of slack).
fn recovered_quickly(r: &Report, back: f64) -> Vec<String> {
    const RECOVERY: f64 = 5.0;
    match resumed_after(r, back) {
        Some(d) if d <= RECOVERY + 0.5 => Vec::new(),
        Some(d) => vec![format!(
            "deliveries resumed {d:.1} s after the peer returned (limit {RECOVERY} s)"
        )],
        None => vec!["deliveries never resumed after the peer returned".into()],
    }
}

/// A base chaos scenario: TCP source at `rate`, one HTTP receiver.
fn base(name: &'static str, description: &'static str, seconds: f64) -> Chaos {
    Chaos {
        name,
        description,
        source: Protocol::Tcp,
        acknowledgements: false,
        receivers: Vec::new(),
        pipeline: Box::new(|_| (Value::Null, Value::Null)),
        rate: 5_000,
        seconds,
        event_bytes: 200,
        connections: 2,
        batch: 50,
        expect: Expect::NoLoss,
        kill_at: None,
        rss_after: 5.0,
        check: None,
        reload: None,
        source_settings: Value::Null,
        hostile: None,
    }
}

/// The reload scenario's two configurations: everything to `out` (the
/// path that must lose and repeat nothing), plus a filtered copy whose
/// filter changes, a destination added and removed, and `out`'s own
/// batching changed (its driver replaced on the same lane).
fn reload_pipeline(a: &Addrs, second: bool) -> (Value, Value) {
    let (filter, max_events) = if second {
        ("level == \"warn\"", 300)
    } else {
        ("level == \"error\"", 500)
    };
    let mut routes = vec![
        json!({ "name": "all", "destination": "out", "final": false }),
        json!({ "name": "copy", "filter": filter, "destination": "copies", "final": false }),
    ];
    let mut dests = json!({
        "out": http_dest(a.http("collector"), json!({ "batch": { "max_events": max_events, "timeout": "200ms" } })),
        "copies": { "type": "blackhole" },
        "rest": { "type": "blackhole" },
    });
    if second {
        routes.push(json!({ "name": "extra", "destination": "extra", "final": false }));
        dests["extra"] = json!({ "type": "blackhole", "backpressure": "drop" });
    }
    routes.push(json!({ "name": "rest", "destination": "rest" }));
    (Value::Array(routes), dests)
}

pub fn build(name: &str, ctx: &Ctx) -> Option<Chaos> {
    let s = |full: f64, smoke: f64| ctx.secs(full, smoke);
    // An outage: up for `lead`, down for `down`, then up until the end.
    let (lead, down, tail) = (s(5.0, 2.0), s(30.0, 5.0), s(10.0, 3.0));
    let outage = vec![Window::new(lead, lead + down, Fault::Down)];
    let outage_total = lead + down + tail;
    // A hang: the peer's process stopped (SIGSTOP) for `hung`, continued.
    let hung = s(15.0, 5.0);
    let hang = vec![Window::new(lead, lead + hung, Fault::Hang)];
    let hang_total = lead + hung + tail;
    let resumes = move |r: &Report| recovered_quickly(r, lead + hung);
    Some(match name {
        "outage-block" => Chaos {
            rate: 20_000,
            check: check(move |r| {
                // While the peer is down and the generator still offering,
                // the sender must be held back (the lane and the socket
                // buffers fill first).
                let throttled = r
                    .timeline
                    .iter()
                    .any(|x| x.t > lead && x.t < lead + down && x.sent_per_s < 2_000.0);
                let mut problems = need(
                    throttled,
                    "the TCP sender was never throttled during the outage".into(),
                );
                problems.extend(recovered_quickly(r, lead + down));
                problems
            }),
            ..collector(
                base(
                    "outage-block",
                    "HTTP destination down; backpressure: block. The TCP sender is throttled; nothing is lost.",
                    outage_total,
                ),
                outage,
                json!({ "backpressure": "block" }),
            )
        },
        "outage-drop" => Chaos {
            expect: Expect::ExactlyCounted,
            check: check(move |r| {
                let mut problems = need(
                    r.sluice.dropped.get("backpressure").copied().unwrap_or(0.0) > 0.0,
                    "nothing was dropped for backpressure during the outage".into(),
                );
                problems.extend(recovered_quickly(r, lead + down));
                problems
            }),
            ..collector(
                base(
                    "outage-drop",
                    "HTTP destination down; backpressure: drop. Lost events are exactly those counted as dropped.",
                    outage_total,
                ),
                outage,
                json!({ "backpressure": "drop", "queue": { "max_events": 2000 } }),
            )
        },
        "outage-persistent-queue" => Chaos {
            check: check(move |r| {
                let mut problems = need(
                    r.timeline.iter().any(|x| x.disk > 0.0),
                    "the persistent queue never held anything".into(),
                );
                problems.extend(recovered_quickly(r, lead + down));
                problems
            }),
            ..collector(
                base(
                    "outage-persistent-queue",
                    "HTTP destination down; backpressure: persistent_queue. Spills to disk, drains in order, loses nothing.",
                    outage_total,
                ),
                outage,
                json!({
                    "backpressure": "persistent_queue",
                    "queue": { "max_events": 1000 },
                }),
            )
        },
        "kill9-persistent-queue" => {
            let kill = s(12.0, 4.0);
            let back = s(20.0, 7.0);
            Chaos {
                source: Protocol::Http,
                acknowledgements: true,
                batch: 100,
                connections: 4,
                kill_at: Some((kill, 1.0)),
                rss_after: kill + 3.0,
                check: check(|r| need(r.sluice.restarts == 1, "sluice was not restarted".into())),
                ..collector(
                    base(
                        "kill9-persistent-queue",
                        "HTTP source with acknowledgements into a persistent queue (mode always, fsync always) while the destination is down; sluice is killed with SIGKILL mid-spill and restarted: every acknowledged event arrives.",
                        back + s(8.0, 3.0),
                    ),
                    vec![Window::new(0.5, back, Fault::Down)],
                    json!({
                        "backpressure": "persistent_queue",
                        "queue": { "mode": "always", "fsync": "always" },
                    }),
                )
            }
        }
        "http-503-storm" => Chaos {
            check: check(|r| {
                need(
                    answers(r, "collector", 503) > 0 && r.sluice.retries > 0.0,
                    "no 503 was answered and retried".into(),
                )
            }),
            ..collector(
                base(
                    "http-503-storm",
                    "Every request answered 503 for a while, then recovery: retried, nothing lost.",
                    s(20.0, 8.0),
                ),
                vec![Window::new(
                    s(3.0, 1.0),
                    s(13.0, 5.0),
                    Fault::Status {
                        code: 503,
                        rate: 1.0,
                        retry_after: None,
                    },
                )],
                json!({}),
            )
        },
        "http-429-retry-after" => Chaos {
            check: check(|r| {
                need(
                    answers(r, "collector", 429) > 0,
                    "no 429 was answered".into(),
                )
            }),
            ..collector(
                base(
                    "http-429-retry-after",
                    "Half the requests answered 429 with Retry-After: 2 for a while: the endpoint pauses as asked, nothing lost.",
                    s(20.0, 8.0),
                ),
                vec![Window::new(
                    s(3.0, 1.0),
                    s(13.0, 5.0),
                    Fault::Status {
                        code: 429,
                        rate: 0.5,
                        retry_after: Some(2),
                    },
                )],
                json!({}),
            )
        },
        "http-400-dead-letter" => Chaos {
            receivers: vec![
                receiver(
                    "collector",
                    Kind::Http,
                    vec![Window::new(
                        s(2.0, 1.0),
                        s(12.0, 4.0),
                        Fault::Status {
                            code: 400,
                            rate: 0.2,
                            retry_after: None,
                        },
                    )],
                ),
                receiver("dead-letters", Kind::Http, vec![]),
            ],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({
                        "out": http_dest(a.http("collector"), json!({ "dead_letter": "dlq" })),
                        "dlq": http_dest(a.http("dead-letters"), json!({})),
                    }),
                )
            }),
            check: check(|r| {
                let dl = r.sluice.dropped.get("dead_letter").copied().unwrap_or(0.0) as u64;
                let got = receiver_events(r, "dead-letters");
                let mut f = need(dl > 0, "nothing was dead-lettered".into());
                f.extend(need(dl == got, format!("{dl} events counted as dead-lettered but {got} reached the dead-letter receiver")));
                f
            }),
            ..base(
                "http-400-dead-letter",
                "A fifth of the requests answered 400 for a while: those batches go to a dead-letter HTTP destination with their status; every event arrives at one of the two.",
                s(16.0, 6.0),
            )
        },
        "http-connection-close" => Chaos {
            ..collector(
                base(
                    "http-connection-close",
                    "The receiver closes every connection three times, requests in flight included: those requests are sent again (duplicates allowed), nothing lost.",
                    s(16.0, 7.0),
                ), // Every few seconds the receiver drops every connection,
                // requests in flight included: a restart behind a proxy.
                (1..=3)
                    .map(|i| {
                        let at = s(4.0, 1.5) * f64::from(i);
                        Window::new(at, at + 0.5, Fault::Close)
                    })
                    .collect(),
                json!({}),
            )
        },
        "lb-blackhole" => Chaos {
            receivers: vec![
                receiver("a", Kind::Http, vec![]),
                receiver("b", Kind::Http, vec![]),
                receiver(
                    "hole",
                    Kind::Http,
                    vec![Window::new(s(3.0, 1.0), f64::MAX, Fault::Stall)],
                ),
            ],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({ "out": {
                        "type": "http",
                        "endpoints": [
                            { "url": a.http("a") }, { "url": a.http("b") }, { "url": a.http("hole") },
                        ],
                        "batch": { "max_events": 500, "timeout": "200ms" },
                        "request": { "timeout": "2s" },
                    } }),
                )
            }),
            check: check(|r| {
                let (a, b) = (receiver_events(r, "a"), receiver_events(r, "b"));
                need(
                    a > 0 && b > 0,
                    format!("the healthy endpoints did not both take traffic ({a}, {b})"),
                )
            }),
            ..base(
                "lb-blackhole",
                "Three load-balanced HTTP endpoints; one starts accepting requests and never answering. Its batches time out and move on; nothing lost.",
                s(20.0, 8.0),
            )
        },
        "tcp-receiver-stall" => Chaos {
            receivers: vec![
                receiver("a", Kind::Tcp, vec![]),
                receiver(
                    "b",
                    Kind::Tcp,
                    vec![Window::new(s(3.0, 1.0), s(13.0, 4.0), Fault::Stall)],
                ),
            ],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({ "out": {
                        "type": "tcp",
                        "endpoints": [ { "address": a.addr("a") }, { "address": a.addr("b") } ],
                        "write_timeout": "2s",
                    } }),
                )
            }),
            check: check(|r| {
                let a = receiver_events(r, "a");
                need(a > 0, "the healthy TCP receiver took nothing".into())
            }),
            ..base(
                "tcp-receiver-stall",
                "Two load-balanced TCP receivers; one stops reading for a while and then reads again. The write timeout marks it down, its batch moves to the other; what sat in its socket buffers is read when it resumes: nothing lost.",
                s(20.0, 8.0),
            )
        },
        "udp-destination" => Chaos {
            rate: 2_000,
            receivers: vec![receiver("statsd", Kind::Udp, vec![])],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({ "out": { "type": "udp", "address": a.addr("statsd"), "pack": true, "max_datagram_bytes": 8192 } }),
                )
            }),
            ..base(
                "udp-destination",
                "TCP in, UDP out (events packed into datagrams) at a rate loopback can carry: every event arrives.",
                s(10.0, 4.0),
            )
        },
        "slow-receiver" => Chaos {
            rate: 20_000,
            rss_after: s(15.0, 5.0),
            check: check(|r| {
                need(
                    r.rss_max_over_min < 1.5,
                    format!(
                        "RSS grew while the receiver was slow: max/min {:.2}",
                        r.rss_max_over_min
                    ),
                )
            }),
            ..collector(
                base(
                    "slow-receiver",
                    "A receiver that takes 300 ms per request, offered about three times what it can take, for minutes: the sender is throttled and sluice's memory stays flat.",
                    s(180.0, 20.0),
                ),
                vec![Window::new(0.0, f64::MAX, Fault::Latency { ms: 300 })],
                json!({ "request": { "concurrency": 2, "timeout": "10s" } }),
            )
        },
        "reload-under-load" => Chaos {
            rate: 20_000,
            receivers: vec![receiver("collector", Kind::Http, vec![])],
            pipeline: Box::new(|a| reload_pipeline(a, false)),
            reload: Some(super::Reload {
                every: s(0.5, 0.5),
                alternate: Box::new(|a| reload_pipeline(a, true)),
            }),
            check: check(|r| {
                let mut problems = need(
                    r.comparison.duplicates == 0,
                    format!("{} events repeated across reloads", r.comparison.duplicates),
                );
                problems.extend(need(
                    r.reloads.get("success").copied().unwrap_or(0) >= 10,
                    format!("too few reloads: {:?}", r.reloads),
                ));
                problems
            }),
            ..base(
                "reload-under-load",
                "The configuration reloaded every half second under 20k events/s (a filter changed, a destination added and removed, the HTTP destination's batching changed): nothing lost, nothing repeated.",
                s(30.0, 8.0),
            )
        },
        "http-hang" => Chaos {
            check: check(resumes),
            ..collector(
                base(
                    "http-hang",
                    "The HTTP peer's process is stopped (SIGSTOP) under load, then continued: its connections stay open and nothing is answered. Requests time out and are retried; deliveries resume within seconds of SIGCONT; nothing lost.",
                    hang_total,
                ),
                hang.clone(),
                json!({ "request": { "timeout": "2s" }, "retry": { "initial_backoff": "200ms", "max_backoff": "30s" } }),
            )
        },
        "tcp-hang" => Chaos {
            receivers: vec![receiver("collector", Kind::Tcp, hang.clone())],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({ "out": {
                        "type": "tcp",
                        "address": a.addr("collector"),
                        "write_timeout": "2s",
                        "retry": { "initial_backoff": "200ms", "max_backoff": "30s" },
                    } }),
                )
            }),
            check: check(resumes),
            ..base(
                "tcp-hang",
                "The TCP peer's process is stopped (SIGSTOP) under load, then continued: writes stall in full socket buffers, the write timeout fires and the batch is retried; deliveries resume within seconds of SIGCONT; nothing lost.",
                hang_total,
            )
        },
        "otlp-grpc-hang" => Chaos {
            receivers: vec![receiver("collector", Kind::Otlp, hang.clone())],
            pipeline: Box::new(|a| {
                (
                    route_all("out"),
                    json!({ "out": {
                        "type": "otlp",
                        "protocol": "grpc",
                        "endpoint": a.http("collector").trim_end_matches('/'),
                        "request": { "timeout": "2s" },
                        "retry": { "initial_backoff": "200ms", "max_backoff": "30s" },
                    } }),
                )
            }),
            check: check(resumes),
            ..base(
                "otlp-grpc-hang",
                "The OTLP/gRPC collector's process is stopped (SIGSTOP) under load, then continued: the HTTP/2 connection stays open and nothing is answered. Exports time out and are retried; deliveries resume within seconds of SIGCONT; nothing lost.",
                hang_total,
            )
        },
        "kafka-broker-hang" => Chaos {
            rate: 10_000,
            receivers: vec![receiver("broker", Kind::Kafka, hang.clone())],
            pipeline: kafka_pipeline("30s"),
            check: check(resumes),
            ..base(
                "kafka-broker-hang",
                "Kafka destination (Tansu); the broker's process is stopped (SIGSTOP) under load, then continued; backpressure: persistent_queue, mode: error. Records time out while it hangs, spill to disk, and deliveries resume within seconds of SIGCONT; nothing lost.",
                hang_total,
            )
        },
        "kafka-broker-restart" => Chaos {
            rate: 10_000,
            receivers: vec![receiver("broker", Kind::Kafka, outage.clone())],
            pipeline: kafka_pipeline("2s"),
            check: check(move |r| {
                let mut problems = need(
                    r.timeline.iter().any(|x| x.disk > 0.0),
                    "the persistent queue never held anything while the broker was gone".into(),
                );
                problems.extend(recovered_quickly(r, lead + down));
                problems
            }),
            ..base(
                "kafka-broker-restart",
                "Kafka destination (Tansu); the broker is killed under load and a new, empty one started on its port; backpressure: persistent_queue, mode: error. Spills to disk while it is gone, then everything arrives.",
                outage_total,
            )
        },
        "hostile-clients" => {
            let attackers = crate::hostile::Attackers {
                bomb_every: std::time::Duration::from_millis(500),
                slowloris: 200,
                lying: 20,
                idle: 300,
            };
            Chaos {
                source: Protocol::Http,
                acknowledgements: true,
                batch: 100,
                connections: 4,
                source_settings: json!({ "body_timeout": "5s" }),
                hostile: Some(attackers),
                check: check(hostile_checks),
                ..collector(
                    base(
                        "hostile-clients",
                        "An HTTP source with acknowledgements under honest load while hostile clients attack it: a 10 KB gzip bomb (3.5 M events) twice a second, 200 slowloris senders, 20 bodies that never finish (a lying Content-Length) and 300 connections that send nothing. Every bomb is refused (413) at once with memory flat, every hostile connection is closed within seconds, and the honest senders are never refused and lose nothing.",
                        s(40.0, 16.0),
                    ),
                    Vec::new(),
                    json!({}),
                )
            }
        }
        _ => return None,
    })
}

/// What `hostile-clients` must show beyond losing nothing.
fn hostile_checks(r: &Report) -> Vec<String> {
    let Some(h) = &r.hostile else {
        return vec!["the hostile clients reported nothing".into()];
    };
    let g = &r.generator;
    let rejected = |reason: &str| r.sluice.source_rejected.get(reason).copied().unwrap_or(0.0);
    let mut problems = Vec::new();
    problems.extend(need(
        g.http_429 == 0 && g.http_other == 0 && g.connect_failures == 0,
        format!(
            "honest requests were refused: {} × 429, {} other, {} connections refused",
            g.http_429, g.http_other, g.connect_failures
        ),
    ));
    problems.extend(need(
        h.bombs_sent > 0 && h.bombs_refused == h.bombs_sent && h.bomb_slowest_s < 5.0,
        format!(
            "bombs: {} sent, {} refused with 413, slowest answer {:.1} s",
            h.bombs_sent, h.bombs_refused, h.bomb_slowest_s
        ),
    ));
    problems.extend(need(
        rejected("oversize") >= h.bombs_refused as f64,
        format!(
            "{} bombs refused but {} counted oversize",
            h.bombs_refused,
            rejected("oversize")
        ),
    ));
    // The header timeout is 10 s; the body timeout was set to 5 s.
    problems.extend(need(
        h.slowloris_closed > 0 && h.slowloris_longest_s < 15.0,
        format!(
            "slowloris: {} closed of {}, the longest open {:.1} s",
            h.slowloris_closed, h.slowloris_opened, h.slowloris_longest_s
        ),
    ));
    problems.extend(need(
        h.idle_closed > 0 && h.idle_longest_s < 15.0,
        format!(
            "idle: {} closed of {}, the longest open {:.1} s",
            h.idle_closed, h.idle_opened, h.idle_longest_s
        ),
    ));
    problems.extend(need(
        h.lying_timed_out > 0 && h.lying_longest_s < 10.0,
        format!(
            "lying Content-Length: {} answered 408 of {}, the longest {:.1} s",
            h.lying_timed_out, h.lying_sent, h.lying_longest_s
        ),
    ));
    problems.extend(need(
        rejected("timeout") > 0.0,
        "no connection was counted `timeout`".into(),
    ));
    problems.extend(need(
        r.rss_max_mb < 250.0,
        format!("RSS peaked at {:.0} MB (limit 250)", r.rss_max_mb),
    ));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Sample;

    fn report(received: &[(f64, u64)]) -> Report {
        Report {
            timeline: received
                .iter()
                .map(|&(t, received)| Sample {
                    t,
                    received,
                    ..Sample::default()
                })
                .collect(),
            ..Report::default()
        }
    }

    #[test]
    fn recovery_is_measured_from_the_peer_return() {
        let r = report(&[
            (1.0, 10),
            (2.0, 10),
            (3.0, 10),
            (4.0, 10),
            (9.0, 10),
            (10.0, 20),
        ]);
        assert_eq!(resumed_after(&r, 2.5), Some(7.5));
        assert_eq!(recovered_quickly(&r, 2.5).len(), 1);
        assert!(recovered_quickly(&r, 5.0).is_empty());
        let never = report(&[(1.0, 10), (5.0, 10)]);
        assert_eq!(recovered_quickly(&never, 2.0).len(), 1);
    }
}
