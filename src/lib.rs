//! sluice: a backpressure-aware stream router.
//!
//! Sources hand batches of events to the [`router`], which evaluates ordered
//! routes (compiled [`expr`] filters) and pushes each event into the [`lane`]
//! of every destination it is routed to. Each lane's policy decides what
//! happens when the destination cannot keep up (block, or drop and count),
//! and one shared [`driver`] batches, encodes, sends and retries for every
//! [`destinations`] type. [`topology`] wires it together; [`api`] exposes
//! metrics and status.

pub mod api;
pub mod auth;
#[cfg(feature = "aws")]
pub mod aws;
pub mod codec;
pub mod config;
pub mod destinations;
pub mod driver;
pub mod event;
pub mod expr;
#[cfg(feature = "sluice")]
pub mod forward;
#[doc(hidden)]
pub mod fuzz;
#[cfg(feature = "grpc")]
pub mod grpc;
pub mod http_server;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod lane;
pub mod listener;
pub mod metric_event;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod pipeline;
pub mod queue;
pub mod repeats;
pub mod router;
pub mod sd_notify;
pub mod sources;
pub mod staging;
pub mod supervise;
pub mod syslog;
pub mod tap;
pub mod telemetry;
pub mod tls;
pub mod topology;
