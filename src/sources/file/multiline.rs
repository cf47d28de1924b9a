//! Joining lines into multi-line events (stack traces): a line matching
//! `start_pattern` begins an event; the lines after it join it until the
//! next start — or, with `continuation_pattern`, while they match it (a
//! line matching neither is an event of its own). An event waiting for
//! more is sent after `timeout` with nothing new. An event never grows past
//! `max_bytes`: the line that would pass it begins the next one.

use std::time::Duration;

use regex::bytes::Regex;
use serde::Deserialize;

use crate::config::units::Dur;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching it begins an event (`^\S`, `^\d{4}-\d{2}-\d{2}`).
    pub start_pattern: String,
    /// If set, only lines matching it join the event before them.
    #[serde(default)]
    pub continuation_pattern: Option<String>,
    /// Send an event that has waited this long for more lines. Default 1s.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
}

fn default_timeout() -> Dur {
    Dur::secs(1)
}

impl MultilineConfig {
    pub fn compile(&self) -> Result<(Regex, Option<Regex>), String> {
        let start =
            Regex::new(&self.start_pattern).map_err(|e| format!("multiline.start_pattern: {e}"))?;
        let cont = match &self.continuation_pattern {
            Some(p) => {
                Some(Regex::new(p).map_err(|e| format!("multiline.continuation_pattern: {e}"))?)
            }
            None => None,
        };
        Ok((start, cont))
    }
}

/// A finished event: its text and the file offset just past its last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub text: Vec<u8>,
    pub end: u64,
}

pub struct Multiline {
    start: Regex,
    continuation: Option<Regex>,
    pub timeout: Duration,
    max_bytes: usize,
    current: Option<Joined>,
}

impl Multiline {
    pub fn new(c: &MultilineConfig, max_bytes: usize) -> Result<Self, String> {
        let (start, continuation) = c.compile()?;
        Ok(Multiline {
            start,
            continuation,
            timeout: c.timeout.get(),
            max_bytes,
            current: None,
        })
    }

    /// Take one line (ending at file offset `end`); finished events go to `out`.
    pub fn push(&mut self, line: &[u8], end: u64, out: &mut Vec<Joined>) {
        let starts = self.start.is_match(line);
        let continues = match &self.continuation {
            Some(c) => !starts && c.is_match(line),
            None => !starts,
        };
        match self.current.as_mut() {
            Some(cur) if continues && cur.text.len() + 1 + line.len() <= self.max_bytes => {
                cur.text.push(b'\n');
                cur.text.extend_from_slice(line);
                cur.end = end;
                return;
            }
            _ => {}
        }
        if let Some(done) = self.current.take() {
            out.push(done);
        }
        let this = Joined {
            text: line.to_vec(),
            end,
        };
        if starts || self.continuation.is_none() || continues {
            self.current = Some(this);
        } else {
            // Neither a start nor a continuation: an event of its own.
            out.push(this);
        }
    }

    /// The event waiting for more lines, sent as it is (its timeout passed).
    pub fn flush(&mut self, out: &mut Vec<Joined>) {
        if let Some(done) = self.current.take() {
            out.push(done);
        }
    }

    pub fn waiting(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: MultilineConfig, lines: &[&str]) -> Vec<String> {
        let mut m = Multiline::new(&c, 60).expect("compile");
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            m.push(l.as_bytes(), i as u64, &mut out);
        }
        m.flush(&mut out);
        out.into_iter()
            .map(|j| String::from_utf8(j.text).expect("utf8"))
            .collect()
    }

    fn config(start: &str, cont: Option<&str>) -> MultilineConfig {
        MultilineConfig {
            start_pattern: start.into(),
            continuation_pattern: cont.map(String::from),
            timeout: Dur::secs(1),
        }
    }

    #[test]
    fn stack_traces_join_their_start() {
        let got = run(
            config(r"^\d{4}-", None),
            &[
                "2026-01-01 boom",
                "  at a()",
                "  at b()",
                "2026-01-01 ok",
                "orphan first?",
            ],
        );
        assert_eq!(
            got,
            vec![
                "2026-01-01 boom\n  at a()\n  at b()",
                "2026-01-01 ok\norphan first?"
            ]
        );
        let got = run(
            config(r"^\S", Some(r"^\s")),
            &[
                "  leading continuation",
                "Exception",
                "\tat x",
                "Caused by: y",
            ],
        );
        assert_eq!(
            got,
            vec![
                "  leading continuation",
                "Exception\n\tat x",
                "Caused by: y"
            ]
        );
    }

    #[test]
    fn an_event_never_passes_max_bytes() {
        let long = "x".repeat(25);
        let got = run(config(r"^S", None), &["S", &long, &long, &long]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|e| e.len() <= 60));
    }
}
