//! Request body compression (`compression: none | gzip | zstd`; Kafka also
//! takes `snappy` and `lz4`, which librdkafka applies itself).

use std::cell::RefCell;
use std::io::{Read, Write};

use bytes::Bytes;
use serde::Deserialize;

use super::buffer_pool::{self, BufferPool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    /// gzip at level 6, the level Vector and Cribl use.
    Gzip,
    /// zstd at level 3, zstd's own default.
    Zstd,
    /// Kafka only: librdkafka compresses its record batches itself.
    Snappy,
    /// Kafka only, as `Snappy`.
    Lz4,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy | Compression::Lz4 => None,
        }
    }

    /// Decompress at most `max` bytes: more is `TooLarge`, so a zip bomb
    /// stops there. `None` passes the data through (still limited). The
    /// result lives in a recycled buffer (`buffer_pool`), back for the next
    /// request once every slice of it is dropped.
    pub fn decompress(self, data: &[u8], max: usize) -> Result<Bytes, Inflate> {
        self.decompress_in(data, max, &buffer_pool::BODIES)
    }

    fn decompress_in(
        self,
        data: &[u8],
        max: usize,
        pool: &'static BufferPool,
    ) -> Result<Bytes, Inflate> {
        fn limited(r: impl Read, max: usize, mut out: Vec<u8>) -> Result<Vec<u8>, Inflate> {
            out.clear();
            r.take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(Inflate::Invalid)?;
            if out.len() > max {
                return Err(Inflate::TooLarge);
            }
            Ok(out)
        }
        let out = match self {
            Compression::None => limited(data, max, pool.take(data.len().min(max))),
            Compression::Gzip => limited(
                flate2::read::MultiGzDecoder::new(data),
                max,
                pool.take(data.len().saturating_mul(4).min(max)),
            ),
            Compression::Zstd => match zstd_whole(data, max, pool) {
                Ok(out) => Ok(out),
                Err(out) => limited(
                    zstd::stream::read::Decoder::new(data).map_err(Inflate::Invalid)?,
                    max,
                    out,
                ),
            },
            Compression::Snappy | Compression::Lz4 => Err(Inflate::Invalid(std::io::Error::other(
                format!("{} is not a body compression", self.as_str()),
            ))),
        }?;
        Ok(pool.share(out))
    }

    pub fn compress(self, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data),
            _ => self.compress_into(&data, Vec::new()),
        }
    }

    /// `data` (a buffer from `pool`) as a request body: compressed into
    /// another buffer from `pool`, `data`'s going back there; both come back
    /// for the next batch once the request drops instead of being freed
    /// (the page faults `buffer_pool` explains).
    pub fn pack(self, data: Vec<u8>, pool: &'static BufferPool) -> std::io::Result<Bytes> {
        if self == Compression::None {
            return Ok(pool.share(data));
        }
        let packed = self.compress_into(&data, pool.take(self.room(data.len())));
        pool.recycle(data);
        packed.map(|p| pool.share(p))
    }

    /// Room to compress `n` bytes into: zstd's bound (into less it may
    /// fail); for gzip a quarter, grown as it is written (text compresses
    /// to less).
    fn room(self, n: usize) -> usize {
        match self {
            Compression::Zstd => zstd::zstd_safe::compress_bound(n),
            Compression::Gzip => n / 4,
            _ => n,
        }
    }

    /// `data` compressed into `out`, whose contents it replaces.
    fn compress_into(self, data: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
        out.clear();
        out.reserve(self.room(data.len()));
        match self {
            Compression::None => {
                out.extend_from_slice(data);
                Ok(out)
            }
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::new(6));
                enc.write_all(data)?;
                enc.finish()
            }
            Compression::Zstd => ZSTD.with(|z| {
                let mut z = z.borrow_mut();
                let mut c = match z.0.take() {
                    Some(c) => c,
                    None => zstd::bulk::Compressor::new(3)?,
                };
                let written = c.compress_to_buffer(data, &mut out);
                z.0 = Some(c);
                written.map(|_| out)
            }),
            // Refused by every destination type but Kafka, which does not
            // compress through here.
            Compression::Snappy | Compression::Lz4 => Err(std::io::Error::other(format!(
                "{} compression is applied by the Kafka client only",
                self.as_str()
            ))),
        }
    }
}

thread_local! {
    /// zstd's contexts, kept per thread: making one per request allocated
    /// and initialised several hundred KB each time (3–4 % of each side's
    /// CPU when forwarding between sluices, and its page faults).
    static ZSTD: RefCell<(
        Option<zstd::bulk::Compressor<'static>>,
        Option<zstd::bulk::Decompressor<'static>>,
    )> = const { RefCell::new((None, None)) };
}

