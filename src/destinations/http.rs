//! `type: http` — POST batches to one URL or to load-balanced endpoints.
//!
//! This file holds the HTTP protocol only: building the request and
//! classifying the answer. Batching, retries, load balancing, endpoint
//! health, concurrency (fixed or adaptive) and dead letters are the driver's.
//!
//! Classification:
//! - 2xx → delivered;
//! - connection errors and timeouts → the endpoint is failing (marked down,
//!   the batch moves to the next healthy endpoint);
//! - statuses in `retry.retry_on` (default 408, 429, 5xx except 501):
//!   429, and 503 with `Retry-After`, pause the endpoint for as long as the
//!   peer asks (capped by `retry.max_backoff`); other 5xx fail the
//!   endpoint; the rest (408, codes you add) are retried with backoff;
//! - any other status → rejected: dead-lettered or dropped with reason
//!   `rejected`, with the status and the start of the response body;
//! - with `encoding: influx`, InfluxDB's `400` (2.x: `422`) `partial write
//!   ... dropped=N`
//!   → the other points were stored: N counted rejected (dead-lettered with
//!   Influx's reason when the reason names them), the rest sent.
//!
//! Failed requests are logged at debug with their status and the start of
//! the body; headers (and so credentials) never are.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::auth::AuthConfig;
use crate::codec::url_template::UrlTemplate;
use crate::config::Validate;
use crate::config::units::Dur;
use crate::destination_config;
use crate::destinations::kind::{ALL_COMPRESSIONS, BODY_ENCODINGS};
use crate::destinations::{BuildContext, Capabilities, DestinationType, HasCommon, unencodable};
use crate::driver::{
    Body, DEFAULT_RETRY_ON, DeliveryDefaults, Destination, Encoded, Encoder, Encoding,
    EndpointSpec, Outcome, RESPONSE_EXCERPT, Rejection, StatusRule, influx_partial_write, retried,
};
use crate::event::Event;
use crate::metrics::DropReason;
use crate::tls::TlsConfig;

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    pub url: String,
    /// Share of requests; 0 disables the endpoint. Default 1.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
}

destination_config! {
    pub struct HttpConfig {
        /// One endpoint...
        #[serde(default)]
        pub url: Option<String>,
        /// ...or several, load-balanced by weight.
        #[serde(default)]
        pub endpoints: Option<Vec<HttpEndpoint>>,
        #[serde(default)]
        pub method: HttpMethod,
        /// Extra request headers.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        #[serde(default)]
        pub auth: Option<AuthConfig>,
        #[serde(default)]
        pub tls: Option<TlsConfig>,
        /// How long to wait for a connection. Default 10 s.
        #[serde(default)]
        pub connect_timeout: Option<Dur>,
    }
}

impl HttpConfig {
    fn targets(&self) -> Vec<HttpEndpoint> {
        match (&self.url, &self.endpoints) {
            (Some(u), _) => vec![HttpEndpoint {
                url: u.clone(),
                weight: 1,
            }],
            (None, Some(e)) => e.clone(),
            (None, None) => Vec::new(),
        }
    }
}

impl Validate for HttpConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.tls {
            t.validate()?;
        }
        match (&self.url, &self.endpoints) {
            (Some(_), Some(_)) => return Err("set either `url` or `endpoints`, not both".into()),
            (None, None) => {
                return Err("`url` (or `endpoints: [{url, weight}]`) is required".into());
            }
            (None, Some(e)) if e.is_empty() => return Err("`endpoints` is empty".into()),
            _ => {}
        }
        let targets = self.targets();
        if targets.iter().all(|t| t.weight == 0) {
            return Err("every endpoint has weight 0: nothing could be sent".into());
        }
        for t in &targets {
            if let Some(tpl) = UrlTemplate::parse(&t.url)? {
                let by = self.batch.partition_by.as_deref().unwrap_or_default();
                if let Some(p) = tpl.paths().find(|p| !by.iter().any(|b| b.trim() == *p)) {
                    return Err(format!(
                        "url `{}` reads `{p}`: add it to batch.partition_by, so that every event of a batch has the same URL",
                        t.url
                    ));
                }
                continue;
            }
            let url = reqwest::Url::parse(&t.url).map_err(|e| format!("url `{}`: {e}", t.url))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(format!(
                    "url `{}` must be http:// or https:// with a host",
                    t.url
                ));
            }
        }
        headers(&self.headers)?;
        if let Some(a) = &self.auth {
            a.validate()?;
        }
        Ok(())
    }
}

impl DestinationType for HttpDestination {
    const NAME: &'static str = "http";
    const DEFAULTS: DeliveryDefaults = DeliveryDefaults::NETWORK;
    const CAPABILITIES: Capabilities = Capabilities {
        encodings: BODY_ENCODINGS,
        compressions: ALL_COMPRESSIONS,
        max_events: None,
        max_bytes: None,
        max_record_bytes: None,
        retry_on: true,
    };
    type Config = HttpConfig;

