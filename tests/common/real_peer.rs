//! Real peers (carbon, InfluxDB, StatsD, collectd), each started by
//! `scripts/peers start` in its own directory on its own free ports, and
//! read the way their users read them (`whisper-fetch`, InfluxQL, StatsD's
//! admin interface). A peer that is not installed or does not come up fails
//! the test, naming the peer and how to install it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/peers");

/// A peer process; killed when dropped.
pub struct PeerProcess {
    name: &'static str,
    _ports: Box<dyn std::any::Any>,
    child: Child,
    output: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
}

/// Loopback ports for a peer that must be told its ports, held until this
/// is dropped. They are picked below the kernel's ephemeral range
/// (32768–60999), so a test binding `:0`, or an outgoing connection, never
/// takes one; and each is leased with an exclusive `flock` on a file named
/// after it, so tests in other processes never pick the same one (the
/// kernel releases the lock when a test dies, so nothing goes stale).
pub struct Ports<const N: usize> {
    pub ports: [u16; N],
    _locks: Vec<std::fs::File>,
}

pub fn free_ports<const N: usize>() -> Ports<N> {
    use std::os::fd::AsRawFd;
    let dir = std::env::temp_dir().join("sluice-test-ports");
    std::fs::create_dir_all(&dir).expect("port lease directory");
    let mut ports = Vec::new();
    let mut locks = Vec::new();
    while ports.len() < N {
        let port = fastrand::u16(20_000..32_000);
        if ports.contains(&port) {
            continue;
        }
        let Ok(lock) = std::fs::File::create(dir.join(format!("{port}.lock"))) else {
            continue;
        };
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // leased by another test
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            ports.push(port);
            locks.push(lock);
        }
    }
    Ports {
        ports: std::array::from_fn(|i| ports[i]),
        _locks: locks,
    }
}

