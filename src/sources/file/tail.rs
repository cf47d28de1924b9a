//! One file, followed: read from an offset in chunks, split into lines
//! (a line over `max_line_bytes` skipped to its end and counted), joined
//! by `multiline` if set, routed as batches that wait for delivery (so the
//! checkpoint only ever moves past delivered lines, and a slow destination
//! slows the reading), then wait for more.
//!
//! Rotation: the file is held open by descriptor, so a rename (logrotate's
//! default) lets it be read to its end; once its path names another file
//! (or none) and it stays at its end for one more poll, it is let go, and
//! the scan finds the new file. Truncation (`copytruncate`, `> file`): the
//! file shrank below the offset, so reading starts again at 0. A deleted
//! file is let go at its end, and its checkpoint forgotten.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use memchr::memchr;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::checkpoints::{Checkpoints, FileId, HEAD, hash};
use super::multiline::{Joined, Multiline};
use crate::event::{Ack, AckStatus, Batch, Event};
use crate::metrics::RejectReason;
use crate::sources::writer::EventWriter;
use crate::sources::{MAX_BATCH, SourceContext};

/// How often a file at its end is looked at again.
pub const POLL: Duration = Duration::from_millis(250);
const READ: usize = 64 * 1024;

/// Batches on their way when sluice began shutting down: their delivery is
/// awaited after the destinations drain, and only then checkpointed.
pub type Handoff = Arc<Mutex<Vec<Pending>>>;

pub struct Pending {
    pub rx: tokio::sync::oneshot::Receiver<AckStatus>,
    pub id: FileId,
    pub path: PathBuf,
    pub end: u64,
    pub head: (u64, u64),
}

pub struct Tail {
    pub handoff: Handoff,
    pub saver: Arc<super::checkpoints::Saver>,
    pub id: FileId,
    pub path: PathBuf,
    pub offset: u64,
    pub max_line: usize,
    pub multiline: Option<Multiline>,
    pub checkpoints: Arc<Mutex<Checkpoints>>,
    pub host: Arc<str>,
}

/// Why a tail ended.
pub enum End {
    Shutdown,
    /// Rotated away or deleted, and read to its end.
    Gone {
        deleted: bool,
    },
    Failed(String),
}

struct Lines {
    pending: BytesMut,
    /// File offset of `pending[0]`.
    base: u64,
    /// Inside a line over the limit: skip to its newline.
    discarding: bool,
    oversize: u64,
}

