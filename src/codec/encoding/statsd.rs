//! StatsD: `name:value|type`, with DogStatsD tags `|#key:value,key:value`.
//! The characters StatsD uses as separators (`:`, `|`, `@`, `#`, `,`) and
//! whitespace become `_` inside names and tags.

use super::metric::{Metric, StatsdKind};

pub fn write(m: &Metric<'_>, prefix: &str, kind: StatsdKind, out: &mut Vec<u8>) {
    out.extend_from_slice(prefix.as_bytes());
    sanitize(&m.name, out);
    out.push(b':');
    out.extend_from_slice(m.value.as_bytes());
    out.push(b'|');
    out.extend_from_slice(kind.as_str().as_bytes());
    for (i, (k, v)) in m.tags.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"|#" } else { b"," });
        sanitize(k.as_bytes(), out);
        out.push(b':');
        sanitize(v, out);
    }
}

fn sanitize(s: &[u8], out: &mut Vec<u8>) {
    out.extend(s.iter().map(|&c| match c {
        b':' | b'|' | b'@' | b'#' | b',' => b'_',
        c if c.is_ascii_whitespace() || c.is_ascii_control() => b'_',
        c => c,
    }));
}
