//! `lookup`: enrich events from a CSV file (Cribl's Lookup): the value of
//! `field` is looked up in the file's `column`, and the matching row's
//! other columns (or `outputs`) are set on the event. A key not in the
//! table leaves the event as it was.
//!
//! The file is read whole at build (a missing or malformed file is a
//! config error) and checked once a second afterwards: a changed file is
//! read on its own thread and swapped in whole, so a batch sees one table
//! and the router never waits on the disk. A reload that fails keeps the
//! table it had, logs why and counts an error (`errors`) once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{Function, Tally, Work};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The CSV file, its first row naming the columns.
    pub file: PathBuf,
    /// The event's field holding the key.
    pub field: String,
    /// The file's column it is matched against (default: `field`'s name).
    #[serde(default)]
    pub column: Option<String>,
    /// The columns to set on the event (default: every other column).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Where the columns go (default: top-level fields named after them).
    #[serde(default)]
    pub target: Option<String>,
    /// Match keys regardless of case.
    #[serde(default)]
    pub ignore_case: bool,
}

/// How often the file is looked at for changes.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the table is built from, fixed at build.
#[derive(Debug, Clone)]
struct Shape {
    file: PathBuf,
    column: String,
    outputs: Vec<String>,
    target: Option<OwnedValuePath>,
    ignore_case: bool,
}

/// One version of the file: each key's fields.
struct Table {
    rows: HashMap<Box<[u8]>, Vec<(OwnedValuePath, Value)>>,
}

/// A file's modification time and length, to see it change.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(file: &Path) -> Stamp {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn key(raw: &[u8], ignore_case: bool) -> Box<[u8]> {
    if ignore_case {
        raw.to_ascii_lowercase().into()
    } else {
        raw.into()
    }
}

impl Shape {
    fn load(&self) -> Result<Table, String> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&self.file)
            .map_err(|e| format!("file `{}`: {e}", self.file.display()))?;
        let headers = reader
            .headers()
            .map_err(|e| format!("file `{}`: {e}", self.file.display()))?
            .clone();
        let key_at = headers
            .iter()
            .position(|h| h == self.column)
            .ok_or_else(|| {
                format!(
                    "file `{}` has no column `{}` (its columns: {})",
                    self.file.display(),
                    self.column,
                    headers.iter().collect::<Vec<_>>().join(", ")
                )
            })?;
        let mut outputs = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            let wanted = if self.outputs.is_empty() {
                i != key_at
            } else {
                self.outputs.iter().any(|o| o == h)
            };
            if wanted {
                let name = super::path::parse(&format!("\"{}\"", h.replace('"', "\\\"")))
                    .map_err(|e| format!("file `{}`, column `{h}`: {e}", self.file.display()))?;
                let path = match &self.target {
                    Some(t) => {
                        let mut p = t.clone();
                        p.segments.extend(name.segments);
                        p
                    }
                    None => name,
                };
                outputs.push((i, path));
            }
        }
        if let Some(o) = self
            .outputs
            .iter()
            .find(|o| !headers.iter().any(|h| h == *o))
        {
            return Err(format!(
                "outputs: file `{}` has no column `{o}`",
                self.file.display()
            ));
        }
        let mut rows = HashMap::new();
        for record in reader.byte_records() {
            let record = record.map_err(|e| format!("file `{}`: {e}", self.file.display()))?;
            let Some(k) = record.get(key_at) else {
                continue;
            };
            let values = outputs
                .iter()
                .filter_map(|(i, path)| {
                    let v = record.get(*i)?;
                    Some((
                        path.clone(),
                        Value::from(String::from_utf8_lossy(v).into_owned()),
                    ))
                })
                .collect();
            // The first row with a key wins, as Cribl's lookups do.
            rows.entry(key(k, self.ignore_case)).or_insert(values);
        }
        Ok(Table { rows })
    }
}

impl LookupConfig {
    fn shape(&self) -> Result<(Shape, OwnedValuePath), String> {
        let field = super::path::parse(&self.field).map_err(|e| format!("field: {e}"))?;
        let column = match &self.column {
            Some(c) => c.clone(),
            None => match field.segments.last() {
                Some(vrl::path::OwnedSegment::Field(f)) => f.to_string(),
                _ => return Err("column: name the file's key column".into()),
            },
        };
        let target = super::path::parse_opt(self.target.as_deref(), "target")?;
        Ok((
            Shape {
                file: self.file.clone(),
                column,
                outputs: self.outputs.clone(),
                target,
                ignore_case: self.ignore_case,
            },
            field,
        ))
    }

    pub fn validate(&self) -> Result<(), String> {
        let (shape, _) = self.shape()?;
        shape.load().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        let (shape, field) = self.shape()?;
        let seen = stamp(&shape.file);
        let table = shape.load()?;
        Ok(Box::new(Lookup {
            field,
            reload: Arc::new(Reload {
                table: ArcSwap::from_pointee(table),
                shape,
                seen: Mutex::new(seen),
                loading: AtomicBool::new(false),
                failed: AtomicU64::new(0),
            }),
            checked: Mutex::new(Instant::now()),
        }))
    }
}

/// The table and what keeps it current, shared with the reloading thread.
struct Reload {
    table: ArcSwap<Table>,
    shape: Shape,
    /// The file as last read (or tried).
    seen: Mutex<Stamp>,
    loading: AtomicBool,
    /// Reloads that failed since a batch last counted them.
    failed: AtomicU64,
}

