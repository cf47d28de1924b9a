//! Graphite plaintext: `name[;tag=value...] value timestamp` (seconds),
//! tags in Graphite 1.1 form. Spaces and the characters Graphite reserves
//! (`;`, `=`, `~`, `!`, `^` in tags) become `_`, so one event is always one
//! well-formed line.

use std::time::UNIX_EPOCH;

use super::metric::Metric;

pub fn write(m: &Metric<'_>, prefix: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(prefix.as_bytes());
    sanitize(&m.name, out, b" ;");
    for (k, v) in &m.tags {
        out.push(b';');
        sanitize(k.as_bytes(), out, b" ;=~!^");
        out.push(b'=');
        sanitize(v, out, b" ;~");
    }
    out.push(b' ');
    out.extend_from_slice(m.value.as_bytes());
    out.push(b' ');
    let secs = m.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    out.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
}

fn sanitize(s: &[u8], out: &mut Vec<u8>, bad: &[u8]) {
    out.extend(s.iter().map(|&c| {
        if c.is_ascii_control() || bad.contains(&c) {
            b'_'
        } else {
            c
        }
    }));
}
