//! Google's Pub/Sub emulator, started by `scripts/peers`, and read the way
//! a subscriber reads it: topics and subscriptions made and messages pulled
//! (and acknowledged) through its REST API.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use base64::Engine;
use serde_json::{Value, json};

use super::real_peer::{PeerProcess, Ports, free_ports, http_json};

pub const PROJECT: &str = "sluice-test";

/// One emulator on its own port; killed when dropped.
pub struct Emulator {
    pub peer: PeerProcess,
    pub port: u16,
}

/// The emulator's REST API, as a subscriber's thread holds it.
#[derive(Clone)]
pub struct Api {
    addr: SocketAddr,
}

/// A pulled message.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub data: Vec<u8>,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: String,
}

impl Emulator {
    pub fn start() -> Emulator {
        let ports: Ports<1> = free_ports();
        let port = ports.ports[0];
        let peer = PeerProcess::start("pubsub", Box::new(ports), &[port.to_string()], Some(port));
        Emulator { peer, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> Api {
        Api {
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
        }
    }

    pub fn topic(&self, name: &str, ordered: bool) {
        self.api().topic(name, ordered);
    }

    pub fn pull(&self, subscription: &str) -> Vec<Pulled> {
        self.api().pull(subscription)
    }

    /// A hung emulator: connections open, nothing answered.
    pub fn pause(&self) {
        self.peer.pause();
    }

    pub fn resume(&self) {
        self.peer.resume();
    }
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, text) = http_json(self.addr, method, path, &body.to_string());
        assert_eq!(status, 200, "Pub/Sub emulator {method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A topic and a subscription to it (`ordered`: message ordering on)
    /// named `name`.
    pub fn topic(&self, name: &str, ordered: bool) {
        self.call(
            "PUT",
            &format!("/v1/projects/{PROJECT}/topics/{name}"),
            json!({}),
        );
        self.call(
            "PUT",
            &format!("/v1/projects/{PROJECT}/subscriptions/{name}"),
            json!({
                "topic": format!("projects/{PROJECT}/topics/{name}"),
                "enableMessageOrdering": ordered,
                "ackDeadlineSeconds": 60,
            }),
        );
    }

    /// Pull what is there (up to 1000), and acknowledge it. A hung or
    /// failing emulator gives nothing: a test waiting for messages then
    /// times out, saying what it waited for.
    pub fn pull(&self, subscription: &str) -> Vec<Pulled> {
        let path = format!("/v1/projects/{PROJECT}/subscriptions/{subscription}");
        let (status, text) = http_json(
            self.addr,
            "POST",
            &format!("{path}:pull"),
            &json!({ "maxMessages": 1000, "returnImmediately": true }).to_string(),
        );
        if status != 200 {
            return Vec::new();
        }
        let got: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let Some(received) = got["receivedMessages"].as_array() else {
            return Vec::new();
        };
        let mut acks = Vec::new();
        let mut out = Vec::new();
        for r in received {
            acks.push(r["ackId"].clone());
            let m = &r["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(m["data"].as_str().unwrap_or(""))
                .expect("base64 data");
            let attributes = m["attributes"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Pulled {
                data,
                attributes,
                ordering_key: m["orderingKey"].as_str().unwrap_or("").to_string(),
            });
        }
        if !acks.is_empty() {
            // Unacknowledged (the emulator hung meanwhile), they come again
            // after the deadline: the outage scenarios count distinct ids.
            http_json(
                self.addr,
                "POST",
                &format!("{path}:acknowledge"),
                &json!({ "ackIds": acks }).to_string(),
            );
        }
        out
    }
}
