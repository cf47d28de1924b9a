//! A TCP proxy in a process of its own, both ways, one upstream connection
//! per downstream one: put in front of an in-process receiver, it is the
//! peer sluice talks to, and a scenario can hang that peer for real by
//! stopping the process (`Fault::Hang`: SIGSTOP, then SIGCONT).

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

pub async fn run(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("proxy: bind {listen}"))?;
    loop {
        let (mut inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(to).await else {
                eprintln!("proxy: cannot connect to {to}");
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

/// Stop (`true`) or continue a process.
pub fn freeze(pid: u32, stop: bool) {
    let sig = if stop { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: kill(2) on a child process this harness started.
    let r = unsafe { libc::kill(pid as i32, sig) };
    if r != 0 {
        eprintln!("cannot signal {pid}: {}", std::io::Error::last_os_error());
    }
}
