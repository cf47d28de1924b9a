//! S3 in moto, as a user checks it: create a bucket, list and read what
//! arrived (decompressed by key, as `aws s3 cp` + `zcat` would).

use super::aws::{AwsPeer, runtime};

impl AwsPeer {
    pub fn s3(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&self.sdk())
                .force_path_style(true)
                .build(),
        )
    }
}

pub fn create_bucket(peer: &AwsPeer, bucket: &str) {
    let c = peer.s3();
    runtime().block_on(async {
        c.create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("CreateBucket");
    });
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub lines: Vec<String>,
    pub size: i64,
    pub e_tag: String,
}

/// Every object in `bucket`, by key, with its lines.
pub fn objects(peer: &AwsPeer, bucket: &str) -> Vec<Object> {
    new_objects(peer, bucket, &Default::default())
}

/// The objects in `bucket` whose keys are not in `seen`.
pub fn new_objects(
    peer: &AwsPeer,
    bucket: &str,
    seen: &std::collections::BTreeMap<String, Vec<String>>,
) -> Vec<Object> {
    let c = peer.s3();
    runtime().block_on(async {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = c
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("ListObjectsV2");
            for o in page.contents() {
                let key = o.key().unwrap_or_default().to_string();
                if seen.contains_key(&key) {
                    continue;
                }
                let got = c
                    .get_object()
                    .bucket(bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("GetObject");
                let bytes = got.body.collect().await.expect("object body").into_bytes();
                out.push(Object {
                    lines: super::staged::lines_of(&key, &bytes),
                    key,
                    size: o.size().unwrap_or(0),
                    e_tag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                });
            }
            match page.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    })
}

/// What `HeadObject` says of one object.
pub fn head(
    peer: &AwsPeer,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::head_object::HeadObjectOutput {
    let c = peer.s3();
    runtime().block_on(async {
        c.head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("HeadObject")
    })
}
