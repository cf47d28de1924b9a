//! Is this exactly one JSON value? The check `decoding: json` makes on
//! every line, so it runs on the hot path of every JSON source.
//!
//! serde_json answers the same question (`IgnoredAny`) but goes through its
//! visitor machinery and reads strings a byte at a time; with the separate
//! UTF-8 pass it cost a third of the JSON filter row. This walks the bytes
//! once, strings sixteen bytes at a time, and builds nothing. It accepts
//! exactly what `serde_json::from_str::<IgnoredAny>` accepts (RFC 8259;
//! `\u` escapes are not paired, as serde does not when ignoring), which
//! `tests` and the `json_body` fuzz target check against serde itself.
//!
//! `check_utf8` also validates the UTF-8 as it goes: outside strings only
//! ASCII is accepted anyway, and inside them the same sixteen-byte masks
//! stop at a byte of 0x80 and up, whose character is then checked alone;
//! an ASCII line is read once instead of twice (std's UTF-8 pass was a
//! tenth of `decoding: json`).
//!
//! Nesting is tracked in a fixed bit stack; a value nested deeper than
//! `MAX_DEPTH` (never seen in logs) is answered by serde, which has no limit
//! when ignoring, so the answer never depends on the depth.

/// Nesting levels tracked without allocating: one bit each.
const MAX_DEPTH: usize = 256;

/// The verdict, or `Deeper` when the value nests past `MAX_DEPTH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Valid,
    Invalid,
    Deeper,
}

/// Open containers, innermost last: a set bit is an object.
struct Nesting {
    bits: [u64; MAX_DEPTH / 64],
    depth: usize,
}

impl Nesting {
    #[inline]
    fn push(&mut self, object: bool) -> bool {
        if self.depth == MAX_DEPTH {
            return false;
        }
        let (w, b) = (self.depth / 64, self.depth % 64);
        self.bits[w] = (self.bits[w] & !(1 << b)) | (u64::from(object) << b);
        self.depth += 1;
        true
    }

    #[inline]
    fn top_is_object(&self) -> bool {
        let d = self.depth - 1;
        self.bits[d / 64] >> (d % 64) & 1 == 1
    }
}

/// Checks the syntax of `b`, which must already be valid UTF-8 (outside
/// strings only ASCII is accepted, inside them any byte of 0x80 and up).
pub fn check(b: &[u8]) -> Syntax {
    walk::<false>(b)
}

/// Checks the syntax of `b` and that it is UTF-8: `Valid` only when both
/// hold. (`Deeper` says nothing of its UTF-8.)
pub fn check_utf8(b: &[u8]) -> Syntax {
    walk::<true>(b)
}

/// The walk; with `UTF8`, strings' non-ASCII characters are validated.
#[inline(always)]
fn walk<const UTF8: bool>(b: &[u8]) -> Syntax {
    let mut nest = Nesting {
        bits: [0; MAX_DEPTH / 64],
        depth: 0,
    };
    let mut i = ws(b, 0);
    'value: loop {
        // A value starts at `i` (whitespace skipped).
        match b.get(i) {
            Some(b'"') => match string::<UTF8>(b, i + 1) {
                Some(end) => i = end,
                None => return Syntax::Invalid,
            },
            Some(b'{') => {
                if !nest.push(true) {
                    return Syntax::Deeper;
                }
                i = ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    nest.depth -= 1;
                    i += 1;
                } else {
                    match key::<UTF8>(b, i) {
                        Some(next) => {
                            i = next;
                            continue 'value;
                        }
                        None => return Syntax::Invalid,
                    }
                }
            }
            Some(b'[') => {
                if !nest.push(false) {
                    return Syntax::Deeper;
                }
                i = ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    nest.depth -= 1;
                    i += 1;
                } else {
                    continue 'value;
                }
            }
            Some(b't') => match literal(b, i, b"true") {
                Some(end) => i = end,
                None => return Syntax::Invalid,
            },
            Some(b'f') => match literal(b, i, b"false") {
                Some(end) => i = end,
                None => return Syntax::Invalid,
            },
            Some(b'n') => match literal(b, i, b"null") {
                Some(end) => i = end,
                None => return Syntax::Invalid,
            },
            Some(b'-' | b'0'..=b'9') => match number(b, i) {
                Some(end) => i = end,
                None => return Syntax::Invalid,
            },
            _ => return Syntax::Invalid,
        }
        // A value ended at `i`: close containers until another value starts.
        loop {
            i = ws(b, i);
            if nest.depth == 0 {
                return if i == b.len() {
                    Syntax::Valid
                } else {
                    Syntax::Invalid
                };
            }
            let object = nest.top_is_object();
            match b.get(i) {
                Some(b',') => {
                    i = ws(b, i + 1);
                    if object {
                        match key::<UTF8>(b, i) {
                            Some(next) => i = next,
                            None => return Syntax::Invalid,
                        }
                    }
                    continue 'value;
                }
                Some(b'}') if object => {
                    nest.depth -= 1;
                    i += 1;
                }
                Some(b']') if !object => {
                    nest.depth -= 1;
                    i += 1;
                }
                _ => return Syntax::Invalid,
            }
        }
    }
}

