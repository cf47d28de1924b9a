//! The `sluice` command line: `run`, `validate`, `test`, `graph`,
//! `destinations`, `tap`, `top`, `schema`, `queue inspect|verify`,
//! `completions` and `man`.

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use sluice::config::{Config, ConfigError};
use sluice::queue::inspect::{QueueSummary, scan_all};
use sluice::topology::Running;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser)]
#[command(name = "sluice", version, about = "A backpressure-aware stream router")]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `sluice=debug,info` (overrides RUST_LOG).
    #[arg(long, global = true, env = "SLUICE_LOG")]
    log: Option<String>,
    /// `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SLUICE_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router (on the embedded default config without --config).
    /// SIGHUP, `POST /api/v1/reload` and `--watch-config` reload the
    /// configuration without a restart.
    Run {
        /// The configuration file (YAML). Without it, the built-in default:
        /// HTTP on 127.0.0.1:8080 and TCP on 127.0.0.1:9000 to stdout.
        #[arg(short, long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
        /// Reload when the configuration file changes (debounced, by content).
        #[arg(long, env = "SLUICE_WATCH_CONFIG")]
        watch_config: bool,
    },
    /// Check a configuration file and exit: 0 if valid, otherwise print
    /// `file:line:column: message` for every problem at once and exit 1.
    /// Reads the files it names (TLS certificates, lookup tables).
    Validate {
        /// The configuration file to check.
        #[arg(short, long)]
        config: PathBuf,
        /// Fail (exit 1) on warnings too: a destination no route reaches, a
        /// pipeline nothing uses, a route that can never match.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Run the configuration's `tests:` (events through a pipeline or a
    /// route, compared with the events expected out) and exit: 0 if every
    /// test passed, otherwise 1, with a diff for each failure.
    Test {
        /// The configuration file whose `tests:` to run.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print the configuration's topology as Graphviz DOT: sources, the
    /// route table, routes, output routers and destinations, with dead-letter
    /// and unmatched edges dashed (`sluice graph -c F | dot -Tsvg > t.svg`).
    Graph {
        /// The configuration file to draw.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// List the destination types this binary was built with: encodings,
    /// compressions, protocol limits and delivery defaults.
    Destinations {
        /// One JSON object per type instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a live sample of the events passing a source, route, pipeline
    /// (what it sends on) or destination of a running sluice, as NDJSON. Sampling never slows the
    /// pipeline: a slow reader misses samples (counted on stderr), not events.
    #[command(group = clap::ArgGroup::new("point").required(true).multiple(false))]
    Tap {
        #[command(flatten)]
        api: ApiArgs,
        /// The events a route matches (an output router's rule:
        /// `<router>.<rule>`).
        #[arg(long, group = "point")]
        route: Option<String>,
        /// The events routed to a destination.
        #[arg(long, group = "point")]
        destination: Option<String>,
        /// The events a source accepted.
        #[arg(long, group = "point")]
        source: Option<String>,
        /// The events a pipeline sends on, as it changed them.
        #[arg(long, group = "point")]
        pipeline: Option<String>,
        /// Only events matching this filter (the route filter language).
        #[arg(long)]
        filter: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<u64>,
        /// At most this many events per second.
        #[arg(long, default_value_t = sluice::api::TAP_DEFAULT_RATE)]
        rate: u64,
    },
    /// A live terminal dashboard of a running sluice (q to quit).
    Top {
        #[command(flatten)]
        api: ApiArgs,
        /// Refresh interval.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Print the configuration's JSON Schema, for editors (the VS Code YAML
    /// extension) to complete and check keys.
    Schema {
        /// The reference of every key as Markdown instead
        /// (docs/reference/configuration.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Look at persistent queues on disk (read-only; safe while sluice runs).
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print a shell completion script (e.g. `sluice completions bash >
    /// /usr/share/bash-completion/completions/sluice`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --out-dir, write `sluice.1` and one
    /// `sluice-<command>.1` per command there.
    Man {
        /// Write every page into this directory instead of printing one.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

/// Where a running sluice's API is.
#[derive(clap::Args)]
struct ApiArgs {
    /// The API's address (`api.address`), or its URL.
    #[arg(long, default_value = "127.0.0.1:9598", env = "SLUICE_API")]
    api: String,
    /// The bearer token of `api.auth` (needed by `tap` when it is set).
    #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Per destination: events and bytes waiting, segments, oldest record's age.
    Inspect {
        /// The `data_dir` of the configuration.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        /// One JSON object per destination instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check the CRC of every waiting record; exit 1 naming each damaged
    /// segment and offset if any fails.
    Verify {
        /// The `data_dir` of the configuration.
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    // `--version` also says which destination types this build has (Cargo
    // features can leave heavy protocols out).
    let long_version: &'static str = Box::leak(
        format!(
            "{}\ndestinations: {}",
            env!("CARGO_PKG_VERSION"),
            sluice::destinations::TYPES.join(", ")
        )
        .into_boxed_str(),
    );
    let cli = match Cli::from_arg_matches(&cli_definition(long_version).get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f),
        // gcp_auth warns on each of its five token attempts; sluice logs the
        // cause once (Pub/Sub), so by default only its errors show.
        None => {
            EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info,gcp_auth=error"))
        }
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sluice: invalid log filter: {e}");
            return ExitCode::from(2);
        }
    };
    // Logs go to stderr: stdout belongs to the console destination. The
    // OTLP layer does nothing unless a config's `telemetry.otlp.logs` asks.
    let logs = tracing_subscriber::registry().with(filter);
    #[cfg(feature = "otlp")]
    let logs = logs.with(sluice::telemetry::logs::layer());
    // Each line redacted (`config/redact.rs`): an error's text may quote a
    // URL with its password, or a value interpolated from the environment.
    let stderr =
        tracing_subscriber::fmt::layer().with_writer(sluice::config::redact::RedactedStderr);
    sluice::config::redact::install_panic_hook();
    match cli.log_format {
        LogFormat::Text => logs
            .with(stderr.with_ansi(std::io::stderr().is_terminal()))
            .init(),
        LogFormat::Json => logs.with(stderr.json().flatten_event(true)).init(),
    }

    match cli.command {
        Command::Queue { command } => queue_command(command),
        Command::Completions { shell } => {
            let mut cmd = cli_definition(long_version);
            // Into memory first: generate() panics when its writer fails
            // (`sluice completions bash | head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "sluice", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Man { out_dir } => match man_pages(cli_definition(long_version), out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Graph { config } => match Config::load_file(&config) {
            Ok(c) => {
                print!("{}", cli::graph::dot(&c));
                ExitCode::SUCCESS
            }
            Err(e) => {
                report_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Schema { markdown: true } => {
            println!(
                "{}",
                sluice::config::reference::markdown(&sluice::config::schema::schema())
            );
            ExitCode::SUCCESS
        }
        Command::Schema { markdown: false } => {
            match serde_json::to_string_pretty(&sluice::config::schema::schema()) {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sluice: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tap {
            api,
            route,
            destination,
            source,
            pipeline,
            filter,
            limit,
            rate,
        } => {
            let point = match (route, destination, source, pipeline) {
                (Some(r), _, _, _) => ("route", r),
                (_, Some(d), _, _) => ("destination", d),
                (_, _, Some(s), _) => ("source", s),
                (_, _, _, Some(p)) => ("pipeline", p),
                _ => unreachable!(
                    "clap requires one of --route, --destination, --source, --pipeline"
                ),
            };
            let args = cli::tap::TapArgs {
                point,
                filter,
                rate,
                limit,
            };
            client_command(api, |c| async move { cli::tap::run(&c, args).await })
        }
        Command::Top { api, interval } => {
            client_command(api, |c| async move { cli::top::run(&c, interval).await })
        }
        Command::Destinations { json } => {
            print!("{}", destinations_listing(json));
            ExitCode::SUCCESS
        }
        Command::Test { config } => match Config::load_file(&config) {
            Ok(c) if c.tests.is_empty() => {
                eprintln!("{}: no `tests:` to run", config.display());
                ExitCode::FAILURE
            }
            Ok(c) => {
                if cli::test::run(&c) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Validate {
            config,
            deny_warnings,
        } => match Config::load_file(&config) {
            Ok(c) if deny_warnings && !c.warnings.is_empty() => {
                for w in &c.warnings {
                    eprintln!("{}", as_warning(w));
                }
                eprintln!(
                    "{}: warnings are errors (--deny-warnings)",
                    config.display()
                );
                ExitCode::FAILURE
            }
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("{}", as_warning(w));
                }
                println!(
                    "{}: ok (sources: {}, routes: {}, destinations: {})",
                    config.display(),
                    c.sources.len(),
                    c.routes.len(),
                    c.destinations.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                report_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Run {
            config,
            watch_config,
        } => {
            let loaded = match &config {
                Some(path) => Config::load_file(path).map(|c| (c, Some(path.clone()))),
                None => Config::load_default().map(|c| (c, None)),
            };
            let config = match loaded {
                Ok(c) => c,
                Err(e) => {
                    report_config_error(&e);
                    return ExitCode::FAILURE;
                }
            };
            ignore_file_size_signal();
            raise_open_file_limit();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("sluice")
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("sluice: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let (config, path) = config;
            let result = runtime.block_on(run(config, path, watch_config));
            // A console write may still be blocked on a pipe nobody reads;
            // its events are already counted as dropped. Do not wait for it.
            runtime.shutdown_background();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The CLI as clap sees it: parsing, completions and the man page all come
/// from this one definition.
fn cli_definition(long_version: &'static str) -> clap::Command {
    Cli::command().long_version(long_version)
}

/// `sluice man`: the top-level page on stdout, or every page into a
/// directory (what a package installs under `man1/`).
fn man_pages(cmd: clap::Command, out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let Some(dir) = out_dir else {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut out)?;
        std::io::Write::write_all(&mut std::io::stdout(), &out)?;
        return Ok(());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let write = |name: &str, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))
    };
    let cmd = cmd.name("sluice");
    for sub in cmd.get_subcommands() {
        let name = format!("sluice-{}", sub.get_name());
        write(&name, sub.clone().name(name.clone()))?;
    }
    write("sluice", cmd)
}

/// Past a file-size limit (`ulimit -f`) the kernel sends SIGXFSZ, which
/// kills by default. Ignored, the write fails with EFBIG instead and the
/// persistent queue treats it like a full disk.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: installing SIG_IGN for one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// Raise the open-file soft limit to the hard limit: the default 1024
/// lets a few hundred idle connections starve every listener (the API
/// included) of descriptors; sources bound themselves with
/// `max_connections` instead.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid, owned struct.
        let (got, raised) = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                (false, false)
            } else if limit.rlim_cur < limit.rlim_max {
                let before = limit.rlim_cur;
                limit.rlim_cur = limit.rlim_max;
                let ok = libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0;
                if !ok {
                    limit.rlim_cur = before;
                }
                (true, ok)
            } else {
                (true, false)
            }
        };
        if got {
            tracing::info!(open_files = limit.rlim_cur, raised, "open-file limit");
        }
    }
}

fn queue_command(command: QueueCommand) -> ExitCode {
    let (data_dir, verify, json) = match command {
        QueueCommand::Inspect { data_dir, json } => (data_dir, false, json),
        QueueCommand::Verify { data_dir } => (data_dir, true, false),
    };
    // A mistyped path is not "no queues": say so and fail, so a script
    // checking the queues does not take a typo for an empty backlog.
    if !data_dir.is_dir() {
        eprintln!(
            "sluice: {}: no such data directory (give the configuration's `data_dir` with --data-dir)",
            data_dir.display()
        );
        return ExitCode::from(2);
    }
    let queues = match scan_all(&data_dir) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    if queues.is_empty() {
        eprintln!(
            "no persistent queues under {}",
            data_dir.join("queues").display()
        );
    }
    if verify {
        return report_verify(&queues);
    }
    let now = sluice::queue::disk::now_ms();
    if json {
        for q in &queues {
            let mut v = serde_json::to_value(q).unwrap_or_default();
            v["oldest_age_seconds"] =
                serde_json::json!(q.oldest_ms.map(|t| now.saturating_sub(t) as f64 / 1000.0));
            println!("{v}");
        }
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:>12} {:>12} {:>9} {:>12}  DAMAGE",
        "DESTINATION", "EVENTS", "BYTES", "SEGMENTS", "OLDEST"
    );
    for q in &queues {
        let age = q.oldest_ms.map_or_else(
            || "-".to_string(),
            |t| {
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(t) / 1000,
                ))
                .to_string()
            },
        );
        let damage = if q.damage.is_empty() {
            "none".to_string()
        } else {
            format!("{} damaged (run `sluice queue verify`)", q.damage.len())
        };
        println!(
            "{:<24} {:>12} {:>12} {:>9} {:>12}  {damage}",
            q.destination, q.events, q.bytes, q.segments, age
        );
    }
    ExitCode::SUCCESS
}

fn report_verify(queues: &[QueueSummary]) -> ExitCode {
    let mut damaged = 0;
    for q in queues {
        for d in &q.damage {
            println!("{}: DAMAGED: {d}", q.destination);
            damaged += 1;
        }
        if q.torn_bytes > 0 {
            println!(
                "{}: note: {} bytes at the end of the newest segment are a write cut short (never acknowledged; truncated on the next start)",
                q.destination, q.torn_bytes
            );
        }
        if q.damage.is_empty() {
            println!(
                "{}: ok ({} events in {} segments)",
                q.destination, q.events, q.segments
            );
        }
    }
    if damaged > 0 {
        eprintln!(
            "sluice: {damaged} damaged record(s); sluice skips them on start, counts them as dropped (reason=corrupt) and moves their segments to quarantine/"
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Run a command that talks to a running sluice's API.
fn client_command<F, Fut>(api: ApiArgs, f: F) -> ExitCode
where
    F: FnOnce(cli::ApiClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let client = cli::ApiClient::new(&api.api, api.token)?;
        f(client).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `file:line:column: warning: message`, as compilers write them.
fn as_warning(w: &sluice::config::Diagnostic) -> String {
    format!("{}:{}:{}: warning: {}", w.file, w.line, w.column, w.message)
}

fn report_config_error(e: &ConfigError) {
    eprintln!("{e}");
}

/// Why the run loop woke.
enum Wake {
    Stop,
    Reload(
        &'static str,
        Option<tokio::sync::oneshot::Sender<sluice::api::LastReload>>,
    ),
}

async fn run(config: Config, path: Option<PathBuf>, watch_config: bool) -> anyhow::Result<()> {
    tracing::info!(config = %config.source_name, "starting");
    let mut running = Running::start(config).await.context("could not start")?;
    sluice::sd_notify::notify("READY=1\nSTATUS=running");
    let mut api_reloads = running.take_reload_requests();
    let mut watch = match (&path, watch_config) {
        (Some(p), true) => Some(
            sluice::config::watch::ConfigWatch::new(p)
                .with_context(|| format!("cannot watch {}", p.display()))?,
        ),
        (None, true) => anyhow::bail!("--watch-config needs --config FILE"),
        _ => None,
    };
    let mut hangups = hangups();
    // Made once: a signal that arrives while a reload runs is still seen.
    let stop = terminate();
    tokio::pin!(stop);
    loop {
        let wake = tokio::select! {
            _ = &mut stop => {
                tracing::info!("signal received");
                Wake::Stop
            }
            _ = running.sources_finished() => {
                tracing::info!("every source has finished");
                Wake::Stop
            }
            Some(()) = next_hangup(&mut hangups) => Wake::Reload("SIGHUP", None),
            () = async { match watch.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } } => {
                Wake::Reload("the file changed", None)
            }
            Some(req) = async { match api_reloads.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                Wake::Reload("POST /api/v1/reload", Some(req.reply))
            }
        };
        match wake {
            Wake::Stop => break,
            Wake::Reload(why, reply) => {
                tracing::info!(trigger = why, "reloading the configuration");
                sluice::sd_notify::reloading();
                let outcome = running.reload_from(path.as_deref()).await;
                sluice::sd_notify::notify(&format!(
                    "READY=1\nSTATUS=running; last reload: {}",
                    outcome.result
                ));
                if let Some(r) = reply {
                    let _ = r.send(outcome);
                }
            }
        }
    }
    sluice::sd_notify::notify("STOPPING=1\nSTATUS=draining");
    let reports = running.shutdown().await;
    if reports.iter().any(|r| !r.balanced()) {
        anyhow::bail!("event accounting did not balance at exit (see the log above)");
    }
    Ok(())
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload over the API instead");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

async fn next_hangup(h: &mut Hangups) -> Option<()> {
    #[cfg(unix)]
    if let Some(s) = h.as_mut() {
        return s.recv().await;
    }
    let _ = h;
    std::future::pending().await
}

/// SIGINT or SIGTERM.
async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops sluice");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `sluice destinations`: what each registered type accepts and defaults to.
fn destinations_listing(json: bool) -> String {
    use std::fmt::Write;
    let types = sluice::destinations::describe();
    let list = |v: Vec<&str>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    let limit = |v: Option<u64>| v.map_or("-".to_string(), |n| n.to_string());
    let mut out = String::new();
    if json {
        for t in &types {
            let c = &t.capabilities;
            let v = serde_json::json!({
                "type": t.name,
                "encodings": c.encodings.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "compressions": c.compressions.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "max_events": c.max_events,
                "max_bytes": c.max_bytes,
                "max_record_bytes": c.max_record_bytes,
                "retry_on": c.retry_on,
                "defaults": {
                    "batch_max_events": t.defaults.max_events,
                    "batch_max_bytes": t.defaults.max_bytes,
                    "batch_timeout_ms": t.defaults.batch_timeout.as_millis() as u64,
                    "concurrency": t.defaults.concurrency,
                    "request_timeout_ms": t.defaults.request_timeout.map(|d| d.as_millis() as u64),
                },
            });
            let _ = writeln!(out, "{v}");
        }
        return out;
    }
    let _ = writeln!(
        out,
        "{:<13} {:<46} {:<10} {:>10} {:>10} {:>10} {:>6} {:>5}",
        "TYPE", "ENCODINGS", "COMPRESS", "MAX_EVENTS", "MAX_BYTES", "MAX_RECORD", "BATCH", "CONC"
    );
    for t in &types {
        let c = &t.capabilities;
        let _ = writeln!(
            out,
            "{:<13} {:<46} {:<10} {:>10} {:>10} {:>10} {:>6} {:>5}",
            t.name,
            list(c.encodings.iter().map(|e| e.as_str()).collect()),
            list(c.compressions.iter().map(|e| e.as_str()).collect()),
            limit(c.max_events.map(|n| n as u64)),
            limit(c.max_bytes),
            limit(c.max_record_bytes),
            t.defaults.max_events,
            t.defaults.concurrency,
        );
    }
    out
}
