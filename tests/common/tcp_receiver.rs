//! A real TCP receiver for stream destination tests: reads newline or
//! octet-counted events (optionally over TLS), or misbehaves on purpose —
//! accepts and never reads, or accepts and closes at once. Records every
//! event and the time of every accepted connection. `kill` closes the
//! listener and every connection; `restart` listens on the same port again.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One event per line.
    Lines,
    /// RFC 6587 octet counting.
    Octets,
    /// Accept, then never read (the sender's writes stall).
    NeverRead,
    /// Accept, then close at once (a load balancer with no backends).
    AcceptClose,
}

#[derive(Default)]
pub struct State {
    events: Mutex<Vec<String>>,
    accepts: Mutex<Vec<Instant>>,
    held: Mutex<Vec<TcpStream>>,
}

pub struct TcpReceiver {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub state: Arc<State>,
    tls: Option<TlsAcceptor>,
    tasks: Option<JoinSet<()>>,
    /// Its port, leased for its lifetime: a restart after `kill` finds the
    /// port free (an ephemeral one could meanwhile be any connection's).
    _lease: super::real_peer::Ports<1>,
}

impl TcpReceiver {
    pub async fn start(mode: Mode) -> TcpReceiver {
        Self::start_with(mode, None).await
    }

    pub async fn start_with(mode: Mode, tls: Option<TlsAcceptor>) -> TcpReceiver {
        let lease = super::real_peer::free_ports::<1>();
        let mut r = TcpReceiver {
            addr: ([127, 0, 0, 1], lease.ports[0]).into(),
            mode,
            state: Arc::new(State::default()),
            tls,
            tasks: None,
            _lease: lease,
        };
        r.listen().await;
        r
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("receiver binds");
        self.addr = listener.local_addr().unwrap();
        let (state, mode, tls) = (self.state.clone(), self.mode, self.tls.clone());
        let mut tasks = JoinSet::new();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let conns2 = conns.clone();
        tasks.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                state.accepts.lock().unwrap().push(Instant::now());
                let (state, tls) = (state.clone(), tls.clone());
                conns2.lock().unwrap().spawn(async move {
                    match mode {
                        Mode::AcceptClose => drop(stream),
                        Mode::NeverRead => state.held.lock().unwrap().push(stream),
                        _ => match tls {
                            Some(acceptor) => {
                                if let Ok(s) = acceptor.accept(stream).await {
                                    read(s, mode, &state).await;
                                }
                            }
                            None => read(stream, mode, &state).await,
                        },
                    }
                });
            }
        });
        tasks.spawn(async move {
            let _keep = conns;
            std::future::pending::<()>().await;
        });
        self.tasks = Some(tasks);
    }

    /// Close the listener and every connection, unread data and all.
    pub async fn kill(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
        self.state.held.lock().unwrap().clear();
    }

    pub async fn restart(&mut self) {
        self.listen().await;
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    pub fn events(&self) -> Vec<String> {
        self.state.events.lock().unwrap().clone()
    }

    pub fn accepts(&self) -> Vec<Instant> {
        self.state.accepts.lock().unwrap().clone()
    }
}

impl Drop for TcpReceiver {
    fn drop(&mut self) {
        if let Some(t) = self.tasks.as_mut() {
            t.abort_all();
        }
    }
}

async fn read(stream: impl AsyncRead + Unpin, mode: Mode, state: &State) {
    let mut r = BufReader::new(stream);
    if mode == Mode::Lines {
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line).await {
            if n == 0 {
                break;
            }
            if line.ends_with('\n') {
                line.pop();
                state.events.lock().unwrap().push(std::mem::take(&mut line));
            }
        }
        return;
    }
    // Octet counting: LENGTH SP EVENT.
    loop {
        let mut header = Vec::new();
        if r.read_until(b' ', &mut header).await.unwrap_or(0) == 0 {
            return;
        }
        header.pop();
        let Ok(len) = String::from_utf8_lossy(&header).trim().parse::<usize>() else {
            panic!(
                "bad octet-counting header {:?}",
                String::from_utf8_lossy(&header)
            );
        };
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).await.is_err() {
            return;
        }
        state
            .events
            .lock()
            .unwrap()
            .push(String::from_utf8(body).unwrap());
    }
}
