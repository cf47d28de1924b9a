//! sluice-loadtest: how fast sluice is, and what it loses when things break.
//!
//! `run` executes scenarios against the real `sluice` binary and checks, at
//! the end of each, that sent = received + dropped (by reason) + queued.
//! `generate`, `receive` and `relay` are the same tools, standalone.

mod fault;
mod generator;
mod grpc_bytes;
mod hostile;
mod metrics;
mod plot;
mod process;
mod proxy;
mod receiver;
mod relay;
mod report;
mod scenario;
mod seq;
mod sluice;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::fault::{Fault, Schedule, Window};
use crate::generator::{Generator, Load, Protocol};
use crate::scenario::{Ctx, catalogue, throughput};

#[derive(Parser)]
#[command(name = "sluice-loadtest", about = "Load and chaos tests for sluice")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios (all when none is named) and write their reports.
    Run {
        /// Scenario names; `--list` shows them.
        names: Vec<String>,
        /// Short durations: the CI smoke run.
        #[arg(long)]
        smoke: bool,
        /// The sluice binary under test.
        #[arg(long, default_value = "target/release/sluice")]
        sluice: PathBuf,
        /// A Vector binary: the throughput workloads run through it too.
        #[arg(long)]
        vector: Option<PathBuf>,
        /// An earlier sluice binary: the main throughput rows run through
        /// it too, in the same run (before/after ratios).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// Only the throughput rows whose path contains this (repeatable;
        /// the relay always runs).
        #[arg(long = "row")]
        rows: Vec<String>,
        /// Run the throughput rows this many times and report each row's
        /// median (its ratio taken against its own round's relay): one
        /// run's rows move ±10 % with the machine.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// Where the JSON reports and PNG plots go.
        #[arg(long, default_value = "loadtest/report")]
        report: PathBuf,
        /// Where configs, logs and queues go (a temporary directory if unset;
        /// kept when set).
        #[arg(long)]
        work: Option<PathBuf>,
        /// List the scenarios and exit.
        #[arg(long)]
        list: bool,
    },
    /// Send events with unique sequence ids.
    Generate {
        #[arg(long, value_enum, default_value = "tcp")]
        protocol: Protocol,
        #[arg(long)]
        target: SocketAddr,
        /// Events per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        #[arg(long, default_value_t = 200)]
        event_bytes: usize,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Events per write, request or datagram.
        #[arg(long, default_value_t = 50)]
        batch: usize,
    },
    /// Receive events, count them and report ids lost or duplicated.
    Receive {
        #[arg(long, value_enum, default_value = "tcp")]
        protocol: Protocol,
        #[arg(long)]
        listen: SocketAddr,
        /// `FROM-TO:FAULT` in seconds from start: `down`, `stall`, `close`,
        /// `latency=MS`, `status=CODE[@RATE][:retry_after=S]`. Repeatable.
        #[arg(long)]
        fault: Vec<String>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long)]
        duration: Option<f64>,
    },
    /// The raw TCP relay (the throughput baseline).
    Relay {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
    },
    /// A two-way TCP proxy: the process a hang scenario stops (SIGSTOP).
    Proxy {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        to: SocketAddr,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new().context("start the tokio runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Run {
                names,
                smoke,
                sluice,
                vector,
                baseline,
                rows,
                rounds,
                report,
                work,
                list,
            } => {
                if list {
                    println!("{}", throughput::NAME);
                    for n in catalogue::NAMES {
                        println!("{n}");
                    }
                    return Ok(());
                }
                let bins = Binaries {
                    sluice,
                    vector,
                    baseline,
                };
                let selection = Selection { rows, rounds };
                run(names, smoke, bins, selection, report, work).await
            }
            Command::Generate {
                protocol,
                target,
                rate,
                event_bytes,
                connections,
                duration,
                batch,
            } => {
                let tracker = Arc::new(seq::Tracker::new());
                let g = Generator::start(
                    Load {
                        protocol,
                        target,
                        rate,
                        event_bytes,
                        connections,
                        duration: Duration::from_secs_f64(duration),
                        batch,
                        track_ids: true,
                        tls_ca: None,
                        file: None,
                    },
                    tracker,
                );
                let s = g.wait().await;
                println!("{}", serde_json::to_string_pretty(&s)?);
                Ok(())
            }
            Command::Receive {
                protocol,
                listen,
                fault,
                duration,
            } => receive(protocol, listen, &fault, duration).await,
            Command::Relay { listen, to } => relay::run(listen, to).await,
            Command::Proxy { listen, to } => proxy::run(listen, to).await,
        }
    })
}

/// The binaries a run starts.
struct Binaries {
    sluice: PathBuf,
    vector: Option<PathBuf>,
    baseline: Option<PathBuf>,
}

/// Which throughput rows run, and how many times.
struct Selection {
    rows: Vec<String>,
    rounds: u32,
}