impl Tail {
    pub async fn run(mut self, ctx: &SourceContext) -> End {
        let mut file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) => return End::Failed(format!("cannot open {}: {e}", self.path.display())),
        };
        if let Err(e) = file.seek(SeekFrom::Start(self.offset)).await {
            return End::Failed(format!("cannot seek {}: {e}", self.path.display()));
        }
        let mut lines = Lines {
            pending: BytesMut::with_capacity(READ),
            base: self.offset,
            discarding: false,
            oversize: 0,
        };
        let mut writer = EventWriter::new();
        let mut last_line = Instant::now();
        let mut gone_since: Option<bool> = None;
        // The file's first bytes, to notice it rewritten in place.
        // Lines read, not yet routed: a batch is routed once full, or at
        // the file's end.
        let mut joined: Vec<Joined> = Vec::new();
        let mut head = if self.offset > 0 {
            super::checkpoints::head_prefix(&self.path, HEAD as u64).unwrap_or((0, 0))
        } else {
            (0, 0)
        };
        loop {
            if lines.pending.capacity() - lines.pending.len() < READ / 2 {
                lines.pending.reserve(READ);
            }
            let n = tokio::select! {
                _ = ctx.shutdown.cancelled() => return End::Shutdown,
                r = file.read_buf(&mut lines.pending) => match r {
                    Ok(n) => n,
                    Err(e) => return End::Failed(format!("read failed: {e}")),
                },
            };
            if head.1 < HEAD as u64 && lines.base == 0 {
                let k = lines.pending.len().min(HEAD);
                head = (hash(&lines.pending[..k]), k as u64);
            }
            if n > 0 {
                gone_since = None;
                last_line = Instant::now();
                split(
                    &mut lines,
                    self.max_line,
                    self.multiline.as_mut(),
                    &mut joined,
                );
            } else if let Some(m) = self.multiline.as_mut()
                && m.waiting()
                && last_line.elapsed() >= m.timeout
            {
                m.flush(&mut joined);
            }
            if lines.oversize > 0 {
                ctx.metrics
                    .reject(RejectReason::Oversize, std::mem::take(&mut lines.oversize));
            }
            // Full batches while there is more to read (a destination
            // flushes a full batch at once); the rest at the file's end.
            let ready = if n > 0 {
                joined.len() - joined.len() % MAX_BATCH
            } else {
                joined.len()
            };
            if ready > 0 {
                let rest = joined.split_off(ready);
                let batch = std::mem::replace(&mut joined, rest);
                if let Err(end) = self.deliver(batch, &mut writer, ctx, head).await {
                    return end;
                }
                continue;
            }
            if n > 0 {
                continue;
            }
            // At the end: wait, then see whether it was truncated (it is
            // shorter than what was read, or its first bytes changed:
            // `copytruncate` then new lines), rotated, deleted, or is just quiet.
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return End::Shutdown,
                _ = tokio::time::sleep(POLL) => {}
            }
            let meta = match file.metadata().await {
                Ok(m) => m,
                Err(e) => return End::Failed(format!("stat failed: {e}")),
            };
            let at = lines.base + lines.pending.len() as u64;
            let rewritten = head.1 > 0
                && super::checkpoints::head_prefix(&self.path, head.1)
                    .is_ok_and(|(h, n)| n == head.1 && h != head.0)
                && std::fs::metadata(&self.path)
                    .is_ok_and(|m| m.dev() == self.id.dev && m.ino() == self.id.ino);
            if meta.len() < at || rewritten {
                tracing::info!(file = %self.path.display(), size = meta.len(), offset = at, "file truncated: reading it from the start");
                if let Err(e) = file.seek(SeekFrom::Start(0)).await {
                    return End::Failed(format!("cannot seek: {e}"));
                }
                lines.pending.clear();
                lines.base = 0;
                lines.discarding = false;
                head = (0, 0);
                self.checkpoint(0, head);
                continue;
            }
            let deleted = meta.nlink() == 0;
            let moved = match std::fs::metadata(&self.path) {
                Ok(m) => m.dev() != self.id.dev || m.ino() != self.id.ino,
                Err(_) => true,
            };
            if deleted || moved {
                if gone_since.is_some() && !self.multiline.as_ref().is_some_and(Multiline::waiting)
                {
                    return End::Gone { deleted };
                }
                gone_since = Some(deleted);
            }
        }
    }

    /// Route `joined` in batches, each waiting for delivery before the
    /// checkpoint moves past it.
    async fn deliver(
        &mut self,
        joined: Vec<Joined>,
        w: &mut EventWriter,
        ctx: &SourceContext,
        head: (u64, u64),
    ) -> Result<(), End> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let path = self.path.to_string_lossy().into_owned();
        for chunk in joined.chunks(MAX_BATCH) {
            let mut events: Vec<Event> = Vec::with_capacity(chunk.len());
            for j in chunk {
                w.begin(j.text.len() + path.len() + 96);
                w.bytes("message", &j.text);
                w.str("file", &path);
                w.str("host", &self.host);
                w.str("timestamp", &now);
                events.push(w.finish());
            }
            let end = chunk.last().map_or(0, |j| j.end);
            let (ack, mut rx) = Ack::new();
            // One file is one sender: its lines keep their order.
            let batch = Batch::with_ack(events, Some(ack))
                .from(crate::event::Sender::of(&ctx.id, &self.path));
            if ctx.send(batch).await.is_err() {
                return Err(End::Shutdown);
            }
            let status = tokio::select! {
                s = &mut rx => s,
                _ = ctx.shutdown.cancelled() => {
                    let pending = Pending { rx, id: self.id, path: self.path.clone(), end, head };
                    self.handoff.lock().unwrap_or_else(|p| p.into_inner()).push(pending);
                    return Err(End::Shutdown);
                }
            };
            if status.is_ok_and(advances) {
                self.checkpoint(end, head);
                self.saver.persist().await;
            }
        }
        Ok(())
    }

    fn checkpoint(&self, offset: u64, head: (u64, u64)) {
        checkpoint(&self.checkpoints, self.id, &self.path, offset, head);
    }
}

