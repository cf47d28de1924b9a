//! `type: generator` — synthetic JSON events for demos, tests and load.
//!
//! Every event carries a strictly increasing `seq` (from 0), so a receiver can
//! tell exactly which events were lost or duplicated. `level` and `status`
//! cycle through realistic values so filters have something to match:
//!
//! ```json
//! {"seq":41,"ts":1763805600123,"source":"demo","level":"error","status":503,"host":"gen-1","message":"xxxx"}
//! ```
//!
//! `rate` is events per second (0: as fast as the pipeline takes them);
//! `count` stops after that many (0: never). `event_bytes` pads `message` so
//! each event is about that long.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use tokio::time::Instant;

use super::{MAX_BATCH, SourceContext};
use crate::config::Validate;
use crate::event::{Batch, Event};

crate::source_config! {
    pub struct GeneratorConfig {
        /// Events per second; 0 means as fast as possible.
        #[serde(default = "default_rate")]
        pub rate: u64,
        /// Stop after this many events; 0 means never.
        #[serde(default)]
        pub count: u64,
        /// Approximate size of each event in bytes.
        #[serde(default = "default_event_bytes")]
        pub event_bytes: usize,
        /// Value of the `host` field.
        #[serde(default = "default_host")]
        pub host: String,
    }
}

fn default_rate() -> u64 {
    10
}

fn default_event_bytes() -> usize {
    200
}

fn default_host() -> String {
    "gen-1".into()
}

impl Validate for GeneratorConfig {
    fn validate(&self) -> Result<(), String> {
        if self.event_bytes > 16 << 20 {
            return Err("event_bytes must be at most 16MiB".into());
        }
        if self.host.contains(['"', '\\']) || self.host.chars().any(char::is_control) {
            return Err("host must not contain quotes, backslashes or control characters".into());
        }
        Ok(())
    }
}

const LEVELS: [&str; 8] = [
    "info", "info", "debug", "info", "warn", "info", "error", "info",
];
const STATUSES: [u16; 10] = [200, 200, 201, 200, 404, 200, 500, 200, 503, 302];

pub struct GeneratorSource;

impl super::SourceType for GeneratorSource {
    const NAME: &'static str = "generator";
    type Config = GeneratorConfig;

    fn is_finite(c: &GeneratorConfig) -> bool {
        c.count > 0
    }

    async fn start(
        c: &GeneratorConfig,
        ctx: SourceContext,
    ) -> Result<super::Started, super::SourceError> {
        let cfg = c.clone();
        let task = ctx.spawner().spawn(async move {
            run(cfg, ctx).await;
        });
        Ok(super::Started::task(None, task))
    }
}

async fn run(cfg: GeneratorConfig, ctx: SourceContext) {
    // Small batches at low rates keep the output smooth; large ones at high rates.
    let batch = if cfg.rate == 0 {
        MAX_BATCH as u64
    } else {
        (cfg.rate / 20).clamp(1, MAX_BATCH as u64)
    };
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut buf = BytesMut::new();
    loop {
        if cfg.count > 0 && seq >= cfg.count {
            break;
        }
        let n = if cfg.count > 0 {
            batch.min(cfg.count - seq)
        } else {
            batch
        };
        if cfg.rate > 0 {
            // Pace by schedule, not by sleeping a fixed interval, so the
            // average rate holds even when routing takes a while.
            let due = started + Duration::from_secs_f64(seq as f64 / cfg.rate as f64);
            tokio::select! {
                _ = ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        } else if ctx.shutdown.is_cancelled() {
            break;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut events = Vec::with_capacity(n as usize);
        buf.reserve((n as usize) * (cfg.event_bytes + 64));
        for i in 0..n {
            write_event(&mut buf, seq + i, ts, &ctx.id, &cfg);
            events.push(Event::json(buf.split().freeze()));
        }
        seq += n;
        if ctx.send(Batch::new(events)).await.is_err() {
            break;
        }
        if cfg.rate == 0 {
            // Let other tasks run between batches at full speed.
            tokio::task::yield_now().await;
        }
    }
    tracing::info!(source = %ctx.id, events = seq, "generator finished");
}

fn write_event(buf: &mut BytesMut, seq: u64, ts: u64, source: &str, cfg: &GeneratorConfig) {
    let start = buf.len();
    let mut num = itoa::Buffer::new();
    buf.put_slice(b"{\"seq\":");
    buf.put_slice(num.format(seq).as_bytes());
    buf.put_slice(b",\"ts\":");
    buf.put_slice(num.format(ts).as_bytes());
    buf.put_slice(b",\"source\":\"");
    buf.put_slice(source.as_bytes());
    buf.put_slice(b"\",\"level\":\"");
    buf.put_slice(LEVELS[(seq % LEVELS.len() as u64) as usize].as_bytes());
    buf.put_slice(b"\",\"status\":");
    buf.put_slice(
        num.format(STATUSES[(seq % STATUSES.len() as u64) as usize])
            .as_bytes(),
    );
    buf.put_slice(b",\"host\":\"");
    buf.put_slice(cfg.host.as_bytes());
    buf.put_slice(b"\",\"message\":\"");
    let used = buf.len() - start + 2;
    let pad = cfg.event_bytes.saturating_sub(used).max(1);
    buf.put_bytes(b'x', pad);
    buf.put_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_of_the_requested_size() {
        let cfg = GeneratorConfig {
            pipeline: None,
            kind: "generator".into(),
            rate: 0,
            count: 0,
            event_bytes: 200,
            host: "h".into(),
        };
        let mut buf = BytesMut::new();
        write_event(&mut buf, 12345, 1700000000000, "demo", &cfg);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["seq"], 12345);
        assert_eq!(v["source"], "demo");
        assert_eq!(buf.len(), 200);
    }
}
