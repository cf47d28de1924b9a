//! Operating a running sluice: `sluice tap` and `sluice top` against a live
//! pipeline, driven as a user would (a terminal in tmux for `top`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::receiver::Receiver;
use common::{BIN, Sluice, runtime, wait_until};
use serde_json::{Value, json};

fn pipeline(out: &str) -> String {
    format!(
        r#"api: {{address: "127.0.0.1:0"}}
sources:
  gen: {{type: generator, rate: 2000}}
pipelines:
  tag:
    - {{type: eval, set: {{team: "'core'"}}}}
routes:
  - {{name: errors, filter: 'level == "error"', destination: out, final: false, pipeline: tag}}
  - {{name: rest, destination: sink}}
destinations:
  out: {{type: http, url: "{out}", batch: {{timeout: 20ms}}}}
  sink: {{type: blackhole}}
"#
    )
}

/// `sluice tap ...` against `s`; stdout lines and the exit status.
fn tap(s: &Sluice, args: &[&str]) -> (Vec<String>, String, bool) {
    let out = Command::new(BIN)
        .args(["tap", "--api", &s.api.to_string()])
        .args(args)
        .output()
        .expect("run sluice tap");
    (
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn tap_samples_a_route_a_destination_and_a_source_with_a_filter() {
    let rt = runtime();
    let out = rt.block_on(Receiver::start());
    let s = Sluice::start(&pipeline(&out.url("/")));

    let (lines, stderr, ok) = tap(&s, &["--route", "errors", "--limit", "20"]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 20, "{stderr}");
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("each line is the event's JSON"))
        .collect();
    assert!(events.iter().all(|e| e["level"] == "error"), "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    // A filter narrows a destination's sample further.
    let (lines, stderr, ok) = tap(
        &s,
        &[
            "--destination",
            "out",
            "--filter",
            "status >= 500",
            "--limit",
            "5",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let e: Value = serde_json::from_str(l).unwrap();
        assert_eq!(e["level"], "error");
        assert!(e["status"].as_u64().unwrap() >= 500, "{e}");
    }
    let (lines, _, ok) = tap(&s, &["--source", "gen", "--limit", "3"]);
    assert!(ok);
    assert_eq!(lines.len(), 3);
    // A pipeline's tap shows what it sends on: the events as it changed them.
    let (lines, stderr, ok) = tap(&s, &["--pipeline", "tag", "--limit", "5"]);
    assert!(ok, "{stderr}");
    assert_eq!(lines.len(), 5);
    for l in &lines {
        let e: Value = serde_json::from_str(l).unwrap();
        assert_eq!(
            (&e["level"], &e["team"]),
            (&json!("error"), &json!("core")),
            "{e}"
        );
    }

    // What does not exist, or does not parse, is a clear error.
    let (_, stderr, ok) = tap(&s, &["--route", "nope", "--limit", "1"]);
    assert!(!ok);
    assert!(stderr.contains("no route `nope`"), "{stderr}");
    let (_, stderr, ok) = tap(
        &s,
        &["--route", "errors", "--filter", "level ==", "--limit", "1"],
    );
    assert!(!ok);
    assert!(stderr.contains("filter:"), "{stderr}");
}

#[test]
fn a_tap_that_reads_too_slowly_misses_samples_and_the_pipeline_loses_nothing() {
    let rt = runtime();
    let out = rt.block_on(Receiver::start());
    // 8 kB events at 2000/s: the socket and pipe buffers between sluice
    // and a slow reader fill within seconds.
    let config = pipeline(&out.url("/")).replace("rate: 2000}", "rate: 2000, event_bytes: 8000}");
    let s = Sluice::start(&config);
    // The reader takes 100 lines a second of the 2000 the tap could send:
    // the server's channel for it fills, and samples are skipped.
    let mut slow = Command::new(BIN)
        .args([
            "tap",
            "--api",
            &s.api.to_string(),
            "--source",
            "gen",
            "--rate",
            "100000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice tap");
    let stdout = slow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for _ in BufReader::new(stdout).lines().map_while(Result::ok) {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let stderr = slow.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    wait_until(
        "the tap reports missed samples",
        Duration::from_secs(60),
        || {
            said.extend(rx.try_iter());
            said.iter().any(|l| l.contains("samples missed"))
        },
    );
    // Meanwhile every event still went through, none dropped.
    let before = s.metrics().source_events("gen");
    wait_until(
        "the pipeline keeps flowing",
        Duration::from_secs(10),
        || s.metrics().source_events("gen") > before + 1000,
    );
    let m = s.metrics();
    assert_eq!(m.dropped_any("out"), 0);
    assert_eq!(m.rejected("gen", "shed"), 0);
    let _ = slow.kill();
    let _ = slow.wait();
}

/// A `tmux` session running one command, torn down on drop. Each runs on a
/// server of its own (`-L`): tests run in parallel, and a shared server exits
/// when one test kills the last session, under another test's `new-session`
/// ("server exited unexpectedly").
struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        Self::start_sized(name, command, 200, 50)
    }

    fn start_sized(name: &str, command: &str, width: usize, height: usize) -> Tmux {
        let ok = Command::new("tmux")
            .args([
                "-L",
                name,
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                command,
            ])
            .status()
            .expect("tmux (scripts/peers installs it)")
            .success();
        assert!(ok, "tmux new-session failed");
        Tmux(name.to_string())
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.0, "capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        Command::new("tmux")
            .args(["-L", &self.0, "send-keys", "-t", &self.0, keys])
            .status()
            .expect("tmux send-keys");
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.0, "has-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The row of the screen that starts with `id` (after the table border).
fn row<'a>(screen: &'a str, id: &str) -> Option<&'a str> {
    screen.lines().find(|l| {
        l.trim_start_matches(['│', ' '])
            .starts_with(&format!("{id} "))
    })
}

#[test]
fn top_shows_rates_and_a_failing_destination_and_quits_on_q() {
    let rt = runtime();
    let mut out = rt.block_on(Receiver::start());
    let s = Sluice::start(&pipeline(&out.url("/")));
    let exit = s.dir.join("top.exit");
    let command = format!(
        "{BIN} top --api {} --interval 200ms; echo $? > {}",
        s.api,
        exit.display()
    );
    let name = format!("sluice-top-{}", std::process::id());
    let tmux = Tmux::start(&name, &command);

    // Every component, with live rates: the generator's 2000/s.
    wait_until(
        "top shows the pipeline flowing",
        Duration::from_secs(30),
        || {
            let screen = tmux.screen();
            let gen_rate = row(&screen, "gen")
                .and_then(|r| r.split_whitespace().nth(2))
                .and_then(|r| r.parse::<f64>().ok());
            screen.contains("DESTINATION")
                && row(&screen, "errors").is_some()
                // The pipeline's row: its received count (third column) grows.
                && row(&screen, "tag")
                    .and_then(|r| r.trim_start_matches(['│', ' ']).split_whitespace().nth(2))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
                // ... and its reduction, whole and by function (eval
                // removes nothing).
                && row(&screen, "tag").is_some_and(|r| r.contains("0.0%") && r.contains("eval 0.0%"))
                && row(&screen, "out").is_some_and(|r| r.contains(" ok "))
                && gen_rate.is_some_and(|r| r > 1000.0)
        },
    );

    // The destination's peer goes away: top says so.
    rt.block_on(out.kill());
    wait_until(
        "top shows the destination failing",
        Duration::from_secs(30),
        || row(&tmux.screen(), "out").is_some_and(|r| r.contains("failing")),
    );
    rt.block_on(out.restart());
    wait_until("top shows it recovered", Duration::from_secs(30), || {
        row(&tmux.screen(), "out").is_some_and(|r| r.contains(" ok "))
    });

    tmux.keys("q");
    wait_until("top exits on q", Duration::from_secs(10), || !tmux.alive());
    let code = std::fs::read_to_string(&exit).unwrap_or_default();
    assert_eq!(code.trim(), "0", "top's exit status");
}

/// Open the status page in headless Chromium (tests/peers/status_page.js)
/// and wait for `selector`; the destinations' states it showed.
fn page(s: &Sluice, selector: &str, extra: &[&str]) -> Value {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/scripts/peers"))
        .args(["start", "browser"])
        .arg(s.dir.join("browser"))
        .arg(format!("{root}/tests/peers/status_page.js"))
        .arg(s.url("/"))
        .arg(selector)
        .arg("30000")
        .args(extra)
        .output()
        .expect("run scripts/peers start browser");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the status page in Chromium (the browser peer must start): {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

#[test]
fn the_status_page_shows_a_stalled_destination_and_its_recovery_on_a_laptop_and_a_phone() {
    let rt = runtime();
    let mut out = rt.block_on(Receiver::start());
    let s = Sluice::start(&pipeline(&out.url("/")));
    let shot = s.dir.join("laptop.png");
    // The status API's words (ok, failing, ...), as `top` shows them.
    let states = page(
        &s,
        r#"[data-destination="out"][data-state="ok"][data-activity="flowing"]"#,
        &["--screenshot", shot.to_str().unwrap()],
    );
    assert_eq!(states["out"], "ok", "{states}");
    assert_eq!(states["sink"], "ok", "{states}");
    assert_eq!(states["pipeline:tag"], "ok", "{states}");
    page(
        &s,
        r#"[data-destination="sink"][data-activity="flowing"]"#,
        &[],
    );
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000));
    // The pipeline's card says how much it reduced the flow.
    page(
        &s,
        r#"[data-pipeline="tag"] .reduction:has-text("reduced 0.0 %")"#,
        &[],
    );

    rt.block_on(out.kill());
    let states = page(&s, r#"[data-problem="out"]"#, &[]);
    assert_eq!(states["out"], "failing", "{states}");
    assert_eq!(states["sink"], "ok", "the others keep flowing: {states}");

    rt.block_on(out.restart());
    let states = page(
        &s,
        r#"[data-destination="out"][data-state="ok"][data-activity="flowing"]"#,
        &["--viewport", "390x844"],
    );
    assert_eq!(states["out"], "ok");
}

/// The size users run: 10 sources, 30 routes, 5 output routers, 20
/// destinations (two of them failing: their peer is not there).
fn large_topology() -> String {
    let mut y = String::from("api: {address: \"127.0.0.1:0\"}\nsources:\n");
    for i in 0..10 {
        if i % 2 == 0 {
            y.push_str(&format!("  gen{i}: {{type: generator, rate: 200}}\n"));
        } else {
            y.push_str(&format!(
                "  tcp{i}: {{type: tcp, address: \"127.0.0.1:0\"}}\n"
            ));
        }
    }
    y.push_str("routes:\n");
    for i in 0..30 {
        // Half to destinations, the rest spread over the routers.
        let to = if i % 2 == 0 {
            format!("dest{:02}", (i * 7) % 18)
        } else {
            format!("router{}", i % 5)
        };
        y.push_str(&format!(
            "  - {{name: route{i:02}, filter: 'service == \"s{i}\"', destination: {to}}}\n"
        ));
    }
    y.push_str("unmatched: dest17\ndestinations:\n");
    for i in 0..5 {
        y.push_str(&format!(
            "  router{i}:\n    type: output_router\n    rules:\n      - {{name: errors, filter: 'level == \"error\"', destination: dest{:02}}}\n      - {{name: odd, destination: dest{:02}}}\n    default: drop\n",
            (i * 3) % 18,
            (i * 3 + 1) % 18
        ));
    }
    for i in 0..18 {
        y.push_str(&format!("  dest{i:02}: {{type: blackhole}}\n"));
    }
    for i in 0..2 {
        y.push_str(&format!(
            "  dead{i}: {{type: http, url: \"http://127.0.0.1:9/x\", batch: {{timeout: 50ms}}}}\n"
        ));
    }
    // The dead ones take a copy of everything.
    y = y.replace(
        "routes:\n",
        "routes:\n  - {name: copy0, destination: dead0, final: false}\n  - {name: copy1, destination: dead1, final: false}\n",
    );
    y
}

#[test]
fn the_status_page_at_a_large_topology_puts_problems_first_and_no_labels_overlap() {
    let s = Sluice::start(&large_topology());
    for viewport in ["1280x800", "390x844"] {
        let states = page(
            &s,
            r#"[data-problem="dead1"]"#,
            &["--viewport", viewport, "--check-layout"],
        );
        assert_eq!(states["dead0"], "failing", "{states}");
        assert_eq!(states["dest00"], "ok", "{states}");
        assert_eq!(
            states.as_object().map(|m| m.len()),
            Some(20),
            "every destination has a card: {states}"
        );
    }
}

/// `top` at 80×24 and 200×50 on the large topology: the problems line names
/// the failing destinations at once; scrolling reaches every destination,
/// source and route; no number is cut (each queue reads `n/10000`).
#[test]
fn top_at_a_large_topology_fits_the_terminal_and_scrolls_to_everything() {
    let s = Sluice::start(&large_topology());
    for (w, h) in [(80, 24), (200, 50)] {
        let name = format!("sluice-top-large-{}-{w}", std::process::id());
        let tmux = Tmux::start_sized(
            &name,
            &format!("{BIN} top --api {} --interval 300ms", s.api),
            w,
            h,
        );
        wait_until(
            "top names the failing destinations",
            Duration::from_secs(30),
            || {
                let screen = tmux.screen();
                screen.lines().any(|l| l.contains("failing: dead0, dead1"))
            },
        );
        // Page down, keeping every screen, until the footer says the end.
        let footer = |screen: &str| {
            screen
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string()
        };
        let at_end = |f: &str| {
            let nums: Vec<usize> = f
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            !f.contains("lines ") || (nums.len() >= 3 && nums[1] == nums[2])
        };
        let mut seen = String::new();
        for _ in 0..40 {
            let screen = tmux.screen();
            for line in screen.lines() {
                assert!(line.chars().count() <= w, "wider than {w}: {line:?}");
            }
            seen.push_str(&screen);
            let f = footer(&screen);
            if at_end(&f) {
                break;
            }
            tmux.keys("PageDown");
            wait_until("top scrolls", Duration::from_secs(10), || {
                footer(&tmux.screen()) != f
            });
        }
        for i in 0..18 {
            let id = format!("dest{i:02}");
            let line = seen
                .lines()
                .find(|l| l.starts_with(&format!("{id} ")))
                .unwrap_or_else(|| panic!("{id} never shown at {w}x{h}:\n{seen}"));
            assert!(
                line.contains("/10000"),
                "{id}'s queue is cut at {w}x{h}: {line:?}"
            );
        }
        for id in ["gen0", "tcp9", "route00", "route29", "router4"] {
            assert!(
                seen.lines().any(|l| l.starts_with(&format!("{id} "))),
                "{id} never shown at {w}x{h}"
            );
        }
        tmux.keys("q");
        wait_until("top exits on q", Duration::from_secs(10), || !tmux.alive());
    }
}
