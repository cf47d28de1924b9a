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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
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

/// POSIX guarantees atomic pipe writes up to this size (Linux: 4096).
const PIPE_BUF: usize = 4096;

/// `buf` split after newlines into pieces of at most `max` bytes (a longer
/// line is a piece of its own).
fn line_chunks(buf: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(max)];
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match memchr::memrchr(b'\n', window) {
                Some(i) => i + 1,
                None => memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1),
            }
        };
        let (chunk, tail) = rest.split_at(cut);
        rest = tail;
        Some(chunk)
    })
}

impl Destination for Console {
    type Request = Vec<u8>;

    fn encode(&self, events: &[Event]) -> Encoded<Vec<u8>> {
        let mut out = Vec::new();
        let skipped = self.encoder.encode_batch(events, &mut out);
        let n = out.len();
        Encoded {
            keys: None,
            request: out,
            bytes: n,
            skipped: unencodable(skipped),
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, request: &Vec<u8>, _endpoint: usize) -> Outcome {
        let mut out = self.out.lock().await;
        let written = async {
            for chunk in line_chunks(request, PIPE_BUF) {
                out.write_all(chunk).await?;
                // One write per chunk: a pipe takes a write of at most
                // PIPE_BUF bytes whole or not at all, so a write abandoned at
                // the shutdown deadline (a stalled reader) never tears a line.
                out.flush().await?;
            }
            Ok::<(), std::io::Error>(())
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

#[cfg(test)]
mod tests {
    use super::line_chunks;

    #[test]
    fn chunks_end_at_lines_and_stay_small() {
        let buf = b"aaaa\nbb\ncccccccc\nd\n";
        let chunks: Vec<&[u8]> = line_chunks(buf, 8).collect();
        assert_eq!(
            chunks,
            vec![&b"aaaa\nbb\n"[..], &b"cccccccc\n"[..], &b"d\n"[..]]
        );
        assert_eq!(line_chunks(b"", 8).count(), 0);
        assert_eq!(
            line_chunks(b"abc", 8).collect::<Vec<_>>(),
            vec![&b"abc"[..]]
        );
    }
}
