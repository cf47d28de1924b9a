//! What a source type declares about itself, in one place: its name, its
//! config, where it listens, whether it ends by itself, and how to start it.
//!
//! The registry in `mod.rs` lists one line per type; everything that
//! dispatches on the type (deserializing by `type`, schemas, validation,
//! listen-address conflicts, starting) is generated from these declarations,
//! so a new protocol is one file that implements this trait.

use std::future::Future;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::{Detail, SourceContext, SourceError};
use crate::config::{Listen, Validate};

/// Declares a source's config struct: `type` and `pipeline` (every source
/// has them) followed by its own fields. Written in rather than flattened
/// for the same reason as `destination_config!`: flattening loses the line
/// and column of every error inside.
#[macro_export]
macro_rules! source_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(rename = "type")]
            pub kind: String,
            /// The pipeline every event of this source goes through before routing.
            #[serde(default)]
            pub pipeline: Option<String>,
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::sources::kind::HasPipeline for $name {
            fn pipeline(&self) -> Option<&str> {
                self.pipeline.as_deref()
            }
        }
    };
}

/// The setting every source config has (see `source_config!`).
pub trait HasPipeline {
    fn pipeline(&self) -> Option<&str>;
}

/// A source type. See the module documentation.
pub trait SourceType {
    /// The `type:` that selects it.
    const NAME: &'static str;
    /// A reload that keeps its listen address lets the old listener's open
    /// connections carry on while the new one accepts (stream sources whose
    /// clients hold a connection for long).
    const KEEPS_CONNECTIONS: bool = false;

    /// Its config struct, declared with `source_config!`.
    type Config: DeserializeOwned
        + schemars::JsonSchema
        + HasPipeline
        + Validate
        + std::fmt::Debug
        + Clone
        + Send
        + Sync
        + 'static;

    /// The addresses it binds, so two sources on one address are a config error.
    fn listen(_config: &Self::Config) -> Vec<Listen> {
        Vec::new()
    }

    /// It ends by itself (stdin at EOF, a generator with a count). When every
    /// source has ended, sluice drains and exits.
    fn is_finite(_config: &Self::Config) -> bool {
        false
    }

    /// Bind (so errors surface before sluice reports ready) and start.
    fn start(
        config: &Self::Config,
        ctx: SourceContext,
    ) -> impl Future<Output = Result<Started, SourceError>> + Send;
}

/// A started source, as its type hands it over.
pub struct Started {
    /// The first address it listens on, once bound (port 0 resolved).
    pub local_addr: Option<SocketAddr>,
    pub task: JoinHandle<()>,
    /// Work left after the source stops taking input, awaited once the
    /// destinations have drained (a Kafka source commits the offsets of
    /// what they delivered while draining).
    pub finishing: Option<JoinHandle<()>>,
    /// Extra fields for its `/api/v1/status` entry.
    pub detail: Option<Detail>,
}

impl Started {
    /// A source that is one task.
    pub fn task(local_addr: Option<SocketAddr>, task: JoinHandle<()>) -> Self {
        Started {
            local_addr,
            task,
            finishing: None,
            detail: None,
        }
    }
}
