//! What the gRPC destinations (Pub/Sub, OTLP) share: a lazily connecting
//! channel, gRPC's names for its status codes, and the wait a status asks for.

use std::time::Duration;

use tonic::Code;
use tonic::Status;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::tls::TlsConfig;

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
