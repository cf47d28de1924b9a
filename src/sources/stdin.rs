//! `type: stdin` — newline-delimited events from standard input. At end of
//! input the source ends; when every source has ended, sluice drains its
//! destinations and exits, so `cat events | sluice run` works as a pipeline.

use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use super::SourceContext;
use super::decoding::Decoding;
use super::lines::{LineFramer, Rejects};
use crate::config::Validate;
use crate::config::units::ByteSize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    #[serde(rename = "type")]
    pub kind: String,
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
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut framer = LineFramer::new(cfg.max_line_bytes.as_usize(), cfg.decoding);
        let mut events = Vec::new();
        let mut rejects = Rejects::default();
        loop {
            let read = tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                r = stdin.read_buf(framer.read_buf()) => r,
            };
            let eof = match read {
                Ok(0) => {
                    framer.finish(&mut events, &mut rejects);
                    true
                }
                Ok(_) => {
                    framer.drain(&mut events, &mut rejects);
                    false
                }
                Err(e) => {
                    tracing::warn!(source = %ctx.id, error = %e, "reading stdin failed");
                    true
                }
            };
            rejects.report(&ctx.metrics);
            if ctx.send_all(&mut events).await.is_err() || eof {
                break;
            }
        }
        tracing::info!(source = %ctx.id, "stdin source finished");
    })
}
