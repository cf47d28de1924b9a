//! Newline framing over a byte stream, shared by the tcp and stdin sources
//! (and by udp, per datagram).
//!
//! Lines are slices of the read buffer (`Bytes::slice`): no copy and no
//! allocation per event. A line longer than `max_line_bytes` is discarded up to
//! its newline and counted; it never grows the buffer without bound and never
//! ends the connection.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr_iter, memrchr};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SourceContext;
use super::decoding::Decoding;
use crate::event::Event;
use crate::metrics::RejectReason;

/// How much to ask the socket for per read.
pub const READ_SIZE: usize = 64 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rejects {
    pub oversize: u64,
    pub malformed: u64,
}

impl Rejects {
    pub fn count(&mut self, r: RejectReason) {
        match r {
            RejectReason::Oversize => self.oversize += 1,
            _ => self.malformed += 1,
        }
    }

    pub fn report(&mut self, m: &crate::metrics::SourceMetrics) {
        m.reject(RejectReason::Oversize, self.oversize);
        m.reject(RejectReason::Malformed, self.malformed);
        *self = Rejects::default();
    }
}

pub struct LineFramer {
    buf: BytesMut,
    max_line: usize,
    decoding: Decoding,
    /// Inside an oversize line: drop bytes until the next newline.
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_line: usize, decoding: Decoding) -> Self {
        LineFramer {
            buf: BytesMut::with_capacity(READ_SIZE),
            max_line: max_line.max(1),
            decoding,
            discarding: false,
        }
    }

    /// The buffer to read into; make sure it has room first.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        &mut self.buf
    }

    /// Move every complete line out of the buffer into `out`.
    pub fn drain(&mut self, out: &mut Vec<Event>, rejects: &mut Rejects) {
        if self.discarding {
            match memchr(b'\n', &self.buf) {
                Some(i) => {
                    self.buf.advance(i + 1);
                    self.discarding = false;
                }
                None => {
                    self.buf.clear();
                    return;
                }
            }
        }
        if let Some(last) = memrchr(b'\n', &self.buf) {
            let chunk = self.buf.split_to(last + 1).freeze();
            split_lines(&chunk, self.max_line, self.decoding, out, rejects);
        }
        if self.buf.len() > self.max_line {
            // The line in progress is already too long: count it once, skip the rest.
            rejects.oversize += 1;
            self.discarding = true;
            self.buf.clear();
        }
    }

    /// End of stream: a last line without a newline is still an event.
    pub fn finish(&mut self, out: &mut Vec<Event>, rejects: &mut Rejects) {
        self.drain(out, rejects);
        if !self.discarding && !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            push_line(rest, self.max_line, self.decoding, out, rejects);
        }
        self.buf.clear();
        self.discarding = false;
    }
}

/// Read `reader` to its end (or until shutdown), framing lines and routing
/// them. While the router waits for room, nothing is read: that is how a
/// stream source pushes back. Returns the read error, if one ended it.
pub async fn pump(
    mut reader: impl AsyncRead + Unpin,
    max_line: usize,
    decoding: Decoding,
    ctx: &SourceContext,
) -> Option<std::io::Error> {
    let mut framer = LineFramer::new(max_line, decoding);
    let mut events = Vec::new();
    let mut rejects = Rejects::default();
    loop {
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            r = reader.read_buf(framer.read_buf()) => r,
        };
        let (eof, error) = match read {
            Ok(0) => {
                framer.finish(&mut events, &mut rejects);
                (true, None)
            }
            Ok(_) => {
                framer.drain(&mut events, &mut rejects);
                (false, None)
            }
            Err(e) => (true, Some(e)),
        };
        rejects.report(&ctx.metrics);
        if ctx.send_all(&mut events).await.is_err() || eof {
            return error;
        }
    }
}

/// Split a chunk that ends with a newline (or a whole datagram) into events.
pub fn split_lines(
    chunk: &Bytes,
    max_line: usize,
    decoding: Decoding,
    out: &mut Vec<Event>,
    rejects: &mut Rejects,
) {
    let mut start = 0;
    for nl in memchr_iter(b'\n', chunk) {
        push_line(chunk.slice(start..nl), max_line, decoding, out, rejects);
        start = nl + 1;
    }
    if start < chunk.len() {
        push_line(chunk.slice(start..), max_line, decoding, out, rejects);
    }
}

#[inline]
fn push_line(
    mut line: Bytes,
    max_line: usize,
    decoding: Decoding,
    out: &mut Vec<Event>,
    rejects: &mut Rejects,
) {
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    if line.is_empty() {
        return;
    }
    if line.len() > max_line {
        rejects.oversize += 1;
        return;
    }
    match decoding.decode(line) {
        Ok(e) => out.push(e),
        Err(r) => rejects.count(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn feed(f: &mut LineFramer, data: &[u8], out: &mut Vec<Event>, rej: &mut Rejects) {
        f.read_buf().put_slice(data);
        f.drain(out, rej);
    }

    fn texts(out: &[Event]) -> Vec<String> {
        out.iter()
            .map(|e| String::from_utf8(e.raw.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn frames_across_reads_and_skips_oversize() {
        let mut f = LineFramer::new(10, Decoding::Auto);
        let mut out = Vec::new();
        let mut rej = Rejects::default();
        feed(&mut f, b"one\r\ntw", &mut out, &mut rej);
        feed(&mut f, b"o\n\nthis line is too long", &mut out, &mut rej);
        assert_eq!(rej.oversize, 1);
        feed(
            &mut f,
            b" and continues\nthree\nfour-is-way-too-long\nfive",
            &mut out,
            &mut rej,
        );
        f.finish(&mut out, &mut rej);
        assert_eq!(texts(&out), vec!["one", "two", "three", "five"]);
        assert_eq!(rej.oversize, 2);
    }

    #[test]
    fn json_decoding_rejects_malformed() {
        let mut f = LineFramer::new(100, Decoding::Json);
        let mut out = Vec::new();
        let mut rej = Rejects::default();
        feed(&mut f, b"{\"a\":1}\n{bad\n[1,2]\n", &mut out, &mut rej);
        assert_eq!(texts(&out), vec!["{\"a\":1}", "[1,2]"]);
        assert_eq!(rej.malformed, 1);
    }
}
