//! The physical baseline: a minimal tokio copy loop from one TCP port to
//! another, one upstream connection per downstream one. Whatever a router
//! does per event costs throughput relative to this.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

pub async fn run(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("relay: bind {listen}"))?;
    loop {
        let (mut inbound, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(to).await else {
                eprintln!("relay: cannot connect to {to}");
                return;
            };
            let _ = outbound.set_nodelay(true);
            if let Err(e) = tokio::io::copy(&mut inbound, &mut outbound).await {
                eprintln!("relay: {e}");
            }
        });
    }
}
