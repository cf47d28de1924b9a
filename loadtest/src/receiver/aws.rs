//! SQS and Kinesis receivers for throughput: a moto server (started by
//! `scripts/peers`) holding one queue and one stream, and readers that hand
//! every message or record to the sink, as a consumer would (SQS messages
//! are deleted once read). Moto is a Python server, so the rows it backs are
//! bound by it, not by sluice.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use super::Sink;
use crate::process::Process;

pub const QUEUE: &str = "loadtest";
pub const STREAM: &str = "loadtest";
pub const SHARDS: i32 = 4;
/// Concurrent `ReceiveMessage` loops: one alone is slower than sluice sends.
const SQS_READERS: usize = 4;

/// A moto server with the queue and the stream created; killed when dropped.
pub struct Moto {
    pub endpoint: String,
    pub queue_url: String,
    _process: Process,
}

impl Moto {
    pub async fn start(dir: &Path, port: u16) -> anyhow::Result<Moto> {
        let p = super::peer("moto", dir, port, &[]).await?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let endpoint = format!("http://{addr}");
        let sdk = sdk(&endpoint);
        let queue_url = aws_sdk_sqs::Client::new(&sdk)
            .create_queue()
            .queue_name(QUEUE)
            .send()
            .await
            .context("moto: CreateQueue")?
            .queue_url()
            .context("moto: CreateQueue answered no URL")?
            .to_string();
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        kinesis
            .create_stream()
            .stream_name(STREAM)
            .shard_count(SHARDS)
            .send()
            .await
            .context("moto: CreateStream")?;
        Ok(Moto {
            endpoint,
            queue_url,
            _process: p,
        })
    }

    /// The keys a destination needs to reach this moto.
    pub fn destination(&self) -> serde_json::Value {
        serde_json::json!({
            "region": "us-east-1",
            "endpoint": self.endpoint,
            "auth": { "access_key_id": "test", "secret_access_key": "test" },
        })
    }
}

fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "loadtest"),
            ),
        )
        .build()
}

/// Receive (and delete) the queue's messages into `sink` until `running`
/// is cleared.
pub fn consume_sqs(moto: &Moto, sink: Sink, running: Arc<AtomicBool>) {
    let client = aws_sdk_sqs::Client::new(&sdk(&moto.endpoint));
    for _ in 0..SQS_READERS {
        let (c, url, sink, running) = (
            client.clone(),
            moto.queue_url.clone(),
            sink.clone(),
            running.clone(),
        );
        tokio::spawn(async move {
            let mut lines = Vec::new();
            while running.load(Ordering::Acquire) {
                let out = c
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    // moto holds its queue while a long poll waits: with
                    // four 1 s polls it took 1 SendMessageBatch a second,
                    // with short polls 15.
                    .wait_time_seconds(0)
                    .send()
                    .await;
                let Ok(out) = out else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if out.messages().is_empty() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                lines.clear();
                let mut delete = Vec::new();
                for (i, m) in out.messages().iter().enumerate() {
                    lines.extend_from_slice(m.body().unwrap_or_default().as_bytes());
                    lines.push(b'\n');
                    if let Some(h) = m.receipt_handle()
                        && let Ok(e) = DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(h)
                            .build()
                    {
                        delete.push(e);
                    }
                }
                sink.take(&lines);
                if !delete.is_empty() {
                    let _ = c
                        .delete_message_batch()
                        .queue_url(&url)
                        .set_entries(Some(delete))
                        .send()
                        .await;
                }
            }
        });
    }
}

/// Read every shard of the stream from its start into `sink` until
/// `running` is cleared.
pub fn consume_kinesis(moto: &Moto, sink: Sink, running: Arc<AtomicBool>) {
    let c = aws_sdk_kinesis::Client::new(&sdk(&moto.endpoint));
    tokio::spawn(async move {
        let mut iterators = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while iterators.is_empty() && Instant::now() < deadline {
            match shard_iterators(&c).await {
                Ok(i) => iterators = i,
                Err(e) => {
                    eprintln!("kinesis receiver: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let mut lines = Vec::new();
        while running.load(Ordering::Acquire) {
            let mut any = false;
            for it in &mut iterators {
                let Some(i) = it.clone() else { continue };
                let Ok(out) = c.get_records().shard_iterator(i).send().await else {
                    continue;
                };
                lines.clear();
                for r in out.records() {
                    lines.extend_from_slice(r.data().as_ref());
                    lines.push(b'\n');
                }
                any |= !lines.is_empty();
                sink.take(&lines);
                *it = out.next_shard_iterator().map(str::to_string);
            }
            if !any {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}

async fn shard_iterators(c: &aws_sdk_kinesis::Client) -> anyhow::Result<Vec<Option<String>>> {
    let shards = c.list_shards().stream_name(STREAM).send().await?;
    let mut out = Vec::new();
    for s in shards.shards() {
        let it = c
            .get_shard_iterator()
            .stream_name(STREAM)
            .shard_id(s.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?;
        out.push(it.shard_iterator().map(str::to_string));
    }
    anyhow::ensure!(!out.is_empty(), "stream {STREAM} has no shards yet");
    Ok(out)
}
