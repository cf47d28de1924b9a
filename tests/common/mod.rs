//! Helpers for integration tests: run the real `sluice` binary (or the real
//! topology in-process), find its bound ports, read its metrics, and wait for
//! conditions by polling with a deadline (never by sleeping and hoping).

#![allow(dead_code)]

#[cfg(feature = "sluice")]
pub mod aggregator;
#[cfg(all(feature = "sqs", feature = "kinesis"))]
pub mod aws;
#[cfg(all(feature = "sqs", feature = "kinesis"))]
pub mod aws_fault;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "kafka")]
pub mod kafka_sasl;
#[cfg(feature = "otlp")]
pub mod otlp;
#[cfg(feature = "pubsub")]
pub mod pubsub;
pub mod real_peer;
pub mod receiver;
#[cfg(all(feature = "sqs", feature = "kinesis", feature = "s3"))]
pub mod s3;
pub mod staged;
pub mod tcp_receiver;
pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A running `sluice run` process.
pub struct Sluice {
    pub child: Child,
    pub api: SocketAddr,
    pub sources: HashMap<String, SocketAddr>,
    logs: Arc<Mutex<Vec<Value>>>,
    /// Set when the thread reading stderr has read all of it.
    logs_done: Arc<std::sync::atomic::AtomicBool>,
    pub stdout: Option<ChildStdout>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Sluice {
    /// Start sluice on `yaml`. `{dir}` in the YAML becomes a fresh temporary
    /// directory (also `self.dir`). Stdout is piped and left unread until the
    /// test takes it, so a console destination can be stalled on purpose.
    pub fn start(yaml: &str) -> Sluice {
        Self::start_with(yaml, |_| {})
    }

    pub fn start_with(yaml: &str, configure: impl FnOnce(&mut Command)) -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let yaml = yaml.replace("{dir}", &dir.display().to_string());
        let config = dir.join("sluice.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let mut cmd = Command::new(BIN);
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        Self::launch(cmd, tmp)
    }

    /// Start sluice with no `--config`: on its built-in configuration (its
    /// fixed ports: API 9598, HTTP 8080, TCP 9000).
    pub fn start_built_in() -> Sluice {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(BIN);
        cmd.args(["--log-format", "json", "run"])
            .env_remove("SLUICE_CONFIG")
            .env("SLUICE_LOG", "info")
            .current_dir(tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self::launch(cmd, tmp)
    }

    fn launch(mut cmd: Command, tmp: tempfile::TempDir) -> Sluice {
        let dir = tmp.path().to_path_buf();
        let mut child = cmd.spawn().expect("spawn sluice");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let logs_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = logs_done.clone();
        std::thread::spawn(move || {
            let _done = SetOnDrop(done);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("sluice: {line}");
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line }));
                sink.lock().unwrap().push(v);
            }
        });
        let stdout = child.stdout.take();
        let mut s = Sluice {
            child,
            api: "0.0.0.0:0".parse().unwrap(),
            sources: HashMap::new(),
            logs,
            logs_done,
            stdout,
            dir,
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if s.has_log("sluice is running") {
                break;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("sluice exited during startup ({status}): {:#?}", s.logs());
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not start within 60 s: {:#?}",
                s.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for l in s.logs() {
            let msg = l["message"].as_str().unwrap_or("");
            let Some(addr) = l["address"].as_str().and_then(|a| a.parse().ok()) else {
                continue;
            };
            if msg == "API listening" {
                s.api = addr;
            } else if msg.ends_with("source listening") {
                let id = l["source"].as_str().unwrap_or("").to_string();
                s.sources.insert(id, addr);
            }
        }
        s
    }

    pub fn source(&self, id: &str) -> SocketAddr {
        *self
            .sources
            .get(id)
            .unwrap_or_else(|| panic!("no source `{id}` in {:?}", self.sources))
    }

    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    pub fn has_log(&self, message: &str) -> bool {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l["message"] == message)
    }

    pub fn log_records(&self, message: &str) -> Vec<Value> {
        self.logs()
            .into_iter()
            .filter(|l| l["message"] == message)
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// Blocking scrape of `/metrics`.
    pub fn metrics(&self) -> Metrics {
        Metrics(http_get(self.api, "/metrics"))
    }

    pub fn status(&self) -> Value {
        serde_json::from_str(&http_get(self.api, "/api/v1/status")).expect("status JSON")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Hold sluice still (SIGSTOP), e.g. while a test changes a peer in
    /// several steps that sluice must not see half done.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    pub fn terminate(&self) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), libc::SIGTERM);
        }
    }

    /// Wait for the process to exit, at most `timeout`, and for its last
    /// log lines to be read (the reader thread may be behind the exit).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                let read = Instant::now() + Duration::from_secs(5);
                while !self.logs_done.load(std::sync::atomic::Ordering::SeqCst)
                    && Instant::now() < read
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The "final accounting" log record of a destination (after exit).
    /// The thread reading stderr may still be behind the exit: it is given
    /// a few seconds to catch up.
    pub fn final_accounting(&self, destination: &str) -> Value {
        let find = || {
            self.log_records("final accounting")
                .into_iter()
                .find(|l| l["destination"] == destination)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(r) = find() {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no final accounting for {destination}: {:#?}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sets its flag when dropped: however the reader thread ends.
struct SetOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET (keeps the harness free of async).
/// Run `cmd` with `input` on its stdin; its output (stdout and stderr
/// captured). `Err` if it cannot be started.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> std::io::Result<std::process::Output> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)?;
    child.wait_with_output()
}

pub fn http_get(addr: SocketAddr, path: &str) -> String {
    http_request(addr, "GET", path, &[], "").1
}

/// A minimal blocking HTTP/1.1 request: the status and the body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to API");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let body = if out.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n + 2 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A `/metrics` scrape.
pub struct Metrics(pub String);

impl Metrics {
    /// The value of one series, written exactly as exposed, e.g.
    /// `sluice_destination_sent_events_total{destination="out"}`. Missing: 0.
    pub fn get(&self, series: &str) -> f64 {
        self.series(series).unwrap_or(0.0)
    }

    /// The value of one series; `None` when it is not exposed at all.
    pub fn series(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            let rest = l.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse::<f64>().ok()
        })
    }

    /// `sluice_endpoint_up` of one endpoint; `None` when there is no such
    /// series, so a test of "down" (0) cannot pass on a misspelt name.
    pub fn endpoint_up(&self, dest: &str, endpoint: &str) -> Option<f64> {
        self.series(&format!(
            "sluice_endpoint_up{{destination=\"{dest}\",endpoint=\"{endpoint}\"}}"
        ))
    }

    pub fn dest(&self, metric: &str, dest: &str) -> u64 {
        self.get(&format!("{metric}{{destination=\"{dest}\"}}")) as u64
    }

    /// Every event `dest` dropped, whatever the reason.
    pub fn dropped_any(&self, dest: &str) -> u64 {
        let prefix = format!("sluice_destination_dropped_events_total{{destination=\"{dest}\",");
        self.0
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// `events = sent + dropped + queued + in flight + on disk` for `dest`
    /// in this one scrape (docs/concepts.md, "Where every event is"); `Err` says how it failed.
    pub fn books_balance(&self, dest: &str) -> Result<(), String> {
        let events = self.dest("sluice_destination_events_total", dest);
        let sent = self.dest("sluice_destination_sent_events_total", dest);
        let dropped = self.dropped_any(dest);
        let queued = self.dest("sluice_destination_queue_events", dest);
        let in_flight = self.dest("sluice_destination_in_flight_events", dest);
        let on_disk = self.dest("sluice_persistent_queue_events", dest);
        if events == sent + dropped + queued + in_flight + on_disk {
            return Ok(());
        }
        Err(format!(
            "{dest}: {events} events != {sent} sent + {dropped} dropped + {queued} queued + {in_flight} in flight + {on_disk} on disk"
        ))
    }

    pub fn dropped(&self, dest: &str, reason: &str) -> u64 {
        self.get(&format!(
            "sluice_destination_dropped_events_total{{destination=\"{dest}\",reason=\"{reason}\"}}"
        )) as u64
    }

    pub fn source_events(&self, source: &str) -> u64 {
        self.get(&format!(
            "sluice_source_events_total{{source=\"{source}\"}}"
        )) as u64
    }

    pub fn rejected(&self, source: &str, reason: &str) -> u64 {
        self.get(&format!(
            "sluice_source_rejected_total{{source=\"{source}\",reason=\"{reason}\"}}"
        )) as u64
    }
}

/// Read sluice's stdout on a thread (a stalled console destination lets
/// go), counting its lines.
pub fn count_stdout_lines(s: &mut Sluice) -> Arc<std::sync::atomic::AtomicU64> {
    let out = s.stdout.take().expect("stdout not taken yet");
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = read.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if l.is_err() {
                break;
            }
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    read
}

/// Write `lines` (each with its newline) to the TCP source `source`.
pub fn send_lines(s: &Sluice, source: &str, lines: impl Iterator<Item = String>) {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(s.source(source)).expect("connect to the tcp source");
    for l in lines {
        c.write_all(l.as_bytes()).expect("write");
        c.write_all(b"\n").expect("write");
    }
    c.flush().expect("flush");
}

/// `sluice validate` on `yaml`, written to a file named `name`: it must be
/// refused; returns what it printed on stderr (the `name:line:column` errors).
pub fn validate_refuses(name: &str, yaml: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, yaml).expect("write the config");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&path)
        .output()
        .expect("run sluice validate");
    assert!(!out.status.success(), "{name} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a destination counts as sent.
pub fn sent(s: &Sluice, dest: &str) -> u64 {
    s.metrics()
        .dest("sluice_destination_sent_events_total", dest)
}

/// Poll `cond` every 20 ms until it holds; panic after `timeout` naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Async flavour of `wait_until` for in-process tests.
pub async fn wait_until_async(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Send `sig` to a process this test started.
/// A runtime for the in-process peers of a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; the pid is our own child.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// `{"seq":N,...}` → N.
pub fn seq_of(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    v["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {line}"))
}

/// An event line of about `size` bytes with a sequence number.
pub fn event_line(seq: u64, size: usize) -> String {
    let head = format!("{{\"seq\":{seq},\"level\":\"info\",\"msg\":\"");
    let pad = size.saturating_sub(head.len() + 3);
    format!("{head}{}\"}}\n", "x".repeat(pad))
}

/// The complete lines of a file a destination appends to: a last line
/// without its newline is a write in progress (or one cut off by a kill)
/// and is left out.
pub fn read_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete.lines().map(str::to_string).collect()
}

/// Start the real topology in-process from YAML (ports may be 0).
pub async fn topology(yaml: &str) -> sluice::topology::Running {
    let config = sluice::config::Config::load_str("test.yaml", yaml)
        .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
    sluice::topology::Running::start(config)
        .await
        .expect("topology starts")
}

/// The keys whose `seq`s, taken in the order the peer holds them (a stream's
/// shard, a topic's partition), are not in the order sent: per-key order.
pub fn keys_out_of_order<'a>(held: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<String> {
    let mut last = std::collections::BTreeMap::<&str, u64>::new();
    let mut out = std::collections::BTreeSet::new();
    for (key, seq) in held {
        if last.insert(key, seq).is_some_and(|prev| prev > seq) {
            out.insert(key.to_string());
        }
    }
    out.into_iter().collect()
}
