//! InfluxDB line protocol: `measurement[,tag=value...] field=value [ns]`.
//! Commas and spaces in the measurement, and commas, equals signs and spaces
//! in tag keys and values, are escaped with a backslash as the protocol
//! requires. Without a timestamp field the time is left out, so the server
//! assigns it.

use std::time::UNIX_EPOCH;

use super::metric::Metric;

pub fn write(m: &Metric<'_>, prefix: &str, field: &str, out: &mut Vec<u8>) {
    escape(prefix.as_bytes(), out, b", ");
    escape(&m.name, out, b", ");
    for (k, v) in &m.tags {
        if v.is_empty() {
            continue; // the protocol does not allow empty tag values
        }
        out.push(b',');
        escape(k.as_bytes(), out, b",= ");
        out.push(b'=');
        escape(v, out, b",= ");
    }
    out.push(b' ');
    escape(field.as_bytes(), out, b",= ");
    out.push(b'=');
    out.extend_from_slice(m.value.as_bytes());
    if m.explicit_time {
        out.push(b' ');
        let ns = m
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        out.extend_from_slice(itoa::Buffer::new().format(ns).as_bytes());
    }
}

fn escape(s: &[u8], out: &mut Vec<u8>, special: &[u8]) {
    for &c in s {
        // A line break would end the record: write it as a (escaped) space.
        let c = if c == b'\n' || c == b'\r' { b' ' } else { c };
        if special.contains(&c) {
            out.push(b'\\');
        }
        out.push(c);
    }
}
