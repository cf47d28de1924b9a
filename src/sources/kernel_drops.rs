//! Datagrams the kernel dropped for a UDP source, made visible.
//!
//! A UDP sender cannot be pushed back on: when the socket's receive buffer
//! is full (sluice busy, or holding off a full `block` destination), Linux
//! drops the datagram and counts it on the socket. That counter is the
//! `drops` column of `/proc/net/udp` and `/proc/net/udp6`, found by the
//! socket's inode; a task reads it once a second and adds what grew to
//! `sluice_source_rejected_total{reason="kernel"}` (datagrams, not events:
//! what a dropped datagram held is unknowable). Reading it costs nothing on
//! the receive path, unlike `SO_RXQ_OVFL`, which would need `recvmsg` with
//! control messages for every datagram. Elsewhere than Linux the counter is
//! absent and nothing is counted.

use std::time::Duration;

use crate::metrics::RejectReason;

use super::SourceContext;

/// How often the counter is read.
const EVERY: Duration = Duration::from_secs(1);

/// The socket's inode, which names it in `/proc/net/udp`.
pub fn inode(socket: &impl std::os::fd::AsRawFd) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let fd = socket.as_raw_fd();
    std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .ok()
        .map(|m| m.ino())
}

/// The kernel's drop count for the socket with `inode`.
pub fn drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            drops_in(&text, inode)
        })
}

/// `drops` for `inode` in one `/proc/net/udp` table.
fn drops_in(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ino: u64 = fields.get(9)?.parse().ok()?;
        (ino == inode).then(|| fields.get(12)?.parse().ok())?
    })
}

/// Count the socket's drops until the source stops.
pub async fn watch(inode: u64, ctx: SourceContext) {
    let mut seen = drops(inode).unwrap_or(0);
    let mut warned: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        // A blocking read of a small in-memory file, once a second.
        let Some(now) = drops(inode) else { continue };
        if now > seen {
            ctx.metrics.reject(RejectReason::Kernel, now - seen);
            // Once a minute at most: the counter has the rest.
            if warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                warned = Some(tokio::time::Instant::now());
                tracing::warn!(source = %ctx.id, dropped = now - seen,
                    "the kernel dropped datagrams: the receive buffer was full (raise receive_buffer_bytes, or see what held the source)");
            }
            seen = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drops_column_of_its_own_socket() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:3039 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
             2: 0100007F:303A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0\n";
        assert_eq!(drops_in(table, 4242), Some(17));
        assert_eq!(drops_in(table, 4343), Some(0));
        assert_eq!(drops_in(table, 1), None);
        assert_eq!(drops_in("garbage\n1 2 3", 1), None);
    }

    #[test]
    fn finds_a_real_socket() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ino = inode(&s).expect("an inode");
        assert_eq!(drops(ino), Some(0));
    }
}
