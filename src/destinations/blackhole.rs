//! `type: blackhole` — accepts and discards events, counting them as sent.
//! Use it to measure a pipeline without a peer, or (with `rate`) to stand in
//! for a slow one, as Vector's blackhole sink does.

use std::time::Duration;

use crate::config::Validate;
use crate::destination_config;
use crate::destinations::{BuildContext, Capabilities, DestinationType};
use crate::driver::{DeliveryDefaults, Destination, Encoded, Outcome};
use crate::event::Event;

destination_config! {
    pub struct BlackholeConfig {
        /// Accept at most this many events per second (default: unlimited).
        #[serde(default)]
        pub rate: Option<u64>,
    }
}

impl Validate for BlackholeConfig {
    fn validate(&self) -> Result<(), String> {
        if self.rate == Some(0) {
            return Err("rate must be at least 1 event per second (omit it for no limit)".into());
        }
        Ok(())
    }
}

pub struct Blackhole {
    rate: Option<u64>,
}

impl Blackhole {
    pub fn new(cfg: &BlackholeConfig) -> Self {
        Blackhole { rate: cfg.rate }
    }
}

impl DestinationType for Blackhole {
    const NAME: &'static str = "blackhole";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::LOCAL;
    const CAPABILITIES: Capabilities = Capabilities::LOCAL;
    type Config = BlackholeConfig;

    async fn build(cfg: &BlackholeConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        Ok(Blackhole::new(cfg))
    }
}

impl Destination for Blackhole {
    /// The number of events.
    type Request = usize;

    fn encode(&self, events: &[Event]) -> Encoded<usize> {
        let bytes = events.iter().map(|e| e.raw.len() + 1).sum();
        Encoded::all(events.len(), bytes)
    }

    async fn send(&self, events: &usize, _endpoint: usize) -> Outcome {
        if let Some(rate) = self.rate {
            tokio::time::sleep(Duration::from_secs_f64(*events as f64 / rate as f64)).await;
        }
        Outcome::Delivered
    }
}
