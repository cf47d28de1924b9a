//! The YAML configuration: model, loading, validation.
//!
//! Every error names `file:line:column` and the key, route or component it is
//! about. Unknown keys are errors. `${VAR}` / `${VAR:-default}` are resolved
//! from the environment first (see `interpolate`).

pub mod component;
pub mod interpolate;
mod recover;
pub mod redact;
pub mod reference;
pub mod schema;
pub mod units;
mod warnings;
pub mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

pub use component::{Component, ComponentKind, Loc};
use component::{ComponentMap, KindIndex, ListMap};

use crate::destinations::DestinationConfig;
use crate::expr::{FieldSet, Program};
use crate::pipeline::{FunctionConfig, PipelineConfig};
use crate::sources::SourceConfig;
use crate::telemetry::TelemetryConfig;
use units::Dur;

/// The embedded configuration `sluice run` uses without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");
/// How it is named in the log, the status API, the page and `top`: no file
/// of that name is read, so it is not named like one.
pub const DEFAULT_CONFIG_NAME: &str = "(built-in default)";

/// One problem in a config file, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            ConfigError::Read { .. } => &[],
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where `/metrics`, `/health`, `/ready` and `/api/v1/status` listen.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Credentials `POST /api/v1/reload` requires (`bearer` or `basic`).
    #[serde(default)]
    #[schemars(with = "Option<crate::auth::AuthConfig>")]
    pub auth: Option<Spanned<crate::auth::AuthConfig>>,
    /// Serve HTTPS (and with `client_ca_file`, require client certificates).
    #[serde(default)]
    #[schemars(with = "Option<crate::tls::ServerTlsConfig>")]
    pub tls: Option<Spanned<crate::tls::ServerTlsConfig>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: default_api_address(),
            enabled: true,
            auth: None,
            tls: None,
        }
    }
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9598))
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    #[schemars(with = "String")]
    name: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    filter: Option<Spanned<String>>,
    #[schemars(with = "String")]
    destination: Spanned<String>,
    #[serde(default = "yes", rename = "final")]
    is_final: bool,
    #[serde(default)]
    description: Option<String>,
    /// The pipeline this route's events go through before its destination.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pipeline: Option<Spanned<String>>,
}

/// A `sluice test` case (see `crate::cli::test`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTest {
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// The pipeline under test.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pipeline: Option<Spanned<String>>,
    /// Or a route: its filter, then its pipeline.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    route: Option<Spanned<String>>,
    /// One event: text (JSON text is a JSON event) or a mapping.
    #[serde(default)]
    input: Option<serde_json::Value>,
    /// Several events, in order.
    #[serde(default)]
    inputs: Option<Vec<serde_json::Value>>,
    /// The events expected out, in order (`[]`: every one removed).
    output: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// The HTTP API: `/metrics`, `/health`, `/ready`, the status page and
    /// API, tap and reload.
    #[serde(default)]
    api: ApiConfig,
    /// Where persistent queues and file-source checkpoints live. Default
    /// `./data`.
    #[serde(default)]
    data_dir: Option<PathBuf>,
    /// How long a shutdown waits for destinations to deliver what they hold
    /// before counting the rest as `shutdown` drops. Default 30s.
    #[serde(default)]
    shutdown_timeout: Option<Dur>,
    #[serde(default)]
    sources: ComponentMap<SourceConfig>,
    /// Tried in order for every event: a matching route sends it to its
    /// destination; a final one (the default) stops the evaluation.
    #[serde(default)]
    routes: Vec<RawRoute>,
    /// Where events no final route took go: a destination id, or `drop`
    /// (the default; counted either way).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    unmatched: Option<Spanned<String>>,
    #[serde(default)]
    destinations: ComponentMap<DestinationConfig>,
    /// Named, ordered lists of functions that change events; attached by
    /// name to sources, routes and destinations (`pipeline:`).
    #[serde(default)]
    pipelines: ListMap<FunctionConfig>,
    /// `sluice test` cases: events in, events expected out.
    #[serde(default)]
    tests: Vec<RawTest>,
    /// sluice's own metrics and logs over OTLP; off unless set.
    #[serde(default)]
    #[schemars(with = "Option<TelemetryConfig>")]
    telemetry: Option<Spanned<TelemetryConfig>>,
}

