//! `rename`: move fields to new names (`fields: {old: new}`), applied in
//! the order of the old names; a field that is not there is left alone.

use std::collections::BTreeMap;

use serde::Deserialize;
use vrl::path::OwnedValuePath;

use super::{Function, Tally, Work};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// `old: new` field paths (`a.b`, `tags[0]`).
    pub fields: BTreeMap<String, String>,
}

impl RenameConfig {
    fn pairs(&self) -> Result<Vec<(OwnedValuePath, OwnedValuePath)>, String> {
        if self.fields.is_empty() {
            return Err("fields: name at least one `old: new` pair".into());
        }
        self.fields
            .iter()
            .map(|(from, to)| {
                let f = super::path::parse(from).map_err(|e| format!("fields: {e}"))?;
                let t = super::path::parse(to).map_err(|e| format!("fields: {e}"))?;
                Ok((f, t))
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        self.pairs().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        Ok(Box::new(Rename {
            pairs: self.pairs()?,
        }))
    }
}

struct Rename {
    pairs: Vec<(OwnedValuePath, OwnedValuePath)>,
}

impl Function for Rename {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, _: &mut Tally) {
        for mut w in batch {
            let v = w.value_mut();
            for (from, to) in &self.pairs {
                if let Some(moved) = v.remove(from, true) {
                    v.insert(to, moved);
                }
            }
            out.push(w);
        }
    }
}
