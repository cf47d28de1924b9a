//! What the AWS destinations (SQS, Kinesis) share: the keys that say where
//! to connect and whose credentials to use, the SDK client configuration
//! built from them, and how an SDK error becomes the driver's outcome.
//!
//! Credentials come from the standard AWS chain (environment, shared
//! profile, web identity, ECS and EC2 metadata) unless `auth` gives keys;
//! `assume_role` then trades either for a role's. The SDK's own retries are
//! off: the driver retries, so backoff, the lane's policy and the counters
//! see every attempt.
//!
//! As Cribl documents, invalid credentials, a missing queue or stream,
//! denied permissions and an unreachable endpoint are backpressure: retried,
//! never dropped. Each is logged once when it starts (and again when the
//! cause changes), and once when it clears, not per request.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Deserialize;

use crate::driver::{CauseLog, Outcome, Rejection};

/// `auth:` — static keys instead of the credential chain.
#[derive(Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsAuth {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsAuth")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// `assume_role:` — the role whose credentials requests are signed with.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssumeRole {
    pub role_arn: String,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Default `sluice`.
    #[serde(default)]
    pub session_name: Option<String>,
}

/// The connection keys of an AWS destination, borrowed from its config.
#[derive(Debug, Clone, Copy)]
pub struct Aws<'a> {
    pub region: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    pub auth: Option<&'a AwsAuth>,
    pub assume_role: Option<&'a AssumeRole>,
}

impl Aws<'_> {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(e) = self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!("endpoint: `{e}` is not an http:// or https:// URL"));
        }
        if let Some(a) = self.auth
            && (a.access_key_id.is_empty() || a.secret_access_key.is_empty())
        {
            return Err("auth: access_key_id and secret_access_key must not be empty".into());
        }
        if let Some(r) = self.assume_role
            && !r.role_arn.starts_with("arn:")
        {
            return Err(format!(
                "assume_role.role_arn: `{}` is not an ARN (arn:aws:iam::ACCOUNT:role/NAME)",
                r.role_arn
            ));
        }
        Ok(())
    }

    /// The SDK configuration: region, endpoint and credentials resolved the
    /// way the AWS CLI resolves them. Fails only when no region is known.
    pub async fn sdk_config(&self) -> Result<SdkConfig, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(r) = self.region {
            loader = loader.region(Region::new(r.to_string()));
        }
        if let Some(e) = self.endpoint {
            loader = loader.endpoint_url(e);
        }
        if let Some(a) = self.auth {
            loader = loader.credentials_provider(aws_credential(a));
        }
        let base = loader.load().await;
        if base.region().is_none() {
            return Err(
                "no AWS region: set `region`, or AWS_REGION, or a region in the AWS profile".into(),
            );
        }
        let Some(role) = self.assume_role else {
            return Ok(base);
        };
        let mut b = aws_config::sts::AssumeRoleProvider::builder(&role.role_arn)
            .session_name(role.session_name.as_deref().unwrap_or("sluice"))
            .configure(&base);
        if let Some(x) = &role.external_id {
            b = b.external_id(x);
        }
        let provider = b.build().await;
        Ok(base
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build())
    }
}

fn aws_credential(a: &AwsAuth) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        &a.access_key_id,
        &a.secret_access_key,
        a.session_token.clone(),
        None,
        "sluice-config",
    )
}

/// Error codes by which AWS services ask a sender to slow down.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "KMSThrottlingException",
    "AWS.SimpleQueueService.RequestThrottled",
];

pub fn is_throttling(code: &str) -> bool {
    THROTTLING.contains(&code)
}

/// Codes that say the request itself is malformed: sending it again cannot
/// help, so it is rejected (dead-lettered) rather than retried for ever.
/// The destinations check the protocol's limits before sending, so these
/// mean an event the peer refuses (SQS's characters outside XML's, say).
const INVALID: &[&str] = &[
    "ValidationException",
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidParameterCombination",
    "InvalidMessageContents",
    "InvalidArgumentException",
    "SerializationException",
    "AWS.SimpleQueueService.InvalidBatchEntryId",
    "MessageTooLong",
    "BatchRequestTooLong",
];

/// What an SDK error means for the request that got it.
pub fn outcome<E>(err: &SdkError<E, HttpResponse>, log: &CauseLog, what: &str) -> Outcome
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = DisplayErrorContext(err).to_string();
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            log.failing(what, "unreachable", &text);
            Outcome::EndpointFailed { error: text }
        }
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let code = e.err().code().unwrap_or("");
            let message = e.err().message().unwrap_or("");
            service_outcome(status, code, message, &text, log, what)
        }
        SdkError::ResponseError(e) => {
            let status = e.raw().status().as_u16();
            service_outcome(status, "", "", &text, log, what)
        }
        // No credentials found, a signing failure: a setting to fix, so
        // backpressure until it is.
        _ => {
            log.failing(what, "request not built", &text);
            Outcome::Retry {
                after: None,
                error: text,
            }
        }
    }
}

fn service_outcome(
    status: u16,
    code: &str,
    message: &str,
    text: &str,
    log: &CauseLog,
    what: &str,
) -> Outcome {
    if status == 429 || is_throttling(code) {
        return Outcome::Throttled {
            after: None,
            error: text.to_string(),
        };
    }
    if status < 500 && INVALID.contains(&code) {
        let mut r = Rejection::named(code.to_string(), message.to_string());
        r.status = Some(status);
        r.response = Some(message.to_string());
        return Outcome::Rejected(r);
    }
    let cause = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        code.to_string()
    };
    log.failing(what, &cause, text);
    if status >= 500 {
        Outcome::EndpointFailed {
            error: text.to_string(),
        }
    } else {
        Outcome::Retry {
            after: None,
            error: text.to_string(),
        }
    }
}
