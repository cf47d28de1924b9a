//! The acknowledged position: everything before it has been delivered (or
//! dropped and counted) and need not be read again.
//!
//! Two 32-byte slots written alternately, each with a sequence number and a
//! CRC32C. A commit overwrites the older slot and (when durability asks for
//! it) syncs with one `fdatasync`; a write torn by a crash leaves the other
//! slot intact, so the ledger always reads back as the last or the previous
//! commit. Re-reading from the previous commit repeats at most one batch.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT: usize = 32;
const MAGIC: u32 = 0x534c_4451; // "SLDQ"

/// A place in the queue: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

pub struct Ledger {
    file: File,
    seq: u64,
}

fn encode(seq: u64, p: Position) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..12].copy_from_slice(&seq.to_le_bytes());
    b[12..20].copy_from_slice(&p.segment.to_le_bytes());
    b[20..28].copy_from_slice(&p.offset.to_le_bytes());
    let crc = crc32c::crc32c(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, Position)> {
    let b: &[u8; SLOT] = b.try_into().ok()?;
    let field = |r: std::ops::Range<usize>| -> Option<u64> {
        Some(u64::from_le_bytes(b[r].try_into().ok()?))
    };
    if u32::from_le_bytes(b[0..4].try_into().ok()?) != MAGIC {
        return None;
    }
    if crc32c::crc32c(&b[..28]) != u32::from_le_bytes(b[28..32].try_into().ok()?) {
        return None;
    }
    Some((
        field(4..12)?,
        Position {
            segment: field(12..20)?,
            offset: field(20..28)?,
        },
    ))
}

impl Ledger {
    /// Open (or create) the ledger; `None` position if it has never been
    /// written or both slots are damaged.
    pub fn open(path: &Path) -> io::Result<(Ledger, Option<Position>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = [0u8; SLOT * 2];
        let n = file.read_at(&mut buf, 0)?;
        let slots = [
            decode(buf.get(..SLOT.min(n)).unwrap_or(&[])),
            decode(buf.get(SLOT..(2 * SLOT).min(n.max(SLOT))).unwrap_or(&[])),
        ];
        let best = slots.into_iter().flatten().max_by_key(|(seq, _)| *seq);
        Ok(match best {
            Some((seq, pos)) => (Ledger { file, seq }, Some(pos)),
            None => (Ledger { file, seq: 0 }, None),
        })
    }

    /// Record `pos` as acknowledged; `sync` makes it durable before returning.
    pub fn commit(&mut self, pos: Position, sync: bool) -> io::Result<()> {
        self.seq += 1;
        let slot = (self.seq % 2) * SLOT as u64;
        self.file.write_all_at(&encode(self.seq, pos), slot)?;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Read the acknowledged position without opening for writing (for
/// `sluice queue inspect`, which must not disturb a running queue).
pub fn peek(path: &Path) -> io::Result<Option<Position>> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let slot = |r: std::ops::Range<usize>| buf.get(r).and_then(decode);
    Ok([slot(0..SLOT), slot(SLOT..2 * SLOT)]
        .into_iter()
        .flatten()
        .max_by_key(|(seq, _)| *seq)
        .map(|(_, p)| p))
}

impl Ledger {
    /// Make the last commit durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_torn_slot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let (mut l, p) = Ledger::open(&path).unwrap();
        assert_eq!(p, None);
        for i in 1..=5 {
            l.commit(
                Position {
                    segment: 1,
                    offset: i * 100,
                },
                true,
            )
            .unwrap();
        }
        drop(l);
        let (_, p) = Ledger::open(&path).unwrap();
        assert_eq!(
            p,
            Some(Position {
                segment: 1,
                offset: 500
            })
        );
        // Tear the newest slot (seq 5 is in slot 1): the previous commit wins.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 7], SLOT as u64 + 10).unwrap();
        let (mut l, p) = Ledger::open(&path).unwrap();
        assert_eq!(
            p,
            Some(Position {
                segment: 1,
                offset: 400
            })
        );
        // And it carries on from there.
        l.commit(
            Position {
                segment: 2,
                offset: 0,
            },
            false,
        )
        .unwrap();
        let (_, p) = Ledger::open(&path).unwrap();
        assert_eq!(
            p,
            Some(Position {
                segment: 2,
                offset: 0
            })
        );
    }
}
