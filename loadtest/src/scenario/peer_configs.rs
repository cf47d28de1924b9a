//! The configurations the throughput rows run rsyslog and syslog-ng with,
//! committed as files in `loadtest/peers/` (so they can be read, reviewed
//! and run by hand) with `@NAME@` placeholders for the run's addresses and
//! directory.

use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Router {
    Rsyslog,
    SyslogNg,
}

/// What the router does to each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Forwarded as it came.
    PassThrough,
    /// Parsed as JSON, kept when `status >= 200` (all are), forwarded as
    /// it came.
    JsonFilter,
    /// The representative pipeline (`representative.rs`).
    Representative,
}

impl Router {
    /// The name `scripts/peers start` knows it by, and the row's target.
    pub fn name(self) -> &'static str {
        match self {
            Router::Rsyslog => "rsyslog",
            Router::SyslogNg => "syslog-ng",
        }
    }
}

fn template(router: Router, work: Work) -> &'static str {
    match (router, work) {
        (Router::Rsyslog, Work::PassThrough) => {
            include_str!("../../peers/rsyslog-pass-through.conf")
        }
        (Router::Rsyslog, Work::JsonFilter) => include_str!("../../peers/rsyslog-json-filter.conf"),
        (Router::Rsyslog, Work::Representative) => {
            include_str!("../../peers/rsyslog-representative.conf")
        }
        (Router::SyslogNg, Work::PassThrough) => {
            include_str!("../../peers/syslog-ng-pass-through.conf")
        }
        (Router::SyslogNg, Work::JsonFilter) => {
            include_str!("../../peers/syslog-ng-json-filter.conf")
        }
        (Router::SyslogNg, Work::Representative) => {
            include_str!("../../peers/syslog-ng-representative.conf")
        }
    }
}

/// `router`'s configuration for `work`, reading lines on `input` and
/// writing them to `output`, its state in `dir`.
pub fn config(
    router: Router,
    work: Work,
    dir: &Path,
    input: SocketAddr,
    output: SocketAddr,
) -> String {
    template(router, work)
        .replace("@DIR@", &dir.display().to_string())
        .replace("@IN_IP@", &input.ip().to_string())
        .replace("@IN_PORT@", &input.port().to_string())
        .replace("@OUT_IP@", &output.ip().to_string())
        .replace("@OUT_PORT@", &output.port().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let (i, o) = (
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:6000".parse().unwrap(),
        );
        for r in [Router::Rsyslog, Router::SyslogNg] {
            for w in [Work::PassThrough, Work::JsonFilter, Work::Representative] {
                let c = config(r, w, Path::new("/tmp/x"), i, o);
                for p in ["@DIR@", "@IN_IP@", "@IN_PORT@", "@OUT_IP@", "@OUT_PORT@"] {
                    assert!(!c.contains(p), "{r:?} {w:?}: {p} left in\n{c}");
                }
                assert!(c.contains("5000") && c.contains("6000"), "{r:?} {w:?}");
            }
        }
    }
}
