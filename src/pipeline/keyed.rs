//! Per-key state for functions that treat each value of a field on its own
//! (`sample`, `throttle`): the key read from the event, and a map of states
//! bounded by `max_keys`, so a field an attacker fills with fresh values
//! (a request id) costs a bounded amount of memory. Keys past the bound
//! share one overflow state, and the first overflow is logged.

use std::collections::HashMap;

use vrl::path::OwnedValuePath;
use vrl::value::Value;

/// The default bound on distinct keys a function remembers.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The key of an event: its field's value as text (numbers and booleans
/// as written), empty when missing or when there is no key field.
pub fn key_of(v: &Value, field: Option<&OwnedValuePath>) -> Vec<u8> {
    let Some(path) = field else {
        return Vec::new();
    };
    match v.get(path) {
        Some(found) => match super::work::text(found) {
            Some(t) => t.to_vec(),
            None => serde_json::to_vec(found).unwrap_or_default(),
        },
        None => Vec::new(),
    }
}

/// States by key, at most `max` of them.
pub struct Keyed<S> {
    map: HashMap<Vec<u8>, S>,
    overflow: Option<S>,
    max: usize,
    what: &'static str,
}

impl<S> Keyed<S> {
    pub fn new(max: usize, what: &'static str) -> Self {
        Keyed {
            map: HashMap::new(),
            overflow: None,
            max: max.max(1),
            what,
        }
    }

    /// The state of `key`, made by `make` on first sight.
    pub fn get(&mut self, key: &[u8], make: impl FnOnce() -> S) -> &mut S {
        self.get_marked(key, |_| make())
    }

    /// As `get`, telling `make` whether it makes the shared overflow state
    /// (an aggregate labels that group as the rest, not as its first key).
    pub fn get_marked(&mut self, key: &[u8], make: impl FnOnce(bool) -> S) -> &mut S {
        if self.map.contains_key(key) {
            return self
                .map
                .get_mut(key)
                .unwrap_or_else(|| unreachable!("just found"));
        }
        if self.map.len() < self.max {
            return self.map.entry(key.to_vec()).or_insert_with(|| make(false));
        }
        if self.overflow.is_none() {
            tracing::warn!(
                function = self.what,
                max_keys = self.max,
                "more distinct keys than max_keys: the rest share one state"
            );
        }
        self.overflow.get_or_insert_with(|| make(true))
    }

    /// Every state with its key (`None`: the overflow state), taken out.
    pub fn drain(&mut self) -> impl Iterator<Item = (Option<Vec<u8>>, S)> + '_ {
        let overflow = self.overflow.take().map(|s| (None, s));
        self.map.drain().map(|(k, s)| (Some(k), s)).chain(overflow)
    }

    /// Every state with its key (`None`: the overflow state).
    pub fn iter(&self) -> impl Iterator<Item = (Option<&[u8]>, &S)> + '_ {
        let overflow = self.overflow.as_ref().map(|s| (None, s));
        self.map
            .iter()
            .map(|(k, s)| (Some(k.as_slice()), s))
            .chain(overflow)
    }

    /// The state of `key`, if it has one (without making it).
    pub fn peek(&self, key: &[u8]) -> Option<&S> {
        match self.map.get(key) {
            Some(s) => Some(s),
            None if self.map.len() >= self.max => self.overflow.as_ref(),
            None => None,
        }
    }

    /// Forget every key (a sampling period ended).
    pub fn clear(&mut self) {
        self.map.clear();
        self.overflow = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_with_one_overflow_state() {
        let mut k: Keyed<u32> = Keyed::new(3, "test");
        for i in 0..10u8 {
            *k.get(&[i], || 0) += 1;
        }
        assert_eq!(k.map.len(), 3);
        assert_eq!(*k.get(&[0], || 0), 1);
        // Keys 3..10 shared the overflow state.
        assert_eq!(*k.get(&[42], || 0), 7);
    }
}
