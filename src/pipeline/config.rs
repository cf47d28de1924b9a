//! `pipelines: {name: [function, ...]}`. Each function is `{type: ..., ...}`
//! read straight into its own struct (the two-pass loading of
//! `config::component`, so an error inside a function is reported at its
//! own line and column); each type's settings live beside its code.

use serde::Deserializer;
use serde::de::Deserialize;

use super::Function;
use crate::config::ComponentKind;

/// Why a function's settings were refused.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// Where the refused value starts in the config, if known.
    pub at: Option<crate::config::Loc>,
    /// For a program (remap): the offset of the error in it, and its text,
    /// so the config's line and column can be found.
    pub program_offset: Option<usize>,
    pub program: Option<String>,
    pub message: String,
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid {
            at: None,
            program_offset: None,
            program: None,
            message,
        }
    }
}

/// One pipeline: its functions, in order.
pub type PipelineConfig = Vec<FunctionConfig>;

macro_rules! functions {
    ($( $(#[$meta:meta])* $kind:literal => $variant:ident($ty:ty) ),* $(,)?) => {
        /// One function of a pipeline.
        #[derive(Debug, Clone)]
        pub enum FunctionConfig {
            $( $(#[$meta])* $variant($ty), )*
        }

        impl FunctionConfig {
            pub fn kind(&self) -> &'static str {
                match self {
                    $( $(#[$meta])* FunctionConfig::$variant(_) => $kind, )*
                }
            }

            /// The function's own `name`, if it was given one.
            pub fn name(&self) -> Option<&str> {
                match self {
                    $( $(#[$meta])* FunctionConfig::$variant(c) => c.name.as_deref(), )*
                }
            }

            /// Everything `build` would refuse; `Err` names the setting.
            pub fn validate(&self) -> Result<(), Invalid> {
                match self {
                    $( $(#[$meta])* FunctionConfig::$variant(c) => c.validate().map_err(Into::into), )*
                }
            }

            pub fn build(&self, slot: &super::state::Slot) -> Result<Box<dyn Function>, String> {
                match self {
                    $( $(#[$meta])* FunctionConfig::$variant(c) => c.build(slot), )*
                }
            }
        }

        impl ComponentKind for FunctionConfig {
            const SECTION: &'static str = "pipelines";
            const NOUN: &'static str = "function";
            const KINDS: &'static [&'static str] = &[$( $(#[$meta])* $kind, )*];

            fn deserialize_kind<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Self, D::Error> {
                match kind {
                    $( $(#[$meta])* $kind => Ok(FunctionConfig::$variant(Deserialize::deserialize(d)?)), )*
                    other => Err(serde::de::Error::custom(format!("unknown function type `{other}`"))),
                }
            }

            fn kind_schemas(g: &mut schemars::SchemaGenerator) -> Vec<(&'static str, schemars::Schema)> {
                vec![$( $(#[$meta])* ($kind, crate::config::schema::tagged::<$ty>(g, $kind)), )*]
            }
        }
    };
}

functions! {
    #[cfg(feature = "remap")]
    "remap" => Remap(super::remap::RemapConfig),
    "eval" => Eval(super::eval::EvalConfig),
    "drop" => Drop(super::drop::DropConfig),
    "rename" => Rename(super::rename::RenameConfig),
    "mask" => Mask(super::mask::MaskConfig),
    "parse" => Parse(super::parse::ParseConfig),
    "unroll" => Unroll(super::unroll::UnrollConfig),
    "flatten" => Flatten(super::flatten::FlattenConfig),
    "lookup" => Lookup(super::lookup::LookupConfig),
    "sample" => Sample(super::sample::SampleConfig),
    "throttle" => Throttle(super::throttle::ThrottleConfig),
    "dedupe" => Dedupe(super::dedupe::DedupeConfig),
    "aggregate" => Aggregate(super::aggregate::AggregateConfig),
    "log_to_metric" => LogToMetric(super::log_to_metric::LogToMetricConfig),
}

/// Each function's `function` label in the pipeline's metrics: its `name`,
/// else its type, numbered when the type repeats (`mask`, `mask_2`).
pub fn labels(config: &PipelineConfig) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    config
        .iter()
        .map(|f| {
            if let Some(n) = f.name() {
                return n.to_string();
            }
            let k = seen.entry(f.kind()).or_insert(0);
            *k += 1;
            if *k == 1 {
                f.kind().to_string()
            } else {
                format!("{}_{}", f.kind(), k)
            }
        })
        .collect()
}