#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

#[inline]
fn ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_ws(c)) {
        i += 1;
    }
    i
}

/// A member's key and colon at `i`: where its value starts.
#[inline]
fn key<const UTF8: bool>(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let i = ws(b, string::<UTF8>(b, i + 1)?);
    (b.get(i) == Some(&b':')).then(|| ws(b, i + 1))
}

#[inline]
fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    (b.get(i..end) == Some(word)).then_some(end)
}

/// A string's contents from `i` (after its opening quote): just past its
/// closing quote.
#[inline(always)]
fn string<const UTF8: bool>(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = stop::<UTF8>(b, i)?;
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                i = match b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i + 2,
                    b'u' => {
                        let hex = b.get(i + 2..i + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        i + 6
                    }
                    _ => return None,
                }
            }
            // With `UTF8`, a character beyond ASCII: exactly one valid
            // UTF-8 sequence (std rejects overlong forms, surrogates and
            // anything past U+10FFFF).
            lead @ 0x80.. if UTF8 => {
                let width = match lead {
                    0xC0..=0xDF => 2,
                    0xE0..=0xEF => 3,
                    0xF0..=0xF7 => 4,
                    _ => return None,
                };
                std::str::from_utf8(b.get(i..i + width)?).ok()?;
                i += width;
            }
            // A control character: JSON strings must escape them.
            _ => return None,
        }
    }
}

/// Position of the first `"`, `\\` or control character at or after `i`,
/// and with `UTF8` of the first byte beyond ASCII.
#[inline]
fn stop<const UTF8: bool>(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..).and_then(|r| r.first_chunk::<16>()) {
        let m = stop_mask::<true>(chunk) | if UTF8 { high_mask(chunk) } else { 0 };
        if m != 0 {
            return Some(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    // The last few bytes (most lines end in a string): padded with stops,
    // one more mask instead of a byte loop.
    let rest = b.get(i..)?;
    let mut tail = [b'"'; 16];
    tail[..rest.len()].copy_from_slice(rest);
    let m = stop_mask::<true>(&tail) | if UTF8 { high_mask(&tail) } else { 0 };
    let k = m.trailing_zeros() as usize;
    (k < rest.len()).then_some(i + k)
}

/// Bit k set when byte k of `chunk` ends a string's plain run: a `"` or a
/// `\\`, and with `CONTROLS` a control character too (this check refuses
/// them; the filter's field scanner, which also calls this, skips them).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub(crate) fn stop_mask<const CONTROLS: bool>(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is enabled for this build (the cfg above) and the
    // unaligned load reads exactly the 16 bytes of `chunk`.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let q = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let s = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let mut m = _mm_or_si128(q, s);
        if CONTROLS {
            // Unsigned `v <= 0x1f`: max(v, 0x1f) == 0x1f.
            let limit = _mm_set1_epi8(0x1f);
            m = _mm_or_si128(m, _mm_cmpeq_epi8(_mm_max_epu8(v, limit), limit));
        }
        _mm_movemask_epi8(m) as u32
    }
}

/// Bit k set when byte k of `chunk` is 0x80 or above (not ASCII).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn high_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: as in `stop_mask`; a byte's top bit is its movemask bit.
    unsafe { _mm_movemask_epi8(_mm_loadu_si128(chunk.as_ptr().cast::<__m128i>())) as u32 }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn high_mask(chunk: &[u8; 16]) -> u32 {
    chunk
        .iter()
        .enumerate()
        .filter(|(_, &c)| c >= 0x80)
        .fold(0, |m, (k, _)| m | (1 << k))
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
pub(crate) fn stop_mask<const CONTROLS: bool>(chunk: &[u8; 16]) -> u32 {
    chunk
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == b'"' || c == b'\\' || (CONTROLS && c < 0x20))
        .fold(0, |m, (k, _)| m | (1 << k))
}

