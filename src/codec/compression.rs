//! Request body compression (`compression: none | gzip | zstd`).

use std::io::Write;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    /// gzip at level 6, the level Vector and Cribl use.
    Gzip,
    /// zstd at level 3, zstd's own default.
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// The `Content-Encoding` header value, if any.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
    }
}
