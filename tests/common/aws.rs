//! AWS test peers: moto (SQS and Kinesis) and kinesalite (Kinesis), started
//! by `scripts/peers`, and the SDK client a user would check them with:
//! create a queue or a stream, receive what arrived.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::real_peer::{PeerProcess, Ports, free_ports};

/// A moto server or kinesalite on its own port; killed when dropped.
pub struct AwsPeer {
    pub name: &'static str,
    pub peer: PeerProcess,
    pub port: u16,
    /// The keys this peer takes (any, unless it checks them).
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl AwsPeer {
    pub fn moto() -> AwsPeer {
        Self::start("moto", &[])
    }

    pub fn kinesalite() -> AwsPeer {
        Self::start("kinesalite", &[])
    }

    /// A moto that checks credentials as AWS does: after the three
    /// requests that create an IAM user allowed everything, with keys,
    /// only those keys are taken (others get `InvalidClientTokenId`).
    pub fn moto_checking_keys() -> AwsPeer {
        let mut p = Self::start("moto", &["3"]);
        let iam = |params: &str| -> String {
            let (status, body) = iam_request(p.port, params);
            assert_eq!(status, 200, "IAM {params}: {body}");
            body
        };
        iam("Action=CreateUser&UserName=sluice");
        let key = iam("Action=CreateAccessKey&UserName=sluice");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        iam(&format!(
            "Action=PutUserPolicy&UserName=sluice&PolicyName=all&PolicyDocument={}",
            super::real_peer::urlencode(policy)
        ));
        p.access_key_id = xml_text(&key, "AccessKeyId");
        p.secret_access_key = xml_text(&key, "SecretAccessKey");
        p
    }

    fn start(name: &'static str, extra: &[&str]) -> AwsPeer {
        let ports: Ports<1> = free_ports();
        let port = ports.ports[0];
        let mut args = vec![port.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let peer = PeerProcess::start(name, Box::new(ports), &args, Some(port));
        AwsPeer {
            name,
            peer,
            port,
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A hung peer: connections open, nothing answered.
    pub fn pause(&self) {
        self.peer.pause();
    }

    pub fn resume(&self) {
        self.peer.resume();
    }

    /// The destination keys that reach this peer (static keys).
    pub fn keys(&self) -> String {
        format!(
            r#"region: us-east-1, endpoint: "{}", auth: {{ access_key_id: "{}", secret_access_key: "{}" }}"#,
            self.endpoint(),
            self.access_key_id,
            self.secret_access_key
        )
    }

    /// `keys()` for a Kinesis destination. moto numbers the records of
    /// concurrent PutRecords calls with one counter it does not lock: two
    /// calls at once get the same sequence numbers and a reader loses
    /// records. So against moto one request at a time (real Kinesis and
    /// kinesalite need no such care).
    /// `request` holds the destination's other request settings.
    pub fn kinesis_keys(&self, request: &str) -> String {
        let mut r: Vec<&str> = vec![];
        if self.name == "moto" {
            r.push("concurrency: 1");
        }
        if !request.is_empty() {
            r.push(request);
        }
        format!("{}, request: {{ {} }}", self.keys(), r.join(", "))
    }

    /// `keys()` as block YAML lines, each indented by `indent`.
    pub fn key_lines(&self, indent: &str) -> String {
        format!(
            "{indent}region: us-east-1\n{indent}endpoint: \"{}\"\n{indent}auth: {{ access_key_id: \"{}\", secret_access_key: \"{}\" }}\n",
            self.endpoint(),
            self.access_key_id,
            self.secret_access_key
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk())
    }

    pub fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.sdk())
    }

    pub(crate) fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new(
                        &self.access_key_id,
                        &self.secret_access_key,
                        None,
                        None,
                        "test",
                    ),
                ),
            )
            .build()
    }
}