/// A validated route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Where its name is written.
    pub location: Loc,
    pub filter: String,
    pub destination: String,
    pub is_final: bool,
    pub description: Option<String>,
    pub pipeline: Option<String>,
}

/// What a test runs its events through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestTarget {
    Pipeline(String),
    Route(String),
}

/// A validated `sluice test` case.
#[derive(Debug, Clone)]
pub struct TestDef {
    pub name: String,
    pub location: Loc,
    pub target: TestTarget,
    pub inputs: Vec<serde_json::Value>,
    pub output: Vec<serde_json::Value>,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct PipelineDef {
    pub name: String,
    pub location: Loc,
    pub functions: PipelineConfig,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages.
    pub source_name: String,
    pub api: ApiConfig,
    pub data_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub sources: Vec<Component<SourceConfig>>,
    pub routes: Vec<RouteConfig>,
    /// `None`: unmatched events are dropped (and counted).
    pub unmatched: Option<String>,
    pub destinations: Vec<Component<DestinationConfig>>,
    pub pipelines: Vec<PipelineDef>,
    pub tests: Vec<TestDef>,
    /// sluice's own metrics and logs over OTLP; off unless set.
    pub telemetry: TelemetryConfig,
    /// Valid, but probably not meant (`warnings.rs`).
    pub warnings: Vec<Diagnostic>,
}

/// Checks a component's own settings; `Err` is a message about the component.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

/// What a component listens on, to catch two components on one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listen {
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

impl Listen {
    pub fn port(&self) -> u16 {
        match self {
            Listen::Tcp(a) | Listen::Udp(a) => a.port(),
        }
    }
}

impl Config {
    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::load_str(&path.display().to_string(), &text)
    }