    async fn build(cfg: &HttpConfig, _: &BuildContext<'_>) -> Result<Self, String> {
        HttpDestination::new(cfg)
    }
}

struct Target {
    url: reqwest::Url,
    /// A URL with fields, rendered from each batch's first event.
    template: Option<UrlTemplate>,
    name: String,
    weight: u32,
}

/// A request: the body, and for a URL with fields the event it is
/// rendered from.
pub struct HttpRequest {
    body: Body,
    first: Option<Event>,
}

pub struct HttpDestination {
    client: reqwest::Client,
    targets: Vec<Target>,
    /// Some URL has fields: requests keep their first event.
    templated: bool,
    method: reqwest::Method,
    headers: HeaderMap,
    encoder: Encoder,
    retry_on: Vec<StatusRule>,
    connect_timeout: Duration,
}

impl HttpDestination {
    pub fn new(cfg: &HttpConfig) -> Result<Self, String> {
        let connect_timeout = cfg
            .connect_timeout
            .map_or(Duration::from_secs(10), Dur::get);
        let client = client(connect_timeout, cfg.tls.as_ref())?;
        let mut headers = headers(&cfg.headers)?;
        if let Some(auth) = &cfg.auth {
            let mut value = HeaderValue::from_str(&auth.header_value()).map_err(|_| {
                "auth: credentials contain characters not allowed in a header".to_string()
            })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let targets = cfg
            .targets()
            .into_iter()
            .map(|t| {
                if let Some(template) = UrlTemplate::parse(&t.url)? {
                    let shown = template.placeholder();
                    // The host and port are fixed: probes and health use them.
                    let url =
                        reqwest::Url::parse(&shown).map_err(|e| format!("url `{}`: {e}", t.url))?;
                    return Ok(Target {
                        name: display_url(&url).replace("%7B", "{").replace("%7D", "}"),
                        url,
                        template: Some(template),
                        weight: t.weight,
                    });
                }
                let url =
                    reqwest::Url::parse(&t.url).map_err(|e| format!("url `{}`: {e}", t.url))?;
                Ok(Target {
                    name: display_url(&url),
                    url,
                    template: None,
                    weight: t.weight,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let templated = targets.iter().any(|t| t.template.is_some());
        Ok(HttpDestination {
            client,
            templated,
            targets,
            method: match cfg.method {
                HttpMethod::Post => reqwest::Method::POST,
                HttpMethod::Put => reqwest::Method::PUT,
                HttpMethod::Patch => reqwest::Method::PATCH,
            },
            headers,
            encoder: cfg.common().encoder()?,
            retry_on: cfg
                .retry
                .retry_on
                .clone()
                .unwrap_or_else(|| DEFAULT_RETRY_ON.to_vec()),
            connect_timeout,
        })
    }

    async fn classify(&self, resp: reqwest::Response) -> Outcome {
        let status = resp.status();
        if status.is_success() {
            // Read the answer so the connection goes back to the pool.
            drain(resp, 64 * 1024).await;
            return Outcome::Delivered;
        }
        let code = status.as_u16();
        let retry_after = retry_after(resp.headers());
        let excerpt = excerpt(resp).await;
        let error = if excerpt.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {excerpt}")
        };
        tracing::debug!(status = code, body = %excerpt, "request failed");
        // InfluxDB 1.x answers a partial write with 400, 2.x with 422.
        if matches!(code, 400 | 422)
            && self.encoder.encoding == Encoding::Influx
            && let Some((dropped, reason)) = influx_partial_write(&excerpt)
        {
            return Outcome::PartialCount {
                rejected: dropped,
                why: Rejection {
                    error: format!("HTTP {code}: {reason}"),
                    status: Some(code),
                    response: Some(excerpt),
                    code: Some("partial write".into()),
                },
            };
        }
        if !retried(&self.retry_on, code) {
            return Outcome::Rejected(Rejection {
                error,
                status: Some(code),
                response: Some(excerpt),
                code: None,
            });
        }
        match code {
            429 => Outcome::Throttled {
                after: retry_after,
                error,
            },
            503 if retry_after.is_some() => Outcome::Throttled {
                after: retry_after,
                error,
            },
            500..=599 => Outcome::EndpointFailed { error },
            _ => Outcome::Retry {
                after: retry_after,
                error,
            },
        }
    }
}

/// The `headers:` of the HTTP-based destinations as a header map. Values are
/// marked sensitive (they often carry tokens), so no debug output shows them.
pub fn headers(configured: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (k, v) in configured {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("headers: `{k}` is not a valid header name"))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| format!("headers.{k}: not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The client of the HTTP-based destinations: sluice's user agent, idle
/// connections kept 90 s, and `tls` (a private CA, or no verification).
pub fn client(
    connect_timeout: Duration,
    tls: Option<&TlsConfig>,
) -> Result<reqwest::Client, String> {
    let mut client = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        if let Some(certs) = tls.ca_certificates()? {
            let certs = certs
                .iter()
                .map(|c| reqwest::Certificate::from_der(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.ca_file: {e}"))?;
            client = client.tls_certs_only(certs);
        }
        if !tls.verify() {
            client = client.tls_danger_accept_invalid_certs(true);
        }
        if let Some((cert, key)) = tls.identity_pem()? {
            let identity = reqwest::Identity::from_pem(&[cert, key].concat())
                .map_err(|e| format!("tls: cert_file and key_file: {e}"))?;
            client = client.identity(identity);
        }
    }
    client
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `scheme://host:port/path`, without credentials or query.
fn display_url(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port_or_known_default() {
        Some(p) => format!("{}://{host}:{p}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

async fn drain(mut resp: reqwest::Response, limit: usize) {
    let mut read = 0;
    while let Ok(Some(chunk)) = resp.chunk().await {
        read += chunk.len();
        if read > limit {
            break;
        }
    }
}

/// The start of a response body, as text.
async fn excerpt(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < RESPONSE_EXCERPT {
        match resp.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    buf.truncate(RESPONSE_EXCERPT);
    String::from_utf8_lossy(&buf).trim().to_string()
}

/// What a transport error says, without any header or credential.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

impl Destination for HttpDestination {
    type Request = HttpRequest;

    fn endpoints(&self) -> Vec<EndpointSpec> {
        self.targets
            .iter()
            .map(|t| EndpointSpec {
                name: t.name.clone(),
                weight: t.weight,
            })
            .collect()
    }

    fn encode(&self, events: &[Event]) -> Encoded<HttpRequest> {
        let first = if self.templated {
            events.first().cloned()
        } else {
            None
        };
        match self.encoder.body(events) {
            Ok((body, skipped)) => {
                let n = body.bytes.len();
                Encoded {
                    keys: None,
                    request: HttpRequest { body, first },
                    bytes: n,
                    skipped: unencodable(skipped),
                    record_bytes: Vec::new(),
                }
            }
            // Compressing into memory does not fail; if it ever did, the
            // events are counted rather than lost silently.
            Err(_) => Encoded {
                keys: None,
                request: HttpRequest {
                    body: Body {
                        bytes: bytes::Bytes::new(),
                        content_type: self.encoder.encoding.content_type(),
                        content_encoding: None,
                    },
                    first,
                },
                bytes: 0,
                skipped: (0..events.len())
                    .map(|i| (i, DropReason::Unencodable))
                    .collect(),
                record_bytes: Vec::new(),
            },
        }
    }

    async fn send(&self, request: &HttpRequest, endpoint: usize) -> Outcome {
        let Some(t) = self.targets.get(endpoint) else {
            return Outcome::Retry {
                after: None,
                error: format!("no endpoint {endpoint}"),
            };
        };
        let url = match (&t.template, &request.first) {
            (Some(tpl), Some(first)) => match tpl.render(first) {
                Ok(u) => u,
                Err(error) => {
                    return Outcome::Rejected(Rejection {
                        error,
                        status: None,
                        response: None,
                        code: Some("url template".into()),
                    });
                }
            },
            _ => t.url.clone(),
        };
        let body = &request.body;
        let mut req = self
            .client
            .request(self.method.clone(), url)
            .headers(self.headers.clone())
            .header(header::CONTENT_TYPE, body.content_type)
            .body(body.bytes.clone());
        if let Some(ce) = body.content_encoding {
            req = req.header(header::CONTENT_ENCODING, ce);
        }
        match req.send().await {
            Ok(resp) => self.classify(resp).await,
            Err(e) => Outcome::EndpointFailed {
                error: describe(&e),
            },
        }
    }

    fn refused(&self, events: &[Event], rejected: usize, why: &Rejection) -> Option<Vec<bool>> {
        self.encoder.influx_refused(events, rejected, &why.error)
    }

    /// A down endpoint is back when a TCP connection to it succeeds.
    async fn probe(&self, endpoint: usize) -> bool {
        let Some(t) = self.targets.get(endpoint) else {
            return false;
        };
        let (Some(host), Some(port)) = (t.url.host_str(), t.url.port_or_known_default()) else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        matches!(
            tokio::time::timeout(
                self.connect_timeout,
                tokio::net::TcpStream::connect((host, port))
            )
            .await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        let later = SystemTime::now() + Duration::from_secs(30);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn status_rules() {
        assert!(retried(DEFAULT_RETRY_ON, 503));
        assert!(retried(DEFAULT_RETRY_ON, 429));
        assert!(retried(DEFAULT_RETRY_ON, 408));
        assert!(!retried(DEFAULT_RETRY_ON, 501));
        assert!(!retried(DEFAULT_RETRY_ON, 400));
        let custom = [
            StatusRule::Code(409),
            StatusRule::Class(5),
            StatusRule::Not(503),
        ];
        assert!(retried(&custom, 409));
        assert!(retried(&custom, 500));
        assert!(!retried(&custom, 503));
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let u = reqwest::Url::parse("https://user:secret@example.com/in?token=x").unwrap();
        assert_eq!(display_url(&u), "https://example.com:443/in");
    }
}
