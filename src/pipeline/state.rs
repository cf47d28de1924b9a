//! What stateful functions (sample, throttle) keep across a reload. A
//! reload rebuilds every pipeline; a function whose pipeline, label and
//! settings are unchanged finds its state here and carries on (a
//! throttle's buckets stay spent, a sample's counters keep counting). A
//! changed setting starts afresh. Kept by the topology, as taps are.
//!
//! A function may also keep its state on disk across restarts (`dedupe`'s
//! `persist`): `Slot::file` is where, under the data directory.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Entry = (u64, Arc<dyn Any + Send + Sync>);

#[derive(Clone, Default)]
pub struct States {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by each build: what a build did not ask for is forgotten.
    generation: u64,
    entries: HashMap<String, Entry>,
    /// Where state kept on disk goes (`<data_dir>/pipelines`).
    dir: Option<std::path::PathBuf>,
}

impl States {
    /// A new build starts: states it does not ask for go at `finish`.
    /// `data_dir`: where state kept on disk lives.
    pub fn begin(&self, data_dir: Option<&std::path::Path>) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.dir = data_dir.map(|d| d.join("pipelines"));
    }

    /// The build is in place: forget what it did not use (the pipelines
    /// that held it are gone or going).
    pub fn finish(&self) {
        let mut inner = self.lock();
        let current = inner.generation;
        inner.entries.retain(|_, (g, _)| *g == current);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state kept under `key`, made by `make` when there is none.
    fn get<T: Any + Send + Sync>(&self, key: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut inner = self.lock();
        let generation = inner.generation;
        if let Some((g, s)) = inner.entries.get_mut(key)
            && let Ok(found) = Arc::clone(s).downcast::<T>()
        {
            *g = generation;
            return found;
        }
        let made = Arc::new(make());
        inner.entries.insert(
            key.to_string(),
            (generation, made.clone() as Arc<dyn Any + Send + Sync>),
        );
        made
    }
}

/// Where one function of one pipeline keeps its state.
pub struct Slot {
    pub states: States,
    /// The pipeline, the function's label and its settings.
    pub key: String,
    /// The pipeline's name and the function's label.
    pub names: (String, String),
}

impl Slot {
    /// The file this function keeps its state in across restarts (`ext`
    /// names the kind): `<data_dir>/pipelines/<pipeline>.<label>.<ext>`,
    /// the names reduced to safe characters and told apart by a hash of
    /// them. `None` with no data directory (a function built alone).
    pub fn file(&self, ext: &str) -> Option<std::path::PathBuf> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let dir = self.states.lock().dir.clone()?;
        let safe = |s: &str| -> String {
            s.chars()
                .take(64)
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(&self.names);
        let (p, l) = &self.names;
        Some(dir.join(format!("{}.{}.{:08x}.{ext}", safe(p), safe(l), hash as u32)))
    }

    pub fn get<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        self.states.get(&self.key, make)
    }

    /// A slot of its own, kept by nobody: for a function built alone.
    pub fn detached() -> Slot {
        Slot {
            states: States::default(),
            key: String::new(),
            names: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn kept_while_asked_for_and_forgotten_after() {
        let s = States::default();
        s.begin(None);
        let a = s.get("p/sample/rate 10", || AtomicU64::new(0));
        a.fetch_add(5, Ordering::Relaxed);
        s.finish();
        s.begin(None);
        let again = s.get("p/sample/rate 10", || AtomicU64::new(0));
        assert_eq!(
            again.load(Ordering::Relaxed),
            5,
            "a reload that keeps it keeps its state"
        );
        s.finish();
        s.begin(None);
        s.finish();
        s.begin(None);
        let fresh = s.get("p/sample/rate 10", || AtomicU64::new(0));
        assert_eq!(
            fresh.load(Ordering::Relaxed),
            0,
            "a build that dropped it forgot it"
        );
    }
}