/// A number at `i` (RFC 8259 §6: no leading zeros, digits after `.` and
/// after the exponent): just past it.
#[inline]
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b[i] == b'-' {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let end = digits(b, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(b, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

#[inline]
fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde(s: &[u8]) -> bool {
        std::str::from_utf8(s)
            .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok())
    }

    fn verdict(v: Syntax) -> Option<bool> {
        match v {
            Syntax::Valid => Some(true),
            Syntax::Invalid => Some(false),
            Syntax::Deeper => None,
        }
    }

    /// Both walks answer as serde: `check_utf8` on any bytes, `check` on
    /// UTF-8 (its precondition).
    fn agree(s: &[u8]) {
        let want = serde(s);
        if let Some(v) = verdict(check_utf8(s)) {
            assert_eq!(v, want, "check_utf8 {:?}", String::from_utf8_lossy(s));
        }
        if std::str::from_utf8(s).is_ok()
            && let Some(v) = verdict(check(s))
        {
            assert_eq!(v, want, "check {:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn utf8_is_checked_in_strings_and_refused_outside_them() {
        for (s, valid) in [
            (&b"\"\xc3\xa9\""[..], true),
            (b"\"\xe2\x82\xac and \xf0\x9f\x98\x80\"", true),
            (b"{\"\xc3\xa9\":\"0123456789abcdef\xc3\xa9\"}", true),
            (b"\"\xc0\x80\"", false),
            (b"\"\xc1\xbf\"", false),
            (b"\"\xe0\x80\xaf\"", false),
            (b"\"\xed\xa0\x80\"", false),
            (b"\"\xf4\x90\x80\x80\"", false),
            (b"\"\xf8\x88\x80\x80\x80\"", false),
            (b"\"\xff\"", false),
            (b"\"\x80\"", false),
            (b"\"\xe2\x82\"", false),
            (b"\"\xe2\x82", false),
            (b"\"\xc3\"", false),
            (b"[\xc3\xa9]", false),
            (b"{\"a\":1}\xc3\xa9", false),
            (b"\"0123456789abcde\xc3\"", false),
        ] {
            assert_eq!(verdict(check_utf8(s)), Some(valid), "{s:?}");
            agree(s);
        }
    }

    #[test]
    fn agrees_with_serde_on_the_corners() {
        for s in [
            "",
            " ",
            "{}",
            "[]",
            "[ ]",
            "{ }",
            "0",
            "-0",
            "-",
            "01",
            "-01",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1e+5",
            "1E-05",
            "1.5e3",
            "-1.0E+2",
            "1e400",
            "true",
            "tru",
            "truex",
            "null",
            "nul",
            "false",
            "\"\"",
            "\"a",
            "\"\\u00e9\"",
            "\"\\u00g9\"",
            "\"\\ud800\"",
            "\"\\udc00\\u0041\"",
            "\"\\x\"",
            "\"\\/\"",
            "\"tab\there\"",
            "\"é\"",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":}",
            "{1:2}",
            "{\"a\":1 \"b\":2}",
            "[1]]",
            "[[1]",
            "{\"a\":[1,{\"b\":null}]}",
            " {\"a\":1} ",
            "{\"a\":1}x",
            "{\"a\":1}{}",
            "\t\r\n[]\n",
            "[\u{a0}]",
            "\u{feff}{}",
            "[1,\n2]",
            "[\"\u{1f}\"]",
            "{\"\\\"k\":\"v\\\\\"}",
            "\"0123456789abcdef\\\"0123456789abcdef\"",
            "[true,false,null,-1.5e-3,\"x\",{},[]]",
        ] {
            agree(s.as_bytes());
        }
    }

    #[test]
    fn nesting_past_the_stack_is_left_to_serde() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(check(deep.as_bytes()), Syntax::Deeper);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(check(ok.as_bytes()), Syntax::Valid);
        let objects = format!("{}1{}", "{\"a\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(check(objects.as_bytes()), Syntax::Valid);
        // Objects and arrays alternate: each level remembers its own kind.
        let mixed = format!("{}1{}", "{\"a\":[".repeat(100), "]}".repeat(100));
        assert_eq!(check(mixed.as_bytes()), Syntax::Valid);
        let crossed = format!("{}1{}", "{\"a\":[".repeat(100), "}]".repeat(100));
        assert_eq!(check(crossed.as_bytes()), Syntax::Invalid);
    }

    /// JSON-ish text: valid documents with small corruptions, so both
    /// answers are common.
    fn document() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            // Numbers and strings, some a character away from valid:
            // leading zeros, bare dots and exponents, raw control
            // characters, unknown escapes.
            "-?[0-9]{0,3}(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            "\"([a-z \\u{e9}\\u{1f600}\\u{1}\\t]|\\\\[nt\"\\\\/x]|\\\\u[0-9a-gA-G]{4}){0,24}\"",
        ];
        let value = leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z]{0,6}", inner), 0..5).prop_map(|m| {
                    let members: Vec<String> =
                        m.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                    format!("{{ {} }}", members.join(","))
                }),
            ]
        });
        (
            value,
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..4u8), 0..3),
        )
            .prop_map(|(doc, edits)| {
                let mut b = doc.into_bytes();
                for (at, byte, kind) in edits {
                    if b.is_empty() {
                        break;
                    }
                    let k = at.index(b.len());
                    match kind {
                        0 => b[k] = byte,
                        1 => {
                            b.remove(k);
                        }
                        2 => b.insert(k, byte),
                        _ => b.truncate(k),
                    }
                }
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn agrees_with_serde(doc in document()) {
            agree(&doc);
        }

        #[test]
        fn agrees_with_serde_on_any_bytes(doc in prop::collection::vec(any::<u8>(), 0..40)) {
            agree(&doc);
        }
    }
}
