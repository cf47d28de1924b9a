//! Prometheus metrics with the names of docs/metrics.md (a contract: users alert
//! on them). Each component gets its handles once, at build time, and the hot
//! path only calls `inc_by` once per batch. Every drop reason a destination can
//! report is created up front, so a rate alert on it works before it first fires.

mod exposition;
mod process;

pub use exposition::Format;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceReasonLabel {
    source: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabel {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineFunctionLabel {
    pipeline: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineDropLabel {
    pipeline: String,
    function: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestLabel {
    destination: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    destination: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    source: String,
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    destination: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
    revision: &'static str,
    rust_version: &'static str,
    arch: &'static str,
    os: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabel {
    kind: &'static str,
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestStageLabel {
    destination: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DestReasonLabel {
    destination: String,
    reason: &'static str,
}

/// Why a source refused events (`sluice_source_rejected_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not valid JSON where JSON was required.
    Malformed,
    /// A line, datagram or body over its size limit.
    Oversize,
    /// Shed because a `block` destination stayed full past `max_wait` (HTTP 429).
    Shed,
    /// Missing or wrong credentials (HTTP 401).
    Unauthorized,
    /// A request that could not be read at all (bad compression, bad method).
    BadRequest,
    /// Held by a source when sluice shut down, never routed.
    Shutdown,
    /// A connection whose TLS handshake failed (no or a refused client
    /// certificate, a plaintext client, a timeout).
    Tls,
    /// A connection closed for being too slow: headers not sent within
    /// their timeout, or idle past `idle_timeout`.
    Timeout,
    /// Datagrams the kernel dropped for a UDP source (its receive buffer
    /// was full).
    Kernel,
}

impl RejectReason {
    pub const ALL: [RejectReason; 9] = [
        RejectReason::Malformed,
        RejectReason::Oversize,
        RejectReason::Shed,
        RejectReason::Unauthorized,
        RejectReason::BadRequest,
        RejectReason::Shutdown,
        RejectReason::Tls,
        RejectReason::Timeout,
        RejectReason::Kernel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Oversize => "oversize",
            RejectReason::Shed => "shed",
            RejectReason::Unauthorized => "unauthorized",
            RejectReason::BadRequest => "bad_request",
            RejectReason::Shutdown => "shutdown",
            RejectReason::Tls => "tls",
            RejectReason::Timeout => "timeout",
            RejectReason::Kernel => "kernel",
        }
    }
}

/// Why a destination dropped events (`sluice_destination_dropped_events_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The lane was full under the `drop` policy.
    Backpressure,
    /// The persistent queue reached its limit with `on_full: drop`.
    QueueFull,
    /// The peer refused the events permanently.
    Rejected,
    /// An event larger than the destination accepts.
    Oversize,
    /// `retry.max_attempts` ran out.
    RetriesExhausted,
    /// The event lacks what the encoding needs.
    Unencodable,
    /// Still queued in memory when the shutdown timeout expired.
    Shutdown,
    /// Handed to the `dead_letter` destination after a rejection or after
    /// retries ran out.
    DeadLetter,
    /// In a persistent-queue record whose checksum failed (or in bytes of
    /// the queue that could not be read at all).
    Corrupt,
    /// No rule of an output router took it and its `default` is `drop`.
    Unmatched,
    /// Left the driver without being resolved: a bug (a panicked job, say).
    /// Counted so that nothing vanishes; its acknowledgement fails.
    InternalError,
}

impl DropReason {
    pub const ALL: [DropReason; 11] = [
        DropReason::Backpressure,
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::Oversize,
        DropReason::RetriesExhausted,
        DropReason::Unencodable,
        DropReason::Shutdown,
        DropReason::DeadLetter,
        DropReason::Corrupt,
        DropReason::Unmatched,
        DropReason::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Backpressure => "backpressure",
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::Oversize => "oversize",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Unencodable => "unencodable",
            DropReason::Shutdown => "shutdown",
            DropReason::DeadLetter => "dead_letter",
            DropReason::Corrupt => "corrupt",
            DropReason::Unmatched => "unmatched",
            DropReason::InternalError => "internal_error",
        }
    }
}

type FCounter = Counter<f64, AtomicU64>;

struct Families {
    last_reload_successful: Gauge,
    last_reload_success: Gauge<f64, AtomicU64>,
    source_events: Family<SourceLabel, Counter>,
    source_rejected: Family<SourceReasonLabel, Counter>,
    route_events: Family<RouteLabel, Counter>,
    unmatched: Counter,
    dest_events: Family<DestLabel, Counter>,
    dest_sent: Family<DestLabel, Counter>,
    dest_sent_bytes: Family<DestLabel, Counter>,
    dest_dropped: Family<DestReasonLabel, Counter>,
    dest_retries: Family<DestLabel, Counter>,
    dest_retried_events: Family<DestLabel, Counter>,
    dest_throttled: Family<DestLabel, Counter>,
    component_errors: Family<ComponentLabel, Counter>,
    rule_events: Family<RuleLabel, Counter>,
    dest_queue: Family<DestLabel, Gauge>,
    dest_backpressure: Family<DestLabel, Gauge>,
    dest_blocked: Family<DestLabel, FCounter>,
    dest_in_flight: Family<DestLabel, Gauge>,
    dest_in_flight_events: Family<DestLabel, Gauge>,
    source_waiting: Family<SourceLabel, Gauge>,
    source_unparsed: Family<SourceLabel, Counter>,
    dest_concurrency: Family<DestLabel, Gauge>,
    request_duration: Family<DestLabel, Histogram, fn() -> Histogram>,
    endpoint_up: Family<EndpointLabel, Gauge>,
    endpoint_sent: Family<EndpointLabel, Counter>,
    pq_events: Family<DestLabel, Gauge>,
    pq_bytes: Family<DestLabel, Gauge>,
    kafka_producer_in_flight: Family<DestLabel, Gauge>,
    kafka_lag: Family<PartitionLabel, Gauge>,
    kafka_committed: Family<PartitionLabel, Gauge>,
    config_reloads: Family<ResultLabel, Counter>,
    staged_files: Family<DestLabel, Gauge>,
    staged_finished: Family<DestLabel, Counter>,
    staging_errors: Family<DestStageLabel, Counter>,
    staging_renamed: Family<DestReasonLabel, Counter>,
    pipeline_received: Family<PipelineLabel, Counter>,
    pipeline_sent: Family<PipelineLabel, Counter>,
    pipeline_dropped: Family<PipelineDropLabel, Counter>,
    pipeline_emitted: Family<PipelineFunctionLabel, Counter>,
    pipeline_errors: Family<PipelineFunctionLabel, Counter>,
}

/// The process-wide registry and the families in it.
#[derive(Clone)]
pub struct Metrics {
    families: Arc<Families>,
    registry: Arc<Registry>,
    failed: Arc<AtomicU64>,
    /// Every endpoint a driver registered, by destination, for the status
    /// API (a `Family` cannot be listed).
    endpoints: Arc<std::sync::Mutex<EndpointList>>,
    books: BooksLock,
}

type EndpointList = std::collections::BTreeMap<(String, String), (Gauge, Counter)>;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn request_histogram() -> Histogram {
    // 1 ms .. ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let f = Families {
            last_reload_successful: Gauge::default(),
            last_reload_success: Gauge::default(),
            source_events: Family::default(),
            source_rejected: Family::default(),
            route_events: Family::default(),
            unmatched: Counter::default(),
            dest_events: Family::default(),
            dest_sent: Family::default(),
            dest_sent_bytes: Family::default(),
            dest_dropped: Family::default(),
            dest_retries: Family::default(),
            dest_retried_events: Family::default(),
            dest_throttled: Family::default(),
            component_errors: Family::default(),
            rule_events: Family::default(),
            dest_queue: Family::default(),
            dest_backpressure: Family::default(),
            dest_blocked: Family::default(),
            dest_in_flight: Family::default(),
            dest_in_flight_events: Family::default(),
            source_waiting: Family::default(),
            source_unparsed: Family::default(),
            dest_concurrency: Family::default(),
            request_duration: Family::new_with_constructor(request_histogram),
            endpoint_up: Family::default(),
            endpoint_sent: Family::default(),
            pq_events: Family::default(),
            pq_bytes: Family::default(),
            kafka_producer_in_flight: Family::default(),
            kafka_lag: Family::default(),
            kafka_committed: Family::default(),
            config_reloads: Family::default(),
            staged_files: Family::default(),
            staged_finished: Family::default(),
            staging_errors: Family::default(),
            staging_renamed: Family::default(),
            pipeline_received: Family::default(),
            pipeline_sent: Family::default(),
            pipeline_dropped: Family::default(),
            pipeline_emitted: Family::default(),
            pipeline_errors: Family::default(),
        };
        // Present (at 0) before the first reload, so a rate has a start.
        for result in ["success", "rejected", "failed"] {
            f.config_reloads
                .get_or_create_owned(&ResultLabel { result });
        }
        // The configuration sluice started with counts as the first load.
        f.last_reload_successful.set(1);
        f.last_reload_success.set(unix_now());
        // prometheus-client appends `_total` to counter names.
        let mut r = Registry::default();
        let build = Family::<BuildLabel, Gauge>::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("SLUICE_REVISION").unwrap_or("unknown"),
                rust_version: env!("SLUICE_RUSTC_VERSION"),
                arch: std::env::consts::ARCH,
                os: std::env::consts::OS,
            })
            .set(1);
        r.register(
            "sluice_build_info",
            "Always 1; the labels say which build of sluice is running",
            build,
        );
        r.register(
            "sluice_config_last_reload_successful",
            "1 if the last configuration reload (or the start) applied, 0 if it was rejected or failed",
            f.last_reload_successful.clone(),
        );
        r.register(
            "sluice_config_last_reload_success_timestamp_seconds",
            "When the configuration was last applied in full (the start or a successful reload), in seconds since the epoch",
            f.last_reload_success.clone(),
        );
        r.register_collector(Box::new(process::Process));
        r.register(
            "sluice_config_reloads",
            "Configuration reloads, by result: success, rejected (invalid; the old configuration keeps running) or failed (applied except the components named in the log)",
            f.config_reloads.clone(),
        );
        r.register(
            "sluice_source_events",
            "Events accepted by a source",
            f.source_events.clone(),
        );
        r.register(
            "sluice_source_rejected",
            "Events (or requests, where events cannot be counted) a source refused, by reason",
            f.source_rejected.clone(),
        );
        r.register(
            "sluice_source_waiting_events",
            "Events a source has decoded and is waiting to route (a request held for room in a block destination)",
            f.source_waiting.clone(),
        );
        r.register(
            "sluice_source_unparsed_events",
            "Events a source kept whole as `message` because they were not in its protocol's format (a line that is not syslog)",
            f.source_unparsed.clone(),
        );
        r.register(
            "sluice_pipeline_received_events",
            "Events that entered a pipeline",
            f.pipeline_received.clone(),
        );
        r.register(
            "sluice_pipeline_sent_events",
            "Events a pipeline passed on; received + emitted = sent + dropped",
            f.pipeline_sent.clone(),
        );
        r.register(
            "sluice_pipeline_dropped_events",
            "Events a pipeline's function removed, by reason: filter (on purpose: drop, a remap abort) or error",
            f.pipeline_dropped.clone(),
        );
        r.register(
            "sluice_pipeline_emitted_events",
            "Events a pipeline's function created (unroll, a remap that returns an array)",
            f.pipeline_emitted.clone(),
        );
        r.register(
            "sluice_pipeline_errors",
            "Events a pipeline's function could not process and passed on unchanged (a remap runtime error, a field that did not parse)",
            f.pipeline_errors.clone(),
        );
        r.register(
            "sluice_route_events",
            "Events a route matched",
            f.route_events.clone(),
        );
        r.register(
            "sluice_unmatched_events",
            "Events no final route took",
            f.unmatched.clone(),
        );
        r.register(
            "sluice_destination_events",
            "Events routed to a destination",
            f.dest_events.clone(),
        );
        r.register(
            "sluice_destination_sent_events",
            "Events delivered and confirmed by the peer",
            f.dest_sent.clone(),
        );
        r.register(
            "sluice_destination_sent_bytes",
            "Bytes of delivered requests, as sent on the wire",
            f.dest_sent_bytes.clone(),
        );
        r.register(
            "sluice_destination_dropped_events",
            "Events a destination dropped, by reason",
            f.dest_dropped.clone(),
        );
        r.register(
            "sluice_destination_retries",
            "Requests retried",
            f.dest_retries.clone(),
        );
        r.register(
            "sluice_destination_retried_events",
            "Events re-sent by retries (a partial retry counts only the records it re-sends)",
            f.dest_retried_events.clone(),
        );
        r.register(
            "sluice_destination_throttled",
            "Attempts the peer answered with a throttle (429, RESOURCE_EXHAUSTED, ...)",
            f.dest_throttled.clone(),
        );
        r.register(
            "sluice_output_router_rule_events",
            "Events an output router's rule matched",
            f.rule_events.clone(),
        );
        r.register(
            "sluice_component_errors",
            "Source or destination tasks that ended by panicking",
            f.component_errors.clone(),
        );
        r.register(
            "sluice_destination_queue_events",
            "Events waiting in the destination's in-memory lane (or on their way to its persistent queue)",
            f.dest_queue.clone(),
        );
        r.register(
            "sluice_destination_backpressure",
            "1 while the lane is full or the peer is failing",
            f.dest_backpressure.clone(),
        );
        r.register(
            "sluice_destination_blocked_seconds",
            "Time sources spent waiting for room in this destination's lane",
            f.dest_blocked.clone(),
        );
        r.register(
            "sluice_destination_in_flight_events",
            "Events the destination's driver holds from memory: batching, waiting to retry, being sent (events read back from the persistent queue stay counted there)",
            f.dest_in_flight_events.clone(),
        );
        r.register(
            "sluice_destination_in_flight_requests",
            "Requests being sent right now",
            f.dest_in_flight.clone(),
        );
        r.register(
            "sluice_destination_concurrency_limit",
            "Current limit on requests in flight",
            f.dest_concurrency.clone(),
        );
        r.register(
            "sluice_request_duration_seconds",
            "Duration of each request attempt to the peer",
            f.request_duration.clone(),
        );
        r.register(
            "sluice_endpoint_up",
            "1 while a load-balanced endpoint is healthy, 0 while it is marked down",
            f.endpoint_up.clone(),
        );
        r.register(
            "sluice_endpoint_sent_events",
            "Events delivered through each endpoint",
            f.endpoint_sent.clone(),
        );
        r.register(
            "sluice_persistent_queue_events",
            "Events in the destination's persistent queue on disk, not yet delivered or dropped (including those read back and being sent)",
            f.pq_events.clone(),
        );
        r.register(
            "sluice_persistent_queue_bytes",
            "Bytes of the destination's persistent queue segment files",
            f.pq_bytes.clone(),
        );
        r.register(
            "sluice_staged_files",
            "Files a filesystem or S3 destination holds in its staging directory: open, or closed and not yet moved or uploaded",
            f.staged_files.clone(),
        );
        r.register(
            "sluice_staged_files_finished",
            "Staged files moved to the output directory or uploaded",
            f.staged_finished.clone(),
        );
        r.register(
            "sluice_staging_errors",
            "Failures of a staging step (lock, write, seal, move, upload); each is retried, as backpressure",
            f.staging_errors.clone(),
        );
        r.register(
            "sluice_staging_renamed_events",
            "Events a filesystem or S3 destination filed under another partition path than their fields give: long_name (a component over 200 bytes, shortened with a hash), long_path (over 1024 bytes, filed under _long/), refused (a name the filesystem refused, filed under _refused/)",
            f.staging_renamed.clone(),
        );
        r.register(
            "sluice_kafka_producer_in_flight_messages",
            "Records a Kafka destination's producer holds, queued or awaiting the broker's acknowledgement",
            f.kafka_producer_in_flight.clone(),
        );
        r.register(
            "sluice_kafka_consumer_lag_messages",
            "Messages of a partition a Kafka source has not yet committed (high watermark minus committed offset)",
            f.kafka_lag.clone(),
        );
        r.register(
            "sluice_kafka_consumer_committed_offset",
            "The offset a Kafka source last committed for a partition",
            f.kafka_committed.clone(),
        );
        Metrics {
            families: Arc::new(f),
            registry: Arc::new(r),
            failed: Arc::new(AtomicU64::new(0)),
            endpoints: Arc::default(),
            books: BooksLock::default(),
        }
    }

    /// The lock that makes one scrape see every move of the books whole.
    pub fn books_lock(&self) -> BooksLock {
        self.books.clone()
    }

    pub fn source(&self, id: &str) -> SourceMetrics {
        let f = &self.families;
        let source = id.to_string();
        SourceMetrics {
            events: f.source_events.get_or_create_owned(&SourceLabel {
                source: source.clone(),
            }),
            waiting: f.source_waiting.get_or_create_owned(&SourceLabel {
                source: source.clone(),
            }),
            unparsed: f.source_unparsed.get_or_create_owned(&SourceLabel {
                source: source.clone(),
            }),
            rejected: RejectReason::ALL.map(|reason| {
                f.source_rejected.get_or_create_owned(&SourceReasonLabel {
                    source: source.clone(),
                    reason: reason.as_str(),
                })
            }),
        }
    }

    pub fn route(&self, name: &str) -> Counter {
        self.families.route_events.get_or_create_owned(&RouteLabel {
            route: name.to_string(),
        })
    }

    /// A pipeline's `received` and `sent` counters.
    pub fn pipeline(&self, name: &str) -> (Counter, Counter) {
        let l = PipelineLabel {
            pipeline: name.to_string(),
        };
        (
            self.families.pipeline_received.get_or_create_owned(&l),
            self.families.pipeline_sent.get_or_create_owned(&l),
        )
    }

    pub fn pipeline_dropped(&self, pipeline: &str, function: &str, reason: &str) -> Counter {
        self.families
            .pipeline_dropped
            .get_or_create_owned(&PipelineDropLabel {
                pipeline: pipeline.to_string(),
                function: function.to_string(),
                reason: reason.to_string(),
            })
    }

    pub fn pipeline_emitted(&self, pipeline: &str, function: &str) -> Counter {
        self.families
            .pipeline_emitted
            .get_or_create_owned(&PipelineFunctionLabel {
                pipeline: pipeline.to_string(),
                function: function.to_string(),
            })
    }

    pub fn pipeline_errors(&self, pipeline: &str, function: &str) -> Counter {
        self.families
            .pipeline_errors
            .get_or_create_owned(&PipelineFunctionLabel {
                pipeline: pipeline.to_string(),
                function: function.to_string(),
            })
    }

    /// `sluice_output_router_rule_events_total` for one rule of a router.
    pub fn rule(&self, router: &str, rule: &str) -> Counter {
        self.families.rule_events.get_or_create_owned(&RuleLabel {
            destination: router.to_string(),
            rule: rule.to_string(),
        })
    }

    pub fn unmatched(&self) -> Counter {
        self.families.unmatched.clone()
    }

    pub fn destination(&self, id: &str) -> DestinationMetrics {
        let f = &self.families;
        let l = DestLabel {
            destination: id.to_string(),
        };
        DestinationMetrics {
            retries: f.dest_retries.get_or_create_owned(&l),
            retried_events: f.dest_retried_events.get_or_create_owned(&l),
            throttled: f.dest_throttled.get_or_create_owned(&l),
            backpressure: f.dest_backpressure.get_or_create_owned(&l),
            blocked_seconds: f.dest_blocked.get_or_create_owned(&l),
            in_flight: f.dest_in_flight.get_or_create_owned(&l),
            concurrency_limit: f.dest_concurrency.get_or_create_owned(&l),
            request_duration: f.request_duration.get_or_create_owned(&l),
        }
    }

    /// The series of a destination's books, for `crate::lane::Books`
    /// (the only writer). `on_disk` is the persistent queue's event gauge,
    /// created only for a destination that has one (`persistent`).
    pub fn book_series(&self, id: &str, persistent: bool) -> BookSeries {
        let f = &self.families;
        let l = DestLabel {
            destination: id.to_string(),
        };
        BookSeries {
            events: f.dest_events.get_or_create_owned(&l),
            sent: f.dest_sent.get_or_create_owned(&l),
            sent_bytes: f.dest_sent_bytes.get_or_create_owned(&l),
            dropped: DropReason::ALL.map(|reason| {
                f.dest_dropped.get_or_create_owned(&DestReasonLabel {
                    destination: id.to_string(),
                    reason: reason.as_str(),
                })
            }),
            queued: f.dest_queue.get_or_create_owned(&l),
            in_flight: f.dest_in_flight_events.get_or_create_owned(&l),
            on_disk: if persistent {
                f.pq_events.get_or_create_owned(&l)
            } else {
                Gauge::default()
            },
        }
    }

    /// `sluice_persistent_queue_bytes` of a destination with a persistent
    /// queue (its events are in the books: `book_series`).
    pub fn persistent_queue_bytes(&self, destination: &str) -> Gauge {
        self.families.pq_bytes.get_or_create_owned(&DestLabel {
            destination: destination.to_string(),
        })
    }

    /// The staging series of a filesystem or S3 destination.
    pub fn staging(&self, destination: &str) -> StagingMetrics {
        let l = DestLabel {
            destination: destination.to_string(),
        };
        StagingMetrics {
            files: self.families.staged_files.get_or_create_owned(&l),
            finished: self.families.staged_finished.get_or_create_owned(&l),
            destination: destination.to_string(),
            families: self.families.clone(),
        }
    }

    /// `sluice_kafka_producer_in_flight_messages` of one Kafka destination.
    pub fn kafka_producer_in_flight(&self, destination: &str) -> Gauge {
        self.families
            .kafka_producer_in_flight
            .get_or_create_owned(&DestLabel {
                destination: destination.to_string(),
            })
    }

    /// Consumer lag and committed offset of one partition a Kafka source reads.
    pub fn kafka_partition(&self, source: &str, topic: &str, partition: i32) -> (Gauge, Gauge) {
        let l = PartitionLabel {
            source: source.to_string(),
            topic: topic.to_string(),
            partition: partition.to_string(),
        };
        (
            self.families.kafka_lag.get_or_create_owned(&l),
            self.families.kafka_committed.get_or_create_owned(&l),
        )
    }

    /// `sluice_endpoint_up` and `sluice_endpoint_sent_events_total` for one endpoint.
    pub fn endpoint(&self, destination: &str, endpoint: &str) -> (Gauge, Counter) {
        let l = EndpointLabel {
            destination: destination.to_string(),
            endpoint: endpoint.to_string(),
        };
        let pair = (
            self.families.endpoint_up.get_or_create_owned(&l),
            self.families.endpoint_sent.get_or_create_owned(&l),
        );
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((l.destination, l.endpoint), pair.clone());
        pair
    }

    /// A destination's endpoints: name, up, events sent through it.
    pub fn endpoints_of(&self, destination: &str) -> Vec<serde_json::Value> {
        let list = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        // Keys sort by destination first: its endpoints are one range.
        list.range((destination.to_string(), String::new())..)
            .take_while(|((d, _), _)| d == destination)
            .map(|((_, name), (up, sent))| {
                serde_json::json!({ "name": name, "up": up.get() == 1, "sent": sent.get() })
            })
            .collect()
    }

    /// Count a configuration reload (`success`, `rejected` or `failed`).
    pub fn config_reload(&self, result: &'static str) {
        self.families
            .config_reloads
            .get_or_create_owned(&ResultLabel { result })
            .inc();
        let applied = result == "success";
        self.families.last_reload_successful.set(i64::from(applied));
        if applied {
            self.families.last_reload_success.set(unix_now());
        }
    }

    /// `sluice_component_errors_total` for one component (`kind`: source or
    /// destination).
    pub fn component_errors(&self, kind: &'static str, id: &str) -> Counter {
        self.families
            .component_errors
            .get_or_create_owned(&ComponentLabel {
                kind,
                component: id.to_string(),
            })
    }

    /// Components that have failed so far (`/ready` answers 503 while any has).
    pub fn failed_components(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn component_failed(&self) {
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every family as Prometheus protobuf, for sluice's own telemetry.
    #[cfg(feature = "otlp")]
    pub fn families(
        &self,
    ) -> Vec<prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily>
    {
        // Encoding into memory cannot fail.
        self.books.read_all(|| {
            prometheus_client::encoding::prometheus_protobuf::encode(&self.registry)
                .unwrap_or_default()
        })
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        self.books.read_all(|| {
            let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        });
        out
    }

    /// The exposition in the format a scrape asked for.
    pub fn encode_as(&self, format: Format) -> String {
        match format {
            Format::OpenMetrics => self.encode(),
            Format::Prometheus => exposition::to_prometheus_text(&self.encode()),
        }
    }
}

/// Handles for one source.
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    pub events: Counter,
    /// `sluice_source_waiting_events`: decoded, not yet routed.
    pub waiting: Gauge,
    /// `sluice_source_unparsed_events_total`: kept whole, not parsed.
    pub unparsed: Counter,
    rejected: [Counter; RejectReason::ALL.len()],
}

