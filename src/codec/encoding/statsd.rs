//! StatsD: `name:value|type`, with DogStatsD tags `|#key:value,key:value`.
//! The characters StatsD uses as separators (`:`, `|`, `@`, `#`, `,`) and
//! whitespace become `_` inside names and tags. Empty tag values are left
//! out.

use super::metric::StatsdKind;

/// Append a name (or a part of one).
pub fn name(s: &[u8], out: &mut Vec<u8>) {
    sanitize(s, out);
}

/// Append `|#key:value` (the first tag) or `,key:value`.
pub fn tag(key: &str, value: &[u8], first: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if first { b"|#" } else { b"," });
    sanitize(key.as_bytes(), out);
    out.push(b':');
    sanitize(value, out);
}

/// Append one line: the encoded name (and an element's name after a dot),
/// the value, the type, the encoded tags.
pub fn line(
    head: &[u8],
    suffix: Option<&[u8]>,
    value: &str,
    kind: StatsdKind,
    tags: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head);
    if let Some(s) = suffix {
        out.push(b'.');
        sanitize(s, out);
    }
    out.push(b':');
    out.extend_from_slice(value.as_bytes());
    out.push(b'|');
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(tags);
}

fn sanitize(s: &[u8], out: &mut Vec<u8>) {
    out.extend(s.iter().map(|&c| match c {
        b':' | b'|' | b'@' | b'#' | b',' => b'_',
        c if c.is_ascii_whitespace() || c.is_ascii_control() => b'_',
        c => c,
    }));
}
