//! Reloading the configuration of a running sluice: under load, through
//! each trigger (`POST /api/v1/reload`, SIGHUP, `--watch-config`), and with
//! configurations that must be refused.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::receiver::Receiver;
use common::{Sluice, http_request, runtime, seq_of, signal, wait_until};
use serde_json::Value;

/// Rewrite the running process's config file (`{dir}` resolved).
fn write_config(s: &Sluice, yaml: &str) {
    let yaml = yaml.replace("{dir}", &s.dir.display().to_string());
    std::fs::write(s.dir.join("sluice.yaml"), yaml).expect("write config");
}

fn config_version(s: &Sluice) -> u64 {
    s.status()["config"]["version"].as_u64().unwrap_or(0)
}

fn reloads(s: &Sluice, result: &str) -> u64 {
    s.metrics().get(&format!(
        "sluice_config_reloads_total{{result=\"{result}\"}}"
    )) as u64
}

/// How many times each seq arrived.
fn counts(lines: &[String]) -> HashMap<u64, u32> {
    let mut m = HashMap::new();
    for l in lines {
        *m.entry(seq_of(l)).or_insert(0) += 1;
    }
    m
}

/// The configuration under load: `variant` toggles a route's filter, the
/// `main` destination's batching (a changed destination: its driver is
/// replaced on the same lane), the TCP source's line limit (a changed source
/// on the same address: its connection stays) and the `extra` destination
/// (added, then removed), and the `side` destination's policy (its lane is
/// replaced: the new one takes the old one's events), and the `stamp`
/// pipeline on the `all` route (each version marks events with its own
/// `stage`: every event at `main` passed through exactly one of them).
fn load_config(variant: usize, main: &str, side: &str, extra: &str, api_port: u16) -> String {
    let odd = variant % 2 == 1;
    let (filter, max_events, max_line, policy, stage) = if odd {
        ("level == \"warn\"", 37, "128KiB", "drop", "odd")
    } else {
        ("level == \"error\"", 100, "64KiB", "block", "even")
    };
    let extra_route = if odd {
        "  - {name: extra, destination: extra, final: false}\n"
    } else {
        ""
    };
    let extra_dest = if odd {
        format!("  extra: {{type: http, url: \"{extra}\", batch: {{timeout: 20ms}}}}\n")
    } else {
        String::new()
    };
    format!(
        r#"api: {{address: "127.0.0.1:{api_port}"}}
data_dir: "{{dir}}/data"
sources:
  gen: {{type: generator, rate: 2000, count: 30000}}
  lines: {{type: tcp, address: "127.0.0.1:0", max_line_bytes: {max_line}}}
pipelines:
  stamp:
    - {{type: eval, set: {{stage: "'{stage}'"}}}}
    - {{type: drop, filter: 'seq < 0'}}
routes:
  - {{name: all, destination: main, final: false, pipeline: stamp}}
  - {{name: side, filter: '{filter}', destination: side, final: false}}
{extra_route}  - {{name: rest, destination: sink}}
destinations:
  main: {{type: http, url: "{main}", batch: {{max_events: {max_events}, timeout: 20ms}}}}
  side: {{type: http, url: "{side}", backpressure: {policy}, batch: {{timeout: 20ms}}}}
{extra_dest}  sink: {{type: blackhole}}
"#
    )
}

