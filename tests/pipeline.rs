//! Finite sources through the real binary: stdin and a counted generator end
//! by themselves, sluice drains and exits 0 with everything delivered.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{read_lines, seq_of};

fn run_to_exit(config: &str, stdin: Option<Vec<u8>>) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = config.replace("{dir}", &dir.path().display().to_string());
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(common::BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        if let Some(data) = stdin {
            input.write_all(&data).unwrap();
        }
        drop(input);
    });
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            panic!("sluice did not exit after its sources finished");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    writer.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    (dir, stderr)
}

#[test]
fn stdin_to_file_exits_at_end_of_input_with_everything_written() {
    let n = 50_000u64;
    let mut input = Vec::new();
    for i in 0..n {
        if i % 10 == 3 {
            input.extend_from_slice(b"not json at all\n");
        }
        input.extend_from_slice(common::event_line(i, 120).as_bytes());
    }
    let (dir, stderr) = run_to_exit(
        r#"
api: { enabled: false }
sources:
  in: { type: stdin, decoding: json }
routes:
  - name: all
    destination: out
destinations:
  out: { type: file, path: "{dir}/out/events.ndjson" }
"#,
        Some(input),
    );
    let lines = read_lines(&dir.path().join("out/events.ndjson"));
    assert_eq!(lines.len() as u64, n, "{stderr}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(seq_of(l), i as u64);
    }
    assert!(stderr.contains("every source has finished"), "{stderr}");
}

#[test]
fn counted_generator_delivers_every_sequence_number_then_exits() {
    let n = 20_000u64;
    let (dir, _) = run_to_exit(
        &format!(
            r#"
api: {{ enabled: false }}
sources:
  gen: {{ type: generator, rate: 0, count: {n}, event_bytes: 150 }}
routes:
  - name: server-errors
    filter: 'status >= 500'
    destination: errors
  - name: rest
    destination: rest
destinations:
  errors: {{ type: file, path: "{{dir}}/errors.ndjson" }}
  rest: {{ type: file, path: "{{dir}}/rest.ndjson" }}
"#
        ),
        None,
    );
    let errors = read_lines(&dir.path().join("errors.ndjson"));
    let rest = read_lines(&dir.path().join("rest.ndjson"));
    assert_eq!(errors.len() + rest.len(), n as usize);
    for l in &errors {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["status"].as_u64().unwrap() >= 500, "{l}");
    }
    let mut seqs: Vec<u64> = errors.iter().chain(&rest).map(|l| seq_of(l)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    // Two statuses in ten are 5xx.
    assert_eq!(errors.len() as u64, n / 5);
}