impl Reload {
    fn load_now(&self) {
        match self.shape.load() {
            Ok(t) => {
                tracing::info!(file = %self.shape.file.display(), rows = t.rows.len(), "lookup table reloaded");
                self.table.store(Arc::new(t));
            }
            Err(e) => {
                tracing::warn!(error = %e, "lookup table not reloaded; keeping the one loaded before");
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.loading.store(false, Ordering::Release);
    }
}

struct Lookup {
    field: OwnedValuePath,
    reload: Arc<Reload>,
    checked: Mutex<Instant>,
}

impl Lookup {
    /// At most once a second, and by one batch at a time: has the file
    /// changed? Then read it on a thread of its own.
    fn check(&self) {
        let due = match self.checked.try_lock() {
            Ok(mut at) if at.elapsed() >= CHECK_EVERY => {
                *at = Instant::now();
                true
            }
            _ => false,
        };
        if !due || self.reload.loading.load(Ordering::Acquire) {
            return;
        }
        let now = stamp(&self.reload.shape.file);
        match self.reload.seen.lock() {
            Ok(mut seen) if *seen != now => *seen = now,
            _ => return,
        }
        self.reload.loading.store(true, Ordering::Release);
        let reload = Arc::clone(&self.reload);
        let spawned = std::thread::Builder::new()
            .name("sluice-lookup".into())
            .spawn(move || reload.load_now());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "lookup table reload could not start");
            self.reload.loading.store(false, Ordering::Release);
        }
    }
}

impl Function for Lookup {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        self.check();
        tally.errors += self.reload.failed.swap(0, Ordering::Relaxed);
        let table = self.reload.table.load();
        let ignore_case = self.reload.shape.ignore_case;
        for mut w in batch {
            let v = w.value_mut();
            let row = match v.get(&self.field) {
                Some(Value::Integer(i)) => table.rows.get(i.to_string().as_bytes()),
                Some(found) => super::work::text(found).and_then(|t| {
                    if ignore_case {
                        table.rows.get(&key(t, true))
                    } else {
                        table.rows.get(t)
                    }
                }),
                None => None,
            };
            if let Some(values) = row {
                for (path, value) in values {
                    v.insert(path, value.clone());
                }
            }
            out.push(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &dyn Function, events: &[&str]) -> (Vec<serde_json::Value>, Tally) {
        crate::pipeline::tests::run_json(f, events)
    }

    fn config(yaml: &str, file: &Path) -> LookupConfig {
        let yaml = yaml.replace("FILE", &file.display().to_string());
        serde_saphyr::from_str(&yaml).expect("config")
    }

    #[test]
    fn enriches_by_key_and_follows_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("teams.csv");
        std::fs::write(
            &file,
            "service,team,owner\ncheckout,payments,\"Doe, J\"\nSEARCH,discovery,kim\n",
        )
        .expect("write");
        let c = config(
            "{type: lookup, file: FILE, field: svc.name, column: service, ignore_case: true}",
            &file,
        );
        let f = c
            .build(&crate::pipeline::state::Slot::detached())
            .expect("builds");
        let (out, _) = run(
            f.as_ref(),
            &[
                r#"{"svc":{"name":"checkout"}}"#,
                r#"{"svc":{"name":"search"}}"#,
                r#"{"svc":{"name":"other"}}"#,
                r#"{"x":1}"#,
            ],
        );
        assert_eq!(
            out[0],
            serde_json::json!({"svc":{"name":"checkout"},"team":"payments","owner":"Doe, J"})
        );
        assert_eq!(out[1]["team"], "discovery");
        assert_eq!(out[2], serde_json::json!({"svc":{"name":"other"}}));
        assert_eq!(out[3], serde_json::json!({"x":1}));

        let c = config(
            "{type: lookup, file: FILE, field: service, outputs: [team], target: enrich}",
            &file,
        );
        let f = c
            .build(&crate::pipeline::state::Slot::detached())
            .expect("builds");
        std::fs::write(&file, "service,team,owner\ncheckout,billing,x\n").expect("rewrite");
        // Changed on disk: the table follows within a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (out, _) = run(f.as_ref(), &[r#"{"service":"checkout"}"#]);
            if out[0] == serde_json::json!({"service":"checkout","enrich":{"team":"billing"}}) {
                break;
            }
            assert!(Instant::now() < deadline, "not reloaded: {}", out[0]);
            std::thread::sleep(Duration::from_millis(100));
        }
        // Broken on disk: the last table stays, and the failure is counted.
        std::fs::write(&file, "nothing,here\n1,2\n").expect("break");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut errors = 0;
        while errors == 0 {
            let (out, tally) = run(f.as_ref(), &[r#"{"service":"checkout"}"#]);
            assert_eq!(out[0]["enrich"]["team"], "billing");
            errors += tally.errors;
            assert!(Instant::now() < deadline, "failed reload not counted");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn refused_at_build() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("t.csv");
        let missing = config("{type: lookup, file: FILE, field: a}", &file);
        assert!(missing.validate().expect_err("missing").contains("t.csv"));
        std::fs::write(&file, "k,v\n").expect("write");
        let no_column = config("{type: lookup, file: FILE, field: a}", &file);
        assert!(
            no_column
                .validate()
                .expect_err("column")
                .contains("no column `a`")
        );
        let no_output = config("{type: lookup, file: FILE, field: k, outputs: [w]}", &file);
        assert!(no_output.validate().expect_err("output").contains("`w`"));
    }
}