impl PeerProcess {
    /// Start `name` with `args` and wait until `ready` accepts connections.
    pub fn start(
        name: &'static str,
        ports: Box<dyn std::any::Any>,
        args: &[String],
        ready: Option<u16>,
    ) -> PeerProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(PEERS)
            .arg("start")
            .arg(name)
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("peer {name}: cannot run {PEERS}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sink = output.clone();
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut p = PeerProcess {
            name,
            _ports: ports,
            child,
            output,
            dir,
        };
        if let Some(port) = ready {
            p.wait_ready(port);
        }
        p
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "peer {} exited before it listened on {port} ({status}); is it installed? \
                     run `scripts/peers install` (or `scripts/peers check`). Its output:\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "peer {} did not listen on {port} within 60 s. Its output:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the peer printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The peer's own pid (`scripts/peers start` execs it).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// A hung peer: its connections stay open, nothing is answered.
    pub fn pause(&self) {
        super::signal(self.pid(), libc::SIGSTOP);
    }

    pub fn resume(&self) {
        super::signal(self.pid(), libc::SIGCONT);
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Graphite's carbon-cache, read with `whisper-fetch`.
pub struct Carbon {
    pub process: PeerProcess,
    pub line: SocketAddr,
}

impl Carbon {
    pub fn start() -> Carbon {
        let lease = free_ports::<3>();
        let [line, pickle, query] = lease.ports;
        let args = [line, pickle, query].map(|p| p.to_string());
        let process = PeerProcess::start("carbon", Box::new(lease), &args, Some(line));
        Carbon {
            process,
            line: SocketAddr::from(([127, 0, 0, 1], line)),
        }
    }

    /// Where carbon keeps `metric`: dots are directories; a tagged series
    /// (`name;k=v`, tags sorted) lives under `_tagged/` by its SHA-256.
    pub fn whisper_file(&self, metric: &str) -> PathBuf {
        let root = self.process.path().join("storage/whisper");
        if metric.contains(';') {
            use sha2::Digest;
            let hash = hex(&sha2::Sha256::digest(metric.as_bytes()));
            return root
                .join("_tagged")
                .join(&hash[0..3])
                .join(&hash[3..6])
                .join(format!("{hash}.wsp"));
        }
        let mut p = root;
        for part in metric.split('.') {
            p.push(part);
        }
        p.set_extension("wsp");
        p
    }

    /// The stored points of `metric` in the last two days: (time, value).
    pub fn points(&self, metric: &str) -> Vec<(i64, f64)> {
        let file = self.whisper_file(metric);
        if !file.exists() {
            return Vec::new();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let out = Command::new("whisper-fetch")
            .arg("--json")
            .arg(format!("--from={}", now - 2 * 86_400 + 60))
            .arg(format!("--until={}", now + 1))
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("peer carbon: cannot run whisper-fetch: {e}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let (Some(start), Some(step), Some(values)) = (
            v["start"].as_i64(),
            v["step"].as_i64(),
            v["values"].as_array(),
        ) else {
            return Vec::new();
        };
        values
            .iter()
            .enumerate()
            .filter_map(|(i, x)| Some((start + i as i64 * step, x.as_f64()?)))
            .collect()
    }

    /// Wait until `metric` has `n` points; return them.
    pub fn wait_points(&self, metric: &str, n: usize) -> Vec<(i64, f64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let p = self.points(metric);
            if p.len() >= n {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "carbon has {} of {n} points for {metric} after 30 s: {p:?}; carbon said:\n{}",
                p.len(),
                self.process.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// InfluxDB 1.x, read with InfluxQL over its HTTP API.
pub struct Influx {
    pub process: PeerProcess,
    pub http: SocketAddr,
}

impl Influx {
    pub fn start() -> Influx {
        let lease = free_ports::<2>();
        let [http, rpc] = lease.ports;
        let args = [http.to_string(), rpc.to_string()];
        let process = PeerProcess::start("influxdb", Box::new(lease), &args, Some(http));
        let me = Influx {
            process,
            http: SocketAddr::from(([127, 0, 0, 1], http)),
        };
        // The HTTP port opens before the meta store is ready for writes.
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_request(me.http, "GET", "/ping?wait_for_leader=1s", b"").0 != 204 {
            assert!(
                Instant::now() < deadline,
                "peer influxdb: /ping never answered 204"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    pub fn query(&self, db: &str, q: &str) -> Value {
        let path = format!("/query?db={db}&epoch=ns&q={}", urlencode(q));
        let (status, body) = http_request(self.http, "POST", &path, b"");
        assert_eq!(status, 200, "influxdb query `{q}`: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    pub fn create_database(&self, db: &str) {
        self.query(db, &format!("CREATE DATABASE {db}"));
    }

    /// Write line protocol as another writer would.
    pub fn write(&self, db: &str, lines: &str) -> (u16, String) {
        http_request(
            self.http,
            "POST",
            &format!("/write?db={db}&precision=ns"),
            lines.as_bytes(),
        )
    }

    /// The rows of `SELECT ... ` as (time, columns...).
    pub fn rows(&self, db: &str, q: &str) -> Vec<Vec<Value>> {
        let v = self.query(db, q);
        v["results"][0]["series"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
                    .filter_map(|r| r.as_array().cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn wait_rows(&self, db: &str, q: &str, n: usize) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rows = self.rows(db, q);
            if rows.len() >= n {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "influxdb has {} of {n} rows for `{q}` after 30 s: {rows:?}",
                rows.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Etsy StatsD, read through its admin interface (`gauges`, `counters`).
pub struct Statsd {
    pub process: PeerProcess,
    pub udp: SocketAddr,
    mgmt: SocketAddr,
}

impl Statsd {
    pub fn start() -> Statsd {
        let lease = free_ports::<2>();
        let [port, mgmt] = lease.ports;
        let args = [port.to_string(), mgmt.to_string()];
        let process = PeerProcess::start("statsd", Box::new(lease), &args, Some(mgmt));
        Statsd {
            process,
            udp: SocketAddr::from(([127, 0, 0, 1], port)),
            mgmt: SocketAddr::from(([127, 0, 0, 1], mgmt)),
        }
    }

    /// The admin command's answer (a JavaScript object literal, then `END`).
    pub fn admin(&self, command: &str) -> String {
        let mut s = TcpStream::connect(self.mgmt).expect("statsd admin port");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        writeln!(s, "{command}").expect("send admin command");
        let mut out = String::new();
        let mut buf = [0u8; 4096];
        while !out.contains("END") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        out
    }

    /// `'name': value` of one gauge or counter, as StatsD prints it.
    pub fn value(&self, command: &str, name: &str) -> Option<String> {
        let text = self.admin(command);
        let key = format!("'{name}': ");
        let rest = &text[text.find(&key)? + key.len()..];
        Some(rest.split([',', '\n', ' ']).next()?.trim().to_string())
    }
}

/// collectd with its load plugin, posting JSON to `url` every second.
pub fn collectd(url: &str) -> PeerProcess {
    collectd_as(url, "sluice-test")
}

/// collectd reporting as `hostname`.
pub fn collectd_as(url: &str, hostname: &str) -> PeerProcess {
    PeerProcess::start(
        "collectd",
        Box::new(()),
        &[url.to_string(), hostname.to_string()],
        None,
    )
}

/// An HTTP/1.1 response: up to its `Content-Length` when it has one (a
/// server may keep the connection open despite `Connection: close`, as the
/// Pub/Sub emulator does), else to the end of the stream.
fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let length = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if let Some(n) = length
                && out.len() >= end + 4 + n
            {
                out.truncate(end + 4 + n);
                return out;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A minimal HTTP/1.1 request: (status, body).
pub fn http_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    request(addr, method, path, "", body)
}

/// `http_request` with a JSON body (REST APIs that insist on its type).
pub fn http_json(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    request(
        addr,
        method,
        path,
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    )
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .is_err()
    {
        return (0, String::new());
    }
    let out = read_response(&mut s);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        super::dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Run a client script from `tests/peers` with the real client libraries
/// (`scripts/peers start py-clients|js-clients`) and wait for it to end;
/// its standard output. A client that fails fails the test, naming it.
pub fn run_client(kind: &str, script: &str, args: &[String]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(PEERS)
        .args(["start", kind])
        .arg(dir.path())
        .arg(format!("{root}/tests/peers/{script}"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{kind}: cannot run {PEERS}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{kind} {script} failed ({}); is it installed? run `scripts/peers install`.\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
