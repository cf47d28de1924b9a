//! `type: stdin` — newline-delimited events from standard input. At end of
//! input the source ends; when every source has ended, sluice drains its
//! destinations and exits, so `cat events | sluice run` works as a pipeline.

use serde::Deserialize;
use tokio::task::JoinHandle;

use super::SourceContext;
use super::decoding::Decoding;
use super::framing::{Framing, pump};
use crate::config::Validate;
use crate::config::units::ByteSize;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// The pipeline every event of this source goes through before routing.
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default = "super::tcp::default_max_line")]
    pub max_line_bytes: ByteSize,
    #[serde(default)]
    pub decoding: Decoding,
}

impl Validate for StdinConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        Ok(())
    }
}

pub fn start(cfg: &StdinConfig, ctx: SourceContext) -> JoinHandle<()> {
    let cfg = cfg.clone();
    ctx.spawner().spawn(async move {
        let stdin = tokio::io::stdin();
        if let Some(e) = pump(
            stdin,
            Framing::Newline,
            cfg.max_line_bytes.as_usize(),
            cfg.decoding,
            &ctx,
        )
        .await
        {
            tracing::warn!(source = %ctx.id, error = %e, "reading stdin failed");
        }
        tracing::info!(source = %ctx.id, "stdin source finished");
    })
}
