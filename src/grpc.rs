//! What the gRPC destinations (Pub/Sub, OTLP, sluice) share: a lazily
//! connecting channel, gRPC's names for its status codes, and the wait a
//! status asks for; and what the gRPC sources (OTLP, sluice) share: their
//! server's flow-control windows, and how tonic's own refusals are answered
//! and counted.

use std::time::Duration;

use tonic::Code;
use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::tls::TlsConfig;

/// HTTP/2 flow-control windows of the gRPC sources. With h2's default of
/// 64 KiB an export or a forwarded batch of a few hundred KB waited on
/// window updates from sluice several times over (loopback: 1.4 M OTLP
/// records/s between the load test's generator and receiver; 2.0 M with
/// these). A request's body is read whole either way, up to its source's
/// size limit, so larger windows add nothing to what a peer can make
/// sluice hold.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 16 << 20;

/// The server a gRPC source serves on.
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
}

/// A channel to `url` that connects on first use: a peer that is not up
/// yet is the driver's to retry, not a failed start. `https://` gets TLS
/// with the system's roots, or exactly the certificates of `tls.ca_file`.
pub fn channel(url: &str, tls: Option<&TlsConfig>) -> Result<Channel, String> {
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("endpoint `{url}`: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    if url.starts_with("https://") {
        let mut config = ClientTlsConfig::new();
        match tls.map(TlsConfig::ca_certificates).transpose()?.flatten() {
            Some(certs) => {
                for c in certs {
                    config = config.ca_certificate(Certificate::from_pem(pem(&c)));
                }
            }
            None => config = config.with_native_roots(),
        }
        if let Some((cert, key)) = tls.map(TlsConfig::identity_pem).transpose()?.flatten() {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| format!("endpoint `{url}`: TLS: {e}"))?;
    }
    Ok(endpoint.connect_lazy())
}

/// A DER certificate as PEM, the form tonic takes.
fn pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The wait a status's `google.rpc.RetryInfo` detail asks for, if any
/// (OTLP receivers send it with RESOURCE_EXHAUSTED and UNAVAILABLE).
pub fn retry_delay(status: &Status) -> Option<Duration> {
    use tonic_types::StatusExt as _;
    status.get_details_retry_info()?.retry_delay
}

/// One unary call whose request is already protobuf: the destination
/// encodes a batch once (in the driver's parallel encode step) and every
/// attempt sends those bytes. A generated client takes the message itself,
/// so each attempt cost a deep clone of it and an encode. The answer is
/// decoded as `R`.
pub async fn unary_encoded<R>(
    channel: Channel,
    path: &'static str,
    gzip: bool,
    request: tonic::Request<bytes::Bytes>,
) -> Result<tonic::Response<R>, Status>
where
    R: prost::Message + Default + Send + 'static,
{
    use tonic::codec::CompressionEncoding;
    let mut grpc = tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
    if gzip {
        grpc = grpc.send_compressed(CompressionEncoding::Gzip);
    }
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("not ready: {e}")))?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(request, path, Encoded::<R>(std::marker::PhantomData))
        .await
}

/// `unary_encoded`'s codec: bytes out as they are, `R` in.
struct Encoded<R>(std::marker::PhantomData<R>);

impl<R: prost::Message + Default + Send + 'static> tonic::codec::Codec for Encoded<R> {
    type Encode = bytes::Bytes;
    type Decode = R;
    type Encoder = Encoded<R>;
    type Decoder = Encoded<R>;

    fn encoder(&mut self) -> Self::Encoder {
        Encoded(std::marker::PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        Encoded(std::marker::PhantomData)
    }
}

impl<R: Send + 'static> tonic::codec::Encoder for Encoded<R> {
    type Item = bytes::Bytes;
    type Error = Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl<R: prost::Message + Default + Send + 'static> tonic::codec::Decoder for Encoded<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(format!("failed to decode the answer: {e}")))
    }
}

/// gRPC's own names for its codes, as dead letters and logs carry them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// tonic refuses what it cannot decode before any service code runs: a
/// message that is not protobuf as INTERNAL ("failed to decode"), one over
/// `max_body_bytes` as OUT_OF_RANGE ("message length too large") — or,
/// compressed, as RESOURCE_EXHAUSTED ("size limit exceeded while
/// decompressing") — codes OTel clients (and sluice's own destination) retry for ever. This
/// rewrites them to INVALID_ARGUMENT, as OTLP asks for a payload that
/// cannot succeed, and counts them (`malformed`, `oversize`).
#[cfg(any(feature = "otlp", feature = "sluice"))]
pub fn refusals_are_invalid_argument<B>(
    ctx: &crate::sources::SourceContext,
) -> impl Fn(axum::http::Response<B>) -> axum::http::Response<B> + Clone + use<B> {
    use crate::metrics::RejectReason;
    use axum::http::HeaderValue;
    let metrics = ctx.metrics.clone();
    move |mut resp| {
        let h = resp.headers_mut();
        let message = h
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // Percent-encoded on the wire (`too%20large`).
            .map(|m| m.replace("%20", " ").to_ascii_lowercase())
            .unwrap_or_default();
        let reason = match h.get("grpc-status").map(HeaderValue::as_bytes) {
            Some(b"13") if message.contains("decode") => Some(RejectReason::Malformed),
            Some(b"11") if message.contains("too large") => Some(RejectReason::Oversize),
            // A compressed body that expands past the limit.
            Some(b"8") if message.contains("decompressing") && message.contains("limit") => {
                Some(RejectReason::Oversize)
            }
            _ => None,
        };
        if let Some(reason) = reason {
            h.insert("grpc-status", HeaderValue::from_static("3"));
            metrics.reject(reason, 1);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        use tonic_types::{ErrorDetails, StatusExt as _};
        let s = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))),
        );
        assert_eq!(retry_delay(&s), Some(Duration::from_millis(1500)));
        assert_eq!(retry_delay(&Status::unavailable("down")), None);
    }
}
