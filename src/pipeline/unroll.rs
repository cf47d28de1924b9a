//! `unroll`: an array field into one event per element, each a copy of the
//! event with the element in the field's place (or in `target`). The first
//! copy continues the event; the others are counted as emitted. An empty
//! array leaves no event (counted `filter`); a field that is not an array
//! passes the event on unchanged.

use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::{DropReason, Function, Tally, Work};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnrollConfig {
    #[serde(rename = "type")]
    pub kind: String,
    /// Its label in the pipeline's metrics (default: its type).
    #[serde(default)]
    pub name: Option<String>,
    /// The array field.
    pub field: String,
    /// Where each element goes (default: `field` itself).
    #[serde(default)]
    pub target: Option<String>,
}

impl UnrollConfig {
    fn compile(&self) -> Result<Unroll, String> {
        let field = super::path::parse(&self.field).map_err(|e| format!("field: {e}"))?;
        let target = match &self.target {
            Some(t) => super::path::parse(t).map_err(|e| format!("target: {e}"))?,
            None => field.clone(),
        };
        Ok(Unroll { field, target })
    }

    pub fn validate(&self) -> Result<(), String> {
        self.compile().map(|_| ())
    }

    pub fn build(&self, _: &crate::pipeline::state::Slot) -> Result<Box<dyn Function>, String> {
        Ok(Box::new(self.compile()?))
    }
}

struct Unroll {
    field: OwnedValuePath,
    target: OwnedValuePath,
}

impl Function for Unroll {
    fn run(&self, batch: Vec<Work>, out: &mut Vec<Work>, tally: &mut Tally) {
        for mut w in batch {
            let v = w.value_mut();
            let items = match v.get(&self.field) {
                Some(Value::Array(_)) => match v.remove(&self.field, false) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                },
                _ => {
                    out.push(w);
                    continue;
                }
            };
            if items.is_empty() {
                tally.drop(DropReason::Filter);
                continue;
            }
            tally.emitted += items.len() as u64 - 1;
            let base = v.clone();
            for item in items {
                let mut copy = base.clone();
                copy.insert(&self.target, item);
                out.push(Work::Value(copy));
            }
        }
    }
}
