//! `type: s3` — staged files (`crate::staging`, as the filesystem
//! destination stages them) uploaded to an S3 bucket once finished, each
//! under `key_prefix` + its partition + its file name.
//!
//! A file below `multipart_threshold` is one `PutObject`; a larger one is a
//! multipart upload of `part_size` parts read straight from the staged file,
//! aborted if any part fails, so no object is ever half there (S3 makes an
//! object visible only when its upload completes). A file is removed from
//! staging only after S3 confirmed it; an upload a crash interrupted is
//! done again at the next start under the same key.
//!
//! Every failure (unreachable, invalid credentials, denied permissions, a
//! missing bucket) is backpressure with its cause, as Cribl documents: the
//! same file is retried, new writes wait, nothing is dropped. Credentials
//! and `endpoint` are those of the other AWS destinations (`crate::aws`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, StorageClass,
};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Deserialize;

use crate::aws::{AssumeRole, Aws, AwsAuth};
use crate::config::Validate;
use crate::config::units::ByteSize;
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon};
use crate::driver::{DeliveryDefaults, Destination, Encoded, Encoding, Outcome};
use crate::event::Event;
use crate::staged_destination_config;
use crate::staging::{Finish, HasStaging, Parts, StagedFiles};

/// `sse:` — server-side encryption of each object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum Sse {
    #[serde(rename = "aes256", alias = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

staged_destination_config! {
    pub struct S3Config {
        pub bucket: String,
        /// Written before each key's partition, as is: end it with `/` for a
        /// folder. A template like `partition` (`logs/{{ service }}/`).
        #[serde(default)]
        pub key_prefix: Option<String>,
        #[serde(default)]
        pub region: Option<String>,
        /// Another endpoint than AWS's (MinIO, moto, a VPC endpoint).
        #[serde(default)]
        pub endpoint: Option<String>,
        #[serde(default)]
        pub auth: Option<AwsAuth>,
        #[serde(default)]
        pub assume_role: Option<AssumeRole>,
        /// Path-style URLs (`endpoint/bucket/key`). Default: on with a custom
        /// `endpoint` (what MinIO and moto need), off for AWS.
        #[serde(default)]
        pub force_path_style: Option<bool>,
        /// `STANDARD` (default), `STANDARD_IA`, `INTELLIGENT_TIERING`,
        /// `GLACIER_IR`, ... as S3 names them.
        #[serde(default)]
        pub storage_class: Option<String>,
        #[serde(default)]
        pub sse: Option<Sse>,
        /// With `sse: aws:kms`: the key (default: the bucket's AWS managed key).
        #[serde(default)]
        pub sse_kms_key_id: Option<String>,
        /// User metadata on every object (`x-amz-meta-*`).
        #[serde(default)]
        pub metadata: BTreeMap<String, String>,
        /// Files at least this large are uploaded in parts. Default 16MiB.
        #[serde(default)]
        pub multipart_threshold: Option<ByteSize>,
        /// Size of each part (S3's minimum is 5MiB). Default 8MiB.
        #[serde(default)]
        pub part_size: Option<ByteSize>,
    }
}

const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 << 20;
const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// S3's limits on parts: at least 5 MiB (but the last), at most 5 GiB.
const MIN_PART: u64 = 5 << 20;
const MAX_PART: u64 = 5 << 30;
/// How long one S3 call may take unless `request.timeout` says otherwise.
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl S3Config {
    fn aws(&self) -> Aws<'_> {
        Aws {
            region: self.region.as_deref(),
            endpoint: self.endpoint.as_deref(),
            auth: self.auth.as_ref(),
            assume_role: self.assume_role.as_ref(),
        }
    }

    fn key_prefix(&self) -> &str {
        self.key_prefix.as_deref().unwrap_or("")
    }
}

impl Validate for S3Config {
    fn validate(&self) -> Result<(), String> {
        self.aws().validate()?;
        if self.bucket.is_empty() {
            return Err("bucket must not be empty".into());
        }
        self.staging().validate()?;
        crate::staging::Partitioner::new(
            &self.staging().template(self.key_prefix()),
            self.staging().time_field(),
        )
        .map_err(|e| format!("key_prefix: {e}"))?;
        if let Some(c) = &self.storage_class
            && !StorageClass::values().contains(&c.as_str())
        {
            return Err(format!(
                "storage_class `{c}` is not one of S3's: {}",
                StorageClass::values().join(", ")
            ));
        }
        if self.sse_kms_key_id.is_some() && self.sse != Some(Sse::AwsKms) {
            return Err("sse_kms_key_id applies only with `sse: aws:kms`".into());
        }
        let part = self.part_size.map_or(DEFAULT_PART_SIZE, |b| b.0);
        if !(MIN_PART..=MAX_PART).contains(&part) {
            return Err("part_size must be between 5MiB and 5GiB (S3's limits)".into());
        }
        if self.multipart_threshold.is_some_and(|b| b.0 < MIN_PART) {
            return Err("multipart_threshold must be at least 5MiB".into());
        }
        Ok(())
    }
}

