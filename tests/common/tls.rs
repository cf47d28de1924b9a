//! An HTTPS receiver with a private CA generated for the test (rcgen), for
//! checking `tls.ca_file`.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TlsReceiver {
    pub addr: SocketAddr,
    /// The CA that signed the server's certificate, PEM.
    pub ca_pem: String,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

/// A TLS acceptor for 127.0.0.1 with a certificate from a fresh private CA,
/// and that CA's certificate (PEM).
pub fn acceptor() -> (TlsAcceptor, String) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    (TlsAcceptor::from(Arc::new(config)), ca.pem())
}

impl TlsReceiver {
    pub async fn start() -> TlsReceiver {
        let (acceptor, ca_pem) = acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate fails here.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let n = String::from_utf8_lossy(&body)
                                .lines()
                                .filter(|l| !l.trim().is_empty())
                                .count();
                            count.fetch_add(n as u64, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(Response::new(
                                Full::new(Bytes::new()),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsReceiver {
            addr,
            ca_pem,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A private CA (rcgen) with a certificate for 127.0.0.1 and a client
/// certificate, as PEM files in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
            KeyPair,
        };
        // Distinct names: OpenSSL takes a leaf whose subject equals its
        // issuer's (rcgen's default name for both) for self-signed.
        let named = |sans: Vec<String>, cn: &str| {
            let mut p = CertificateParams::new(sans).expect("params");
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, cn);
            p.distinguished_name = dn;
            p
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = named(Vec::new(), "sluice test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write");
        for (name, san) in [("server", "127.0.0.1"), ("client", "sluice-client")] {
            let key = KeyPair::generate().expect("key");
            let cert = named(vec![san.to_string()], san)
                .signed_by(&key, &ca)
                .expect("sign");
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem())
                .expect("write");
        }
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }
}
