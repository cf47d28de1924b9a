//! TLS settings for destinations (`tls: {ca_file, verify_certificate}`),
//! shared by the HTTP destination (through reqwest) and stream destinations
//! (through a rustls client configuration built here).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// A client certificate chain and its key, both PEM.
pub type IdentityPem = (Vec<u8>, Vec<u8>);

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Trust exactly the certificates in this PEM file (a private CA).
    /// Without it, the operating system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `false` accepts any certificate. For testing only.
    #[serde(default)]
    pub verify_certificate: Option<bool>,
    /// A client certificate (chain, PEM) to present, for servers that
    /// require one (mTLS). With `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key, PEM.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `sluice validate` reads the files, as `run` will: a missing or empty
/// certificate file is a config error, not a start-up failure.
impl crate::config::Validate for TlsConfig {
    fn validate(&self) -> Result<(), String> {
        self.ca_certificates()?;
        self.identity_pem()?;
        Ok(())
    }
}

impl TlsConfig {
    pub fn verify(&self) -> bool {
        self.verify_certificate != Some(false)
    }

    /// The certificates of `ca_file`, if set.
    pub fn ca_certificates(&self) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("tls.ca_file {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "tls.ca_file {}: no certificates found",
                path.display()
            ));
        }
        Ok(Some(certs))
    }

    /// The client certificate and key, PEM, if set (both or neither).
    pub fn identity_pem(&self) -> Result<Option<IdentityPem>, String> {
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => {
                let read = |setting: &str, p: &PathBuf| {
                    std::fs::read(p).map_err(|e| format!("{setting} {}: {e}", p.display()))
                };
                Ok(Some((read("tls.cert_file", c)?, read("tls.key_file", k)?)))
            }
            _ => Err("tls: set both cert_file and key_file, or neither".into()),
        }
    }

    /// The client certificate chain and key, parsed.
    fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, String> {
        let Some((cert, key)) = self.identity_pem()? else {
            return Ok(None);
        };
        let certs = CertificateDer::pem_slice_iter(&cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.cert_file: {e}"))?;
        if certs.is_empty() {
            return Err("tls.cert_file: no certificates found".into());
        }
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("tls.key_file: {e}"))?;
        Ok(Some((certs, key)))
    }

    /// A rustls client configuration for stream destinations.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = if !self.verify() {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        } else if let Some(certs) = self.ca_certificates()? {
            let mut roots = RootCertStore::empty();
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("tls.ca_file: a certificate is not usable: {e}"))?;
            }
            builder.with_root_certificates(roots)
        } else {
            use rustls_platform_verifier::BuilderVerifierExt;
            builder
                .with_platform_verifier()
                .map_err(|e| format!("tls: the system's certificate store: {e}"))?
        };
        let config = match self.identity()? {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("tls: cert_file and key_file: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// `verify_certificate: false`: accepts any certificate, still checking the
/// handshake signatures so the connection is at least encrypted.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
