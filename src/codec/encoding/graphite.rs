//! Graphite plaintext: `name[;tag=value...] value timestamp` (seconds),
//! tags in Graphite 1.1 form. Spaces and the characters Graphite reserves
//! (`;`, `=`, `~`, `!`, `^` in tags) become `_`, so one metric is always one
//! well-formed line. Empty tag values are left out (Carbon refuses them).

/// Append a name (or a part of one).
pub fn name(s: &[u8], out: &mut Vec<u8>) {
    sanitize(s, out, b" ;");
}

/// Append `;key=value`.
pub fn tag(key: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(b';');
    sanitize(key.as_bytes(), out, b" ;=~!^");
    out.push(b'=');
    sanitize(value, out, b" ;~");
}

/// Append one line: the encoded name (and an element's name after a dot),
/// the encoded tags, the value, the time in whole seconds.
pub fn line(
    head: &[u8],
    suffix: Option<&[u8]>,
    tags: &[u8],
    value: &str,
    time_ns: i64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(head);
    if let Some(s) = suffix {
        out.push(b'.');
        name(s, out);
    }
    out.extend_from_slice(tags);
    out.push(b' ');
    out.extend_from_slice(value.as_bytes());
    out.push(b' ');
    let secs = time_ns.div_euclid(1_000_000_000);
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