    /// The warnings, each a log line (`run`, a reload).
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            tracing::warn!(warning = %w, "the configuration is valid but probably not what was meant");
        }
    }

    pub fn load_default() -> Result<Config, ConfigError> {
        Self::load_str(DEFAULT_CONFIG_NAME, DEFAULT_CONFIG)
    }

    /// Parse and validate `text`; `name` is used in messages. Every
    /// problem found is reported at once, at its line and column.
    /// Messages quote no value taken from the environment, nor any URL's
    /// password (`redact.rs`).
    pub fn load_str(name: &str, text: &str) -> Result<Config, ConfigError> {
        let at = |loc: Loc, message: String| Diagnostic {
            file: name.to_string(),
            line: loc.line.max(1),
            column: loc.column.max(1),
            message,
        };
        let substituted = std::cell::RefCell::new(Vec::new());
        let text = interpolate::interpolate(text, |k| {
            let v = std::env::var(k).ok();
            if let Some(v) = &v {
                substituted.borrow_mut().push(v.clone());
            }
            v
        })
        .map_err(|e| ConfigError::Invalid(vec![at(offset_to_loc(text, e.offset), e.message)]))?;
        let substituted = substituted.into_inner();
        redact::remember(&substituted);
        let redactor = redact::Redactor::new(substituted);
        Self::check(name, &text, at).map_err(|e| match e {
            ConfigError::Invalid(ds) => ConfigError::Invalid(
                ds.into_iter()
                    .map(|d| Diagnostic {
                        message: redactor.apply(&d.message),
                        ..d
                    })
                    .collect(),
            ),
            other => other,
        })
    }

    /// `load_str` after interpolation.
    fn check(
        name: &str,
        text: &str,
        at: impl Fn(Loc, String) -> Diagnostic + Copy,
    ) -> Result<Config, ConfigError> {
        let ((raw, kinds, locations), recovery, parse_errors) = parse(text, &at)?;
        // The same text as a plain tree, for the components' fingerprints
        // (it parsed above, so this cannot fail on well-formed YAML).
        let tree: serde_json::Value = serde_saphyr::from_str(text).unwrap_or_default();
        let sources = components(raw.sources, &kinds, &locations, &tree);
        let destinations = components(raw.destinations, &kinds, &locations, &tree);

        let mut errors = Vec::new();
        check_sources(&raw.api, &sources, &mut errors, &at);
        if let Some(a) = &raw.api.auth
            && let Err(m) = a.value.validate()
        {
            errors.push(at(a.referenced.into(), format!("api.{m}")));
        }
        if let Some(t) = &raw.api.tls
            && let Err(m) = t.value.validate()
        {
            errors.push(at(t.referenced.into(), format!("api.{m}")));
        }
        check_destinations(&destinations, &mut errors, &at);
        check_output_routers(text, &destinations, &mut errors, &at);
        let pipelines = check_pipelines(text, raw.pipelines, &locations, &mut errors, &at);
        let routes = check_routes(
            text,
            raw.routes,
            &destinations,
            &pipelines,
            &mut errors,
            &at,
        );
        check_pipeline_uses(&sources, &destinations, &pipelines, &mut errors, &at);
        let tests = check_tests(raw.tests, &routes, &pipelines, &mut errors, &at);
        let unmatched = check_unmatched(raw.unmatched, &destinations, &mut errors, &at);
        let telemetry = match raw.telemetry {
            Some(t) => {
                if let Some(Err(m)) = t.value.otlp.as_ref().map(|o| o.validate()) {
                    errors.push(at(t.referenced.into(), m));
                }
                t.value
            }
            None => TelemetryConfig::default(),
        };
        // What was blanked out cannot be checked further: a check that
        // misses it would only echo its parse error.
        errors.retain(|d| !recovery.was_cut(d.line) && !recovery.concerns_cut(&d.message));
        errors.extend(parse_errors);
        if !errors.is_empty() {
            errors.sort_by_key(|d| (d.line, d.column));
            errors.dedup();
            return Err(ConfigError::Invalid(errors));
        }
        let warnings = warnings::find(
            &sources,
            &routes,
            unmatched.as_deref(),
            &destinations,
            &pipelines,
            &at,
        );
        Ok(Config {
            source_name: name.to_string(),
            api: raw.api,
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("./data")),
            shutdown_timeout: raw
                .shutdown_timeout
                .map_or(Duration::from_secs(30), Dur::get),
            sources,
            routes,
            unmatched,
            destinations,
            pipelines,
            tests,
            telemetry,
            warnings,
        })
    }
}

type Parsed = (RawConfig, KindMap, LocMap);

/// Both passes over the YAML: each component's type (with its position),
/// then everything, each component straight into the struct for its type.
/// A pass that fails is run again with the failed entry blanked out
/// (`recover.rs`), so every mistake is found in one go; the mistakes, and
/// what was blanked, come back with what did parse.
fn parse(
    text: &str,
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Result<(Parsed, recover::Recovery, Vec<Diagnostic>), ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::Invalid(vec![at(
            Loc::default(),
            "the configuration is empty: it needs sources, routes and destinations".into(),
        )]));
    }
    let mut recovery = recover::Recovery::new(text);
    let mut errors = Vec::new();

    // Pass one: component types.
    let index: KindIndex = parse_recovering(&mut recovery, &mut errors, at, |t| {
        serde_saphyr::from_str(t).map_err(|e| located(&e, ""))
    })?;
    let mut kinds = HashMap::new();
    let mut locations = HashMap::new();
    let before = errors.len();
    collect_kinds::<SourceConfig>(
        index.sources.unwrap_or_default(),
        &mut kinds,
        &mut locations,
        &mut errors,
        &at,
    );
    collect_kinds::<DestinationConfig>(
        index.destinations.unwrap_or_default(),
        &mut kinds,
        &mut locations,
        &mut errors,
        &at,
    );
    for (name, items) in index.pipelines.unwrap_or_default() {
        let found = items
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, f)| (component::item_id(&name, i), f))
            .collect();
        collect_kinds::<FunctionConfig>(found, &mut kinds, &mut locations, &mut errors, &at);
    }
    // A component of an unknown type cannot be parsed: leave it out.
    let unknown: Vec<Loc> = errors[before..]
        .iter()
        .map(|d| Loc {
            line: d.line,
            column: d.column,
        })
        .collect();
    for loc in unknown {
        recovery.cut_component(loc);
    }

    // Pass two: everything, each component straight into its own type.
    // Errors name the key path (`destinations.out.batch.max_events: ...`).
    let raw: RawConfig = parse_recovering(&mut recovery, &mut errors, at, |t| {
        let mut path = String::new();
        component::with_kinds(kinds.clone(), || {
            serde_saphyr::with_deserializer_from_str(t, |de| {
                serde_path_to_error::deserialize::<_, RawConfig>(de).map_err(|e| {
                    path = e.path().to_string();
                    e.into_inner()
                })
            })
        })
        .map_err(|e| located(&e, &path))
    })?;
    Ok(((raw, kinds, locations), recovery, errors))
}

