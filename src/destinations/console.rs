//! `type: console` — events to standard output (or error), NDJSON by default.
//!
//! A reader that stops reading the pipe is real backpressure: the write
//! blocks, the driver's single slot stays busy, the lane fills and its policy
//! acts on the sources. A closed pipe is permanent: events are dropped with
//! reason `rejected` and the error is logged.

use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::config::Validate;
use crate::destination_config;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon, unencodable};
use crate::driver::{DeliveryDefaults, Destination, Encoded, Encoder, Outcome, Rejection};
use crate::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[default]
    Stdout,
    Stderr,
}

destination_config! {
    pub struct ConsoleConfig {
        #[serde(default)]
        pub target: Target,
    }
}

impl Validate for ConsoleConfig {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

impl DestinationType for Console {
    const NAME: &'static str = "console";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::LOCAL;
    const CAPABILITIES: Capabilities = Capabilities::LOCAL;
    type Config = ConsoleConfig;

    async fn build(cfg: &ConsoleConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        Console::new(cfg)
    }
}

pub struct Console {
    encoder: Encoder,
    out: Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
}

impl Console {
    pub fn new(cfg: &ConsoleConfig) -> Result<Self, String> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match cfg.target {
            Target::Stdout => Box::new(tokio::io::stdout()),
            Target::Stderr => Box::new(tokio::io::stderr()),
        };
        Ok(Console {
            encoder: cfg.common().encoder()?,
            out: Mutex::new(out),
        })
    }
}

impl Destination for Console {
    type Request = Vec<u8>;

    fn encode(&self, events: &[Event]) -> Encoded<Vec<u8>> {
        let mut out = Vec::new();
        let skipped = self.encoder.encode_batch(events, &mut out);
        let n = out.len();
        Encoded {
            request: out,
            bytes: n,
            skipped: unencodable(skipped),
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, request: &Vec<u8>, _endpoint: usize) -> Outcome {
        let mut out = self.out.lock().await;
        let written = async {
            out.write_all(request).await?;
            out.flush().await
        }
        .await;
        match written {
            Ok(()) => Outcome::Delivered,
            Err(e) => {
                // Retrying a half-written batch would duplicate lines; a
                // closed or failing terminal does not come back.
                Outcome::Rejected(Rejection::new(format!(
                    "writing to the console failed: {e}"
                )))
            }
        }
    }
}
