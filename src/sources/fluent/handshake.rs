//! The forward protocol's `shared_key` handshake, server side: send
//! `["HELO", {"nonce", "auth", "keepalive"}]`, read the client's
//! `["PING", hostname, salt, sha512_hex(salt + hostname + nonce + key),
//! username, password]`, answer `["PONG", ok, reason, self_hostname,
//! sha512_hex(salt + self_hostname + nonce + key)]`. The nonce is 32
//! random hexadecimal characters (text every client library reads the
//! same way). User authentication is not asked for (`auth` empty).

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::msgpack::{Item, Reader, Scanner};

/// Run the handshake; `Ok(false)`: the client's key was wrong (it was told
/// so). `buf` keeps whatever the client sent after its PING.
pub async fn serve(
    rd: &mut (impl AsyncReadExt + Unpin),
    wr: &mut (impl AsyncWriteExt + Unpin),
    buf: &mut BytesMut,
    key: &str,
    self_hostname: &str,
    shutdown: &CancellationToken,
) -> Result<bool, String> {
    let nonce = nonce()?;
    let mut helo = BytesMut::new();
    helo.put_u8(0x92);
    str(&mut helo, b"HELO");
    helo.put_u8(0x83);
    str(&mut helo, b"nonce");
    str(&mut helo, nonce.as_bytes());
    str(&mut helo, b"auth");
    str(&mut helo, b"");
    str(&mut helo, b"keepalive");
    helo.put_u8(0xc3);
    wr.write_all(&helo)
        .await
        .map_err(|e| format!("HELO: {e}"))?;
    wr.flush().await.map_err(|e| format!("HELO: {e}"))?;
    let ping = tokio::time::timeout(super::HANDSHAKE_TIMEOUT, read_one(rd, buf, shutdown))
        .await
        .map_err(|_| "no PING within 10 s".to_string())??;
    let mut r = Reader::new(&ping);
    let field = |r: &mut Reader<'_>| match r.next() {
        Ok(Item::Str(s) | Item::Bin(s)) => Ok(s.to_vec()),
        _ => Err("a PING field is not text".to_string()),
    };
    if !matches!(r.next(), Ok(Item::Array(6))) || field(&mut r)? != b"PING" {
        return Err("the client did not answer HELO with PING".into());
    }
    let hostname = field(&mut r)?;
    let salt = field(&mut r)?;
    let digest = field(&mut r)?;
    let expected = sha512_hex(&[&salt, &hostname, nonce.as_bytes(), key.as_bytes()]);
    let ok = constant_time_eq(&digest, expected.as_bytes());
    let mut pong = BytesMut::new();
    pong.put_u8(0x95);
    str(&mut pong, b"PONG");
    pong.put_u8(if ok { 0xc3 } else { 0xc2 });
    str(&mut pong, if ok { b"" } else { b"shared_key mismatch" });
    str(&mut pong, self_hostname.as_bytes());
    let ours = sha512_hex(&[
        &salt,
        self_hostname.as_bytes(),
        nonce.as_bytes(),
        key.as_bytes(),
    ]);
    str(&mut pong, ours.as_bytes());
    wr.write_all(&pong)
        .await
        .map_err(|e| format!("PONG: {e}"))?;
    wr.flush().await.map_err(|e| format!("PONG: {e}"))?;
    Ok(ok)
}

/// `{"ack": chunk}`.
pub fn ack_message(chunk: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(0x81);
    str(&mut out, b"ack");
    str(&mut out, chunk);
    out.to_vec()
}

/// A MessagePack string.
fn str(out: &mut BytesMut, s: &[u8]) {
    match s.len() {
        n if n < 32 => out.put_u8(0xa0 | n as u8),
        n if n < 256 => {
            out.put_u8(0xd9);
            out.put_u8(n as u8);
        }
        n if n < 65_536 => {
            out.put_u8(0xda);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0xdb);
            out.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    out.put_slice(s);
}

/// One complete MessagePack object (the PING; small).
async fn read_one(
    rd: &mut (impl AsyncReadExt + Unpin),
    buf: &mut BytesMut,
    shutdown: &CancellationToken,
) -> Result<bytes::Bytes, String> {
    let mut s = Scanner::default();
    loop {
        if let Some(n) = s.scan(buf, 4).map_err(|b| format!("PING: {}", b.0))? {
            return Ok(buf.split_to(n).freeze());
        }
        if buf.len() > 64 * 1024 {
            return Err("PING larger than 64 KiB".into());
        }
        buf.reserve(4096);
        let n = tokio::select! {
            _ = shutdown.cancelled() => return Err("shutting down".into()),
            r = rd.read_buf(buf) => r.map_err(|e| format!("PING: {e}"))?,
        };
        if n == 0 {
            return Err("closed before PING".into());
        }
    }
}

fn nonce() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| "no random bytes for the handshake".to_string())?;
    Ok(hex(&bytes))
}

fn sha512_hex(parts: &[&[u8]]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_messages() {
        // sha512 of "abc" (FIPS 180-2's example).
        assert!(sha512_hex(&[b"a", b"bc"]).starts_with("ddaf35a193617aba"));
        let ack = ack_message(b"c1");
        let v = rmpv::decode::read_value(&mut &ack[..]).expect("msgpack");
        assert_eq!(v, rmpv::Value::Map(vec![("ack".into(), "c1".into())]));
        let mut long = BytesMut::new();
        str(&mut long, &[b'x'; 300]);
        let v = rmpv::decode::read_value(&mut &long[..]).expect("msgpack");
        assert_eq!(v.as_str().map(str::len), Some(300));
        assert!(
            constant_time_eq(b"ab", b"ab")
                && !constant_time_eq(b"ab", b"ac")
                && !constant_time_eq(b"a", b"ab")
        );
    }
}
