//! gRPC messages as their encoded bytes: the OTLP generator sends a
//! prepared export without cloning and encoding it per call, and the
//! receiver counts records on the wire without decoding them, so the
//! harness's own cost stays well below what it measures.

use bytes::{Buf as _, BufMut as _, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Each length-delimited field `field` of the message `buf`; `None` when
/// `buf` is not protobuf.
pub fn fields(mut buf: &[u8], field: u64, mut f: impl FnMut(&[u8])) -> Option<()> {
    use prost::encoding::decode_varint;
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        let len = match key & 7 {
            0 => {
                decode_varint(&mut buf).ok()?;
                continue;
            }
            1 => 8,
            5 => 4,
            2 => usize::try_from(decode_varint(&mut buf).ok()?).ok()?,
            _ => return None,
        };
        let value = buf.get(..len)?;
        buf = &buf[len..];
        if key & 7 == 2 && key >> 3 == field {
            f(value);
        }
    }
    Some(())
}
