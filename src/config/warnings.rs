//! What is valid but almost certainly not what was meant: a destination no
//! event can reach, a pipeline nothing uses, a route after one that takes
//! every event. `run` logs these; `validate` prints them beside the errors
//! and fails on them with `--deny-warnings` (for CI on config repositories).

use super::{Component, Diagnostic, Loc, PipelineDef, RouteConfig};
use crate::destinations::DestinationConfig;
use crate::sources::SourceConfig;

pub(super) fn find(
    sources: &[Component<SourceConfig>],
    routes: &[RouteConfig],
    unmatched: Option<&str>,
    destinations: &[Component<DestinationConfig>],
    pipelines: &[PipelineDef],
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Vec<Diagnostic> {
    let mut warnings = Vec::new();
    for d in destinations {
        let used = routes.iter().any(|r| r.destination == d.id)
            || unmatched == Some(d.id.as_str())
            || destinations
                .iter()
                .any(|o| o.config.dead_letter() == Some(d.id.as_str()))
            || destinations.iter().any(|o| {
                o.config
                    .output_router()
                    .is_some_and(|r| r.targets().any(|t| t.value == d.id))
            });
        if !used {
            warnings.push(at(
                d.location,
                format!("destination `{}`: no route sends events to it", d.id),
            ));
        }
    }
    for p in pipelines {
        let used = sources.iter().any(|s| s.config.pipeline() == Some(&p.name))
            || routes
                .iter()
                .any(|r| r.pipeline.as_deref() == Some(&p.name))
            || destinations
                .iter()
                .any(|d| d.config.pipeline() == Some(&p.name));
        if !used {
            warnings.push(at(
                p.location,
                format!(
                    "pipeline `{}`: no source, route or destination uses it",
                    p.name
                ),
            ));
        }
    }
    // Routes are tried in order: after a final route without a filter,
    // none is ever tried.
    if let Some(catch_all) = routes.iter().position(|r| r.is_final && r.filter == "true") {
        for r in &routes[catch_all + 1..] {
            warnings.push(at(
                r.location,
                format!(
                    "route `{}` is never reached: route `{}` before it takes every event (final, no filter)",
                    r.name, routes[catch_all].name
                ),
            ));
        }
    }
    warnings.sort_by_key(|d| (d.line, d.column));
    warnings
}
