//! The `sluice` command line: `run` and `validate`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sluice::config::{Config, ConfigError};
use sluice::topology::Running;
use tracing_subscriber::EnvFilter;

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
    Run {
        #[arg(short, long, env = "SLUICE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and exit: 0 if valid, otherwise print
    /// `file:line:column: message` for each problem and exit 1.
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.log {
        Some(f) => EnvFilter::try_new(f),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    };
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("sluice: invalid log filter: {e}");
            return ExitCode::from(2);
        }
    };
    // Logs go to stderr: stdout belongs to the console destination.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }

    match cli.command {
        Command::Validate { config } => match Config::load_file(&config) {
            Ok(c) => {
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
        Command::Run { config } => {
            let loaded = match &config {
                Some(path) => Config::load_file(path),
                None => Config::load_default(),
            };
            let config = match loaded {
                Ok(c) => c,
                Err(e) => {
                    report_config_error(&e);
                    return ExitCode::FAILURE;
                }
            };
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
            let result = runtime.block_on(run(config));
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

fn report_config_error(e: &ConfigError) {
    eprintln!("{e}");
}

async fn run(config: Config) -> anyhow::Result<()> {
    tracing::info!(config = %config.source_name, "starting");
    let mut running = Running::start(config).await.context("could not start")?;
    tokio::select! {
        _ = terminate() => tracing::info!("signal received"),
        _ = running.sources_finished() => tracing::info!("every source has finished"),
    }
    let reports = running.shutdown().await;
    if reports.iter().any(|r| !r.balanced()) {
        anyhow::bail!("event accounting did not balance at exit (see the log above)");
    }
    Ok(())
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