/// An IAM Query API call to moto before it checks keys (unsigned; the
/// credential scope names the service, as moto routes by it).
fn iam_request(port: u16, params: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let body = format!("{params}&Version=2010-05-08");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write to moto");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read from moto");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn xml_text(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml.find(&open).map(|i| i + open.len());
    let end = xml.find(&format!("</{tag}>"));
    match (start, end) {
        (Some(s), Some(e)) if s <= e => xml[s..e].to_string(),
        _ => panic!("no <{tag}> in {xml}"),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Create a queue (FIFO when `name` ends in `.fifo`); its URL.
pub fn create_queue(peer: &AwsPeer, name: &str) -> String {
    let c = peer.sqs();
    runtime().block_on(async {
        let mut r = c.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            r = r.attributes(QueueAttributeName::FifoQueue, "true");
        }
        let out = r.send().await.expect("CreateQueue");
        out.queue_url().expect("queue URL").to_string()
    })
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub body: String,
    pub attributes: BTreeMap<String, (String, String)>,
    pub group: Option<String>,
}

/// Receive (and delete) messages until `done` holds for all received, or
/// the deadline passes (then it panics, saying what arrived).
pub fn receive(
    peer: &AwsPeer,
    url: &str,
    deadline: Duration,
    done: impl Fn(&[Message]) -> bool,
) -> Vec<Message> {
    let c = peer.sqs();
    let rt = runtime();
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        if done(&got) {
            return got;
        }
        assert!(
            start.elapsed() < deadline,
            "SQS: the condition did not hold within {deadline:?}; {} messages arrived",
            got.len()
        );
        got.extend(rt.block_on(receive_once(&c, url)));
    }
}

/// One `ReceiveMessage` of up to 10 messages (waiting up to a second), each
/// deleted once read.
pub async fn receive_once(c: &aws_sdk_sqs::Client, url: &str) -> Vec<Message> {
    let Ok(out) = c
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
    else {
        tokio::time::sleep(Duration::from_millis(100)).await;
        return Vec::new();
    };
    let mut got = Vec::new();
    let mut delete = Vec::new();
    for m in out.messages() {
        let attributes = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            (
                                v.data_type().to_string(),
                                v.string_value().unwrap_or_default().to_string(),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let group = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned();
        got.push(Message {
            body: m.body().unwrap_or_default().to_string(),
            attributes,
            group,
        });
        if let Some(h) = m.receipt_handle()
            && let Ok(e) = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                .id(delete.len().to_string())
                .receipt_handle(h)
                .build()
        {
            delete.push(e);
        }
    }
    // One call for the lot: moto is slow, and one delete per message
    // halves what a follower can read.
    if !delete.is_empty() {
        let _ = c
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(delete))
            .send()
            .await;
    }
    got
}

/// Create a stream with `shards` and wait until it is ACTIVE.
pub fn create_stream(peer: &AwsPeer, name: &str, shards: i32) {
    let c = peer.kinesis();
    runtime().block_on(async {
        c.create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        let start = Instant::now();
        loop {
            let d = c
                .describe_stream()
                .stream_name(name)
                .send()
                .await
                .expect("DescribeStream");
            if d.stream_description().map(|s| s.stream_status().as_str()) == Some("ACTIVE") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "stream never ACTIVE"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// One Kinesis record as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Record {
    pub data: Vec<u8>,
    pub key: String,
    pub shard: String,
}

/// A reader of every shard of a stream from its start.
pub struct StreamReader {
    client: aws_sdk_kinesis::Client,
    iterators: Vec<(String, Option<String>)>,
}

impl StreamReader {
    pub async fn new(client: aws_sdk_kinesis::Client, stream: &str) -> StreamReader {
        let shards = client
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut iterators = Vec::new();
        for s in shards.shards() {
            let it = client
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(s.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator");
            iterators.push((
                s.shard_id().to_string(),
                it.shard_iterator().map(str::to_string),
            ));
        }
        StreamReader { client, iterators }
    }

    /// What arrived since the last call, shard by shard.
    pub async fn poll(&mut self) -> Vec<Record> {
        let mut got = Vec::new();
        for (shard, it) in &mut self.iterators {
            let Some(i) = it.clone() else { continue };
            let Ok(out) = self.client.get_records().shard_iterator(i).send().await else {
                continue;
            };
            for r in out.records() {
                got.push(Record {
                    data: r.data().as_ref().to_vec(),
                    key: r.partition_key().to_string(),
                    shard: shard.clone(),
                });
            }
            *it = out.next_shard_iterator().map(str::to_string);
        }
        got
    }
}

/// Read a stream until `done` holds for what arrived, within `deadline`.
pub fn read_stream(
    peer: &AwsPeer,
    stream: &str,
    deadline: Duration,
    done: impl Fn(&[Record]) -> bool,
) -> Vec<Record> {
    let rt = runtime();
    let mut reader = rt.block_on(StreamReader::new(peer.kinesis(), stream));
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        if done(&got) {
            return got;
        }
        assert!(
            start.elapsed() < deadline,
            "Kinesis: the condition did not hold within {deadline:?}; {} records arrived",
            got.len()
        );
        let new = rt.block_on(reader.poll());
        if new.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        got.extend(new);
    }
}

/// A runtime whose tasks (a fault proxy) run while the test thread blocks.
pub fn runtime_multi() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}
