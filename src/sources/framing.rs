//! Framing of a byte stream into events, shared by the tcp and stdin sources
//! (and, for newlines, by udp per datagram):
//!
//! - `newline`: one event per line (`\n`, with an optional `\r` before it).
//! - `octet_counting` (RFC 6587, as rsyslog and syslog-ng send it):
//!   `LENGTH SP EVENT`, so events may contain newlines.
//!
//! Events are slices of the read buffer (`Bytes::slice`): no copy and no
//! allocation per event. An event longer than `max_line_bytes` is skipped
//! and counted (`reason="oversize"`); it never grows the buffer without
//! bound and never ends the connection. An octet-counting header that is not
//! a number cannot be resynchronised: it is counted as malformed and the
//! connection is closed.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr_iter, memrchr};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::SourceContext;
use super::decoding::Decoding;
use crate::event::Event;
use crate::metrics::RejectReason;

/// How much to ask the socket for per read.
pub const READ_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// One event per line.
    #[default]
    Newline,
    /// RFC 6587 octet counting: `LENGTH SP EVENT`.
    OctetCounting,
}

/// The stream cannot be framed any further (a bad octet-counting header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

/// Octet-counting position in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Octet {
    Header,
    Body(usize),
    /// Inside an oversize event: bytes left to drop.
    Skip(usize),
}

/// Longest octet-counting header accepted (a length of up to 10 digits).
const MAX_HEADER: usize = 11;

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

pub struct Framer {
    buf: BytesMut,
    framing: Framing,
    max_line: usize,
    decoding: Decoding,
    /// Inside an oversize line: drop bytes until the next newline.
    discarding: bool,
    octet: Octet,
}

impl Framer {
    pub fn new(framing: Framing, max_line: usize, decoding: Decoding) -> Self {
        Framer {
            buf: BytesMut::with_capacity(READ_SIZE),
            framing,
            max_line: max_line.max(1),
            decoding,
            discarding: false,
            octet: Octet::Header,
        }
    }

    /// The buffer to read into; make sure it has room first.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        &mut self.buf
    }

    /// Move every complete event out of the buffer into `out`.
    pub fn drain(
        &mut self,
        out: &mut Vec<Event>,
        rejects: &mut Rejects,
    ) -> Result<(), FramingError> {
        match self.framing {
            Framing::Newline => {
                self.drain_lines(out, rejects);
                Ok(())
            }
            Framing::OctetCounting => self.drain_octets(out, rejects),
        }
    }

    fn drain_octets(
        &mut self,
        out: &mut Vec<Event>,
        rejects: &mut Rejects,
    ) -> Result<(), FramingError> {
        loop {
            match self.octet {
                Octet::Header => {
                    // Tolerate line breaks between frames (some senders add them).
                    let skip = self
                        .buf
                        .iter()
                        .take_while(|c| matches!(c, b'\n' | b'\r'))
                        .count();
                    self.buf.advance(skip);
                    let Some(sp) = memchr(b' ', &self.buf[..self.buf.len().min(MAX_HEADER + 1)])
                    else {
                        if self.buf.len() > MAX_HEADER {
                            return Err(FramingError(
                                "octet-counting header is not a length".into(),
                            ));
                        }
                        return Ok(());
                    };
                    let header = &self.buf[..sp];
                    let len = std::str::from_utf8(header)
                        .ok()
                        .filter(|h| !h.is_empty() && h.bytes().all(|c| c.is_ascii_digit()))
                        .and_then(|h| h.parse::<usize>().ok())
                        .ok_or_else(|| {
                            FramingError(format!(
                                "octet-counting header `{}` is not a length",
                                String::from_utf8_lossy(header)
                            ))
                        })?;
                    self.buf.advance(sp + 1);
                    self.octet = if len > self.max_line {
                        rejects.oversize += 1;
                        Octet::Skip(len)
                    } else {
                        Octet::Body(len)
                    };
                }
                Octet::Body(len) => {
                    if self.buf.len() < len {
                        return Ok(());
                    }
                    let event = self.buf.split_to(len).freeze();
                    if !event.is_empty() {
                        match self.decoding.decode(event) {
                            Ok(e) => out.push(e),
                            Err(r) => rejects.count(r),
                        }
                    }
                    self.octet = Octet::Header;
                }
                Octet::Skip(left) => {
                    let n = left.min(self.buf.len());
                    self.buf.advance(n);
                    if n < left {
                        self.octet = Octet::Skip(left - n);
                        return Ok(());
                    }
                    self.octet = Octet::Header;
                }
            }
        }
    }

    fn drain_lines(&mut self, out: &mut Vec<Event>, rejects: &mut Rejects) {
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
        // A trailing `\r` may be the CRLF's, not the line's (found by the
        // fuzzer: a line of exactly `max_line` bytes plus CR was dropped
        // when its newline came in a later read, kept when in the same one).
        let pending = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
        if pending > self.max_line {
            // The line in progress is already too long: count it once, skip the rest.
            rejects.oversize += 1;
            self.discarding = true;
            self.buf.clear();
        }
    }

    /// End of stream: a last line without a newline is still an event; a
    /// truncated octet-counted frame is counted as malformed.
    pub fn finish(
        &mut self,
        out: &mut Vec<Event>,
        rejects: &mut Rejects,
    ) -> Result<(), FramingError> {
        self.drain(out, rejects)?;
        match self.framing {
            Framing::Newline => {
                if !self.discarding && !self.buf.is_empty() {
                    let rest = self.buf.split().freeze();
                    push_line(rest, self.max_line, self.decoding, out, rejects);
                }
            }
            Framing::OctetCounting => {
                let rest = self.buf.iter().any(|c| !matches!(c, b'\n' | b'\r'));
                if matches!(self.octet, Octet::Body(_)) || (self.octet == Octet::Header && rest) {
                    rejects.malformed += 1;
                }
            }
        }
        self.buf.clear();
        self.discarding = false;
        self.octet = Octet::Header;
        Ok(())
    }
}

