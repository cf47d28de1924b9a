//! `type: udp` — one datagram per event, or (`pack: true`) as many events as
//! fit in `max_datagram_bytes` (default 1432, what fits an Ethernet MTU
//! after IP and UDP headers), separated by newlines, as StatsD servers read
//! them.
//!
//! UDP has no acknowledgement and never pushes back: a datagram the kernel
//! accepted counts as sent. An event larger than a datagram is dropped with
//! reason `oversize`; a datagram the kernel refuses is counted as dropped
//! with reason `rejected`. Neither is retried.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, OnceCell};

use crate::config::Validate;
use crate::config::units::{ByteSize, Dur};
use crate::destination_config;
use crate::destinations::kind::STREAM_ENCODINGS;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{
    DeliveryDefaults, Destination, Encoded, Encoder, Outcome, RecordOutcome, Rejection,
};
use crate::event::Event;
use crate::metrics::DropReason;

destination_config! {
    pub struct UdpConfig {
        /// `host:port`.
        pub address: String,
        /// Largest datagram sent. Default 1432 bytes.
        #[serde(default)]
        pub max_datagram_bytes: Option<ByteSize>,
        /// Pack several events per datagram, newline-separated.
        #[serde(default)]
        pub pack: bool,
        /// Re-resolve the host name this often. Default 60 s.
        #[serde(default)]
        pub dns_refresh: Option<Dur>,
    }
}

impl Validate for UdpConfig {
    fn validate(&self) -> Result<(), String> {
        super::tcp::split_address(&self.address)?;
        match self.max_datagram_bytes {
            Some(b) if b.0 == 0 || b.0 > 65_507 => {
                return Err("max_datagram_bytes must be between 1 and 65507".into());
            }
            _ => {}
        }
        Ok(())
    }
}

impl DestinationType for UdpDestination {
    const NAME: &'static str = "udp";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::DATAGRAM;
    /// Datagrams carry records, not compressed requests or arrays.
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: STREAM_ENCODINGS,
        // The largest UDP payload over IPv4.
        max_record_bytes: Some(65_507),
        ..Capabilities::LOCAL
    };
    type Config = UdpConfig;

    async fn build(cfg: &UdpConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        UdpDestination::new(cfg)
    }
}

/// One datagram and how many events it carries.
pub struct Datagram {
    bytes: Bytes,
    events: usize,
}

pub struct UdpDestination {
    address: String,
    encoder: Encoder,
    max: usize,
    pack: bool,
    dns_refresh: Duration,
    socket: OnceCell<UdpSocket>,
    resolved: Mutex<Option<(SocketAddr, Instant)>>,
}

impl UdpDestination {
    pub fn new(cfg: &UdpConfig) -> Result<Self, String> {
        Ok(UdpDestination {
            address: cfg.address.clone(),
            encoder: cfg.common().encoder()?,
            max: cfg.max_datagram_bytes.map_or(1432, ByteSize::as_usize),
            pack: cfg.pack,
            dns_refresh: cfg.dns_refresh.map_or(Duration::from_secs(60), Dur::get),
            socket: OnceCell::new(),
            resolved: Mutex::new(None),
        })
    }

    async fn target(&self) -> std::io::Result<SocketAddr> {
        let mut r = self.resolved.lock().await;
        if let Some((addr, at)) = *r
            && at.elapsed() < self.dns_refresh
        {
            return Ok(addr);
        }
        let addr = tokio::net::lookup_host(self.address.as_str())
            .await?
            .next()
            .ok_or_else(|| {
                std::io::Error::other(format!("{} resolves to nothing", self.address))
            })?;
        *r = Some((addr, Instant::now()));
        Ok(addr)
    }

    async fn socket(&self, target: SocketAddr) -> std::io::Result<&UdpSocket> {
        self.socket
            .get_or_try_init(|| async {
                let any: SocketAddr = if target.is_ipv6() {
                    "[::]:0".parse().expect("a valid address")
                } else {
                    "0.0.0.0:0".parse().expect("a valid address")
                };
                UdpSocket::bind(any).await
            })
            .await
    }
}