#[test]
fn reload_under_load_delivers_every_event_once_and_refuses_an_invalid_config() {
    let rt = runtime();
    let main = rt.block_on(Receiver::start());
    let side = rt.block_on(Receiver::start());
    let extra = rt.block_on(Receiver::start());
    let api_port = common::real_peer::free_ports::<1>();
    let port = api_port.ports[0];
    let config = |v| load_config(v, &main.url("/"), &side.url("/"), &extra.url("/"), port);
    let s = Sluice::start(&config(0));
    assert_eq!(config_version(&s), 1);

    // One TCP connection, held open through every reload: its lines carry
    // seqs from 1,000,000 so they are told apart from the generator's.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let mut conn = std::net::TcpStream::connect(s.source("lines")).expect("connect");
        std::thread::spawn(move || {
            let mut seq = 1_000_000u64;
            while !stop.load(Ordering::Relaxed) {
                let line = format!("{{\"seq\":{seq},\"level\":\"info\"}}\n");
                // A reload that dropped this connection fails the test here.
                conn.write_all(line.as_bytes())
                    .expect("the TCP connection survives every reload");
                seq += 1;
                written.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    for i in 1..=20usize {
        write_config(&s, &config(i));
        if i % 2 == 0 {
            signal(s.pid(), libc::SIGHUP);
        } else {
            let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
            assert_eq!(code, 200, "reload {i}: {body}");
            let v: Value = serde_json::from_str(&body).expect("reload answer");
            assert_eq!(v["result"], "success", "{v}");
        }
        wait_until(
            &format!("reload {i} applied"),
            Duration::from_secs(30),
            || config_version(&s) == 1 + i as u64,
        );
        // Events keep flowing between reloads, which are spread over the
        // generator's run (a quarter of a second of its events apart).
        let before = main.accepted().len();
        wait_until("events flowing", Duration::from_secs(10), || {
            main.accepted().len() > before + 500
        });
    }
    assert_eq!(reloads(&s, "success"), 20);
    let status = s.status();
    assert_eq!(status["config"]["last_reload"]["result"], "success");
    assert!(status["config"]["loaded_at"].as_f64().unwrap() > 0.0);
    // The alerting pair Prometheus users know from Prometheus itself.
    let m = s.metrics();
    assert_eq!(m.get("sluice_config_last_reload_successful"), 1.0);
    let applied_at = m.get("sluice_config_last_reload_success_timestamp_seconds");
    assert!(
        (applied_at - status["config"]["loaded_at"].as_f64().unwrap_or(0.0)).abs() < 5.0,
        "last success {applied_at} is the last reload's time"
    );

    // An invalid configuration: refused with its position, the old one runs.
    let broken = config(20).replace("batch: {max_events: 100", "batch: {max_eventz: 100");
    write_config(&s, &broken);
    let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
    assert_eq!(code, 422, "{body}");
    let v: Value = serde_json::from_str(&body).expect("reload answer");
    assert_eq!(v["result"], "rejected");
    let error = v["errors"][0].as_str().unwrap_or_default();
    assert!(
        error.contains("sluice.yaml:15:") && error.contains("max_eventz"),
        "the error names the file, line and column: {error}"
    );
    assert_eq!(reloads(&s, "rejected"), 1);
    assert_eq!(config_version(&s), 21);
    let m = s.metrics();
    assert_eq!(m.get("sluice_config_last_reload_successful"), 0.0);
    assert_eq!(
        m.get("sluice_config_last_reload_success_timestamp_seconds"),
        applied_at,
        "a refused reload leaves the last success's time"
    );
    // Logged before the API answered; read from sluice's stderr a moment later.
    common::wait_until("the refusal logged", Duration::from_secs(10), || {
        s.has_log("reload refused: the configuration is invalid; the running one stays")
    });
    let before = main.accepted().len();
    wait_until(
        "the old config still delivers",
        Duration::from_secs(10),
        || main.accepted().len() > before,
    );

    // The generator finishes; the writer stops; everything arrives once.
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let tcp_lines = written.load(Ordering::Relaxed);
    let expected = 30_000 + tcp_lines;
    wait_until(
        "every event delivered to main",
        Duration::from_secs(60),
        || main.accepted().len() as u64 >= expected,
    );
    let got = counts(&main.accepted());
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicates at main: {dups:?}");
    let missing: Vec<u64> = (0..30_000)
        .chain(1_000_000..1_000_000 + tcp_lines)
        .filter(|q| !got.contains_key(q))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lost at main: {missing:?}");
    assert_eq!(got.len() as u64, expected);
    // Each went through one version of the route's pipeline or the other,
    // and both versions changed events.
    let mut stages: HashMap<String, u64> = HashMap::new();
    for l in main.accepted() {
        let v: Value = serde_json::from_str(&l).expect("json");
        *stages
            .entry(v["stage"].as_str().unwrap_or("none").to_string())
            .or_default() += 1;
    }
    assert_eq!(stages.get("none"), None, "{stages:?}");
    assert!(stages.get("odd").is_some_and(|n| *n > 0), "{stages:?}");
    assert!(stages.get("even").is_some_and(|n| *n > 0), "{stages:?}");

    // Counters continued across the reloads (never reset).
    let m = s.metrics();
    assert_eq!(m.dest("sluice_destination_events_total", "main"), expected);
    assert_eq!(m.source_events("gen"), 30_000);
    assert_eq!(m.source_events("lines"), tcp_lines);
    assert_eq!(m.dropped_any("main"), 0);
    // The pipeline's books continued across every version of it.
    assert_eq!(
        m.get(r#"sluice_pipeline_received_events_total{pipeline="stamp"}"#) as u64,
        expected
    );
    assert_eq!(
        m.get(r#"sluice_pipeline_sent_events_total{pipeline="stamp"}"#) as u64,
        expected
    );
    // `extra` was added and removed ten times; what it took it delivered.
    let extra_sent = m.dest("sluice_destination_sent_events_total", "extra");
    assert!(extra_sent > 0);
    assert_eq!(extra.accepted().len() as u64, extra_sent);
    assert_eq!(m.dropped_any("extra"), 0);
    // `side` had its lane replaced twenty times: nothing lost or repeated.
    wait_until("side delivered", Duration::from_secs(30), || {
        side.accepted().len() as u64 == m.dest("sluice_destination_events_total", "side")
    });
    let side_got = counts(&side.accepted());
    assert!(side_got.values().all(|n| *n == 1), "duplicates at side");
    assert_eq!(m.dropped_any("side"), 0);

    s.terminate();
    let mut s = s;
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    for d in ["main", "side", "extra"] {
        let r = s.final_accounting(d);
        assert_eq!(r["dropped"], 0, "{d}: {r}");
    }
}

#[test]
fn watch_config_reloads_on_change_and_the_api_needs_its_credentials() {
    let rt = runtime();
    let out = rt.block_on(Receiver::start());
    let added = rt.block_on(Receiver::start());
    let config = |extra: bool| {
        let (route, dest) = if extra {
            (
                "  - {name: copy, destination: added, final: false}\n".to_string(),
                format!(
                    "  added: {{type: http, url: \"{}\", batch: {{timeout: 20ms}}}}\n",
                    added.url("/")
                ),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            r#"api: {{address: "127.0.0.1:0", auth: {{bearer: "${{RELOAD_TOKEN}}"}}}}
sources:
  gen: {{type: generator, rate: 200}}
routes:
{route}  - {{name: all, destination: out}}
destinations:
  out: {{type: http, url: "{}", batch: {{timeout: 20ms}}}}
{dest}"#,
            out.url("/")
        )
    };
    let s = Sluice::start_with(&config(false), |c| {
        c.env("RELOAD_TOKEN", "s3cret").arg("--watch-config");
    });

    // The API's reload needs the credentials of `api.auth`.
    let (code, _) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
    assert_eq!(code, 401);
    let wrong = [("Authorization", "Bearer nope")];
    let (code, _) = http_request(s.api, "POST", "/api/v1/reload", &wrong, "");
    assert_eq!(code, 401);
    let right = [("Authorization", "Bearer s3cret")];
    let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &right, "");
    assert_eq!(code, 200, "{body}");
    // Nothing changed: the version stays.
    assert_eq!(config_version(&s), 1);
    assert_eq!(reloads(&s, "success"), 1);

    // Saving the file reloads it: a destination is added and takes events.
    write_config(&s, &config(true));
    wait_until(
        "the watched change applied",
        Duration::from_secs(20),
        || config_version(&s) == 2,
    );
    wait_until(
        "the added destination delivers",
        Duration::from_secs(10),
        || !added.accepted().is_empty(),
    );

    // An invalid save is refused; the running configuration stays.
    write_config(
        &s,
        &config(true).replace("type: generator", "type: generatorr"),
    );
    wait_until("the invalid save refused", Duration::from_secs(20), || {
        reloads(&s, "rejected") == 1
    });
    let status = s.status();
    assert_eq!(status["config"]["version"], 2);
    let last = &status["config"]["last_reload"];
    assert_eq!(last["result"], "rejected");
    assert!(
        last["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("sluice.yaml:3:"),
        "{last}"
    );
    // A change that needs a restart is refused too, and says so.
    write_config(&s, &config(true).replace("127.0.0.1:0", "127.0.0.1:1"));
    wait_until("the api change refused", Duration::from_secs(20), || {
        reloads(&s, "rejected") == 2
    });
    let errors = s.status()["config"]["last_reload"]["errors"].to_string();
    assert!(errors.contains("restart sluice"), "{errors}");
    let before = added.accepted().len();
    wait_until("still delivering", Duration::from_secs(10), || {
        added.accepted().len() > before
    });
}

#[test]
fn a_removed_persistent_queue_stays_on_disk_until_a_reload_names_it_again() {
    let rt = runtime();
    let mut peer = rt.block_on(Receiver::start());
    rt.block_on(peer.kill());
    let url = peer.url("/");
    let config = |with_pq: bool| {
        let (route, dest) = if with_pq {
            (
                "  - {name: keep, destination: pq, final: false}\n".to_string(),
                format!(
                    "  pq: {{type: http, url: \"{url}\", backpressure: persistent_queue, queue: {{mode: always}}, batch: {{timeout: 20ms}}}}\n"
                ),
            )
        } else {
            (String::new(), String::new())
        };
        format!(
            r#"data_dir: "{{dir}}/data"
sources:
  gen: {{type: generator, rate: 1000, count: 2000}}
  idle: {{type: tcp, address: "127.0.0.1:0"}}
routes:
{route}  - {{name: rest, destination: sink}}
destinations:
  sink: {{type: blackhole}}
{dest}"#
        )
    };
    let mut s = Sluice::start(&config(true));
    wait_until(
        "the queue holds every event",
        Duration::from_secs(30),
        || {
            let m = s.metrics();
            m.source_events("gen") == 2000
                && m.get("sluice_persistent_queue_events{destination=\"pq\"}") as u64 == 2000
        },
    );

    // Removed: it leaves the status, its queue stays on disk.
    write_config(&s, &config(false));
    signal(s.pid(), libc::SIGHUP);
    wait_until("pq removed", Duration::from_secs(20), || {
        config_version(&s) == 2
    });
    let status = s.status();
    let ids: Vec<&str> = status["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["sink"]);
    let inspect = std::process::Command::new(common::BIN)
        .args(["queue", "inspect", "--json", "--data-dir"])
        .arg(s.dir.join("data"))
        .output()
        .expect("queue inspect");
    let listing = String::from_utf8_lossy(&inspect.stdout);
    let pq: Value = listing
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["destination"] == "pq")
        .unwrap_or_else(|| panic!("pq's queue on disk: {listing}"));
    assert_eq!(pq["events"], 2000, "{pq}");

    // Named again, with its peer back: every event is delivered, once.
    rt.block_on(peer.restart());
    write_config(&s, &config(true));
    signal(s.pid(), libc::SIGHUP);
    wait_until("pq delivered its queue", Duration::from_secs(30), || {
        peer.accepted().len() >= 2000
    });
    let got = counts(&peer.accepted());
    assert_eq!(got.len(), 2000);
    assert!(got.values().all(|n| *n == 1), "duplicates after the reopen");
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    // Counted once: the reopened queue's events were not received twice.
    let r = s.final_accounting("pq");
    assert_eq!(
        (r["events"].as_u64(), r["sent"].as_u64()),
        (Some(2000), Some(2000)),
        "{r}"
    );
    assert_eq!(r["queued"], 0, "{r}");
}

#[test]
fn a_source_that_cannot_bind_fails_the_reload_and_the_rest_is_applied() {
    let rt = runtime();
    let out = rt.block_on(Receiver::start());
    // Another process's listener holds the port the new source wants.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().unwrap().port();
    let config = |extra: &str| {
        format!(
            r#"api: {{address: "127.0.0.1:0"}}
sources:
  gen: {{type: generator, rate: 200}}
{extra}routes:
  - {{name: all, destination: out}}
destinations:
  out: {{type: http, url: "{}", batch: {{timeout: 20ms}}}}
"#,
            out.url("/")
        )
    };
    let s = Sluice::start(&config(""));
    write_config(
        &s,
        &config(&format!(
            "  late: {{type: tcp, address: \"127.0.0.1:{port}\"}}\n"
        ))
        .replace("rate: 200", "rate: 300"),
    );
    let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
    assert_eq!(code, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], "failed");
    let error = v["errors"][0].as_str().unwrap_or_default();
    assert!(
        error.contains("late") && error.contains(&port.to_string()),
        "the answer names the source and its address: {error}"
    );
    assert_eq!(reloads(&s, "failed"), 1);
    // The rest was applied: the generator runs with its new rate, and
    // events still flow.
    assert_eq!(config_version(&s), 2);
    let status = s.status();
    let ids: Vec<&str> = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["id"].as_str())
        .collect();
    assert_eq!(ids, ["gen"]);
    let before = out.accepted().len();
    wait_until("still delivering", Duration::from_secs(10), || {
        out.accepted().len() > before
    });
    drop(taken);
}

/// On its built-in configuration sluice says so (not a file name it never
/// read), and a reload — SIGHUP or the API — is refused with the reason
/// instead of "succeeding" at changing nothing.
#[test]
fn the_built_in_configuration_is_named_and_cannot_be_reloaded() {
    let s = Sluice::start_built_in();
    let status = s.status();
    assert_eq!(status["config"]["file"], "(built-in default)", "{status}");
    assert_eq!(s.log_records("starting")[0]["config"], "(built-in default)");
    let (code, body) = http_request(s.api, "POST", "/api/v1/reload", &[], "");
    assert_eq!(code, 422, "{body}");
    let v: Value = serde_json::from_str(&body).expect("reload answer");
    assert!(
        v["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("start it with --config FILE")),
        "{v}"
    );
    signal(s.pid(), libc::SIGHUP);
    wait_until("the SIGHUP refused", Duration::from_secs(10), || {
        reloads(&s, "rejected") == 2
    });
    assert_eq!(reloads(&s, "success"), 0);
    assert_eq!(s.metrics().get("sluice_config_last_reload_successful"), 0.0);
    assert_eq!(common::http_get(s.api, "/ready").trim(), "running");
}
