//! Server-side TLS: `tls: {cert_file, key_file, client_ca_file}` on every
//! network source and the API.
//!
//! The files are read at start (and by `sluice validate`), then again
//! whenever one of them changes, so a renewed certificate is served without
//! a restart: the acceptor looks at their modification times and sizes at
//! most once a second, before a handshake. A renewal that does not load (a
//! key written before its certificate, say) keeps the previous pair and is
//! logged; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, version};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Require a client certificate signed by a CA in this PEM file (mTLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTlsConfig {
    /// Read the files into a rustls configuration offering `alpn` (`h2`
    /// for gRPC, `http/1.1` for HTTP, nothing for raw TCP). Errors name
    /// the setting and the file.
    pub fn load(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, String> {
        let certs = certificates("tls.cert_file", &self.cert_file)?;
        let key =
            PrivateKeyDer::from_pem_slice(&read("tls.key_file", &self.key_file)?).map_err(|e| {
                format!(
                    "tls.key_file {}: no usable private key: {e}",
                    self.key_file.display()
                )
            })?;
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for c in certificates("tls.client_ca_file", path)? {
                    roots.add(c).map_err(|e| {
                        format!(
                            "tls.client_ca_file {}: not a usable CA: {e}",
                            path.display()
                        )
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| format!("tls.client_ca_file {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "tls: {} and {} are not a certificate and its key: {e}",
                self.cert_file.display(),
                self.key_file.display()
            )
        })?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        if alpn.is_empty() {
            // A raw TCP sender (a syslog daemon, a log shipper) never reads
            // from its connection. TLS 1.3 session tickets sent after the
            // handshake would sit unread in its receive buffer, and closing
            // a socket with unread data sends a reset, which makes this
            // side's kernel discard what sluice had not read yet: events
            // the sender counted as sent. No tickets, no reset.
            config.send_tls13_tickets = 0;
        }
        Ok(Arc::new(config))
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.files()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }
}

impl crate::config::Validate for ServerTlsConfig {
    fn validate(&self) -> Result<(), String> {
        self.load(&[]).map(|_| ())
    }
}

/// A PEM file's bytes. Only a regular file of at most `MAX_PEM` bytes:
/// a FIFO or `/dev/zero` named by mistake must not hang `validate`.
fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    let at = |e: &dyn std::fmt::Display| format!("{setting} {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| at(&e))?;
    if !meta.is_file() {
        return Err(at(&"not a regular file"));
    }
    if meta.len() > MAX_PEM {
        return Err(at(&format_args!("larger than {MAX_PEM} bytes")));
    }
    std::fs::read(path).map_err(|e| at(&e))
}

/// Far more than any certificate chain or key.
const MAX_PEM: u64 = 1 << 20;

fn certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&read(setting, path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{setting} {}: no certificates found",
            path.display()
        ));
    }
    Ok(certs)
}

/// How often the files are looked at for a renewal.
const RECHECK: Duration = Duration::from_secs(1);

/// The configuration a listener accepts with, kept up to date with its
/// files. Owned by one accept loop, so it needs no lock.
pub struct Acceptor {
    settings: ServerTlsConfig,
    alpn: Vec<&'static [u8]>,
    current: Arc<ServerConfig>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

impl Acceptor {
    pub fn new(settings: &ServerTlsConfig, alpn: &[&'static [u8]]) -> Result<Self, String> {
        let stamps = settings.stamps();
        Ok(Acceptor {
            current: settings.load(alpn)?,
            settings: settings.clone(),
            alpn: alpn.to_vec(),
            stamps,
            checked: Instant::now(),
        })
    }

    /// The configuration for the next handshake: re-read first if a file
    /// changed since the last look.
    pub fn config(&mut self) -> Arc<ServerConfig> {
        if self.checked.elapsed() >= RECHECK {
            self.checked = Instant::now();
            let stamps = self.settings.stamps();
            if stamps != self.stamps {
                self.stamps = stamps;
                match self.settings.load(&self.alpn) {
                    Ok(c) => {
                        tracing::info!(cert_file = %self.settings.cert_file.display(), "tls: certificate files changed, reloaded");
                        self.current = c;
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "tls: certificate files changed but do not load; still serving the previous ones"
                    ),
                }
            }
        }
        self.current.clone()
    }
}
