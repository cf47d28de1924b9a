//! The `file` source as users run it: lines appended, files rotated by
//! rename and by copytruncate (Debian's `logrotate`, under load),
//! truncated, deleted; multi-line stack traces; an oversize line counted;
//! `kill -9` mid-file and a restart losing nothing and repeating at most
//! one batch; thousands of files.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Sluice, read_lines, wait_until};
use serde_json::Value;

/// sluice following `pattern`, writing what it reads to `out.ndjson`;
/// `data` is its data_dir (kept across restarts).
fn follow(pattern: &str, data: &Path, extra: &str) -> Sluice {
    Sluice::start(&format!(
        r#"
data_dir: "{data}"
api: {{ address: 127.0.0.1:0 }}
sources:
  files: {{ type: file, include: ["{pattern}"]{extra} }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: file, path: "{data}/out.ndjson" }}
"#,
        data = data.display()
    ))
}

fn events(data: &Path) -> Vec<Value> {
    read_lines(&data.join("out.ndjson"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("every event is JSON"))
        .collect()
}

fn messages(data: &Path) -> Vec<String> {
    events(data)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    for l in lines {
        writeln!(f, "{l}").expect("append");
    }
}

/// How many times each message arrived.
fn counts(data: &Path) -> HashMap<String, usize> {
    let mut c = HashMap::new();
    for m in messages(data) {
        *c.entry(m).or_default() += 1;
    }
    c
}

#[test]
fn appends_renames_truncation_deletion_multiline_and_oversize() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let a = logs.path().join("a.log");
    append(&a, (0..100).map(|i| format!("a {i}")));
    let s = follow(
        &format!("{}/*.log", logs.path().display()),
        data.path(),
        ", max_line_bytes: 1KiB, glob_interval: 200ms",
    );
    wait_until("100 lines", Duration::from_secs(20), || {
        messages(data.path()).len() == 100
    });
    let e = &events(data.path())[0];
    assert_eq!(e["file"], a.display().to_string());
    assert!(
        e["host"].as_str().is_some_and(|h| !h.is_empty()) && e["timestamp"].is_string(),
        "{e}"
    );
    // Rename + create (logrotate's default): what the writer adds to the
    // renamed file before reopening still arrives, then the new file.
    std::fs::rename(&a, logs.path().join("a.log.1")).expect("rename");
    append(
        &logs.path().join("a.log.1"),
        (100..110).map(|i| format!("a {i}")),
    );
    append(&a, (110..150).map(|i| format!("a {i}")));
    wait_until("150 lines", Duration::from_secs(20), || {
        messages(data.path()).len() == 150
    });
    // Truncated in place (`copytruncate`, `> file`): read from the start.
    std::fs::write(&a, "").expect("truncate");
    wait_until("the truncation noticed", Duration::from_secs(10), || {
        s.logs()
            .iter()
            .any(|l| l["message"] == "file truncated: reading it from the start")
    });
    append(&a, (150..160).map(|i| format!("a {i}")));
    // An oversize line is counted and skipped; the next arrives.
    append(&a, ["x".repeat(5000), "after oversize".into()]);
    wait_until("161 lines", Duration::from_secs(20), || {
        messages(data.path()).len() == 161
    });
    let c = counts(data.path());
    for i in 0..160 {
        assert_eq!(c.get(&format!("a {i}")), Some(&1), "line {i}: {c:?}");
    }
    assert_eq!(c.get("after oversize"), Some(&1));
    wait_until("the oversize line counted", Duration::from_secs(10), || {
        s.metrics().rejected("files", "oversize") == 1
    });
    // A new file appears, is read, is deleted.
    let b = logs.path().join("b.log");
    append(&b, ["b 0".to_string()]);
    wait_until("b", Duration::from_secs(20), || {
        messages(data.path()).len() == 162
    });
    std::fs::remove_file(&b).expect("delete");
    s.metrics().books_balance("out").expect("books");
}

#[test]
fn stack_traces_become_one_event_each() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let app = logs.path().join("app.log");
    let _s = follow(
        &app.display().to_string(),
        data.path(),
        r#", multiline: { start_pattern: '^\d{4}-\d{2}-\d{2}', timeout: 300ms }"#,
    );
    append(
        &app,
        [
            "2026-12-06 10:00:00 ERROR boom",
            "java.lang.IllegalStateException: x",
            "\tat a.B.c(B.java:1)",
            "\tat a.B.d(B.java:2)",
            "2026-12-06 10:00:01 INFO fine",
        ]
        .map(String::from),
    );
    // The last event has no next start: the timeout sends it.
    wait_until("two events", Duration::from_secs(20), || {
        messages(data.path()).len() == 2
    });
    let m = messages(data.path());
    assert_eq!(
        m[0],
        "2026-12-06 10:00:00 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)"
    );
    assert_eq!(m[1], "2026-12-06 10:00:01 INFO fine");
}

