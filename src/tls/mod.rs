//! TLS: the client side for destinations (`tls: {ca_file,
//! verify_certificate}`), the server side for every network source and the
//! API (`tls: {cert_file, key_file, client_ca_file}`). rustls on aws-lc,
//! TLS 1.2 and 1.3 only.

mod client;
mod server;

pub use client::TlsConfig;
pub use server::{Acceptor, ServerTlsConfig};
