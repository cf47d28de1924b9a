//! Which staged file an event goes to: `partition: "{{ host }}/%Y/%m/%d"`,
//! a relative path rendered per event from its fields (`{{ path }}`, with
//! `?? default`) and its time (strftime specifiers, in UTC).
//!
//! The time is the event's `time_field` read exactly (`codec::time`); an
//! event without one, or with one that is not a time, is filed under the
//! time it is written, as Cribl files events without `_time`.
//!
//! A field value can never leave the directory: `/`, `\`, control
//! characters and a value of `.` or `..` become `_` (and `%` is kept
//! literal). Only the template's own text makes directories. A path too
//! long for a filesystem is shortened (`name.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::fields::{Field, FieldReader, FieldScratch};
use crate::codec::template::Template;
use crate::codec::time::{self, EventTime};
use crate::event::Event;

use super::name::{self, Renamed};

/// A parsed `partition` template.
#[derive(Debug)]
pub struct Partitioner {
    template: Template,
    reader: FieldReader,
    time: Field,
    /// Seconds one rendering of the time stays valid for: the finest unit
    /// the specifiers use (a template with `%H` but no `%M` changes hourly).
    time_unit: Option<i64>,
}

/// The events of one batch grouped by partition, in order of first use;
/// each group's event indices ascend.
pub type Groups = Vec<(String, Vec<usize>)>;

impl Partitioner {
    pub fn new(partition: &str, time_field: &str) -> Result<Partitioner, String> {
        let mut reader = FieldReader::new();
        let template = Template::parse(partition, &mut reader)?;
        let time = reader
            .add(time_field)
            .map_err(|e| format!("time_field: {e}"))?;
        let mut text = String::new();
        for t in template.texts() {
            text.push_str(t);
        }
        if partition.starts_with('/') {
            return Err(format!(
                "partition `{partition}` must be relative: it is placed under the directory"
            ));
        }
        if partition.split('/').any(|c| c.trim() == "..") {
            return Err(format!("partition `{partition}` must not contain `..`"));
        }
        let time_unit = time_unit(&text);
        if time_unit.is_some() {
            // Refuse a bad specifier now rather than per event.
            jiff::fmt::strtime::format(&text, jiff::Timestamp::UNIX_EPOCH)
                .map_err(|e| format!("partition `{partition}`: {e}"))?;
        }
        Ok(Partitioner {
            template,
            reader,
            time,
            time_unit,
        })
    }

    pub fn scratch(&self) -> PartitionScratch {
        PartitionScratch {
            fields: self.reader.scratch(),
            rendered: String::new(),
            path: String::new(),
            cached: None,
            renamed: [0; Renamed::ALL.len()],
        }
    }