/// Debian's logrotate rotating a file a writer keeps appending to, by
/// rename + create three times: every line arrives exactly once. Then by
/// copytruncate, with the writer paused around it as logrotate's manual
/// asks (what is written between the copy and the truncation is lost by
/// copytruncate itself): again every line exactly once.
#[test]
fn logrotate_under_load() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let app = logs.path().join("app.log");
    std::fs::write(&app, "").expect("create");
    let s = follow(
        &app.display().to_string(),
        data.path(),
        ", glob_interval: 100ms",
    );
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let idle = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, written, stop, paused, idle) = (
            app.clone(),
            written.clone(),
            stop.clone(),
            paused.clone(),
            idle.clone(),
        );
        std::thread::spawn(move || {
            // Reopen by path each burst, as a logger that follows rotation does.
            while !stop.load(Ordering::SeqCst) {
                if paused.load(Ordering::SeqCst) {
                    idle.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                idle.store(false, Ordering::SeqCst);
                let n = written.load(Ordering::SeqCst);
                append(&app, (n..n + 200).map(|i| format!("line {i}")));
                written.store(n + 200, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let state = logs.path().join("logrotate.state");
    let rotate = |copytruncate: bool| {
        let conf = logs.path().join("logrotate.conf");
        std::fs::write(
            &conf,
            format!(
                "{} {{\n  rotate 5\n  missingok\n  nocompress\n  {}\n}}\n",
                app.display(),
                if copytruncate {
                    "copytruncate"
                } else {
                    "create"
                }
            ),
        )
        .expect("write logrotate.conf");
        let out = std::process::Command::new("logrotate")
            .arg("-s")
            .arg(&state)
            .arg("-f")
            .arg(&conf)
            .output()
            .expect("run logrotate (Debian package logrotate: scripts/peers install)");
        assert!(
            out.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let grown = |by: u64| {
        let from = written.load(Ordering::SeqCst);
        wait_until("the writer to write more", Duration::from_secs(20), || {
            written.load(Ordering::SeqCst) >= from + by
        });
    };
    for _ in 0..3 {
        grown(2000);
        rotate(false);
    }
    for _ in 0..2 {
        grown(2000);
        paused.store(true, Ordering::SeqCst);
        // The writer may be inside a burst: it says when it has paused.
        wait_until("the writer to pause", Duration::from_secs(10), || {
            idle.load(Ordering::SeqCst)
        });
        let at = written.load(Ordering::SeqCst);
        wait_until(
            "the paused writer's lines read",
            Duration::from_secs(20),
            || messages(data.path()).len() as u64 >= at,
        );
        rotate(true);
        paused.store(false, Ordering::SeqCst);
    }
    grown(2000);
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer");
    let total = written.load(Ordering::SeqCst);
    wait_until(
        &format!("all {total} lines"),
        Duration::from_secs(60),
        || messages(data.path()).len() as u64 >= total,
    );
    let c = counts(data.path());
    let missing: Vec<u64> = (0..total)
        .filter(|i| !c.contains_key(&format!("line {i}")))
        .collect();
    let repeated: Vec<(&String, &usize)> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} lines missing, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        repeated.is_empty(),
        "{} repeated, e.g. {:?}",
        repeated.len(),
        &repeated[..repeated.len().min(5)]
    );
    assert_eq!(c.len() as u64, total);
    s.metrics().books_balance("out").expect("books");
}

/// `kill -9` mid-file, then a restart on the same data_dir: every one of
/// 400,000 lines arrives, and no more than one batch (1,000 lines) twice.
#[test]
fn kill_9_mid_file_loses_nothing_and_repeats_at_most_one_batch() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let big = logs.path().join("big.log");
    let total = 400_000u64;
    append(
        &big,
        (0..total).map(|i| format!("{{\"seq\":{i},\"pad\":\"{}\"}}", "p".repeat(80))),
    );
    let pattern = big.display().to_string();
    let mut s = follow(&pattern, data.path(), "");
    wait_until(
        "a fifth of the file delivered",
        Duration::from_secs(60),
        || read_lines(&data.path().join("out.ndjson")).len() as u64 > total / 5,
    );
    common::signal(s.pid(), libc::SIGKILL);
    let _ = s.wait_exit(Duration::from_secs(10));
    let before = read_lines(&data.path().join("out.ndjson")).len() as u64;
    assert!(
        before < total,
        "the kill came after the end of the file: make it bigger"
    );
    let _s = follow(&pattern, data.path(), "");
    wait_until("every line", Duration::from_secs(120), || {
        seqs(data.path()).len() as u64 >= total
    });
    let c = seqs(data.path());
    let repeated = c.values().filter(|n| **n > 1).count();
    assert_eq!(c.len() as u64, total, "lines missing");
    assert!(
        repeated <= 1000,
        "{repeated} lines arrived twice: more than one batch"
    );
    assert!(c.values().all(|n| *n <= 2));
}

/// How many times each `seq` arrived, read from the output's raw text: the
/// file destination killed mid-write leaves a torn last line (that batch
/// was never acknowledged, so the source sends it again).
fn seqs(data: &Path) -> HashMap<u64, usize> {
    let text = std::fs::read_to_string(data.join("out.ndjson")).unwrap_or_default();
    let mut c = HashMap::new();
    for part in text.split(r#"\"seq\":"#).skip(1) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u64>() {
            *c.entry(n).or_default() += 1;
        }
    }
    c
}

#[test]
fn thousands_of_files() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let n = 2000;
    for i in 0..n {
        append(
            &logs.path().join(format!("f{i:04}.log")),
            (0..5).map(|j| format!("f{i} {j}")),
        );
    }
    let s = follow(&format!("{}/*.log", logs.path().display()), data.path(), "");
    wait_until("10,000 lines", Duration::from_secs(120), || {
        read_lines(&data.path().join("out.ndjson")).len() == n * 5
    });
    let c = counts(data.path());
    assert_eq!(c.len(), n * 5);
    assert!(c.values().all(|k| *k == 1));
    // More lines to a few of them are still followed.
    for i in [0, 999, 1999] {
        append(
            &logs.path().join(format!("f{i:04}.log")),
            [format!("f{i} late")],
        );
    }
    wait_until("three late lines", Duration::from_secs(30), || {
        read_lines(&data.path().join("out.ndjson")).len() == n * 5 + 3
    });
    s.metrics().books_balance("out").expect("books");
}

/// A graceful restart resumes where the last run stopped; `read_from:
/// end` skips what a file held before sluice first saw it.
#[test]
fn restarts_resume_and_read_from_end_skips_the_past() {
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let a = logs.path().join("a.log");
    append(&a, (0..10).map(|i| format!("old {i}")));
    let pattern = a.display().to_string();
    let mut s = follow(&pattern, data.path(), ", read_from: end");
    std::thread::sleep(Duration::from_millis(1500));
    append(&a, (0..5).map(|i| format!("new {i}")));
    wait_until("five new lines", Duration::from_secs(20), || {
        messages(data.path()).len() == 5
    });
    s.terminate();
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    append(&a, (5..8).map(|i| format!("new {i}")));
    let _s = follow(&pattern, data.path(), ", read_from: end");
    wait_until(
        "the three written while stopped",
        Duration::from_secs(20),
        || messages(data.path()).len() == 8,
    );
    let m = messages(data.path());
    assert!(m.iter().all(|l| l.starts_with("new ")), "{m:?}");
}

/// The chaos scenario for the file source, which acknowledges by its
/// checkpoint: while the destination's peer is down nothing is
/// checkpointed (a restart then would read it all again); the peer comes
/// back, everything is delivered, and only then does the checkpoint move.
#[test]
fn the_checkpoint_waits_for_a_peer_that_is_down() {
    let rt = common::runtime();
    let mut peer = rt.block_on(common::tcp_receiver::TcpReceiver::start(
        common::tcp_receiver::Mode::Lines,
    ));
    let peer_addr = peer.address();
    rt.block_on(peer.kill());
    let logs = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("tempdir");
    let app = logs.path().join("app.log");
    append(&app, (0..300).map(|i| format!("line {i}")));
    let s = Sluice::start(&format!(
        r#"
data_dir: "{data}"
api: {{ address: 127.0.0.1:0 }}
sources:
  files: {{ type: file, include: ["{app}"] }}
routes:
  - {{ name: all, destination: out }}
destinations:
  out: {{ type: tcp, address: "{peer_addr}", retry: {{ initial_backoff: 100ms, max_backoff: 200ms }} }}
"#,
        data = data.path().display(),
        app = app.display()
    ));
    wait_until("the lines taken", Duration::from_secs(20), || {
        s.metrics().source_events("files") == 300
    });
    let checkpoint = || -> u64 {
        std::fs::read(data.path().join("sources/files.checkpoints.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).ok())
            .and_then(|v| v.first().and_then(|e| e["offset"].as_u64()))
            .unwrap_or(0)
    };
    // Undelivered: not checkpointed, however long the peer stays down.
    for _ in 0..5 {
        assert_eq!(checkpoint(), 0);
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(peer.restart());
    wait_until("the peer has all 300", Duration::from_secs(30), || {
        peer.events().len() >= 300
    });
    let size = std::fs::metadata(&app).expect("stat").len();
    wait_until(
        "the checkpoint at the end of the file",
        Duration::from_secs(20),
        || checkpoint() == size,
    );
    assert_eq!(peer.events().len(), 300);
}