/// Every complete line in `pending` into `out` (through multiline).
fn split(l: &mut Lines, max_line: usize, multiline: Option<&mut Multiline>, out: &mut Vec<Joined>) {
    let mut multiline = multiline;
    let mut pos = 0;
    while let Some(i) = memchr(b'\n', &l.pending[pos..]) {
        let end = l.base + (pos + i + 1) as u64;
        let mut line = &l.pending[pos..pos + i];
        pos += i + 1;
        if std::mem::take(&mut l.discarding) {
            continue;
        }
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.len() > max_line {
            l.oversize += 1;
            continue;
        }
        match multiline.as_deref_mut() {
            Some(m) => m.push(line, end, out),
            None => {
                if !line.is_empty() {
                    out.push(Joined {
                        text: line.to_vec(),
                        end,
                    });
                }
            }
        }
    }
    bytes::Buf::advance(&mut l.pending, pos);
    l.base += pos as u64;
    if !l.discarding && l.pending.len() > max_line + 1 {
        // The line in progress is already too long: count it once,
        // drop what there is, skip the rest up to its newline.
        l.oversize += 1;
        l.discarding = true;
        l.base += l.pending.len() as u64;
        l.pending.clear();
    } else if l.discarding {
        l.base += l.pending.len() as u64;
        l.pending.clear();
    }
}

/// Whether a batch that ended so lets the checkpoint pass it: delivered or
/// durably queued, or refused for good (counted by its destination:
/// reading it again changes nothing). Not when shed (dropped for lack of
/// room or at shutdown): the next run reads it again.
pub fn advances(status: AckStatus) -> bool {
    matches!(
        status,
        AckStatus::Delivered | AckStatus::Abandoned | AckStatus::Failed
    )
}

pub fn checkpoint(
    checkpoints: &Mutex<Checkpoints>,
    id: FileId,
    path: &std::path::Path,
    offset: u64,
    head: (u64, u64),
) {
    {
        let mut c = checkpoints.lock().unwrap_or_else(|p| p.into_inner());
        c.advance(id, path, offset, head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// However the file is cut into reads, every line within the limit
        /// comes out once, in order, ending at its true offset; every
        /// longer one is counted once.
        #[test]
        fn lines_do_not_depend_on_the_reads(
            lines in proptest::collection::vec("[a-z]{0,12}\r?", 0..40),
            cuts in proptest::collection::vec(1usize..20, 1..8),
        ) {
            let max = 8;
            let mut data = Vec::new();
            let mut want = Vec::new();
            let mut oversize = 0;
            for l in &lines {
                data.extend_from_slice(l.as_bytes());
                data.push(b'\n');
                let text = l.trim_end_matches('\r');
                if text.len() > max {
                    oversize += 1;
                } else if !text.is_empty() {
                    want.push((text.as_bytes().to_vec(), data.len() as u64));
                }
            }
            let mut l = Lines { pending: BytesMut::new(), base: 0, discarding: false, oversize: 0 };
            let mut out = Vec::new();
            let (mut at, mut i) = (0, 0);
            while at < data.len() {
                let n = cuts[i % cuts.len()].min(data.len() - at);
                l.pending.extend_from_slice(&data[at..at + n]);
                split(&mut l, max, None, &mut out);
                at += n;
                i += 1;
            }
            let got: Vec<(Vec<u8>, u64)> = out.into_iter().map(|j| (j.text, j.end)).collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(l.oversize, oversize);
            proptest::prop_assert_eq!(l.base + l.pending.len() as u64, data.len() as u64);
        }
    }
}