/// Where a parse error is, and its message with the key path (if known).
fn located(e: &serde_saphyr::Error, path: &str) -> (Loc, String) {
    let loc = e.location().map(Loc::from).unwrap_or_default();
    let msg = serde_message(e);
    if path.is_empty() || path == "." {
        (loc, msg)
    } else {
        (loc, format!("{path}: {msg}"))
    }
}

/// Parse the recovering text with `f`, blanking each entry that fails and
/// trying again; each failure is added to `errors`. Gives up (with every
/// error so far) when the text cannot be parsed past an error.
fn parse_recovering<T>(
    recovery: &mut recover::Recovery,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
    f: impl Fn(&str) -> Result<T, (Loc, String)>,
) -> Result<T, ConfigError> {
    loop {
        let text = recovery.text();
        let (loc, msg) = match f(&text) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let cut = recovery.cut_at(loc, &msg);
        // An error where an earlier one was blanked is that one's echo.
        if cut == recover::Cut::Done
            || (cut == recover::Cut::Nothing && !recovery.was_cut(loc.line))
        {
            let value = recover::value_at(&text, loc);
            errors.push(at(loc, recover::user_words(&msg, value.as_deref())));
        }
        if errors.len() >= recover::MAX_PARSE_ERRORS || cut == recover::Cut::Nothing {
            errors.sort_by_key(|d| (d.line, d.column));
            return Err(ConfigError::Invalid(std::mem::take(errors)));
        }
    }
}

/// Source ids, settings, and no two listeners on one address.
fn check_sources(
    api: &ApiConfig,
    sources: &[Component<SourceConfig>],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    // Semantic checks, all reported together.
    let mut listens: HashMap<Listen, String> = HashMap::new();
    if api.enabled {
        listens.insert(Listen::Tcp(api.address), "the API".to_string());
    }
    if sources.is_empty() {
        errors.push(at(
            Loc::default(),
            "no sources defined: add one under `sources:`".into(),
        ));
    }
    for s in sources {
        check_id::<SourceConfig>(&s.id, s.location, errors, at);
        if let Err(m) = s.config.validate() {
            errors.push(at(s.location, format!("source `{}`: {m}", s.id)));
        }
        // Port 0 asks the OS for any free port: never a conflict.
        for l in s.config.listen().into_iter().filter(|l| l.port() != 0) {
            let what = format!("source `{}`", s.id);
            if let Some(prev) = listens.insert(l, what) {
                errors.push(at(
                    s.location,
                    format!("source `{}` listens on the same address as {prev}", s.id),
                ));
            }
        }
    }
}

