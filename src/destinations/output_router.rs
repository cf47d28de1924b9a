//! `type: output_router` — Cribl's Output Router: ordered rules, each a
//! filter and a destination, evaluated per event.
//!
//! ```yaml
//! fanout:
//!   type: output_router
//!   rules:
//!     - { filter: 'level == "error"', destination: pager, final: false }
//!     - { filter: 'source == "k8s"', destination: kafka }
//!   default: archive          # or `drop` (the default), counted
//! ```
//!
//! A rule whose filter matches sends the event to its destination; `final`
//! (the default) stops evaluation, a non-final rule sends a copy and goes on.
//! Events no final rule took go to `default`.
//!
//! It has no lane and no driver of its own: the router expands it in place
//! (`crate::router`), so each child keeps its own lane and policy. A stalled
//! child with `drop` or `persistent_queue` never slows the others; the router
//! pushes back only while a child with `block` is full. (Cribl's Output
//! Router blocks when any child blocks.)

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validate;

/// One rule, in order.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule in `sluice_output_router_rule_events_total`; default:
    /// its position (`0`, `1`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// Default `true`: every event.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub filter: Option<Spanned<String>>,
    #[schemars(with = "String")]
    pub destination: Spanned<String>,
    #[serde(default = "yes", rename = "final")]
    pub is_final: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputRouterConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub rules: Vec<RuleConfig>,
    /// `drop` (the default) or a destination id.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub default: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

pub const NAME: &str = "output_router";

impl OutputRouterConfig {
    /// Every destination this router may send to, with where it is named.
    pub fn targets(&self) -> impl Iterator<Item = &Spanned<String>> {
        self.rules
            .iter()
            .map(|r| &r.destination)
            .chain(self.default_target())
    }

    /// The `default` destination, unless it is `drop`.
    pub fn default_target(&self) -> Option<&Spanned<String>> {
        self.default.as_ref().filter(|d| d.value != "drop")
    }

    /// Each rule's metric name.
    pub fn rule_names(&self) -> Vec<String> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| r.name.clone().unwrap_or_else(|| i.to_string()))
            .collect()
    }
}

impl Validate for OutputRouterConfig {
    fn validate(&self) -> Result<(), String> {
        if self.rules.is_empty() {
            return Err("`rules` is empty: an output router needs at least one rule".into());
        }
        let names = self.rule_names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("rule name `{n}` is used twice"));
            }
        }
        Ok(())
    }
}