async fn run(
    names: Vec<String>,
    smoke: bool,
    bins: Binaries,
    Selection { rows, rounds }: Selection,
    report_dir: PathBuf,
    work: Option<PathBuf>,
) -> anyhow::Result<()> {
    let Binaries {
        sluice,
        vector,
        baseline,
    } = bins;
    if !sluice.exists() {
        bail!(
            "no sluice binary at {} (build it, or pass --sluice)",
            sluice.display()
        );
    }
    let mut all: Vec<&str> = vec![throughput::NAME];
    all.extend(catalogue::NAMES);
    let names: Vec<String> = if names.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        for n in &names {
            if !all.contains(&n.as_str()) {
                bail!("no scenario `{n}`; there are: {}", all.join(", "));
            }
        }
        names
    };
    let tmp = tempfile::tempdir().context("create a work directory")?;
    let work = work.unwrap_or_else(|| tmp.path().to_path_buf());
    let ctx = Ctx {
        sluice: std::fs::canonicalize(&sluice)?,
        vector,
        baseline: baseline
            .map(|b| {
                std::fs::canonicalize(&b).with_context(|| format!("--baseline {}", b.display()))
            })
            .transpose()?,
        rows,
        rounds: rounds as usize,
        smoke,
        work,
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    for name in &names {
        println!("==> {name}");
        let result = if name == throughput::NAME {
            throughput::run(&ctx).await
        } else {
            match catalogue::build(name, &ctx) {
                Some(spec) => scenario::run_chaos(&ctx, &spec).await,
                None => bail!("no scenario `{name}`"),
            }
        };
        let r = match result {
            Ok(r) => r,
            // A scenario that cannot run (a peer that would not start)
            // is a failure, reported like any other.
            Err(e) => scenario::Report {
                name: name.clone(),
                failures: vec![format!("could not run: {e:#}")],
                ..scenario::Report::default()
            },
        };
        println!(
            "    {} in {:.0} s{}",
            if r.passed { "PASS" } else { "FAIL" },
            r.seconds,
            r.failures
                .first()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
        report::write_json(&report_dir, &r)?;
        if let Err(e) = plot::draw(&report_dir, &r) {
            eprintln!("    plot for {name}: {e:#}");
        }
        reports.push(r);
    }
    println!();
    print!("{}", report::summary(&reports));
    println!(
        "\n{} scenarios in {:.0} s; reports in {}",
        reports.len(),
        started.elapsed().as_secs_f64(),
        report_dir.display()
    );
    let failed = reports.iter().filter(|r| !r.passed).count();
    if failed > 0 {
        bail!("{failed} scenario(s) failed");
    }
    Ok(())
}

async fn receive(
    protocol: Protocol,
    listen: SocketAddr,
    faults: &[String],
    duration: Option<f64>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let windows = faults
        .iter()
        .map(|f| parse_fault(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tracker = Arc::new(seq::Tracker::new());
    let sink = receiver::Sink::new(tracker.clone(), true);
    let schedule = Schedule::new(start, windows);
    let h = match protocol {
        Protocol::Http | Protocol::Hec => receiver::http::spawn(listen, schedule, sink).await?,
        // A receiver takes what sluice writes: syslog and statsd events
        // leave it as JSON lines like any other.
        Protocol::Tcp | Protocol::Syslog | Protocol::Statsd | Protocol::Fluent | Protocol::File => {
            receiver::tcp::spawn(listen, schedule, sink).await?
        }
        Protocol::Udp => receiver::udp::spawn(listen, schedule, sink).await?,
        Protocol::Otlp => {
            anyhow::ensure!(
                faults.is_empty(),
                "the otlp receiver injects no faults; give --fault with tcp, http or udp"
            );
            receiver::otlp::spawn(listen, sink).await?
        }
    };
    eprintln!("receiving on {}", h.addr);
    let mut last = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let n = tracker.received_events();
        eprintln!(
            "{:>6.1} s  {n} events  {}/s",
            start.elapsed().as_secs_f64(),
            n - last
        );
        last = n;
        if duration.is_some_and(|d| start.elapsed().as_secs_f64() >= d) {
            break;
        }
    }
    let c = tracker.compare();
    println!("{}", serde_json::to_string_pretty(&c)?);
    Ok(())
}

/// `FROM-TO:FAULT` (see `receive --help`).
fn parse_fault(s: &str) -> anyhow::Result<Window> {
    let bad = || format!("bad fault `{s}`: want FROM-TO:FAULT, e.g. 5-35:down");
    let (span, what) = s.split_once(':').with_context(bad)?;
    let (from, to) = span.split_once('-').with_context(bad)?;
    let from: f64 = from.parse().with_context(bad)?;
    let to: f64 = to.parse().with_context(bad)?;
    let mut parts = what.split(':');
    let kind = parts.next().unwrap_or("");
    let fault = match kind.split_once('=') {
        None if kind == "down" => Fault::Down,
        None if kind == "stall" => Fault::Stall,
        None if kind == "close" => Fault::Close,
        Some(("latency", ms)) => Fault::Latency {
            ms: ms.parse().with_context(bad)?,
        },
        Some(("status", v)) => {
            let (code, rate) = v.split_once('@').unwrap_or((v, "1"));
            let retry_after = match parts.next() {
                Some(p) => Some(
                    p.strip_prefix("retry_after=")
                        .with_context(bad)?
                        .parse()
                        .with_context(bad)?,
                ),
                None => None,
            };
            Fault::Status {
                code: code.parse().with_context(bad)?,
                rate: rate.parse().with_context(bad)?,
                retry_after,
            }
        }
        _ => bail!(bad()),
    };
    Ok(Window::new(from, to, fault))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_the_command_line() {
        let w = parse_fault("3-13:status=429@0.5:retry_after=2").unwrap();
        assert_eq!((w.from_s, w.to_s), (3.0, 13.0));
        assert!(matches!(
            w.fault,
            Fault::Status {
                code: 429,
                retry_after: Some(2),
                ..
            }
        ));
        assert!(matches!(
            parse_fault("0-1:down").unwrap().fault,
            Fault::Down
        ));
        assert!(parse_fault("x-1:down").is_err());
        assert!(parse_fault("0-1:explode").is_err());
    }
}
