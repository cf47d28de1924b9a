//! Request body compression (`compression: none | gzip | zstd`; Kafka also
//! takes `snappy` and `lz4`, which librdkafka applies itself).

use std::io::{Read, Write};

use serde::Deserialize;

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
    /// stops there. `None` passes the data through (still limited).
    pub fn decompress(self, data: &[u8], max: usize) -> Result<Vec<u8>, Inflate> {
        fn limited(r: impl Read, max: usize) -> Result<Vec<u8>, Inflate> {
            let mut out = Vec::new();
            r.take(max as u64 + 1)
                .read_to_end(&mut out)
                .map_err(Inflate::Invalid)?;
            if out.len() > max {
                return Err(Inflate::TooLarge);
            }
            Ok(out)
        }
        match self {
            Compression::None => limited(data, max),
            Compression::Gzip => limited(flate2::read::MultiGzDecoder::new(data), max),
            Compression::Zstd => limited(
                zstd::stream::read::Decoder::new(data).map_err(Inflate::Invalid)?,
                max,
            ),
            Compression::Snappy | Compression::Lz4 => Err(Inflate::Invalid(std::io::Error::other(
                format!("{} is not a body compression", self.as_str()),
            ))),
        }
    }

    pub fn compress(self, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
        match self {
            Compression::None => Ok(data),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(data.len() / 4),
                    flate2::Compression::new(6),
                );
                enc.write_all(&data)?;
                enc.finish()
            }
            Compression::Zstd => zstd::bulk::compress(&data, 3),
            // Refused by every destination type but Kafka, which does not
            // compress through here.
            Compression::Snappy | Compression::Lz4 => Err(std::io::Error::other(format!(
                "{} compression is applied by the Kafka client only",
                self.as_str()
            ))),
        }
    }
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
}
