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
    /// Each frame by its first byte, as rsyslog and syslog-ng receive: a
    /// frame that starts `DIGITS SP` is octet-counted, anything else is a
    /// line. One connection may mix both.
    Auto,
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
            Framing::Auto => {
                self.drain_auto(out, rejects);
                Ok(())
            }
        }
    }

    /// `Framing::Auto`. Never fails: a frame that is not octet-counted is a line.
    fn drain_auto(&mut self, out: &mut Vec<Event>, rejects: &mut Rejects) {
        loop {
            if self.octet != Octet::Header {
                if !self.octet_body(out, rejects) {
                    return;
                }
                continue;
            }
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
            let skip = self
                .buf
                .iter()
                .take_while(|c| matches!(c, b'\n' | b'\r'))
                .count();
            self.buf.advance(skip);
            if self.buf.is_empty() {
                return;
            }
            let digits = self
                .buf
                .iter()
                .take(MAX_HEADER)
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits > 0 && digits < MAX_HEADER {
                match self.buf.get(digits) {
                    // Not yet known whether this is a length.
                    None => return,
                    Some(b' ') => {
                        let len = self.buf[..digits]
                            .iter()
                            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                        self.buf.advance(digits + 1);
                        self.octet = if len > self.max_line {
                            rejects.oversize += 1;
                            Octet::Skip(len)
                        } else {
                            Octet::Body(len)
                        };
                        continue;
                    }
                    Some(_) => {}
                }
            }
            match memchr(b'\n', &self.buf) {
                Some(i) => {
                    let mut line = self.buf.split_to(i + 1).freeze();
                    line.truncate(i);
                    push_line(line, self.max_line, self.decoding, out, rejects);
                }
                None => {
                    let pending = self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'));
                    if pending > self.max_line {
                        rejects.oversize += 1;
                        self.discarding = true;
                        self.buf.clear();
                    }
                    return;
                }
            }
        }
    }

    /// One step inside an octet-counted frame (its body, or an oversize
    /// one being skipped). False: more bytes are needed.
    fn octet_body(&mut self, out: &mut Vec<Event>, rejects: &mut Rejects) -> bool {
        match self.octet {
            Octet::Header => true,
            Octet::Body(len) => {
                if self.buf.len() < len {
                    return false;
                }
                let event = self.buf.split_to(len).freeze();
                if !event.is_empty() {
                    match self.decoding.decode(event) {
                        Ok(e) => out.push(e),
                        Err(r) => rejects.count(r),
                    }
                }
                self.octet = Octet::Header;
                true
            }
            Octet::Skip(left) => {
                let n = left.min(self.buf.len());
                self.buf.advance(n);
                if n < left {
                    self.octet = Octet::Skip(left - n);
                    return false;
                }
                self.octet = Octet::Header;
                true
            }
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
                Octet::Body(_) | Octet::Skip(_) => {
                    if !self.octet_body(out, rejects) {
                        return Ok(());
                    }
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
            Framing::Auto => {
                if matches!(self.octet, Octet::Body(_)) {
                    rejects.malformed += 1;
                } else if self.octet == Octet::Header && !self.discarding && !self.buf.is_empty() {
                    // Digits that never became a length: a last line.
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
    reader: impl AsyncRead + Unpin,
    framing: Framing,
    max_line: usize,
    decoding: Decoding,
    ctx: &SourceContext,
) -> Option<String> {
    pump_shaped(reader, framing, max_line, decoding, ctx, |_| {}).await
}

/// `pump`, with `shape` turning each read's framed events into what the
/// source emits (the syslog source parses them) before they are routed.
pub async fn pump_shaped(
    mut reader: impl AsyncRead + Unpin,
    framing: Framing,
    max_line: usize,
    decoding: Decoding,
    ctx: &SourceContext,
    mut shape: impl FnMut(&mut Vec<Event>),
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
                shape(&mut events);
                let _ = ctx.send_all(&mut events).await;
                return Some(format!("read failed: {e}"));
            }
        };
        if let Err(FramingError(why)) = &framed {
            rejects.malformed += 1;
            rejects.report(&ctx.metrics);
            shape(&mut events);
            let _ = ctx.send_all(&mut events).await;
            return Some(why.clone());
        }
        rejects.report(&ctx.metrics);
        shape(&mut events);
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

    #[test]
    fn auto_framing_mixes_octet_counted_frames_and_lines() {
        for split in 1..=12 {
            let mut f = Framer::new(Framing::Auto, 20, Decoding::Text);
            let (mut out, mut rej) = (Vec::new(), Rejects::default());
            let data =
                b"<13>a line\r\n10 <13>two\nok2024-01-01 x\n25 <13>too long for the limi<14>last";
            for piece in data.chunks(split) {
                feed(&mut f, piece, &mut out, &mut rej);
            }
            f.finish(&mut out, &mut rej).unwrap();
            assert_eq!(
                texts(&out),
                vec!["<13>a line", "<13>two\nok", "2024-01-01 x", "<14>last"],
                "reads of {split}"
            );
            assert_eq!((rej.oversize, rej.malformed), (1, 0), "reads of {split}");
        }
    }

    proptest::proptest! {
        /// Whatever frames a sender mixes and however the reads cut them,
        /// auto framing gives back exactly the events sent.
        #[test]
        fn auto_framing_is_independent_of_the_reads(
            frames in proptest::collection::vec(
                (proptest::bool::ANY, "<[0-9]{1,3}>[ -~]{0,30}", "[ -~\n]{0,30}"), 0..20),
            cuts in proptest::collection::vec(1usize..40, 1..10),
        ) {
            let mut data = Vec::new();
            let mut want = Vec::new();
            for (octet, head, tail) in &frames {
                if *octet {
                    let body = format!("{head}{tail}");
                    data.extend_from_slice(format!("{} {body}", body.len()).as_bytes());
                    want.push(body);
                } else {
                    data.extend_from_slice(format!("{head}\n").as_bytes());
                    want.push(head.trim_end_matches('\r').to_string());
                }
            }
            let mut f = Framer::new(Framing::Auto, 1000, Decoding::Text);
            let (mut out, mut rej) = (Vec::new(), Rejects::default());
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                feed(&mut f, &rest[..n], &mut out, &mut rej);
                rest = &rest[n..];
                i += 1;
            }
            f.finish(&mut out, &mut rej).unwrap();
            let want: Vec<String> = want.into_iter().filter(|w| !w.is_empty()).collect();
            proptest::prop_assert_eq!(texts(&out), want);
            proptest::prop_assert_eq!(rej, Rejects::default());
        }
    }
}
