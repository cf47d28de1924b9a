//! Running the real `sluice` binary on a generated config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::metrics::{self, Scrape};
use crate::process::Process;

pub struct Sluice {
    pub process: Process,
    pub api: SocketAddr,
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    pub restarts: u32,
}

/// A config with an API on `api`, persistent queues under `dir/data`, and
/// the given sources, routes and destinations. YAML is a superset of JSON,
/// so the generated JSON is a valid sluice config as it is.
pub fn config(
    api: SocketAddr,
    dir: &Path,
    sources: Value,
    routes: Value,
    destinations: Value,
) -> Value {
    json!({
        "api": { "address": api.to_string() },
        "data_dir": dir.join("data").display().to_string(),
        "shutdown_timeout": "30s",
        "sources": sources,
        "routes": routes,
        "destinations": destinations,
    })
}

impl Sluice {
    pub async fn start(
        bin: &Path,
        dir: &Path,
        api: SocketAddr,
        config: &Value,
    ) -> anyhow::Result<Sluice> {
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(config)?)
            .with_context(|| format!("write {}", path.display()))?;
        let log = dir.join("sluice.log");
        let mut s = Sluice {
            process: spawn(bin, &path, &log)?,
            api,
            bin: bin.to_path_buf(),
            config: path,
            log,
            restarts: 0,
        };
        s.wait_ready().await?;
        Ok(s)
    }

    /// Write `config` over the running one's file and ask sluice to reload
    /// it (`POST /api/v1/reload`); the answer's `result`.
    pub async fn reload(&self, client: &reqwest::Client, config: &Value) -> anyhow::Result<String> {
        std::fs::write(&self.config, serde_json::to_string_pretty(config)?)
            .with_context(|| format!("write {}", self.config.display()))?;
        let body = client
            .post(format!("http://{}/api/v1/reload", self.api))
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .bytes()
            .await?;
        let answer: Value = serde_json::from_slice(&body).context("the reload answer")?;
        Ok(answer["result"].as_str().unwrap_or("?").to_string())
    }

    /// Start again on the same config and data (after a kill).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.process.kill();
        self.process = spawn(&self.bin, &self.config, &self.log)?;
        self.restarts += 1;
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client
                .get(format!("http://{}/ready", self.api))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if let Some(s) = self.process.exited() {
                bail!(
                    "sluice exited during startup ({s}):\n{}",
                    self.process.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "sluice not ready after 60 s:\n{}",
                    self.process.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn scrape(&self, client: &reqwest::Client) -> Option<Scrape> {
        metrics::scrape(client, self.api).await
    }
}

fn spawn(bin: &Path, config: &Path, log: &Path) -> anyhow::Result<Process> {
    Process::spawn(
        "sluice",
        bin,
        &[
            "--log-format".into(),
            "json".into(),
            "run".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        log,
    )
}
