//! `type: stdin` — newline-delimited events from standard input. At end of
//! input the source ends; when every source has ended, sluice drains its
//! destinations and exits, so `cat events | sluice run` works as a pipeline.

use tokio::task::JoinHandle;

use super::SourceContext;
use super::decoding::Decoding;
use super::framing::{Framing, pump};
use crate::config::Validate;
use crate::config::units::ByteSize;

crate::source_config! {
    pub struct StdinConfig {
        #[serde(default = "super::tcp::default_max_line")]
        pub max_line_bytes: ByteSize,
        #[serde(default)]
        pub decoding: Decoding,
    }
}

impl Validate for StdinConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_line_bytes.0 == 0 {
            return Err("max_line_bytes must be at least 1".into());
        }
        Ok(())
    }
}

pub struct StdinSource;

impl super::SourceType for StdinSource {
    const NAME: &'static str = "stdin";
    type Config = StdinConfig;

    fn is_finite(_: &StdinConfig) -> bool {
        true
    }

    async fn start(
        c: &StdinConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, super::SourceError> {
        Ok(super::Started::task(None, start(c, ctx)))
    }
}

fn start(cfg: &StdinConfig, ctx: SourceContext) -> JoinHandle<()> {
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
