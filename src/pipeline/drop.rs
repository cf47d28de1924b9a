//! `drop`: remove the events a filter matches (Cribl's Drop; the filter
//! language of routes). An event no function has changed yet is read lazily
//! from its bytes, as routes read it; a changed one is read as written.

use serde::Deserialize;

use super::{DropReason, Function, Tally, Work};
use crate::expr::Filter;

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
        Filter::new(&self.filter)
            .map(|_| ())
            .map_err(|e| format!("filter: {e}"))
    }

    pub fn build(&self) -> Result<Box<dyn Function>, String> {
        let filter = Filter::new(&self.filter).map_err(|e| format!("filter: {e}"))?;
        Ok(Box::new(Drop { filter }))
    }
}

struct Drop {
    filter: Filter,
}

impl Function for Drop {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        let mut scratch = self.filter.scratch();
        for w in batch {
            let matched = match &w {
                Work::Raw(e) => self.filter.matches(e, &mut scratch),
                Work::Value(_) => w
                    .event()
                    .is_some_and(|e| self.filter.matches(&e, &mut scratch)),
            };
            if matched {
                tally.drop(DropReason::Filter);
            } else {
                out.push(w);
            }
        }
    }
}