/// A zstd frame that declares its size, within `max`, decompressed in one
/// call on this thread's context into a buffer from `pool`. `Err` hands the
/// buffer back for the streaming path, which reads anything else (no size
/// declared, several frames, a size that lies) within `max` as before.
fn zstd_whole(data: &[u8], max: usize, pool: &BufferPool) -> Result<Vec<u8>, Vec<u8>> {
    let size = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(size)) if size <= max as u64 => size as usize,
        _ => return Err(pool.take(0)),
    };
    let mut out = pool.take(size);
    ZSTD.with(|z| {
        let mut z = z.borrow_mut();
        let mut d = match z.1.take() {
            Some(d) => d,
            None => match zstd::bulk::Decompressor::new() {
                Ok(d) => d,
                Err(_) => return Err(out),
            },
        };
        out.clear();
        let done = d.decompress_to_buffer(data, &mut out);
        z.1 = Some(d);
        // A recycled buffer may hold more than the first frame declared:
        // only an output of exactly that size is that frame alone (or with
        // empty frames after it); anything else is the streaming path's to
        // read within `max`.
        match done {
            Ok(n) if n == size => Ok(out),
            _ => Err(out),
        }
    })
}

/// Why data did not decompress.
#[derive(Debug)]
pub enum Inflate {
    /// Not valid data of that compression.
    Invalid(std::io::Error),
    /// Larger than allowed once decompressed.
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data = b"hello hello hello hello\n".repeat(100);
        let gz = Compression::Gzip.compress(data.clone()).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let zs = Compression::Zstd.compress(data.clone()).unwrap();
        assert_eq!(zstd::stream::decode_all(&zs[..]).unwrap(), data);
        assert!(gz.len() < data.len() / 5 && zs.len() < data.len() / 5);
        for (c, packed) in [(Compression::Gzip, &gz), (Compression::Zstd, &zs)] {
            assert_eq!(c.decompress(packed, data.len()).unwrap(), data);
            assert!(matches!(
                c.decompress(packed, data.len() - 1),
                Err(Inflate::TooLarge)
            ));
            assert!(matches!(
                c.decompress(b"not compressed at all", 100),
                Err(Inflate::Invalid(_))
            ));
        }
    }

    /// A body packed from a pooled buffer reads back as it was, with any
    /// compression and also when it does not compress (zstd's output is
    /// then larger than its input); uncompressed it is the buffer itself,
    /// compressed the input's buffer is back in the pool at once.
    #[test]
    fn packed_bodies_read_back_and_their_buffers_go_back_to_the_pool() {
        let text = b"hello hello hello hello\n".repeat(10_000);
        let noise: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for data in [text, noise] {
            for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let pool: &'static BufferPool = Box::leak(Box::new(BufferPool::new()));
                let mut buf = pool.take(data.len());
                buf.extend_from_slice(&data);
                let ptr = buf.as_ptr();
                let packed = c.pack(buf, pool).unwrap();
                if c == Compression::None {
                    assert_eq!(packed.as_ptr(), ptr, "not copied");
                } else {
                    let back = pool.take(data.len());
                    assert_eq!(back.as_ptr(), ptr, "{c:?}");
                }
                assert_eq!(c.decompress(&packed, data.len()).unwrap(), data, "{c:?}");
            }
        }
        let no = Compression::Snappy.pack(vec![1, 2, 3], &buffer_pool::BODIES);
        assert!(
            no.is_err(),
            "Kafka's compressions are not body compressions"
        );
    }

    /// The kind of answer, to compare two decompressions.
    fn kind(r: Result<Bytes, Inflate>) -> Result<Bytes, &'static str> {
        r.map_err(|e| match e {
            Inflate::TooLarge => "too large",
            Inflate::Invalid(_) => "invalid",
        })
    }

    proptest::proptest! {
        /// Frames with and without a declared size, one or several, whole
        /// or cut, under any limit: the one-call path answers exactly as
        /// the streaming decoder alone does.
        #[test]
        fn zstd_in_one_call_answers_as_the_stream_does(
            parts in proptest::collection::vec(
                (proptest::collection::vec(0u8..4, 0..3000), proptest::bool::ANY),
                1..4,
            ),
            max in 0usize..10_000,
            cut in proptest::option::of(0usize..200),
        ) {
            let mut packed = Vec::new();
            for (data, sized) in &parts {
                if *sized {
                    packed.extend(Compression::Zstd.compress(data.clone()).unwrap());
                } else {
                    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
                    enc.write_all(data).unwrap();
                    packed.extend(enc.finish().unwrap());
                }
            }
            if let Some(cut) = cut {
                packed.truncate(packed.len().saturating_sub(cut));
            }
            let stream = (|| {
                let mut out = Vec::new();
                zstd::stream::read::Decoder::new(&packed[..])
                    .map_err(Inflate::Invalid)?
                    .take(max as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(Inflate::Invalid)?;
                if out.len() > max {
                    return Err(Inflate::TooLarge);
                }
                Ok(Bytes::from(out))
            })();
            // Also from a pool whose buffer is far larger than any frame
            // here declares: a frame that lies about its size, or a second
            // frame, must not slip through the one call for that room.
            static ROOMY: BufferPool = BufferPool::new();
            drop(ROOMY.share(Vec::with_capacity(256 << 10)));
            let stream = kind(stream);
            proptest::prop_assert_eq!(
                kind(Compression::Zstd.decompress_in(&packed, max, &ROOMY)),
                stream.clone()
            );
            proptest::prop_assert_eq!(kind(Compression::Zstd.decompress(&packed, max)), stream);
        }
    }
}
