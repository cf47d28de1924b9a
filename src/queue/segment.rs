//! Segment files: `<queue dir>/<id, 20 digits>.seg`, frames appended one
//! after another. Scanning walks them frame by frame with one reusable
//! buffer, so recovery and verification use memory bounded by the largest
//! frame, not by the queue.
//!
//! Damage is skipped, not fatal: after bytes that cannot be framed the scan
//! searches forward for the next intact frame (a plausible header whose CRC
//! matches) and carries on from there, so one bad sector costs the records
//! in it and no more.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, HEADER, Header};

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Ids of the segments in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What scanning found at one place in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// A frame whose CRC matches.
    Frame { offset: u64, header: Header },
    /// A frame whose CRC does not match but whose length is borne out by
    /// what follows it: its `header.count` events are lost.
    Corrupt { offset: u64, header: Header },
    /// Bytes from `offset` to `end` hold no intact frame. `end` is where the
    /// next intact frame starts, or the file's length (a torn write, when
    /// it is at the end of the newest segment).
    Unreadable { offset: u64, end: u64 },
}

/// Walk the frames of `file` (of `len` bytes) from `from`, calling `visit`
/// for each; `visit` returns false to stop. `buf` is reused for frame bytes.
pub fn scan(
    file: &File,
    len: u64,
    from: u64,
    buf: &mut Vec<u8>,
    mut visit: impl FnMut(Scanned, &[u8]) -> bool,
) -> io::Result<()> {
    let mut offset = from;
    while offset < len {
        let Some(h) = plausible(file, len, offset)? else {
            let end = resync(file, len, offset + 1, buf)?;
            if !visit(Scanned::Unreadable { offset, end }, &[]) {
                return Ok(());
            }
            offset = end;
            continue;
        };
        buf.resize(h.frame_len, 0);
        file.read_exact_at(buf, offset)?;
        let next = offset + h.frame_len as u64;
        if frame::crc_ok(buf, &h) {
            if !visit(Scanned::Frame { offset, header: h }, buf) {
                return Ok(());
            }
            offset = next;
            continue;
        }
        if next == len || plausible(file, len, next)?.is_some() {
            if !visit(Scanned::Corrupt { offset, header: h }, buf) {
                return Ok(());
            }
            offset = next;
        } else {
            // The length itself is damaged: find where frames resume.
            let end = resync(file, len, offset + 1, buf)?;
            if !visit(Scanned::Unreadable { offset, end }, &[]) {
                return Ok(());
            }
            offset = end;
        }
    }
    Ok(())
}

/// The header at `offset` if it could start a frame that fits in the file.
fn plausible(file: &File, len: u64, offset: u64) -> io::Result<Option<Header>> {
    if len.saturating_sub(offset) < HEADER as u64 {
        return Ok(None);
    }
    let mut head = [0u8; HEADER];
    file.read_exact_at(&mut head, offset)?;
    Ok(frame::header(&head).filter(|h| plausible_header(h, len - offset)))
}

fn plausible_header(h: &Header, room: u64) -> bool {
    h.frame_len as u64 <= room && h.count > 0 && h.flags & !frame::KNOWN_FLAGS == 0
}

/// The offset of the first intact frame at or after `from`, or `len`.
fn resync(file: &File, len: u64, from: u64, buf: &mut Vec<u8>) -> io::Result<u64> {
    const WINDOW: usize = 64 << 10;
    let mut window = vec![0u8; WINDOW + HEADER];
    let mut base = from;
    while base < len {
        let n = ((len - base) as usize).min(window.len());
        file.read_exact_at(&mut window[..n], base)?;
        let last = n.saturating_sub(HEADER - 1).min(WINDOW);
        for i in 0..last {
            let Some(h) = frame::header(&window[i..]) else {
                continue;
            };
            let at = base + i as u64;
            if !plausible_header(&h, len - at) {
                continue;
            }
            buf.resize(h.frame_len, 0);
            file.read_exact_at(buf, at)?;
            if frame::crc_ok(buf, &h) {
                return Ok(at);
            }
        }
        if n < window.len() {
            break;
        }
        base += WINDOW as u64;
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use bytes::Bytes;

    fn segment(frames: usize) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..frames {
            offsets.push(out.len() as u64);
            let events = vec![Event::json(Bytes::from(format!("{{\"i\":{i}}}")))];
            frame::encode(&events, false, 1, &mut out);
        }
        (out, offsets)
    }

    fn scan_bytes(bytes: &[u8]) -> Vec<Scanned> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, bytes).unwrap();
        let f = File::open(&p).unwrap();
        let mut found = Vec::new();
        scan(&f, bytes.len() as u64, 0, &mut Vec::new(), |s, _| {
            found.push(s);
            true
        })
        .unwrap();
        found
    }

    #[test]
    fn a_damaged_length_costs_only_its_own_frame() {
        let (mut bytes, offsets) = segment(5);
        // Make frame 2 claim to run far past frame 3.
        bytes[offsets[2] as usize] = 0xf0;
        let found = scan_bytes(&bytes);
        let frames: Vec<u64> = found
            .iter()
            .filter_map(|s| match s {
                Scanned::Frame { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect();
        assert_eq!(frames, vec![offsets[0], offsets[1], offsets[3], offsets[4]]);
        assert!(found.contains(&Scanned::Unreadable {
            offset: offsets[2],
            end: offsets[3]
        }));
    }

    #[test]
    fn a_damaged_payload_is_corrupt_with_its_count() {
        let (mut bytes, offsets) = segment(3);
        bytes[offsets[1] as usize + HEADER + 2] ^= 1;
        let found = scan_bytes(&bytes);
        assert!(matches!(found[1], Scanned::Corrupt { header, .. } if header.count == 1));
        assert!(matches!(found[2], Scanned::Frame { .. }));
    }

    #[test]
    fn a_torn_tail_is_unreadable_to_the_end() {
        let (bytes, offsets) = segment(3);
        let cut = &bytes[..bytes.len() - 3];
        let found = scan_bytes(cut);
        assert_eq!(
            found.last(),
            Some(&Scanned::Unreadable {
                offset: offsets[2],
                end: cut.len() as u64
            })
        );
    }
}