impl Destination for UdpDestination {
    type Request = Vec<Datagram>;

    fn encode(&self, events: &[Event]) -> Encoded<Vec<Datagram>> {
        let mut scratch = self.encoder.scratch();
        let mut skipped = Vec::new();
        let mut datagrams = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        let mut count = 0;
        let mut one = Vec::new();
        let mut bytes = 0;
        for (i, e) in events.iter().enumerate() {
            one.clear();
            if !self.encoder.encode_one(e, &mut scratch, &mut one) {
                skipped.push((i, DropReason::Unencodable));
                continue;
            }
            if one.len() > self.max {
                skipped.push((i, DropReason::Oversize));
                continue;
            }
            let fits = self.pack && count > 0 && current.len() + 1 + one.len() <= self.max;
            if !fits && count > 0 {
                bytes += current.len();
                datagrams.push(Datagram {
                    bytes: std::mem::take(&mut current).into(),
                    events: count,
                });
                count = 0;
            }
            if count > 0 {
                current.push(b'\n');
            }
            current.extend_from_slice(&one);
            count += 1;
        }
        if count > 0 {
            bytes += current.len();
            datagrams.push(Datagram {
                bytes: current.into(),
                events: count,
            });
        }
        Encoded {
            keys: None,
            request: datagrams,
            bytes,
            skipped,
            record_bytes: Vec::new(),
        }
    }

    async fn send(&self, datagrams: &Vec<Datagram>, _endpoint: usize) -> Outcome {
        let target = match self.target().await {
            Ok(t) => t,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    error: format!("resolving {}: {e}", self.address),
                };
            }
        };
        let socket = match self.socket(target).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Retry {
                    after: None,
                    error: format!("opening a UDP socket: {e}"),
                };
            }
        };
        let mut records = Vec::with_capacity(datagrams.iter().map(|d| d.events).sum());
        let mut failed = 0;
        for d in datagrams {
            let r = match socket.send_to(&d.bytes, target).await {
                Ok(_) => RecordOutcome::Delivered,
                Err(e) => {
                    failed += 1;
                    tracing::debug!(address = %self.address, error = %e, "datagram not sent");
                    RecordOutcome::rejected(Rejection::named(
                        "SendFailed",
                        format!("datagram not sent: {e}"),
                    ))
                }
            };
            records.extend(std::iter::repeat_n(r, d.events));
        }
        if failed == 0 {
            Outcome::Delivered
        } else {
            Outcome::Partial(records)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(pack: bool, max: u64) -> UdpDestination {
        let cfg: UdpConfig = serde_json::from_value(serde_json::json!({
            "type": "udp",
            "address": "127.0.0.1:9",
            "encoding": "raw",
            "pack": pack,
            "max_datagram_bytes": max,
        }))
        .unwrap();
        UdpDestination::new(&cfg).unwrap()
    }

    fn events(sizes: &[usize]) -> Vec<Event> {
        sizes
            .iter()
            .map(|&n| Event::text(Bytes::from(vec![b'x'; n])))
            .collect()
    }

    #[test]
    fn one_event_per_datagram_or_packed() {
        let enc = dest(false, 100).encode(&events(&[10, 20, 150, 30]));
        assert_eq!(enc.request.len(), 3);
        assert_eq!(enc.skipped, vec![(2, DropReason::Oversize)]);
        let enc = dest(true, 35).encode(&events(&[10, 20, 30, 4]));
        let sizes: Vec<(usize, usize)> = enc
            .request
            .iter()
            .map(|d| (d.bytes.len(), d.events))
            .collect();
        assert_eq!(sizes, vec![(31, 2), (35, 2)]);
        assert_eq!(enc.bytes, 66);
    }
}
