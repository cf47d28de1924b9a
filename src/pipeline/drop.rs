//! `drop`: remove the events a filter matches (Cribl's Drop; the filter
//! language of routes), read as `Condition` reads them.

use serde::Deserialize;

use super::condition::{Condition, now_ms};
use super::{DropReason, Function, Tally, Work};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// Events this filter matches are removed (counted `filter`).
    pub filter: String,
}

impl DropConfig {
    pub fn validate(&self) -> Result<(), String> {
        Condition::new(&self.filter)
            .map(|_| ())
            .map_err(|e| format!("filter: {e}"))
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        let filter = Condition::new(&self.filter).map_err(|e| format!("filter: {e}"))?;
        Ok(Box::new(Drop { filter }))
    }
}

struct Drop {
    filter: Condition,
}

impl Function for Drop {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut scratch = self.filter.scratch();
        let now = now_ms();
        for w in batch {
            if self.filter.matches(&w, &mut scratch, now) {
                tally.drop(DropReason::Filter);
            } else {
                out.push(w);
            }
        }
    }
}