    /// Group `events` by partition.
    pub fn group(&self, events: &[Event], s: &mut PartitionScratch) -> Groups {
        let mut groups: Groups = Vec::new();
        let mut last = usize::MAX;
        for (i, e) in events.iter().enumerate() {
            self.path(e, s);
            if let Some(r) = name::fit(&mut s.path) {
                s.renamed[r as usize] += 1;
            }
            if last < groups.len() && groups[last].0 == s.path {
                groups[last].1.push(i);
                continue;
            }
            last = match groups.iter().position(|(p, _)| *p == s.path) {
                Some(g) => g,
                None => {
                    groups.push((s.path.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[last].1.push(i);
        }
        groups
    }

    /// Render `e`'s partition into `s.path`.
    fn path(&self, e: &Event, s: &mut PartitionScratch) {
        self.reader.locate(e, &mut s.fields);
        let mut rendered = std::mem::take(&mut s.rendered);
        let escape = self.time_unit.is_some();
        // A missing field without a default is filed under `_`, visibly.
        let _ = self.template.render_each(
            &self.reader,
            e,
            &s.fields,
            &mut rendered,
            |t, out| out.push_str(t),
            |v, out| push_value(v.unwrap_or(""), escape, out),
        );
        s.path.clear();
        match self.time_unit {
            None => s.path.push_str(&rendered),
            Some(unit) => {
                let secs = match time::read(self.reader.raw(e, &s.fields, self.time)) {
                    EventTime::At(ns) => ns.div_euclid(1_000_000_000),
                    EventTime::Absent | EventTime::Unreadable => now_secs(),
                };
                let bucket = secs.div_euclid(unit);
                let hit =
                    matches!(&s.cached, Some((b, pre, _)) if *b == bucket && *pre == rendered);
                if !hit {
                    let formatted = jiff::Timestamp::from_second(bucket * unit)
                        .ok()
                        .and_then(|t| jiff::fmt::strtime::format(&rendered, t).ok())
                        .unwrap_or_else(|| rendered.replace('%', "_"));
                    s.cached = Some((bucket, rendered.clone(), formatted));
                }
                if let Some((_, _, f)) = &s.cached {
                    s.path.push_str(f);
                }
            }
        }
        s.rendered = rendered;
    }
}

/// Per-task working memory for `Partitioner::group`.
pub struct PartitionScratch {
    fields: FieldScratch,
    rendered: String,
    path: String,
    /// The last time rendering: (bucket, template with fields, result).
    cached: Option<(i64, String, String)>,
    /// Events whose path was rewritten, by `Renamed`, since `take_renamed`.
    renamed: [u64; Renamed::ALL.len()],
}

impl PartitionScratch {
    /// Events whose path was rewritten (by reason), since the last call.
    pub fn take_renamed(&mut self) -> [u64; Renamed::ALL.len()] {
        std::mem::take(&mut self.renamed)
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A field value as one path component.
fn push_value(v: &str, escape_percent: bool, out: &mut String) {
    if v.is_empty() || v == "." || v == ".." {
        out.push('_');
        return;
    }
    for c in v.chars() {
        match c {
            '/' | '\\' => out.push('_'),
            c if c.is_control() => out.push('_'),
            '%' if escape_percent => out.push_str("%%"),
            c => out.push(c),
        }
    }
}

/// The finest time unit (seconds) the strftime specifiers in `text` use;
/// `None` when it has none.
fn time_unit(text: &str) -> Option<i64> {
    let mut unit: Option<i64> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        // Flags and widths (`%-d`, `%_3j`) come before the specifier.
        let mut spec = chars.next();
        while let Some(f) =
            spec.filter(|f| matches!(f, '-' | '_' | '0' | '^' | '#' | ':') || f.is_ascii_digit())
        {
            let _ = f;
            spec = chars.next();
        }
        let secs = match spec {
            Some('%') | None => continue,
            Some('H' | 'I' | 'k' | 'l' | 'p' | 'P') => 3600,
            Some('M' | 'R') => 60,
            Some('Y' | 'y' | 'C' | 'G' | 'g') => 86_400,
            Some(
                'm' | 'b' | 'B' | 'h' | 'd' | 'e' | 'j' | 'a' | 'A' | 'u' | 'w' | 'U' | 'W' | 'V'
                | 'D' | 'F' | 'x',
            ) => 86_400,
            // Seconds and finer, or anything else: per second.
            Some(_) => 1,
        };
        unit = Some(unit.map_or(secs, |u: i64| u.min(secs)));
    }
    unit
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn paths(template: &str, events: &[&str]) -> Vec<(String, Vec<usize>)> {
        let p = Partitioner::new(template, "timestamp").unwrap();
        let events: Vec<Event> = events
            .iter()
            .map(|e| Event::json(Bytes::from(e.to_string())))
            .collect();
        let mut s = p.scratch();
        p.group(&events, &mut s)
    }

    #[test]
    fn fields_and_event_time_make_the_path() {
        let g = paths(
            "{{ host }}/%Y/%m/%d/%H",
            &[
                r#"{"host":"web-1","timestamp":"2026-12-05T03:59:59Z"}"#,
                r#"{"host":"web-2","timestamp":1764907200}"#,
                r#"{"host":"web-1","timestamp":"2026-12-05T04:00:00Z"}"#,
                r#"{"host":"web-1","timestamp":"2026-12-05T03:10:00Z"}"#,
            ],
        );
        assert_eq!(
            g,
            vec![
                ("web-1/2026/12/05/03".to_string(), vec![0, 3]),
                ("web-2/2025/12/05/04".to_string(), vec![1]),
                ("web-1/2026/12/05/04".to_string(), vec![2]),
            ]
        );
    }

    #[test]
    fn a_value_cannot_leave_the_directory() {
        let g = paths(
            "{{ a }}/{{ b ?? none }}",
            &[
                r#"{"a":"../../etc","b":"x%Yy"}"#,
                r#"{"a":".."}"#,
                r#"{"a":"c\\d"}"#,
            ],
        );
        let p: Vec<&str> = g.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(p, vec![".._.._etc/x%Yy", "_/none", "c_d/none"]);
        // With time specifiers, a `%` in a value stays literal.
        let g = paths("{{ a }}/%Y", &[r#"{"a":"5%d","timestamp":0}"#]);
        assert_eq!(g[0].0, "5%d/1970");
        // A missing field without a default is filed under `_`.
        let g = paths("{{ missing }}/x", &[r#"{"a":1}"#]);
        assert_eq!(g[0].0, "_/x");
    }

    #[test]
    fn a_value_too_long_for_a_file_name_is_shortened_and_counted() {
        let p = Partitioner::new("{{ a }}/{{ b }}", "timestamp").unwrap();
        let long = "x".repeat(300);
        let events: Vec<Event> = [
            format!(r#"{{"a":"{long}","b":"1"}}"#),
            r#"{"a":"short","b":"1"}"#.to_string(),
            format!(r#"{{"a":"{long}","b":"1"}}"#),
        ]
        .into_iter()
        .map(|e| Event::json(Bytes::from(e)))
        .collect();
        let mut s = p.scratch();
        let g = p.group(&events, &mut s);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].1, vec![0, 2], "one value, one directory");
        assert!(g[0].0.split('/').all(|c| c.len() <= name::MAX_COMPONENT));
        assert_eq!(g[1].0, "short/1");
        assert_eq!(s.take_renamed(), [2, 0, 0]);
        assert_eq!(s.take_renamed(), [0, 0, 0]);
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(Partitioner::new("/abs/%Y", "t").is_err());
        assert!(Partitioner::new("a/../b", "t").is_err());
        assert!(Partitioner::new("{{ a", "t").is_err());
        assert!(Partitioner::new("%J", "t").is_err());
        assert!(Partitioner::new("", "t").is_ok());
    }

    #[test]
    fn the_time_unit_is_the_finest_specifier() {
        assert_eq!(time_unit("%Y/%m/%d"), Some(86_400));
        assert_eq!(time_unit("%Y/%H"), Some(3600));
        assert_eq!(time_unit("%F/%-H:%M"), Some(60));
        assert_eq!(time_unit("%s"), Some(1));
        assert_eq!(time_unit("100%%"), None);
        assert_eq!(time_unit("plain"), None);
    }
}