/// Read `reader` to its end (or until shutdown), framing events and routing
/// them. While the router waits for room, nothing is read: that is how a
/// stream source pushes back. Returns why it stopped early, if it did.
pub async fn pump(
    mut reader: impl AsyncRead + Unpin,
    framing: Framing,
    max_line: usize,
    decoding: Decoding,
    ctx: &SourceContext,
) -> Option<String> {
    let mut framer = Framer::new(framing, max_line, decoding);
    let mut events = Vec::new();
    let mut rejects = Rejects::default();
    loop {
        let read = tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            r = reader.read_buf(framer.read_buf()) => r,
        };
        let (eof, framed) = match read {
            Ok(0) => (true, framer.finish(&mut events, &mut rejects)),
            Ok(_) => (false, framer.drain(&mut events, &mut rejects)),
            Err(e) => {
                rejects.report(&ctx.metrics);
                let _ = ctx.send_all(&mut events).await;
                return Some(format!("read failed: {e}"));
            }
        };
        if let Err(FramingError(why)) = &framed {
            rejects.malformed += 1;
            rejects.report(&ctx.metrics);
            let _ = ctx.send_all(&mut events).await;
            return Some(why.clone());
        }
        rejects.report(&ctx.metrics);
        if ctx.send_all(&mut events).await.is_err() || eof {
            return None;
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

    fn feed(f: &mut Framer, data: &[u8], out: &mut Vec<Event>, rej: &mut Rejects) {
        f.read_buf().put_slice(data);
        f.drain(out, rej).unwrap();
    }

    fn texts(out: &[Event]) -> Vec<String> {
        out.iter()
            .map(|e| String::from_utf8(e.raw.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_line_at_the_limit_ending_in_crlf_does_not_depend_on_the_reads() {
        for split in 1..=9 {
            let mut f = Framer::new(Framing::Newline, 7, Decoding::Text);
            let (mut out, mut rej) = (Vec::new(), Rejects::default());
            let data = b"abcdefg\r\nx\n";
            for piece in data.chunks(split) {
                feed(&mut f, piece, &mut out, &mut rej);
            }
            f.finish(&mut out, &mut rej).unwrap();
            assert_eq!(texts(&out), vec!["abcdefg", "x"], "reads of {split}");
            assert_eq!(rej.oversize, 0);
        }
    }

    #[test]
    fn frames_across_reads_and_skips_oversize() {
        let mut f = Framer::new(Framing::Newline, 10, Decoding::Auto);
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
        f.finish(&mut out, &mut rej).unwrap();
        assert_eq!(texts(&out), vec!["one", "two", "three", "five"]);
        assert_eq!(rej.oversize, 2);
    }

    #[test]
    fn octet_counting_frames_across_reads_skips_oversize_and_rejects_garbage() {
        let mut f = Framer::new(Framing::OctetCounting, 10, Decoding::Text);
        let mut out = Vec::new();
        let mut rej = Rejects::default();
        feed(&mut f, b"5 a\nb\nc11 xx", &mut out, &mut rej);
        feed(&mut f, b"xxxxxxxxx3 end\n4 tail", &mut out, &mut rej);
        assert_eq!(texts(&out), vec!["a\nb\nc", "end", "tail"]);
        assert_eq!(rej.oversize, 1);
        f.read_buf().put_slice(b"9 trunc");
        f.finish(&mut out, &mut rej).unwrap();
        assert_eq!(rej.malformed, 1, "a truncated frame is malformed");
        let mut f = Framer::new(Framing::OctetCounting, 10, Decoding::Text);
        f.read_buf().put_slice(b"<13>Nov 22 plain syslog line\n");
        assert!(f.drain(&mut out, &mut rej).is_err());
    }

    #[test]
    fn json_decoding_rejects_malformed() {
        let mut f = Framer::new(Framing::Newline, 100, Decoding::Json);
        let mut out = Vec::new();
        let mut rej = Rejects::default();
        feed(&mut f, b"{\"a\":1}\n{bad\n[1,2]\n", &mut out, &mut rej);
        assert_eq!(texts(&out), vec!["{\"a\":1}", "[1,2]"]);
        assert_eq!(rej.malformed, 1);
    }
}
