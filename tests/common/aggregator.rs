//! A sluice aggregator for the forwarding tests: a real sluice process
//! whose `sluice` source keeps its port and data directory across a
//! `kill -9` and a restart, so the edge's endpoint and the aggregator's
//! persistent queues stay where they were.

use std::time::Duration;

use super::Sluice;
use super::real_peer::{Ports, free_ports};

pub struct Aggregator {
    pub port: u16,
    yaml: String,
    env: Vec<(&'static str, String)>,
    sluice: Option<Sluice>,
    _ports: Ports<1>,
    _data: tempfile::TempDir,
}

impl Aggregator {
    /// `source`: more keys of the `edge` source (`, auth: {...}`);
    /// `rest`: the routes and destinations, where `{data}` is this
    /// aggregator's data directory.
    pub fn start(source: &str, rest: &str, env: &[(&'static str, &str)]) -> Aggregator {
        let ports: Ports<1> = free_ports();
        let port = ports.ports[0];
        let data = tempfile::tempdir().expect("tempdir");
        let yaml = format!(
            "api: {{ address: 127.0.0.1:0 }}\ndata_dir: \"{{data}}\"\nshutdown_timeout: 5s\nsources:\n  edge: {{ type: sluice, address: \"127.0.0.1:{port}\"{source} }}\n{rest}"
        )
        .replace("{data}", &data.path().display().to_string());
        let mut a = Aggregator {
            port,
            yaml,
            env: env.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            sluice: None,
            _ports: ports,
            _data: data,
        };
        a.restart();
        a
    }

    /// `host:port`, as an edge's `address`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn sluice(&self) -> &Sluice {
        self.sluice.as_ref().expect("the aggregator is running")
    }

    /// `kill -9`: nothing it held in memory survives.
    pub fn kill(&mut self) {
        if let Some(mut s) = self.sluice.take() {
            super::signal(s.pid(), libc::SIGKILL);
            s.wait_exit(Duration::from_secs(10));
        }
    }

    /// Start it (again) on its port with its data directory.
    pub fn restart(&mut self) {
        let env = self.env.clone();
        self.sluice = Some(Sluice::start_with(&self.yaml, |c| {
            for (k, v) in env {
                c.env(k, v);
            }
        }));
    }
}