impl SourceMetrics {
    pub fn reject(&self, reason: RejectReason, n: u64) {
        if n > 0 {
            self.rejected[reason as usize].inc_by(n);
        }
    }

    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].get()
    }
}

/// Handles for one destination (its books are `crate::lane::Books`).
#[derive(Clone, Debug)]
pub struct DestinationMetrics {
    pub retries: Counter,
    pub retried_events: Counter,
    pub throttled: Counter,
    pub backpressure: Gauge,
    pub blocked_seconds: FCounter,
    pub in_flight: Gauge,
    pub concurrency_limit: Gauge,
    pub request_duration: Histogram,
}

/// The series of one destination's books. Written only by
/// `crate::lane::Books`; everyone else reads them through it.
#[derive(Clone, Debug)]
pub struct BookSeries {
    pub(crate) events: Counter,
    pub(crate) sent: Counter,
    pub(crate) sent_bytes: Counter,
    pub(crate) dropped: [Counter; DropReason::ALL.len()],
    pub(crate) queued: Gauge,
    pub(crate) in_flight: Gauge,
    pub(crate) on_disk: Gauge,
}

/// Makes each move of the books atomic to a reader: a move takes the lock
/// shared (moves never wait for each other), a consistent read (a scrape,
/// the status API) takes it exclusively. Held only around a few atomic
/// updates or an encode, never across an await, and never while taking
/// another lock.
#[derive(Clone, Default, Debug)]
pub struct BooksLock(Arc<std::sync::RwLock<()>>);

impl BooksLock {
    /// Held while the books move.
    pub fn change(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` with no move of the books in progress.
    pub fn read_all<T>(&self, f: impl FnOnce() -> T) -> T {
        let _g = self.0.write().unwrap_or_else(|e| e.into_inner());
        f()
    }
}

/// `sluice_staged_files`, `_finished` and `sluice_staging_errors_total`.
#[derive(Clone)]
pub struct StagingMetrics {
    pub files: Gauge,
    pub finished: Counter,
    destination: String,
    families: Arc<Families>,
}

impl StagingMetrics {
    /// Count `n` events filed under a rewritten partition path.
    pub fn renamed(&self, why: crate::staging::name::Renamed, n: u64) {
        if n > 0 {
            self.families
                .staging_renamed
                .get_or_create(&DestReasonLabel {
                    destination: self.destination.clone(),
                    reason: why.as_str(),
                })
                .inc_by(n);
        }
    }

    /// Count a failure of `stage` (the series appear on first use).
    pub fn error(&self, stage: &'static str) {
        self.families
            .staging_errors
            .get_or_create(&DestStageLabel {
                destination: self.destination.clone(),
                stage,
            })
            .inc();
    }
}