impl DestinationType for S3Destination {
    const NAME: &'static str = "s3";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::LOCAL;
    /// As `filesystem`: newline-framed files, compressed when sealed.
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: super::kind::STREAM_ENCODINGS,
        compressions: super::kind::ALL_COMPRESSIONS,
        ..Capabilities::LOCAL
    };
    type Config = S3Config;

    async fn build(cfg: &S3Config, ctx: &BuildContext<'_>) -> Result<Self, String> {
        let sdk = cfg.aws().sdk_config().await?;
        let path_style = cfg.force_path_style.unwrap_or(cfg.endpoint.is_some());
        let client = Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(path_style)
                .build(),
        );
        let encoding = cfg.staging().encoding;
        let uploader = Uploader {
            client,
            bucket: cfg.bucket.clone(),
            storage_class: cfg.storage_class.as_deref().map(StorageClass::from),
            sse: cfg.sse.map(|s| match s {
                Sse::Aes256 => ServerSideEncryption::Aes256,
                Sse::AwsKms => ServerSideEncryption::AwsKms,
            }),
            sse_kms_key_id: cfg.sse_kms_key_id.clone(),
            metadata: cfg.metadata.clone(),
            content_type: match encoding {
                Encoding::Ndjson | Encoding::JsonArray => "application/x-ndjson",
                _ => "text/plain",
            },
            multipart_threshold: cfg
                .multipart_threshold
                .map_or(DEFAULT_MULTIPART_THRESHOLD, |b| b.0),
            part_size: cfg.part_size.map_or(DEFAULT_PART_SIZE, |b| b.0),
            timeout: cfg
                .common()
                .request
                .timeout
                .map_or(DEFAULT_CALL_TIMEOUT, |t| t.get()),
        };
        let files = StagedFiles::start_with_prefix(cfg, ctx, uploader, cfg.key_prefix())?;
        Ok(S3Destination { files })
    }
}

pub struct S3Destination {
    files: StagedFiles,
}

impl Destination for S3Destination {
    type Request = Parts;

    fn encode(&self, events: &[Event]) -> Encoded<Parts> {
        self.files.encode(events)
    }

    async fn send(&self, parts: &Parts, _endpoint: usize) -> Outcome {
        self.files.send(parts).await
    }

    async fn close(&self) {
        self.files.close().await;
    }
}

struct Uploader {
    client: Client,
    bucket: String,
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    sse_kms_key_id: Option<String>,
    metadata: BTreeMap<String, String>,
    content_type: &'static str,
    multipart_threshold: u64,
    part_size: u64,
    timeout: Duration,
}

/// An SDK call with the destination's timeout; errors with their code.
async fn call<T, E: std::error::Error + 'static>(
    what: &str,
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {}", DisplayErrorContext(&e))),
        Err(_) => Err(format!("{what}: no answer within {timeout:?}")),
    }
}

/// A file's compression, by its name (a file staged under an earlier
/// config keeps the compression it was sealed with).
fn content_encoding(key: &str) -> Option<String> {
    if key.ends_with(".gz") {
        Some("gzip".into())
    } else if key.ends_with(".zst") {
        Some("zstd".into())
    } else {
        None
    }
}

impl Uploader {
    async fn put(&self, path: &Path, key: &str) -> Result<(), String> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .content_type(self.content_type)
            .set_content_encoding(content_encoding(key))
            .set_storage_class(self.storage_class.clone())
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_metadata(Some(self.metadata.clone().into_iter().collect()));
        call("PutObject", self.timeout, req.send()).await?;
        Ok(())
    }

    async fn multipart(&self, path: &Path, key: &str, size: u64) -> Result<(), String> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(self.content_type)
            .set_content_encoding(content_encoding(key))
            .set_storage_class(self.storage_class.clone())
            .set_server_side_encryption(self.sse.clone())
            .set_ssekms_key_id(self.sse_kms_key_id.clone())
            .set_metadata(Some(self.metadata.clone().into_iter().collect()));
        let created = call("CreateMultipartUpload", self.timeout, created.send()).await?;
        let Some(upload_id) = created.upload_id() else {
            return Err("CreateMultipartUpload answered without an upload id".into());
        };
        match self.parts(path, key, size, upload_id).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Free what was stored; a failure here leaves the parts to
                // the bucket's lifecycle rule, never a visible object.
                let abort = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id);
                if let Err(a) = call("AbortMultipartUpload", self.timeout, abort.send()).await {
                    tracing::warn!(bucket = %self.bucket, key, error = %a, "could not abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn parts(
        &self,
        path: &Path,
        key: &str,
        size: u64,
        upload_id: &str,
    ) -> Result<(), String> {
        let mut done = Vec::new();
        let mut offset = 0;
        let mut number = 1;
        while offset < size {
            let len = self.part_size.min(size - offset);
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(len))
                .build()
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let req = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(body);
            let part = call("UploadPart", self.timeout, req.send()).await?;
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(String::from))
                    .build(),
            );
            offset += len;
            number += 1;
        }
        let complete = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            );
        call("CompleteMultipartUpload", self.timeout, complete.send()).await?;
        Ok(())
    }
}

impl Finish for Uploader {
    const STAGE: &'static str = "upload";

    async fn finish(&self, path: &Path, rel: &str) -> Result<(), String> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        let result = if size >= self.multipart_threshold {
            self.multipart(path, rel, size).await
        } else {
            self.put(path, rel).await
        };
        result.map_err(|e| format!("s3://{}/{rel}: {e}", self.bucket))
    }
}