/// Destination ids, each one's own settings, and dead-letter targets.
fn check_destinations(
    destinations: &[Component<DestinationConfig>],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    if destinations.is_empty() {
        errors.push(at(
            Loc::default(),
            "no destinations defined: add one under `destinations:`".into(),
        ));
    }
    for d in destinations {
        check_id::<DestinationConfig>(&d.id, d.location, errors, at);
        if d.id == "drop" {
            errors.push(at(
                d.location,
                "`drop` is reserved (for `unmatched: drop`); choose another destination id".into(),
            ));
        }
        if let Err(p) = d.config.check() {
            let loc = p.at.unwrap_or(d.location);
            errors.push(at(loc, format!("destination `{}`: {}", d.id, p.message)));
        }
    }
    for d in destinations {
        let Some(target) = d.config.dead_letter() else {
            continue;
        };
        let found = destinations.iter().find(|o| o.id == target);
        if found.is_some_and(|o| o.config.output_router().is_some()) {
            errors.push(at(
                d.location,
                format!(
                    "destination `{}`: dead_letter cannot be an output router (`{target}`); name one of its destinations",
                    d.id
                ),
            ));
        } else if target == d.id {
            errors.push(at(
                d.location,
                format!(
                    "destination `{}`: dead_letter cannot be the destination itself",
                    d.id
                ),
            ));
        } else if found.is_none() {
            errors.push(at(
                d.location,
                format!(
                    "destination `{}`: dead_letter names unknown destination `{target}` (defined: {})",
                    d.id,
                    known_ids(destinations)
                ),
            ));
        } else if dead_letter_cycle(destinations, &d.id) {
            errors.push(at(
                d.location,
                format!(
                    "destination `{}`: dead letters would go round in a circle through `{target}`",
                    d.id
                ),
            ));
        }
    }
}

