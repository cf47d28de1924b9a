//! How deeply a JSON document nests, read without parsing it: a byte scan
//! that skips strings. Run before anything builds a tree of an event
//! (`encoding: capnp`, say), whose parser and drop recurse once per level:
//! an event of `[[[[…` a few hundred thousand deep would overflow the
//! stack. Iterative, so the check itself cannot.

/// True when `json` opens more than `max` arrays or objects inside each
/// other (malformed input is read as far as it goes).
pub fn exceeds(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &c in json {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_containers_not_brackets_in_strings() {
        assert!(!exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(exceeds(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!exceeds(br#"{"a":"[[[[[[[[\"[[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(exceeds(deep.as_bytes(), 128));
        assert!(!exceeds(deep.as_bytes(), 200_000));
    }
}