/// Route names, destinations and filters.
fn check_routes(
    text: &str,
    raw: Vec<RawRoute>,
    destinations: &[Component<DestinationConfig>],
    pipelines: &[PipelineDef],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Vec<RouteConfig> {
    let known = || known_ids(destinations);
    let exists = |id: &str| destinations.iter().any(|d| d.id == id);
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for r in raw {
        let name = r.name.value.clone();
        if name.is_empty() {
            errors.push(at(
                r.name.referenced.into(),
                "a route name must not be empty".into(),
            ));
        } else if !names.insert(name.clone()) {
            errors.push(at(
                r.name.referenced.into(),
                format!("route `{name}` is defined twice; route names must be unique"),
            ));
        }
        if !exists(&r.destination.value) {
            errors.push(at(
                r.destination.referenced.into(),
                format!(
                    "route `{name}`: unknown destination `{}` (defined: {})",
                    r.destination.value,
                    known()
                ),
            ));
        }
        if let Some(p) = &r.pipeline
            && !pipelines.iter().any(|d| d.name == p.value)
        {
            errors.push(at(
                p.referenced.into(),
                format!("route `{name}`: {}", unknown_pipeline(&p.value, pipelines)),
            ));
        }
        let filter = match &r.filter {
            Some(f) => {
                check_filter(text, f, &format!("route `{name}`"), errors, at);
                f.value.clone()
            }
            None => "true".to_string(),
        };
        routes.push(RouteConfig {
            location: r.name.referenced.into(),
            name,
            filter,
            destination: r.destination.value,
            is_final: r.is_final,
            description: r.description,
            pipeline: r.pipeline.map(|p| p.value),
        });
    }
    routes
}

fn unknown_pipeline(name: &str, pipelines: &[PipelineDef]) -> String {
    let defined: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
    if defined.is_empty() {
        format!("unknown pipeline `{name}` (no `pipelines:` are defined)")
    } else {
        format!(
            "unknown pipeline `{name}` (defined: {})",
            defined.join(", ")
        )
    }
}

/// Each pipeline's name and functions; a function's error at its own line
/// and column (a remap program's, at the line of the program it is on).
fn check_pipelines(
    text: &str,
    raw: ListMap<FunctionConfig>,
    locations: &LocMap,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Vec<PipelineDef> {
    let mut out = Vec::new();
    for (name, functions) in raw.0 {
        let first = locations
            .get(&("pipelines", component::item_id(&name, 0)))
            .copied()
            .unwrap_or_default();
        check_id_as("pipeline", &name, first, errors, at);
        for (i, f) in functions.iter().enumerate() {
            let Err(e) = f.validate() else { continue };
            let here = locations
                .get(&("pipelines", component::item_id(&name, i)))
                .copied()
                .unwrap_or(first);
            let loc = match (e.at, e.program_offset, &e.program) {
                (Some(start), Some(offset), Some(program)) => {
                    program_location(text, start, program, offset)
                }
                (Some(start), _, _) => start,
                _ => here,
            };
            errors.push(at(
                loc,
                format!(
                    "pipeline `{name}`, function {} ({}): {}",
                    i + 1,
                    f.kind(),
                    e.message
                ),
            ));
        }
        out.push(PipelineDef {
            name,
            location: first,
            functions,
        });
    }
    out
}

/// Each test names one pipeline or route that exists, and its events.
fn check_tests(
    raw: Vec<RawTest>,
    routes: &[RouteConfig],
    pipelines: &[PipelineDef],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Vec<TestDef> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    for t in raw {
        let loc: Loc = t.name.referenced.into();
        let name = t.name.value;
        let mut fail = |m: String| errors.push(at(loc, format!("test `{name}`: {m}")));
        if !names.insert(name.clone()) {
            fail("defined twice; test names must be unique".into());
        }
        let target = match (t.pipeline, t.route) {
            (Some(p), None) => {
                if !pipelines.iter().any(|d| d.name == p.value) {
                    fail(unknown_pipeline(&p.value, pipelines));
                }
                TestTarget::Pipeline(p.value)
            }
            (None, Some(r)) => {
                if !routes.iter().any(|d| d.name == r.value) {
                    let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
                    fail(format!(
                        "unknown route `{}` (defined: {})",
                        r.value,
                        known.join(", ")
                    ));
                }
                TestTarget::Route(r.value)
            }
            _ => {
                fail("name one `pipeline` or one `route` to run the events through".into());
                continue;
            }
        };
        let inputs = match (t.input, t.inputs) {
            (Some(i), None) => vec![i],
            (None, Some(is)) => is,
            _ => {
                fail("give one `input` or a list of `inputs`".into());
                continue;
            }
        };
        out.push(TestDef {
            name,
            location: loc,
            target,
            inputs,
            output: t.output,
        });
    }
    out
}

/// The pipelines sources and destinations name exist.
fn check_pipeline_uses(
    sources: &[Component<SourceConfig>],
    destinations: &[Component<DestinationConfig>],
    pipelines: &[PipelineDef],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    let uses = sources
        .iter()
        .map(|s| ("source", &s.id, s.location, s.config.pipeline()))
        .chain(
            destinations
                .iter()
                .map(|d| ("destination", &d.id, d.location, d.config.pipeline())),
        );
    for (what, id, loc, pipeline) in uses {
        if let Some(p) = pipeline
            && !pipelines.iter().any(|d| d.name == p)
        {
            errors.push(at(
                loc,
                format!("{what} `{id}`: {}", unknown_pipeline(p, pipelines)),
            ));
        }
    }
}

/// Where offset `offset` of a program written at `start` is in the file. A
/// block scalar (`|`) starts on the line after its indicator, each line at
/// the same indentation; a one-line scalar past its quote, if quoted.
/// Otherwise (a quoted scalar over several lines) the scalar's start.
fn program_location(text: &str, start: Loc, program: &str, offset: usize) -> Loc {
    let before = &program[..offset.min(program.len())];
    let line_in = before.matches('\n').count() as u64;
    let col_in = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u64;
    let lines: Vec<&str> = text.lines().collect();
    let line_at = |n: u64| {
        lines
            .get(n.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("")
    };
    let first = line_at(start.line);
    let at_start: String = first
        .chars()
        .skip(start.column.saturating_sub(1) as usize)
        .collect();
    let is_indicator = |s: &str| {
        let t = s.trim_end();
        t.ends_with('|')
            || t.ends_with('>')
            || t.ends_with("|-")
            || t.ends_with("|+")
            || t.ends_with(">-")
            || t.ends_with(">+")
    };
    // The scalar's position may be its indicator or its first content line.
    let content = if at_start.starts_with('|') || at_start.starts_with('>') {
        let next = line_at(start.line + 1);
        Some(Loc {
            line: start.line + 1,
            column: (next.len() - next.trim_start().len()) as u64 + 1,
        })
    } else if start.line > 1 && is_indicator(line_at(start.line - 1)) {
        Some(start)
    } else {
        None
    };
    if let Some(c) = content {
        return Loc {
            line: c.line + line_in,
            column: c.column + col_in,
        };
    }
    let quoted = u64::from(at_start.starts_with('"') || at_start.starts_with('\''));
    if line_in == 0 {
        return Loc {
            line: start.line,
            column: start.column + quoted + col_in,
        };
    }
    start
}

/// `unmatched`: `drop` or a destination.
fn check_unmatched(
    unmatched: Option<Spanned<String>>,
    destinations: &[Component<DestinationConfig>],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) -> Option<String> {
    let known = || known_ids(destinations);
    match unmatched {
        None => None,
        Some(u) if u.value == "drop" => None,
        Some(u) => {
            if !destinations.iter().any(|d| d.id == u.value) {
                errors.push(at(
                    u.referenced.into(),
                    format!(
                        "unmatched: unknown destination `{}` (use `drop` or one of: {})",
                        u.value,
                        known()
                    ),
                ));
            }
            Some(u.value)
        }
    }
}

fn known_ids(destinations: &[Component<DestinationConfig>]) -> String {
    let ids: BTreeMap<&str, ()> = destinations.iter().map(|d| (d.id.as_str(), ())).collect();
    ids.keys().copied().collect::<Vec<_>>().join(", ")
}

/// A destination nothing sends to is legal but probably a mistake.
/// An output router's rules name destinations that exist (not itself), its
/// filters compile, and routers do not send to each other in a circle.
fn check_output_routers(
    text: &str,
    destinations: &[Component<DestinationConfig>],
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    let known = || known_ids(destinations);
    for d in destinations {
        let Some(r) = d.config.output_router() else {
            continue;
        };
        for t in r.targets() {
            if t.value == d.id {
                errors.push(at(
                    t.referenced.into(),
                    format!(
                        "output router `{}`: a rule cannot send to the router itself",
                        d.id
                    ),
                ));
            } else if !destinations.iter().any(|o| o.id == t.value) {
                errors.push(at(
                    t.referenced.into(),
                    format!(
                        "output router `{}`: unknown destination `{}` (use `drop` for default, or one of: {})",
                        d.id,
                        t.value,
                        known()
                    ),
                ));
            }
        }
        for (rule, name) in r.rules.iter().zip(r.rule_names()) {
            let Some(f) = &rule.filter else { continue };
            let what = format!("output router `{}`: rule `{name}`", d.id);
            check_filter(text, f, &what, errors, at);
        }
        if router_cycle(destinations, &d.id) {
            errors.push(at(
                d.location,
                format!(
                    "output router `{}`: routers send to each other in a circle back to it",
                    d.id
                ),
            ));
        }
    }
}

/// A filter compiles; if not, the error is at its character in the file
/// where that can be known, `what` naming the route or rule.
fn check_filter(
    text: &str,
    f: &Spanned<String>,
    what: &str,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    if let Err(e) = Program::compile(&f.value, &mut FieldSet::new()) {
        let (loc, exact) = filter_location(text, f, e.offset);
        let suffix = if exact {
            String::new()
        } else {
            format!(" (at character {} of the filter)", e.offset + 1)
        };
        errors.push(at(loc, format!("{what}: filter: {}{suffix}", e.message)));
    }
}

/// Whether some chain of output routers starting at `start` leads back to it.
fn router_cycle(destinations: &[Component<DestinationConfig>], start: &str) -> bool {
    let children = |id: &str| -> Vec<&str> {
        destinations
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.config.output_router())
            .map(|r| r.targets().map(|t| t.value.as_str()).collect())
            .unwrap_or_default()
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = children(start)
        .into_iter()
        .filter(|c| *c != start)
        .collect();
    while let Some(id) = stack.pop() {
        if id == start {
            return true;
        }
        if seen.insert(id) {
            stack.extend(children(id));
        }
    }
    false
}

/// Whether following `dead_letter` from `start` comes back to it.
fn dead_letter_cycle(destinations: &[Component<DestinationConfig>], start: &str) -> bool {
    let next = |id: &str| {
        destinations
            .iter()
            .find(|d| d.id == id)
            .and_then(|d| d.config.dead_letter())
    };
    let mut at = next(start);
    for _ in 0..=destinations.len() {
        match at {
            None => return false,
            Some(id) if id == start => return true,
            Some(id) => at = next(id),
        }
    }
    true
}

type KindMap = HashMap<(&'static str, String), String>;
type LocMap = HashMap<(&'static str, String), Loc>;

fn components<T: ComponentKind>(
    map: ComponentMap<T>,
    kinds: &KindMap,
    locations: &LocMap,
    tree: &serde_json::Value,
) -> Vec<Component<T>> {
    map.0
        .into_iter()
        .map(|(id, config)| {
            // serde_json's maps are sorted: equal settings, equal strings.
            let fingerprint = tree[T::SECTION][id.as_str()].to_string();
            let key = (T::SECTION, id);
            Component {
                kind: kinds.get(&key).cloned().unwrap_or_default(),
                location: locations.get(&key).copied().unwrap_or_default(),
                id: key.1,
                config,
                fingerprint,
            }
        })
        .collect()
}

fn collect_kinds<T: ComponentKind>(
    found: BTreeMap<String, Spanned<component::KindOnly>>,
    kinds: &mut KindMap,
    locations: &mut LocMap,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    for (id, spanned) in found {
        let kind = spanned.value.kind;
        if !T::KINDS.contains(&kind.value.as_str()) {
            errors.push(at(
                kind.referenced.into(),
                format!(
                    "{} `{id}`: unknown type `{}` (expected one of: {})",
                    T::NOUN,
                    kind.value,
                    T::KINDS.join(", ")
                ),
            ));
            continue;
        }
        locations.insert((T::SECTION, id.clone()), spanned.referenced.into());
        kinds.insert((T::SECTION, id), kind.value);
    }
}

fn check_id<T: ComponentKind>(
    id: &str,
    loc: Loc,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    check_id_as(T::NOUN, id, loc, errors, at);
}

fn check_id_as(
    noun: &str,
    id: &str,
    loc: Loc,
    errors: &mut Vec<Diagnostic>,
    at: &impl Fn(Loc, String) -> Diagnostic,
) {
    let ok = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !ok {
        errors.push(at(
            loc,
            format!(
                "{noun} id `{id}` may contain only letters, digits, `_` and `-` (it names metrics and directories)"
            ),
        ));
    }
}

/// serde-saphyr's message without its own " at line N, column M" suffix.
fn serde_message(e: &serde_saphyr::Error) -> String {
    let msg = e.without_snippet().to_string();
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains("column") => msg[..i].to_string(),
        _ => msg,
    }
}

fn offset_to_loc(text: &str, offset: usize) -> Loc {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Loc {
        line,
        column: before[line_start..].chars().count() as u64 + 1,
    }
}

/// Where byte `offset` of a filter string sits in the file. Exact when the
/// filter is written on one line without escapes; otherwise the start of the
/// filter (and `false`, so the message can add the offset).
fn filter_location(text: &str, f: &Spanned<String>, offset: usize) -> (Loc, bool) {
    let start: Loc = f.referenced.into();
    let span = f.referenced.span();
    let (Some(bo), Some(bl)) = (span.byte_offset(), span.byte_len()) else {
        return (start, false);
    };
    let Some(raw) = text.get(bo as usize..(bo + bl) as usize) else {
        return (start, false);
    };
    if raw.contains('\n') {
        return (start, false);
    }
    let quoted = raw.starts_with('\'') || raw.starts_with('"');
    let inner = if quoted && raw.len() >= 2 {
        &raw[1..raw.len() - 1]
    } else {
        raw
    };
    if inner != f.value {
        return (start, false);
    }
    let col = start.column
        + u64::from(quoted)
        + f.value[..offset.min(f.value.len())].chars().count() as u64;
    (
        Loc {
            line: start.line,
            column: col,
        },
        true,
    )
}
